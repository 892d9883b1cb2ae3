// The namespace lab's plumbing without flanneld: underlay bridge, node namespaces, a real etcd, subnets and
// host-gw routes installed by hand (as flanneld's host-gw backend would), pods attached with the standard
// bridge + host-local plugins using the delegate conf of spec §8.7. Then: the full ping matrix, a throughput
// sample, and down() leaving nothing behind — also after a failure half way and from a fresh process.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { FlannelError } from "../../src/errors.ts";
import { Lab, ETCD_NETWORK_CONFIG_KEY, type LabOptions } from "../../src/ctl/lab/lab.ts";
import type { CniConflist, NodePlan } from "../../src/ctl/lab/plan.ts";
import { isAlive } from "../../src/ctl/lab/processes.ts";
import { etcdctl } from "../../src/ctl/lab/etcd.ts";
import { readState } from "../../src/ctl/lab/state.ts";
import { requireRoot } from "../helpers/netns.ts";

let seq = 0;
function prefix(): string {
  seq += 1;
  return `fts-l${process.pid % 100000}${String.fromCharCode(96 + seq)}`;
}

function namespacesWith(p: string): string[] {
  const out = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n === `${p}-ul` || n.startsWith(`${p}-n`));
}

const subnetOf = (n: NodePlan): string => `10.244.${n.index}.0/24`;

/** What flanneld's host-gw backend would do, by hand: subnet.env plus one route per other node. */
function hostGwByHand(lab: Lab): void {
  const plan = lab.layout;
  for (const node of plan.nodes) {
    writeFileSync(
      node.subnetFile,
      `FLANNEL_NETWORK=${plan.network}\nFLANNEL_SUBNET=10.244.${node.index}.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n`,
    );
    for (const other of plan.nodes) {
      if (other === node) continue;
      spawnSync("ip", [
        "netns",
        "exec",
        node.ns,
        "ip",
        "route",
        "add",
        subnetOf(other),
        "via",
        other.underlayIp,
      ]);
    }
  }
}

/** The delegate conf the flannel plugin would hand to bridge for this node (spec §8.7), per-node dataDir. */
function bridgeConflist(node: NodePlan): CniConflist {
  return {
    name: "cbr0",
    cniVersion: "0.3.1",
    plugins: [
      {
        type: "bridge",
        hairpinMode: true,
        isDefaultGateway: true,
        ipMasq: false,
        isGateway: true,
        mtu: 1500,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: subnetOf(node) }]],
          routes: [{ dst: "10.244.0.0/16" }],
          dataDir: node.ipamDataDir,
        },
      },
    ],
  };
}

function opts(p: string, stateDir: string, over: Partial<LabOptions> = {}): LabOptions {
  return {
    prefix: p,
    nodes: 2,
    podsPerNode: 1,
    backend: "host-gw",
    stateDir,
    flanneldCmd: null,
    cniPath: ["/usr/lib/cni"],
    conflist: bridgeConflist,
    prepareNodes: hostGwByHand,
    subnetTimeoutMs: 10_000,
    ...over,
  };
}

function freshDir(): string {
  // A directory that does not exist yet, so the lab owns (and removes) it.
  const base = mkdtempSync(join(tmpdir(), "fts-lab-"));
  return join(base, "state");
}

