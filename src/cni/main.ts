// Entry point of the `flannel` CNI plugin binary: maps the process (CNI_* environment, stdin, stdout,
// stderr, exit code) onto runCni. The only file of the plugin that touches `process`.

import { PathDelegateExecutor, callerEnvironment, isOwnNetns } from "./exec.ts";
import { runCni } from "./plugin.ts";
import { FdWriter, readAll } from "./stdio.ts";

const out = new FdWriter(1, () => process.stdout);
const err = new FdWriter(2, () => process.stderr);
const stderr = (text: string): void => {
  err.write(text);
};
const env = callerEnvironment(process.env);

// No top-level await: bin/flannel runs this as a CommonJS bundle (dist/flannel.cjs), which starts faster.
void runCni(env, () => readAll(0, () => process.stdin), {
  delegate: new PathDelegateExecutor(env, stderr),
  stderr,
  isOwnNetns,
}).then((res) => {
  if (res.stdout !== "") out.write(res.stdout);
  // exitCode (not exit()) so that what a stream still holds (see stdio.ts) is written before the process ends.
  process.exitCode = res.exitCode;
});
