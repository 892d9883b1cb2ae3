// The lab with the real programs: bin/flanneld in every node and pods attached through bin/flannel (our CNI
// plugin delegating to bridge + host-local). Needs the build (`npm run build`); skipped without it.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import { processState } from "../../src/ctl/lab/processes.ts";
import { sleep } from "../../src/util/sleep.ts";
import { requireRoot } from "../helpers/netns.ts";

const built = ["flanneld.js", "flannel.js"].every((f) => existsSync(join(repoRoot(), "dist", f)));

describe("namespace lab with the real flanneld and CNI plugin", { concurrency: false }, () => {
  for (const [i, backend] of ["host-gw", "vxlan"].entries()) {
    it(`${backend}: 2 nodes x 2 pods, every pair reaches every other`, async (t) => {
      if (!requireRoot(t)) return;
      if (!built) {
        t.skip("dist/flanneld.js or dist/flannel.js missing: run npm run build");
        return;
      }
      const prefix = `fts-l${process.pid % 100000}r${i}`;
      const base = mkdtempSync(join(tmpdir(), "fts-lab-real-"));
      const dir = join(base, "state");
      const lab = Lab.create(dir);
      try {
        const topo = await lab.up({ prefix, nodes: 2, podsPerNode: 2, backend, stateDir: dir });
        const subnets = topo.nodes.map((n) => n.subnet ?? "");
        assert.ok(
          subnets.every((s) => /^10\.244\.\d+\.1\/24$/.test(s)),
          subnets.join(" "),
        );
        assert.notEqual(subnets[0], subnets[1]);
        assert.equal(topo.nodes[0]?.mtu, backend === "vxlan" ? 1450 : 1500);
        const m = await lab.connectivityMatrix();
        assert.deepEqual(m.failures, []);
        assert.equal(m.pods.length, 4);

        // With every flanneld suspended, the kernel keeps forwarding what they programmed (the bench measures
        // the data path this way), and down() still stops them with SIGTERM.
        lab.pauseFlanneld();
        for (const n of topo.nodes) {
          const pid = n.flanneldPid ?? 0;
          const deadline = Date.now() + 20_000;
          while (processState(pid) !== "T" && Date.now() < deadline) await sleep(10);
          assert.equal(processState(pid), "T", `${n.name}'s flanneld (${pid}) is suspended`);
        }
        const paused = await lab.connectivityMatrix();
        assert.deepEqual(paused.failures, []);
        const res = await lab.down();
        assert.deepEqual(res.problems, []);
        assert.equal(res.processesStopped, 3);
        const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
        assert.ok(!left.includes(`${prefix}-`), left);
        assert.equal(existsSync(dir), false);
      } finally {
        await lab.down();
        rmSync(base, { recursive: true, force: true });
      }
    });
  }
});
