// Running one extension hook the way upstream does since v0.28.2 (commit 08bc9a4c, "Don't use shell
// invocations in extensions backend"; spec §4.8, A4): the command string is split on whitespace (no
// quoting), `$VAR` / `${VAR}` in each field are expanded from the process environment plus the hook's
// variables (Go os.Expand rules), and the program is executed directly — no shell. Stdin is the given
// text plus "\n"; the result is the combined stdout+stderr, trimmed.
//
// Design notes:
// - Splitting before expanding means a value with spaces (or shell syntax) stays one argument and can
//   never inject words or commands: the point of upstream's change.
// - Failures are reported with Go's exec error texts (`exit status 2`, `exec: "x": executable file not
//   found in $PATH`) because they end up in upstream's log lines, which operators grep.
// - Upstream has no timeout; neither have we, but an aborted signal (flanneld shutting down) kills the hook
//   so a hung script cannot hold shutdown.

import { spawn } from "node:child_process";

export interface HookResult {
  /** Trimmed combined stdout and stderr. */
  output: string;
  /** Go's error text (`exit status 1`, ...), undefined on success. */
  error?: string;
}

/** Runs hook commands; a port so the backend can be tested without processes. */
export interface HookRunner {
  run(
    command: string,
    opts: { env: Record<string, string>; stdin: string; signal?: AbortSignal },
  ): Promise<HookResult>;
}

const isSpecial = (c: string): boolean => "*#$@!?-0123456789".includes(c);
const isNameChar = (c: string): boolean => /^[A-Za-z0-9_]$/.test(c);

/** The variable name after a `$` and how many characters it takes (Go os.getShellName). */
function shellName(s: string): { name: string; width: number } {
  const c0 = s[0] ?? "";
  if (c0 === "{") {
    if (s.length > 2 && isSpecial(s[1] ?? "") && s[2] === "}") return { name: s.slice(1, 2), width: 3 };
    for (let i = 1; i < s.length; i++) {
      if (s[i] === "}") {
        if (i === 1) return { name: "", width: 2 }; // "${}" is bad syntax: dropped
        return { name: s.slice(1, i), width: i + 1 };
      }
    }
    return { name: "", width: 1 }; // no closing brace: the "{" is dropped, as Go does
  }
  if (isSpecial(c0)) return { name: c0, width: 1 };
  let i = 0;
  while (i < s.length && isNameChar(s[i] ?? "")) i++;
  return { name: s.slice(0, i), width: i };
}

/** Go's os.Expand: replaces `$VAR` and `${VAR}` using `lookup` (unknown → ""). */
export function expandVars(s: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let i = 0;
  for (let j = 0; j < s.length; j++) {
    if (s[j] === "$" && j + 1 < s.length) {
      out += s.slice(i, j);
      const { name, width } = shellName(s.slice(j + 1));
      if (name === "" && width > 0) {
        // bad syntax: swallowed
      } else if (name === "") {
        out += "$"; // a "$" not followed by a name stays as it is
      } else {
        out += lookup(name) ?? "";
      }
      j += width;
      i = j + 1;
    }
  }
  return out + s.slice(i);
}

/** Splits `command` on whitespace (Go strings.Fields) and expands variables in each field. */
export function hookArgv(command: string, env: Readonly<Record<string, string | undefined>>): string[] {
  return command
    .split(/[\t\n\v\f\r \u0085\u00a0]+/)
    .filter((f) => f !== "")
    .map((f) => expandVars(f, (name) => env[name]));
}

const SIGNAL_TEXT: Record<string, string> = {
  SIGKILL: "killed",
  SIGTERM: "terminated",
  SIGINT: "interrupt",
  SIGSEGV: "segmentation fault",
  SIGABRT: "aborted",
  SIGHUP: "hangup",
  SIGPIPE: "broken pipe",
};

/** The real runner: child_process.spawn without a shell. */
export class ExecHookRunner implements HookRunner {
  run(
    command: string,
    opts: { env: Record<string, string>; stdin: string; signal?: AbortSignal },
  ): Promise<HookResult> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    Object.assign(env, opts.env);
    const argv = hookArgv(command, env);
    const file = argv[0];
    if (file === undefined) return Promise.resolve({ output: "", error: "exec: no command" });
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const child = spawn(file, argv.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] });
      const kill = (): void => void child.kill("SIGKILL");
      opts.signal?.addEventListener("abort", kill, { once: true });
      child.stdout.on("data", (d: Buffer) => chunks.push(d));
      child.stderr.on("data", (d: Buffer) => chunks.push(d));
      const output = (): string => Buffer.concat(chunks).toString("utf8").trim();
      let settled = false;
      const done = (r: HookResult): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener("abort", kill);
        resolve(r);
      };
      child.on("error", (err: NodeJS.ErrnoException) => {
        let text = `fork/exec ${file}: ${err.message}`;
        if (err.code === "ENOENT") {
          text = file.includes("/")
            ? `fork/exec ${file}: no such file or directory`
            : `exec: ${JSON.stringify(file)}: executable file not found in $PATH`;
        } else if (err.code === "EACCES") {
          text = `fork/exec ${file}: permission denied`;
        }
        done({ output: output(), error: text });
      });
      child.on("close", (code, sig) => {
        if (sig !== null) done({ output: output(), error: `signal: ${SIGNAL_TEXT[sig] ?? sig}` });
        else if (code !== 0) done({ output: output(), error: `exit status ${code ?? 1}` });
        else done({ output: output() });
      });
      child.stdin.on("error", () => {}); // the hook may exit without reading its input
      child.stdin.end(`${opts.stdin}\n`);
    });
  }
}
