// The flannel CNI plugin over plain values: the CNI dispatcher (what the Go library's `skel` does) and
// ADD / DEL / CHECK / VERSION / STATUS (what upstream cni-plugin's cmdAdd/cmdDel/cmdCheck do). main.ts
// feeds it the process environment and stdin; tests feed it values and a fake delegate executor.
//
// Design notes:
// - ADD writes the delegate conf to `<dataDir>/<containerID>` *before* running the delegate, as upstream,
//   so that a DEL after a crash still finds it. Unlike upstream, an ADD that then fails undoes itself: it
//   runs the delegate's DEL with the same conf (bridge/host-local may have made a veth or reserved an IP
//   before failing) and removes the file, so a failed ADD leaves nothing behind.
// - DEL replays the *stored* bytes, not a re-rendered conf (subnet.env may have changed since ADD), and is
//   idempotent: no stored file means nothing to undo. The file is removed even when the delegate's DEL
//   fails (upstream quirk A14), so that a pod whose delegate is gone can still be deleted.
// - The container ID becomes a file name; it is validated with the CNI library's rule (no "/" or "..").
// - Errors: a delegate's own CNI error is passed through unchanged (the Go library unwraps it too); any
//   other failure is code 999 with upstream's message, plus what to fix where upstream says nothing.

import { VERSION } from "../version.ts";
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { CniCode, CniError, toCniError } from "./cni-error.ts";
import { buildDelegate } from "./delegate.ts";
import { describeJson, isJsonObject, parseJsonLocated, structFields } from "./go-json.ts";
import { parseNetConf, type FlannelNetConf } from "./netconf.ts";
import { parseSubnetEnv, type SubnetEnv } from "./subnet-env.ts";

/** Runs the delegate plugin (found by its `type`). Rejects with the delegate's CniError when it fails. */
export interface DelegateExecutor {
  /** Delegated ADD; resolves with the delegate's result JSON (printed as this plugin's result). */
  add(type: string, conf: string): Promise<string>;
  /** Delegated DEL. */
  del(type: string, conf: string): Promise<void>;
}

export interface PluginDeps {
  delegate: DelegateExecutor;
  /** Diagnostics for the runtime's log (the plugin's stderr). */
  stderr: (text: string) => void;
  /** True when `netnsPath` is the plugin's own network namespace; absent = never. */
  isOwnNetns?: (netnsPath: string) => boolean;
}

/** The values of the CNI_* variables and stdin. */
export interface CmdArgs {
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
  stdin: string;
}

export interface CniResponse {
  /** Exactly what goes to stdout (a result, version info, an error object, or nothing). */
  stdout: string;
  exitCode: number;
}

/** The CNI spec versions this plugin accepts, as the Go library's `version.All`. */
export const SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export const CURRENT_VERSION = "1.1.0";
export const ABOUT = `CNI Plugin flannel version ${VERSION} (flannel-ts, linux/${process.arch})`;

const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
type Command = (typeof COMMANDS)[number];

/** Which CNI_* variables each command needs, and the validation applied when set (the library's table). */
const ENV_VARS: ReadonlyArray<{
  name: string;
  requiredFor: readonly string[];
  validate?: (v: string) => void;
}> = [
  { name: "CNI_COMMAND", requiredFor: ["ADD", "CHECK", "DEL", "GC", "STATUS"] },
  { name: "CNI_CONTAINERID", requiredFor: ["ADD", "CHECK", "DEL"], validate: validateContainerId },
  { name: "CNI_NETNS", requiredFor: ["ADD", "CHECK"] },
  { name: "CNI_IFNAME", requiredFor: ["ADD", "CHECK", "DEL"], validate: validateInterfaceName },
  { name: "CNI_ARGS", requiredFor: [] },
  { name: "CNI_PATH", requiredFor: ["ADD", "CHECK", "DEL", "GC", "STATUS"] },
  { name: "CNI_NETNS_OVERRIDE", requiredFor: [] },
];

const VALID_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateContainerId(id: string): void {
  if (id === "") throw new CniError(CniCode.unknownContainer, "missing containerID");
  if (!VALID_NAME.test(id))
    throw new CniError(CniCode.invalidEnvironmentVariables, "invalid characters in containerID", id);
}

