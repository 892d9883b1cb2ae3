// Entry point of the `flannel` CNI plugin binary: maps the process (CNI_* environment, stdin, stdout,
// stderr, exit code) onto runCni. The only file of the plugin that touches `process`.

import { PathDelegateExecutor, isOwnNetns } from "./exec.ts";
import { runCni } from "./plugin.ts";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const stderr = (text: string): void => {
  process.stderr.write(text);
};

const res = await runCni(process.env, readStdin, {
  delegate: new PathDelegateExecutor(process.env, stderr),
  stderr,
  isOwnNetns,
});
if (res.stdout !== "") process.stdout.write(res.stdout);
// exitCode (not exit()) so that stdout is flushed to a pipe before the process ends.
process.exitCode = res.exitCode;
