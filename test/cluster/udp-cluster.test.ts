// The udp backend end to end: three node namespaces running `bin/flanneld` with `"Backend":{"Type":"udp"}`, one
// pod per node through our CNI plugin. Every ordered pod pair pings, subnet.env carries MTU = 1500 − 28, the lease
// is upstream's udp lease (no BackendType), and the iperf3 figure is printed next to the underlay's.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Lab } from "../../src/ctl/lab/lab.ts";
import type { LabTopology } from "../../src/ctl/lab/topology.ts";

const isRoot = process.getuid?.() === 0;

describe("etcd cluster with udp", { skip: isRoot ? false : "needs root (network namespaces)" }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), "fts-cluster-udp-"));
  const lab = Lab.create(join(stateDir, "lab"));
  let topo: LabTopology;

  before(async () => {
    topo = await lab.up({
      prefix: `fts-eu${process.pid % 10000}`,
      nodes: 3,
      podsPerNode: 1,
      backend: "udp",
      stateDir: join(stateDir, "lab"),
    });
  });

  after(async () => {
    const res = await lab.down();
    rmSync(stateDir, { recursive: true, force: true });
    assert.deepEqual(res.problems, []);
  });

  it("every ordered pod pair pings", async () => {
    const m = await lab.connectivityMatrix();
    assert.equal(m.pods.length, 3);
    assert.deepEqual(m.failures, []);
  });

  it("writes MTU 1472 and upstream's udp lease (no BackendType)", () => {
    const out = spawnSync(
      "ip",
      [
        "netns",
        "exec",
        topo.underlayNs,
        "etcdctl",
        `--endpoints=${topo.etcdEndpoint}`,
        "get",
        "--prefix",
        "--print-value-only",
        "/coreos.com/network/subnets/",
      ],
      { encoding: "utf8" },
    ).stdout.trim();
    const values = out.split("\n").sort();
    assert.deepEqual(
      values,
      topo.nodes.map((n) => `{"PublicIP":"${n.underlayIp}","PublicIPv6":null}`).sort(),
    );
    for (const n of topo.nodes) {
      assert.match(readFileSync(n.subnetFile, "utf8"), /^FLANNEL_MTU=1472$/m);
    }
  });

  it("prints pod-to-pod throughput next to the underlay's", async () => {
    const t = await lab.throughput({ seconds: 2 });
    assert.ok(t.podToPod.bitsPerSecond > 0 && t.nodeToNode.bitsPerSecond > 0);
    console.log(
      `udp: pod→pod ${(t.podToPod.bitsPerSecond / 1e9).toFixed(2)} Gbit/s, ` +
        `node→node ${(t.nodeToNode.bitsPerSecond / 1e9).toFixed(2)} Gbit/s, ratio ${t.ratio.toFixed(3)}`,
    );
  });
});
