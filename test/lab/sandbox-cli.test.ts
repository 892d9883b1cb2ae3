// The README's main command, end to end through the built CLI: `flannelctl sandbox` brings a cluster up with the
// real flanneld and CNI plugin, prints the topology, a full green matrix and a throughput ratio, and leaves no
// namespace, process or file behind. `--keep` followed by `sandbox down` does the same in two steps.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { repoRoot } from "../../src/ctl/lab/lab.ts";

const root = repoRoot();
const built =
  existsSync(join(root, "dist", "flannelctl.js")) && existsSync(join(root, "dist", "flanneld.js"));
const skip = process.getuid?.() !== 0 ? "needs root" : built ? false : "run `npm run build` first";

function flannelctl(args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [join(root, "bin", "flannelctl"), ...args], {
    encoding: "utf8",
    timeout: 240_000,
  });
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
}

function sandboxNamespaces(): string[] {
  const out = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith("flsb-"));
}

describe("flannelctl sandbox", { skip }, () => {
  for (const backend of ["vxlan", "host-gw"]) {
    it(`runs a ${backend} cluster, shows a green matrix and a ratio, and cleans up`, () => {
      const dir = mkdtempSync(join(tmpdir(), "fts-sbx-"));
      const stateDir = join(dir, "state");
      try {
        const r = flannelctl([
          "sandbox",
          "--nodes=2",
          "--pods-per-node=1",
          `--backend=${backend}`,
          "--throughput-seconds=1",
          `--state-dir=${stateDir}`,
        ]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /All 4 pairs ok/);
        assert.match(r.out, new RegExp(`Cluster: 2 nodes, backend ${backend}`));
        assert.match(r.out, /ratio pod\/node \d+\.\d+/);
        assert.deepEqual(sandboxNamespaces(), []);
        assert.equal(existsSync(stateDir), false, "the state dir is removed");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it("--keep leaves it running with the commands to enter it; `sandbox down` removes it", () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-sbx-"));
    const stateDir = join(dir, "state");
    try {
      const up = flannelctl([
        "sandbox",
        "--nodes=2",
        "--pods-per-node=1",
        "--throughput-seconds=0",
        "--keep",
        `--state-dir=${stateDir}`,
      ]);
      assert.equal(up.code, 0, up.out);
      assert.match(up.out, /ip netns exec flsb-n1/);
      assert.deepEqual(sandboxNamespaces().sort().slice(0, 1), ["flsb-n1"]);
      const down = flannelctl(["sandbox", "down", `--state-dir=${stateDir}`]);
      assert.equal(down.code, 0, down.out);
      assert.deepEqual(sandboxNamespaces(), []);
    } finally {
      flannelctl(["sandbox", "down", `--state-dir=${stateDir}`]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