export function validateInterfaceName(name: string): void {
  const bad = (msg: string, details = ""): never => {
    throw new CniError(CniCode.invalidEnvironmentVariables, msg, details);
  };
  if (name === "") bad("interface name is empty");
  if (Buffer.byteLength(name) > 15)
    bad("interface name is too long", "interface name should be less than 16 characters");
  if (name === "." || name === "..") bad("interface name is . or ..");
  if (/[/:\s]/u.test(name)) bad("interface name contains / or : or whitespace characters");
}

/**
 * The whole plugin invocation: env + stdin in, stdout + exit code out. `readStdin` is called only when the
 * command needs the netconf (not for VERSION, whose stdin a runtime may leave open).
 */
export async function runCni(
  env: Readonly<Record<string, string | undefined>>,
  readStdin: () => Promise<string>,
  deps: PluginDeps,
): Promise<CniResponse> {
  let cniVersion: string = CURRENT_VERSION;
  try {
    const cmd = env["CNI_COMMAND"] ?? "";
    const missing: string[] = [];
    for (const v of ENV_VARS) {
      const val = env[v.name] ?? "";
      if (val === "") {
        if (v.requiredFor.includes(cmd) || v.name === "CNI_COMMAND") missing.push(v.name);
      } else if (v.requiredFor.includes(cmd)) {
        v.validate?.(val);
      }
    }
    if (missing.length > 0) {
      if (cmd === "") {
        // No command: a human ran the binary. Say what it is, as the Go library does, and succeed.
        deps.stderr(`${ABOUT}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(", ")}\n`);
        return { stdout: "", exitCode: 0 };
      }
      throw new CniError(
        CniCode.invalidEnvironmentVariables,
        `required env variables [${missing.join(",")}] missing`,
      );
    }
    // Checked before reading the netconf (upstream checks it after), so a typo in the command is
    // reported as such rather than as whatever is wrong with stdin.
    if (!(COMMANDS as readonly string[]).includes(cmd)) {
      throw new CniError(
        CniCode.invalidEnvironmentVariables,
        `unknown CNI_COMMAND: ${cmd}`,
        `supported commands: ${COMMANDS.join(", ")}`,
      );
    }
    if (cmd === "VERSION") return { stdout: versionInfo(), exitCode: 0 };

    const args: CmdArgs = {
      containerId: env["CNI_CONTAINERID"] ?? "",
      netns: env["CNI_NETNS"] ?? "",
      ifName: env["CNI_IFNAME"] ?? "",
      args: env["CNI_ARGS"] ?? "",
      path: env["CNI_PATH"] ?? "",
      stdin: await readStdin(),
    };
    validateConfig(args.stdin);
    const declared = declaredCniVersion(args.stdin);
    if (declared !== "") cniVersion = declared;
    // An undeclared version means 0.1.0 to the CNI library.
    const configVersion = declared === "" ? "0.1.0" : declared;
    const override = (env["CNI_NETNS_OVERRIDE"] ?? "").toUpperCase();
    const checkNetns = override !== "TRUE" && override !== "1";

    switch (cmd as Exclude<Command, "VERSION">) {
      case "ADD": {
        checkVersion(configVersion);
        if (checkNetns) refuseOwnNetns(args.netns, deps);
        return { stdout: await cmdAdd(args, deps), exitCode: 0 };
      }
      case "DEL":
        checkVersion(configVersion);
        if (checkNetns) refuseOwnNetns(args.netns, deps);
        await cmdDel(args, deps);
        return { stdout: "", exitCode: 0 };
      case "CHECK":
        requireAtLeast(configVersion, "0.4.0", "CHECK");
        checkVersion(configVersion);
        await cmdCheck(args, deps);
        return { stdout: "", exitCode: 0 };
      case "STATUS":
      case "GC":
        // Upstream implements neither: the library answers success for any 1.1.0+ config.
        requireAtLeast(configVersion, "1.1.0", cmd);
        checkVersion(configVersion);
        return { stdout: "", exitCode: 0 };
    }
  } catch (err) {
    return { stdout: formatError(toCniError(err), cniVersion), exitCode: 1 };
  }
}

/** The CNI error object, indented as the Go library prints it. */
export function formatError(err: CniError, cniVersion: string): string {
  return escapeHtml(JSON.stringify(err.toJSON(cniVersion), null, 4));
}

