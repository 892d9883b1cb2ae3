// Runs a delegate plugin synchronously with its stdin given and its stdout and stderr collected.
//
// The plugin runs once per pod ADD and DEL, so what it loads counts: `node:child_process` pulls in
// `net`, `dgram` and the stream machinery, ~5 ms of each run on the bench machine (docs/performance.md).
// spawnSync itself is a thin layer over Node's `spawn_sync` binding, which process.binding() still hands
// out (it is on Node's allow-list for that call). So the binding is used directly when it is there and
// answers in the shape Node's own spawnSync relies on; otherwise, and whenever Node was asked to warn
// about deprecated calls (process.binding is one), `node:child_process` is loaded and used.

import { getSystemErrorName } from "node:util";

export interface SpawnResult {
  /** Exit status; null when the process did not start or was killed by a signal. */
  status: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** As spawnSync reports it: the process did not start (ENOENT, EACCES, ETXTBSY…), or EPIPE on stdin. */
  error?: NodeJS.ErrnoException;
}

interface BindingResult {
  status?: number | null;
  signal?: string | null;
  output?: (Buffer | null)[] | null;
  error?: number;
}

interface SpawnSyncBinding {
  spawn(options: Record<string, unknown>): BindingResult;
}

let binding: SpawnSyncBinding | null | undefined;

function spawnSyncBinding(): SpawnSyncBinding | null {
  if (binding !== undefined) return binding;
  binding = null;
  const warns =
    process.execArgv.some((a) => a.includes("deprecation")) ||
    (process.env["NODE_OPTIONS"] ?? "").includes("deprecation");
  const get = (process as { binding?: (name: string) => unknown }).binding;
  if (warns || typeof get !== "function") return binding;
  try {
    const b = get.call(process, "spawn_sync") as Partial<SpawnSyncBinding> | undefined;
    if (typeof b?.spawn === "function") binding = b as SpawnSyncBinding;
  } catch {
    // not offered by this Node: child_process it is
  }
  return binding;
}

function spawnError(path: string, errno: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(errno);
  // spawnSync's own wording, errno and syscall
  return Object.assign(new Error(`spawnSync ${path} ${code}`), {
    code,
    errno,
    syscall: `spawnSync ${path}`,
    path,
  });
}

/** Through the binding; undefined when it is not available or answers in an unknown shape. */
export function spawnWithBinding(
  path: string,
  stdin: string,
  env: Readonly<Record<string, string>>,
): SpawnResult | undefined {
  const b = spawnSyncBinding();
  if (b === null) return undefined;
  const envPairs: string[] = [];
  for (const [k, v] of Object.entries(env)) envPairs.push(`${k}=${v}`);
  const r = b.spawn({
    file: path,
    args: [path],
    envPairs,
    stdio: [
      { type: "pipe", readable: true, writable: false, input: Buffer.from(stdin, "utf8") },
      { type: "pipe", readable: false, writable: true },
      { type: "pipe", readable: false, writable: true },
    ],
    // No output limit (spawnSync's default is 1 MiB) and no timeout, as with spawn.
    maxBuffer: Infinity,
    detached: false,
    windowsHide: false,
  });
  if (typeof r !== "object" || r === null) return undefined;
  const error = typeof r.error === "number" && r.error !== 0 ? spawnError(path, r.error) : undefined;
  const output = r.output;
  if (output === null || output === undefined) {
    if (error === undefined) return undefined; // neither output nor an error: not a shape we know
    return { status: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), error };
  }
  const [, stdout, stderr] = output;
  if (!Buffer.isBuffer(stdout) || !Buffer.isBuffer(stderr)) return undefined;
  return {
    status: typeof r.status === "number" ? r.status : null,
    signal: typeof r.signal === "string" ? r.signal : null,
    stdout,
    stderr,
    ...(error !== undefined && { error }),
  };
}

/** Through `node:child_process`, loaded only now. */
export async function spawnWithChildProcess(
  path: string,
  stdin: string,
  env: Readonly<Record<string, string>>,
): Promise<SpawnResult> {
  const { spawnSync } = await import("node:child_process");
  const res = spawnSync(path, [], { env, input: stdin, stdio: "pipe", maxBuffer: Infinity });
  return {
    status: res.status,
    signal: res.signal,
    // null when the process did not start
    stdout: res.stdout ?? Buffer.alloc(0),
    stderr: res.stderr ?? Buffer.alloc(0),
    ...(res.error !== undefined && { error: res.error as NodeJS.ErrnoException }),
  };
}

/** Runs `path` (no arguments) with `stdin` and `env`, waiting for it to exit. */
export async function spawnPlugin(
  path: string,
  stdin: string,
  env: Readonly<Record<string, string>>,
): Promise<SpawnResult> {
  return spawnWithBinding(path, stdin, env) ?? (await spawnWithChildProcess(path, stdin, env));
}
