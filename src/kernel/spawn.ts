// A CommandRunner over posix_spawn(3), for flanneld's own short-lived tools (iptables, iptables-restore, nft).
//
// Node's child_process forks: the kernel copies the whole process's page tables, and in a flanneld of ~60 MB
// that cost the main thread 1.2–4.1 ms per program against 0.07–0.10 ms for posix_spawn, which glibc makes
// with a vfork-like clone (docs/performance.md, ninth and tenth rounds). flanneld runs `iptables` every 5 s
// for the rules' resync, and nine programs in a cold start.
//
// What child_process did is done here by hand:
// - the program is looked up in the child's PATH; a program that is not there rejects with code ENOENT,
//   as spawn does;
// - stdin, stdout and stderr are pipes, read and written through libuv (net.Socket over the fds);
// - the child starts with every signal at its default action and none blocked (Node ignores SIGPIPE);
// - its exit status is collected with waitpid(WNOHANG) once its output has ended, polled with a short
//   backoff. libuv reaps only the children it started itself, so nothing else collects ours.

import { accessSync, constants, statSync } from "node:fs";
import { Socket } from "node:net";
import { delimiter, join } from "node:path";
import koffi from "koffi";
import type { CommandResult, CommandRunner } from "./command.ts";
import { errnoName } from "./netlink/socket.ts";

interface SpawnLib {
  pipe2(fds: Int32Array, flags: number): number;
  close(fd: number): number;
  faInit(fa: Buffer): number;
  faDup2(fa: Buffer, fd: number, to: number): number;
  faDestroy(fa: Buffer): number;
  attrInit(a: Buffer): number;
  attrSetFlags(a: Buffer, flags: number): number;
  attrSetSigMask(a: Buffer, set: Buffer): number;
  attrSetSigDefault(a: Buffer, set: Buffer): number;
  attrDestroy(a: Buffer): number;
  sigemptyset(set: Buffer): number;
  sigfillset(set: Buffer): number;
  spawn(
    pid: Int32Array,
    path: string,
    fa: Buffer,
    attr: Buffer,
    argv: (string | null)[],
    envp: (string | null)[],
  ): number;
  waitpid(pid: number, status: Int32Array, options: number): number;
}

const O_CLOEXEC = 0o2000000;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const WNOHANG = 1;
// glibc's posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336 and sigset_t 128 on 64-bit Linux;
// the buffers are larger so that no libc could write past them.
const OPAQUE = 1024;

let lib: SpawnLib | undefined;

function spawnLib(): SpawnLib {
  if (lib) return lib;
  const l = koffi.load("libc.so.6");
  lib = {
    pipe2: l.func("int pipe2(int *fds, int flags)"),
    close: l.func("int close(int)"),
    faInit: l.func("int posix_spawn_file_actions_init(void *fa)"),
    faDup2: l.func("int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)"),
    faDestroy: l.func("int posix_spawn_file_actions_destroy(void *fa)"),
    attrInit: l.func("int posix_spawnattr_init(void *attr)"),
    attrSetFlags: l.func("int posix_spawnattr_setflags(void *attr, short flags)"),
    attrSetSigMask: l.func("int posix_spawnattr_setsigmask(void *attr, const void *set)"),
    attrSetSigDefault: l.func("int posix_spawnattr_setsigdefault(void *attr, const void *set)"),
    attrDestroy: l.func("int posix_spawnattr_destroy(void *attr)"),
    sigemptyset: l.func("int sigemptyset(void *set)"),
    sigfillset: l.func("int sigfillset(void *set)"),
    spawn: l.func(
      "int posix_spawn(int *pid, const char *path, const void *fa, const void *attr, const char **argv, const char **envp)",
    ),
    waitpid: l.func("int waitpid(int pid, int *status, int options)"),
  } as SpawnLib;
  return lib;
}