/** VERSION's answer: `{"cniVersion":"1.1.0","supportedVersions":[…]}` and a newline. */
export function versionInfo(): string {
  return `${JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS })}\n`;
}

/** ADD: builds and stores the delegate conf, runs the delegate, returns its result. */
export async function cmdAdd(args: CmdArgs, deps: PluginDeps): Promise<string> {
  validateContainerId(args.containerId);
  let conf: FlannelNetConf;
  try {
    conf = parseNetConf(args.stdin);
  } catch (err) {
    throw new Error(`failed to load flannel netconf file: ${messageOf(err)}`);
  }
  const env = loadSubnetEnv(conf.subnetFile);
  const delegate = buildDelegate(conf, env);

  deps.stderr(`delegateAdd: netconf sent to delegate plugin:\n${delegate.json}\n`);
  const scratch = join(conf.dataDir, args.containerId);
  saveScratch(conf.dataDir, scratch, delegate.json);
  try {
    return await deps.delegate.add(delegate.type, delegate.json);
  } catch (err) {
    // Leave nothing half-made: the delegate may have created the veth or reserved an address before it
    // failed, and once the stored conf is gone a later DEL could not undo that.
    if (err instanceof CniError) {
      try {
        await deps.delegate.del(delegate.type, delegate.json);
      } catch (delErr) {
        deps.stderr(`failed to undo the failed ADD with a delegated DEL: ${messageOf(delErr)}\n`);
      }
    }
    rmSync(scratch, { force: true });
    if (err instanceof CniError) throw err;
    throw new Error(`failed to delegate add: ${messageOf(err)}`, { cause: err });
  }
}

/** DEL: replays the stored delegate conf with the delegate's DEL; success when nothing is stored. */
export async function cmdDel(args: CmdArgs, deps: PluginDeps): Promise<void> {
  validateContainerId(args.containerId);
  const conf = parseNetConf(args.stdin);
  const scratch = join(conf.dataDir, args.containerId);
  let stored: string;
  try {
    stored = readFileSync(scratch, "utf8");
  } catch (err) {
    // Per the CNI spec DEL succeeds when there is nothing left to delete (never added, or deleted already).
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new Error(`failed to read the stored delegate netconf ${scratch}: ${messageOf(err)}`);
  }
  let type: string;
  try {
    type = storedDelegateType(stored);
  } catch (err) {
    // As upstream: the interface stays on the bridge until the node reboots; the file is kept for a human.
    deps.stderr(`failed to parse netconf: ${messageOf(err)} (in ${scratch})\n`);
    return;
  }
  try {
    await deps.delegate.del(type, stored);
  } finally {
    rmSync(scratch, { force: true });
  }
}

/** CHECK: upstream does not implement it and reports success. */
export async function cmdCheck(_args: CmdArgs, _deps: PluginDeps): Promise<void> {}

/** Reads and parses subnet.env, with upstream's wrapper text and what to do when it is absent. */
export function loadSubnetEnv(file: string): SubnetEnv {
  const wrap = (msg: string): string =>
    `failed to load flannel 'subnet.env' file: ${msg}. Check the flannel pod log for this node.`;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      // Usually transient (flanneld starting up), hence "try again later" rather than upstream's 999.
      throw new CniError(
        CniCode.tryAgainLater,
        wrap(
          `open ${file}: no such file or directory (flanneld is not running on this node or has not ` +
            `leased a subnet yet; it writes this file, see its --subnet-file flag and the netconf "subnetFile")`,
        ),
      );
    }
    throw new Error(wrap(`open ${file}: ${messageOf(err)}`));
  }
  try {
    return parseSubnetEnv(text, file);
  } catch (err) {
    throw new Error(wrap(messageOf(err)));
  }
}

function saveScratch(dataDir: string, file: string, json: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const fd = openSync(file, "w", 0o600);
    try {
      fchmodSync(fd, 0o600); // an older file keeps its mode on O_TRUNC; this one holds pod config
      writeSync(fd, json);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(file, { force: true });
    throw new Error(`failed to save the delegate netconf to ${file} (needed for DEL): ${messageOf(err)}`);
  }
}

