// Running external programs (iptables-restore, nft, ...): a port so that rule logic can be tested against a
// recorded fake, and a real adapter over child_process. No shell is involved anywhere.

import { spawn } from "node:child_process";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /** Runs `file args...` with optional stdin; resolves with the exit code (never rejects on non-zero). */
  run(
    file: string,
    args: readonly string[],
    opts?: { stdin?: string; env?: NodeJS.ProcessEnv },
  ): Promise<CommandResult>;
}

export class ExecCommandRunner implements CommandRunner {
  run(
    file: string,
    args: readonly string[],
    opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.on("error", reject); // ENOENT: the program is not installed
      child.on("close", (code, sig) => resolve({ code: code ?? (sig ? 128 : 1), stdout, stderr }));
      child.stdin.on("error", () => {}); // the program may exit before reading stdin
      child.stdin.end(opts.stdin ?? "");
    });
  }
}
