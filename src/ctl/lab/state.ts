// The lab's state file: everything the lab made, written *before* each thing is made (and completed right
// after), so that `down()` — in this process or a later one — removes exactly that and nothing else.
// Namespaces carry the inode of their nsfs bind mount so a later namespace of the same name (someone else's)
// is left alone; processes carry their start time (see processes.ts).

import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlannelError } from "../../errors.ts";
import type { ProcessRecord } from "./processes.ts";
import type { LabTopology } from "./topology.ts";

export const STATE_FILE = "lab-state.json";

export interface NamespaceRecord {
  name: string;
  /** Inode of /run/netns/<name>; undefined while it is being created. */
  inode?: number;
}

export interface LabState {
  version: 1;
  prefix: string;
  stateDir: string;
  /** True when the lab created stateDir itself (and so removes it on down). */
  ownsStateDir: boolean;
  createdAt: string;
  namespaces: NamespaceRecord[];
  processes: ProcessRecord[];
  /** Files and directories to remove on down (the state file itself is removed last). */
  paths: string[];
  /** The last known topology, for `flannelctl sandbox` after a restart with --keep. */
  topology?: LabTopology;
}

export function statePath(stateDir: string): string {
  return join(stateDir, STATE_FILE);
}

/** Writes the state atomically (temp file + rename), so a crash never leaves half a file. */
export function writeState(state: LabState): void {
  const path = statePath(state.stateDir);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Reads the state file of `stateDir`; undefined when there is none. */
export function readState(stateDir: string): LabState | undefined {
  const path = statePath(stateDir);
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new FlannelError("LAB_STATE", `Cannot read the lab state file ${path}`, {
      cause: err,
      hint: "inspect or remove it by hand; namespaces can be listed with `ip netns list`",
    });
  }
  const s = parsed as Partial<LabState>;
  if (
    s.version !== 1 ||
    !Array.isArray(s.namespaces) ||
    !Array.isArray(s.processes) ||
    !Array.isArray(s.paths)
  ) {
    throw new FlannelError("LAB_STATE", `The lab state file ${path} has an unknown format`, {
      hint: "it was written by another version; remove the namespaces listed in it by hand",
    });
  }
  return s as LabState;
}

/** The inode of a named namespace's bind mount, or undefined when it does not exist. */
export function namespaceInode(name: string): number | undefined {
  try {
    return statSync(`/run/netns/${name}`).ino;
  } catch {
    return undefined;
  }
}