/** The `type` of a stored delegate conf, decoded as the CNI library's `types.NetConf`. */
function storedDelegateType(stored: string): string {
  const doc = parseJsonLocated(stored);
  if (!isJsonObject(doc)) throw new Error(`expected a JSON object, found ${describeJson(doc)}`);
  const f = structFields(doc, ["cniVersion", "name", "type", "ipam"]);
  for (const k of ["cniVersion", "name", "type"] as const) {
    const v = f[k];
    if (v !== undefined && v !== null && typeof v !== "string")
      throw new Error(`"${k}" must be a string, not ${describeJson(v)}`);
  }
  if (f.ipam !== undefined && f.ipam !== null && !isJsonObject(f.ipam))
    throw new Error(`"ipam" must be an object, not ${describeJson(f.ipam)}`);
  return typeof f.type === "string" ? f.type : "";
}

/** The library's validateConfig: the netconf must be JSON with a valid network `name`. */
function validateConfig(stdin: string): void {
  let doc: unknown;
  try {
    doc = parseJsonLocated(stdin);
  } catch (err) {
    throw new CniError(CniCode.decodingFailure, `error unmarshall network config: ${messageOf(err)}`);
  }
  const name = isJsonObject(doc) ? structFields(doc, ["name"]).name : undefined;
  if (!isJsonObject(doc) || (name !== undefined && name !== null && typeof name !== "string")) {
    const what = isJsonObject(doc)
      ? `"name" is ${describeJson(name)}`
      : `the netconf is ${describeJson(doc)}`;
    throw new CniError(
      CniCode.decodingFailure,
      `error unmarshall network config: ${what}, expected a JSON object with a string "name"`,
    );
  }
  if (typeof name !== "string" || name === "")
    throw new CniError(CniCode.invalidNetworkConfig, "missing network name");
  if (!VALID_NAME.test(name))
    throw new CniError(CniCode.invalidNetworkConfig, "invalid characters found in network name", name);
}

/** The netconf's `cniVersion` ("" when absent); stdin has passed validateConfig. */
function declaredCniVersion(stdin: string): string {
  const doc = JSON.parse(stdin) as Record<string, unknown>;
  const v = structFields(doc, ["cniVersion"]).cniVersion;
  if (v !== undefined && v !== null && typeof v !== "string") {
    throw new CniError(
      CniCode.decodingFailure,
      `decoding version from network config: "cniVersion" must be a string, not ${describeJson(v)}`,
    );
  }
  return typeof v === "string" ? v : "";
}

function checkVersion(configVersion: string): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(configVersion)) {
    const supported = SUPPORTED_VERSIONS.map((v) => JSON.stringify(v)).join(" ");
    throw new CniError(
      CniCode.incompatibleCniVersion,
      "incompatible CNI versions",
      `config is ${JSON.stringify(configVersion)}, plugin supports [${supported}]`,
    );
  }
}

function requireAtLeast(configVersion: string, min: string, cmd: string): void {
  const cfg = parseVersion(configVersion);
  if (compareVersions(cfg, parseVersion(min)) < 0) {
    throw new CniError(CniCode.incompatibleCniVersion, `config version does not allow ${cmd}`);
  }
  if (!SUPPORTED_VERSIONS.some((v) => compareVersions(parseVersion(v), cfg) >= 0)) {
    throw new CniError(CniCode.incompatibleCniVersion, `plugin version does not allow ${cmd}`);
  }
}

function parseVersion(v: string): [number, number, number] {
  const parts = v.split(".");
  if (parts.length >= 4)
    throw new CniError(CniCode.decodingFailure, `invalid version ${JSON.stringify(v)}: too many parts`);
  const names = ["major", "minor", "micro"];
  const nums = parts.map((p, i) => {
    if (!/^[+-]?\d+$/.test(p)) {
      throw new CniError(
        CniCode.decodingFailure,
        `failed to convert ${names[i]} version part ${JSON.stringify(p)}: invalid syntax`,
      );
    }
    return Number(p);
  });
  return [nums[0] ?? 0, nums[1] ?? 0, nums[2] ?? 0];
}

function compareVersions(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

function refuseOwnNetns(netns: string, deps: PluginDeps): void {
  if (netns !== "" && deps.isOwnNetns?.(netns) === true) {
    throw new CniError(
      CniCode.invalidNetns,
      "plugin's netns and netns from CNI_NETNS should not be the same",
      netns,
    );
  }
}

function escapeHtml(json: string): string {
  return json.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
