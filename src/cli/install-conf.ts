// install-conf: the init container's CNI config installer (upstream images/install-conf, v0.28.6+).
//   install-conf <source> <destination>
// Copies atomically so the kubelet/container runtime never reads a half-written conflist: write a temp
// file `.<name>.tmp<random>` in the destination directory, fsync it, give it the source's mode, rename it
// over the destination (atomic within one filesystem), then fsync the directory so the rename survives a
// crash. On any failure the temp file is removed and the destination is untouched.

import { randomBytes } from "node:crypto";
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import { errorMessage } from "../errors.ts";

export async function installConf(source: string, destination: string): Promise<void> {
  let data: Buffer;
  let mode: number;
  try {
    const st = await stat(source);
    if (!st.isFile()) throw new Error("not a regular file");
    mode = st.mode & 0o7777;
    const fh = await open(source, "r");
    try {
      data = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new Error(
      `Cannot read source ${source}: ${errorMessage(err)}; check the flannel-cfg ConfigMap mount`,
      {
        cause: err,
      },
    );
  }
  const dir = dirname(destination);
  const tmp = join(dir, `.${basename(destination)}.tmp${randomBytes(6).toString("hex")}`);
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, destination);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new Error(
      `Cannot install ${source} as ${destination}: ${errorMessage(err)}; check that ${dir} exists and is writable (the cni hostPath mount)`,
      { cause: err },
    );
  }
  try {
    const dh = await open(dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename itself has happened.
  }
}

/** Entry point: returns the exit code. */
export async function installConfMain(args: readonly string[], stderr: (s: string) => void): Promise<number> {
  if (args.length !== 2 || args.some((a) => a === "")) {
    stderr("Usage: install-conf <source> <destination>\n");
    stderr(`Expected 2 arguments, got ${args.length}: ${JSON.stringify(args)}\n`);
    return 2;
  }
  const [source = "", destination = ""] = args;
  try {
    await installConf(source, destination);
  } catch (err) {
    stderr(`install-conf: ${errorMessage(err)}\n`);
    return 1;
  }
  return 0;
}