/** Whether `p` is a regular file this process may execute. */
function executable(p: string): boolean {
  const st = statSync(p, { throwIfNoEntry: false });
  if (st === undefined || !st.isFile()) return false;
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The executable `file` names, found as execvp would in `path` (the child's PATH); undefined if none. */
export function resolveProgram(file: string, path: string | undefined): string | undefined {
  if (file.includes("/")) return executable(file) ? file : undefined;
  for (const dir of (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(
    delimiter,
  )) {
    const p = join(dir === "" ? "." : dir, file);
    if (executable(p)) return p;
  }
  return undefined;
}

/** The exit code of a wait status: the program's own, or 128 when a signal ended it (as ExecCommandRunner). */
export function exitCodeOf(status: number): number {
  return (status & 0x7f) === 0 ? (status >> 8) & 0xff : 128;
}

export class SpawnCommandRunner implements CommandRunner {
  /** Programs found, by PATH and name: looking them up costs a failed access(2) per directory before it. */
  private readonly found = new Map<string, string>();

  run(
    file: string,
    args: readonly string[],
    opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<CommandResult> {
    const env = opts.env ?? process.env;
    const key = `${env.PATH ?? ""}\0${file}`;
    let path = this.found.get(key);
    // A program found before is used while it is there, as a shell's hash table does; PATH is searched
    // again only when it is gone.
    if (path === undefined || !executable(path)) {
      path = resolveProgram(file, env.PATH);
      if (path === undefined) this.found.delete(key);
      else this.found.set(key, path);
    }
    if (path === undefined) {
      return Promise.reject(
        Object.assign(new Error(`spawn ${file} ENOENT`), {
          code: "ENOENT",
          errno: -2,
          syscall: `spawn ${file}`,
          path: file,
        }),
      );
    }
    const c = spawnLib();
    // stdin, stdout, stderr: [read end, write end] each; the child gets stdin's read end and the others'
    // write ends.
    const pipes: [number, number][] = [];
    let pid: number;
    try {
      for (let i = 0; i < 3; i++) {
        const p = new Int32Array(2);
        if (c.pipe2(p, O_CLOEXEC) !== 0) throw new Error(`pipe2: ${errnoName(koffi.errno())}`);
        pipes.push([p[0]!, p[1]!]);
      }
      pid = this.spawn(path, [file, ...args], env, [pipes[0]![0], pipes[1]![1], pipes[2]![1]]);
    } catch (err) {
      for (const p of pipes) for (const fd of p) c.close(fd);
      this.found.delete(key);
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const [[inR, stdinW], [stdoutR, outW], [stderrR, errW]] = pipes as [
      [number, number],
      [number, number],
      [number, number],
    ];
    // The child's ends are the child's now.
    for (const fd of [inR, outW, errW]) c.close(fd);
    return new Promise((resolve) => {
      let stdout = "";
      let stderr = "";
      let open = 2;
      const out = new Socket({ fd: stdoutR, readable: true, writable: false });
      const err = new Socket({ fd: stderrR, readable: true, writable: false });
      const input = new Socket({ fd: stdinW, readable: false, writable: true });
      out.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      err.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      input.on("error", () => {}); // the program may exit before reading its input (EPIPE)
      input.end(opts.stdin ?? "");
      const status = new Int32Array(1);
      const reap = (delay: number): void => {
        const r = c.waitpid(pid, status, WNOHANG);
        if (r === pid || r < 0) {
          // r < 0 (ECHILD) only if someone else reaped it; its code is then unknown.
          resolve({ code: r === pid ? exitCodeOf(status[0] ?? 0) : 1, stdout, stderr });
          return;
        }
        // Its output ended as it exited; it is gone within milliseconds.
        setTimeout(() => reap(Math.min(delay * 2, 50)), delay);
      };
      const ended = (): void => {
        if (--open === 0) reap(1);
      };
      for (const s of [out, err]) {
        s.on("error", () => {}); // a read error ends the stream too
        s.on("close", ended);
      }
    });
  }

  private spawn(
    path: string,
    argv: string[],
    env: NodeJS.ProcessEnv,
    stdio: [number, number, number],
  ): number {
    const c = spawnLib();
    const fa = Buffer.alloc(OPAQUE);
    const attr = Buffer.alloc(OPAQUE);
    const all = Buffer.alloc(OPAQUE);
    const none = Buffer.alloc(OPAQUE);
    c.faInit(fa);
    c.attrInit(attr);
    try {
      stdio.forEach((fd, to) => {
        if (c.faDup2(fa, fd, to) !== 0) throw new Error("posix_spawn_file_actions_adddup2 failed");
      });
      c.sigfillset(all);
      c.sigemptyset(none);
      c.attrSetSigDefault(attr, all);
      c.attrSetSigMask(attr, none);
      c.attrSetFlags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
      const envp: (string | null)[] = [];
      for (const [k, v] of Object.entries(env)) if (v !== undefined) envp.push(`${k}=${v}`);
      envp.push(null);
      const pid = new Int32Array(1);
      const rc = c.spawn(pid, path, fa, attr, [...argv, null], envp);
      if (rc !== 0) {
        // The program found a moment ago is gone (ENOENT) or cannot be run (EACCES, ENOEXEC, ...).
        const code = errnoName(rc);
        throw Object.assign(
          new Error(`spawn ${argv[0] ?? path} ${code === "ENOENT" ? code : `failed: errno ${rc} (${code})`}`),
          { code, errno: -rc, path: argv[0] ?? path },
        );
      }
      return pid[0]!;
    } finally {
      c.faDestroy(fa);
      c.attrDestroy(attr);
    }
  }
}