describe("namespace lab", { concurrency: false }, () => {
  it("brings up 3 nodes with etcd and 2 pods each, all pairs reach each other, down removes everything", async (t) => {
    if (!requireRoot(t)) return;
    const p = prefix();
    const dir = freshDir();
    const lab = Lab.create(dir);
    const steps: string[] = [];
    try {
      const topo = await lab.up(opts(p, dir, { nodes: 3, podsPerNode: 2 }), (s) => {
        if (s.phase === "done") steps.push(s.title);
      });
      assert.deepEqual(steps, [
        "Creating the underlay",
        "Creating 3 node namespaces",
        "Starting etcd",
        "Preparing nodes",
        "Waiting for every node's subnet lease",
        "Attaching 6 pods",
      ]);
      assert.equal(topo.etcdEndpoint, "http://192.168.250.1:2379");
      assert.deepEqual(
        topo.nodes.map((n) => [n.name, n.underlayIp, n.subnet]),
        [
          ["node1", "192.168.250.11", "10.244.1.1/24"],
          ["node2", "192.168.250.12", "10.244.2.1/24"],
          ["node3", "192.168.250.13", "10.244.3.1/24"],
        ],
      );
      for (const n of topo.nodes) {
        for (const pod of n.pods) {
          assert.ok(pod.ip?.startsWith(`10.244.${n.name.slice(4)}.`), `${pod.name} has ${pod.ip}`);
        }
      }
      // The network config went into etcd, readable from a node over the underlay.
      const got = etcdctl(topo.nodes[0]?.ns ?? "", topo.etcdEndpoint, [
        "get",
        "--print-value-only",
        ETCD_NETWORK_CONFIG_KEY,
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(JSON.parse(got.stdout), { Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
      assert.equal(namespacesWith(p).length, 1 + 3 + 6);

      const m = await lab.connectivityMatrix();
      assert.equal(m.pods.length, 6);
      assert.deepEqual(m.failures, []);
      assert.ok(m.allOk);
      assert.ok(m.ok.every((row) => row.length === 6 && row.every(Boolean)));

      const tp = await lab.throughput({ seconds: 1 });
      assert.ok(tp.podToPod.bitsPerSecond > 0 && tp.nodeToNode.bitsPerSecond > 0, JSON.stringify(tp));
      assert.equal(tp.podToPod.from, "node1-pod1");
      assert.equal(tp.podToPod.to, "node2-pod1");
      assert.ok(tp.ratio > 0);

      // The matrix sees a broken path: without node1's route to node3's subnet, node1's pods cannot reach
      // node3's pods, and node3's pods get no replies from node1's.
      const n1 = lab.layout.nodes[0] as NodePlan;
      spawnSync("ip", ["netns", "exec", n1.ns, "ip", "route", "del", "10.244.3.0/24"]);
      const broken = await lab.connectivityMatrix();
      assert.equal(broken.allOk, false);
      const failed = broken.failures.map((f) => `${f.from}>${f.to}`).sort();
      const expected: string[] = [];
      for (const a of ["node1", "node3"]) {
        const b = a === "node1" ? "node3" : "node1";
        for (const i of [1, 2]) for (const j of [1, 2]) expected.push(`${a}-pod${i}>${b}-pod${j}`);
      }
      assert.deepEqual(failed, expected.sort());

      const etcd = readState(dir)?.processes.find((pr) => pr.role === "etcd");
      assert.ok(etcd && isAlive(etcd));
      const res = await lab.down();
      assert.deepEqual(res.problems, []);
      assert.equal(res.namespacesDeleted, 10);
      assert.equal(res.processesStopped, 1);
      assert.deepEqual(namespacesWith(p), []);
      assert.equal(isAlive(etcd), false);
      assert.equal(existsSync(dir), false, "state dir removed");
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("cleans up after flanneld dies half way and names the node with the tail of its log", async (t) => {
    if (!requireRoot(t)) return;
    const p = prefix();
    const dir = freshDir();
    const lab = Lab.create(dir);
    try {
      // node1's "flanneld" exits at once with a message; node2's runs (sleeps) until it is stopped.
      const script =
        'case "$*" in *node1/*) echo "boom: cannot lease a subnet" >&2; exit 3;; *) exec sleep 600;; esac';
      await assert.rejects(
        lab.up(
          opts(p, dir, { flanneldCmd: ["/bin/sh", "-c", script, "fake-flanneld"], prepareNodes: () => {} }),
        ),
        (err: unknown) => {
          assert.ok(err instanceof FlannelError);
          assert.equal(err.code, "LAB_FLANNELD");
          assert.match(err.message, /flanneld on node1 exited/);
          assert.match(err.message, /boom: cannot lease a subnet/);
          assert.doesNotMatch(err.message, /node2/);
          return true;
        },
      );
      assert.deepEqual(namespacesWith(p), []);
      assert.equal(existsSync(dir), false);
      const leftovers = spawnSync("pgrep", ["-f", `${dir}/node2/subnet.env`], {
        encoding: "utf8",
      }).stdout.trim();
      assert.equal(leftovers, "", "node2's process was stopped");
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("refuses a second lab in the same state dir and cleans up after a failing CNI plugin", async (t) => {
    if (!requireRoot(t)) return;
    const p = prefix();
    const dir = freshDir();
    const lab = Lab.create(dir);
    try {
      const broken = (node: NodePlan): CniConflist => ({
        ...bridgeConflist(node),
        plugins: [{ type: "no-such-plugin" }],
      });
      await assert.rejects(lab.up(opts(p, dir, { conflist: broken })), /CNI plugin no-such-plugin not found/);
      assert.deepEqual(namespacesWith(p), []);
      assert.equal(existsSync(dir), false);
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("down() from a fresh process removes exactly what the state file lists", async (t) => {
    if (!requireRoot(t)) return;
    const p = prefix();
    const dir = freshDir();
    const lab = Lab.create(dir);
    try {
      await lab.up(opts(p, dir, { podsPerNode: 0 }));
      assert.equal(namespacesWith(p).length, 3);
      await assert.rejects(Lab.create(dir).up(opts(p, dir)), /A lab is already recorded/);
      const etcd = readState(dir)?.processes.find((pr) => pr.role === "etcd");
      assert.ok(etcd && isAlive(etcd));
      const script = `import { Lab } from ${JSON.stringify(new URL("../../src/ctl/lab/lab.ts", import.meta.url).href)};
const r = await Lab.attach(process.argv[1]).down();
console.log(JSON.stringify(r));`;
      const res = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, dir], {
        encoding: "utf8",
      });
      assert.equal(res.status, 0, res.stderr);
      assert.deepEqual(JSON.parse(res.stdout), { processesStopped: 1, namespacesDeleted: 3, problems: [] });
      assert.deepEqual(namespacesWith(p), []);
      assert.equal(isAlive(etcd), false);
      assert.equal(existsSync(dir), false);
      assert.equal(Lab.attach(dir), undefined);
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });
});
