// `npm run bench` interrupted (Ctrl-C, SIGTERM) in the middle of a section: it stops the processes it started,
// deletes its namespaces and its directory, and exits 130/143. The CNI section is the quickest to reach.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { descendantsOf } from "../../bench/util.ts";
import { repoRoot } from "../../src/ctl/lab/lab.ts";

const root = repoRoot();
const skip =
  process.getuid?.() !== 0
    ? "needs root"
    : !existsSync(join(root, "dist", "flannel.cjs"))
      ? "run `npm run build` first"
      : !existsSync("/usr/lib/cni/bridge")
        ? "needs the CNI reference plugins (/usr/lib/cni/bridge)"
        : false;

const namespacesOf = (pid: number): string[] =>
  spawnSync("ip", ["netns", "list"], { encoding: "utf8" })
    .stdout.split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`fts-p-${pid}-`));

const cniDirs = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith("fts-p-cni-"));

for (const [sig, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(
    `bench interrupted by ${sig} during the CNI section leaves nothing behind`,
    { skip, timeout: 120_000 },
    async () => {
      const dirsBefore = new Set(cniDirs());
      const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
      const child = spawn(
        process.execPath,
        ["--import", "tsx", join(root, "bench", "run.ts"), "--only", "cni"],
        {
          cwd: root,
          env,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      const pid = child.pid as number;
      let err = "";
      child.stdout.resume();
      const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      // Wait until the section is running and has made its namespaces, then interrupt it.
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`the CNI section did not start: ${err}`)), 60_000);
        child.stderr.on("data", (b: Buffer) => {
          err += b.toString();
          if (err.includes("cni: ADD/DEL")) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      for (let i = 0; i < 100 && namespacesOf(pid).length < 5; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(namespacesOf(pid).length >= 5, "the section made its namespaces");
      // Interrupt while it has a child running (each pod's ADD is a child process).
      let started = descendantsOf(pid);
      for (let i = 0; i < 2000 && started.length === 0; i++) started = descendantsOf(pid);
      assert.ok(started.length > 0, "the section runs child processes");
      child.kill(sig);
      assert.equal(await exited, code, err);
      assert.match(err, new RegExp(`bench: ${sig}: stopping its processes, deleting its namespaces`));
      assert.deepEqual(namespacesOf(pid), []);
      assert.deepEqual(
        cniDirs().filter((d) => !dirsBefore.has(d)),
        [],
      );
      // No process it had started is left.
      assert.deepEqual(
        started.filter((p) => existsSync(`/proc/${p}`)),
        [],
      );
    },
  );
}
