// nftables end to end (`EnableNFTables: true`): three node namespaces with vxlan, a real etcd, `bin/flanneld`
// with `--ip-masq`, one pod per node. Every ordered pod pair pings; each node's `postrtg` and `forward` chains
// equal upstream's golden listings (spec §6.2) with that node's subnet; no FLANNEL iptables chain exists, and
// iptables-mode leftovers are removed when flanneld starts; a TCP server in the underlay (which has no route
// to the pod network) sees the pod's connection come from the node's address: masquerade works.
// Then a dual-stack pair of nodes with `--ip-blackhole-route --ip-masq-fully-random-disable`: blackhole
// routes for both subnets that come back when deleted and do not shadow the node's own pods, and
// `masquerade` without `fully-random` in both tables.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { flanneldCommand } from "../../src/cli/node-flags.ts";
import { Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import { flanneldArgs, type NodePlan } from "../../src/ctl/lab/plan.ts";
import type { LabTopology, NodeInfo } from "../../src/ctl/lab/topology.ts";
import { IpNet } from "../../src/ip/net.ts";
import { waitFor } from "../helpers/netns.ts";
import { exited, nsRun, settledMatrix, waitPidGone } from "../helpers/cluster.ts";

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : "needs root (network namespaces)";
const NETWORK = "10.244.0.0/16";
const IPV6_NETWORK = "fd00:10:244::/56";

function subnetEnv(file: string, key: string): IpNet {
  const m = new RegExp(`^${key}=(.*)$`, "m").exec(readFileSync(file, "utf8"));
  assert.ok(m, `no ${key} in ${file}`);
  return IpNet.parse(m[1] as string);
}

/** Every chain name iptables (and ip6tables) shows in the node, in all tables. */
function iptablesChains(ns: string): string[] {
  const out: string[] = [];
  for (const cmd of ["iptables-save", "ip6tables-save"]) {
    const r = nsRun(ns, cmd, []);
    assert.equal(r.code, 0, r.out);
    for (const line of r.stdout.split("\n")) if (line.startsWith(":")) out.push(line.split(" ")[0] as string);
  }
  return out;
}

describe("nftables cluster with vxlan", { skip }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), "fts-nft-"));
  const lab = Lab.create(join(stateDir, "lab"));
  const extra: ChildProcess[] = [];
  let topo: LabTopology;

  before(async () => {
    topo = await lab.up({
      prefix: `fts-nv${process.pid % 10000}`,
      nodes: 3,
      podsPerNode: 1,
      backend: "vxlan",
      enableNftables: true,
      stateDir: join(stateDir, "lab"),
    });
  });

  after(async () => {
    for (const c of extra) {
      c.kill("SIGTERM");
      await exited(c);
    }
    const res = await lab.down();
    rmSync(stateDir, { recursive: true, force: true });
    assert.deepEqual(res.problems, []);
  });

  it("every ordered pod pair pings", async () => {
    const m = await settledMatrix(lab);
    assert.equal(m.pods.length, 3);
    assert.deepEqual(m.failures, []);
  });

  it("postrtg and forward chains equal upstream's golden listings with each node's subnet", () => {
    for (const n of topo.nodes) {
      const pod = subnetEnv(n.subnetFile, "FLANNEL_SUBNET").toString();
      const post = nsRun(n.ns, "nft", ["list", "chain", "ip", "flannel-ipv4", "postrtg"]);
      assert.equal(post.code, 0, post.out);
      assert.equal(
        post.stdout,
        [
          "table ip flannel-ipv4 {",
          "\tchain postrtg {",
          '\t\tcomment "chain to manage traffic masquerading by flannel"',
          "\t\ttype nat hook postrouting priority srcnat; policy accept;",
          "\t\tmeta mark 0x00004000 return",
          `\t\tip saddr ${pod} ip daddr ${NETWORK} return`,
          `\t\tip saddr ${NETWORK} ip daddr ${pod} return`,
          `\t\tip saddr != ${pod} ip daddr ${NETWORK} return`,
          `\t\tip saddr ${NETWORK} ip daddr != 224.0.0.0/4 masquerade fully-random`,
          `\t\tip saddr != ${NETWORK} ip daddr ${NETWORK} masquerade fully-random`,
          "\t}",
          "}",
          "",
        ].join("\n"),
      );
      const fwd = nsRun(n.ns, "nft", ["list", "chain", "ip", "flannel-ipv4", "forward"]);
      assert.equal(fwd.code, 0, fwd.out);
      assert.equal(
        fwd.stdout,
        [
          "table ip flannel-ipv4 {",
          "\tchain forward {",
          '\t\tcomment "chain to accept flannel traffic"',
          "\t\ttype filter hook forward priority filter; policy accept;",
          `\t\tip saddr ${NETWORK} accept`,
          `\t\tip daddr ${NETWORK} accept`,
          "\t}",
          "}",
          "",
        ].join("\n"),
      );
      // IPv4-only config: the IPv6 table exists (upstream creates both) but holds no chain.
      const t6 = nsRun(n.ns, "nft", ["list", "table", "ip6", "flannel-ipv6"]);
      assert.equal(t6.code, 0, t6.out);
      assert.doesNotMatch(t6.stdout, /chain/);
    }
  });

  it("leaves no FLANNEL iptables chain on any node", () => {
    for (const n of topo.nodes) {
      const flannel = iptablesChains(n.ns).filter((c) => c.includes("FLANNEL"));
      assert.deepEqual(flannel, [], `${n.name}: ${flannel.join(" ")}`);
    }
  });

  it("masquerades: a TCP server in the underlay sees the node's address, not the pod's", async () => {
    const node = topo.nodes[0] as NodeInfo;
    const pod = node.pods[0];
    assert.ok(pod?.ip);
    const host = topo.etcdEndpoint.replace(/^http:\/\/|:\d+$/g, "");
    // The server answers every connection with the peer address it sees, then closes it.
    const server = spawn(
      "ip",
      [
        "netns",
        "exec",
        topo.underlayNs,
        process.execPath,
        "-e",
        `const s = require("node:net").createServer((c) => c.end(c.remoteAddress + "\\n"));
         s.listen(0, ${JSON.stringify(host)}, () => console.log("port " + s.address().port));`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    extra.push(server);
    let out = "";
    server.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor(() => /port \d+/.test(out), 15_000, `the TCP server to listen: ${out}`);
    const port = /port (\d+)/.exec(out)?.[1] as string;
    const r = nsRun(pod.ns, "bash", ["-c", `exec 3<>/dev/tcp/${host}/${port} && timeout 10 cat <&3`]);
    assert.equal(r.code, 0, r.out);
    const seen = r.stdout.trim().replace(/^::ffff:/, "");
    assert.equal(seen, node.underlayIp, `the server saw ${seen}; the pod is ${pod.ip}`);
    server.kill("SIGTERM");
    await exited(server);
  });

  it("a restarted flanneld removes iptables-mode leftovers and keeps its nftables rules", async () => {
    const node = topo.nodes[1] as NodeInfo;
    assert.ok(node.flanneldPid);
    process.kill(node.flanneldPid, "SIGTERM");
    await waitPidGone(node.flanneldPid);
    // What an earlier flanneld in iptables mode would have left behind.
    const leftovers = [
      "*nat",
      ":FLANNEL-POSTRTG - [0:0]",
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      `-A FLANNEL-POSTRTG -s ${NETWORK} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE`,
      "COMMIT",
      "*filter",
      ":FLANNEL-FWD - [0:0]",
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      `-A FLANNEL-FWD -s ${NETWORK} -m comment --comment "flanneld forward" -j ACCEPT`,
      "COMMIT",
      "",
    ].join("\n");
    const restore = nsRun(node.ns, "iptables-restore", ["--noflush"], leftovers);
    assert.equal(restore.code, 0, restore.out);
    assert.deepEqual(
      iptablesChains(node.ns)
        .filter((c) => c.includes("FLANNEL"))
        .sort(),
      [":FLANNEL-FWD", ":FLANNEL-POSTRTG"],
    );

    const plan = lab.layout;
    const nodePlan = plan.nodes.find((n) => n.name === node.name) as NodePlan;
    const child = spawn(
      "ip",
      ["netns", "exec", node.ns, ...flanneldCommand(repoRoot()), ...flanneldArgs(plan, nodePlan)],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    extra.push(child);
    let log = "";
    child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    await waitFor(() => log.includes("flannel is ready"), 30_000, `restarted flanneld to be ready:\n${log}`);
    assert.match(log, /Cleaning-up unused traffic manager rules/);
    // The clean-up runs in the background, beside the backend's start.
    await waitFor(
      () => iptablesChains(node.ns).filter((c) => c.includes("FLANNEL")).length === 0,
      10_000,
      "the iptables-mode FLANNEL chains to be removed",
    );
    const post = nsRun(node.ns, "nft", ["list", "chain", "ip", "flannel-ipv4", "postrtg"]);
    assert.match(post.stdout, /masquerade fully-random/);
    const m = await settledMatrix(lab);
    assert.deepEqual(m.failures, []);
  });
});

describe("nftables dual stack with --ip-blackhole-route and --ip-masq-fully-random-disable", { skip }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), "fts-nft-bh-"));
  const lab = Lab.create(join(stateDir, "lab"));
  let topo: LabTopology;

  before(async () => {
    topo = await lab.up({
      prefix: `fts-nb${process.pid % 10000}`,
      nodes: 2,
      podsPerNode: 1,
      backend: "vxlan",
      ipv6Network: IPV6_NETWORK,
      enableNftables: true,
      extraFlanneldArgs: ["--ip-blackhole-route", "--iptables-resync=1", "--ip-masq-fully-random-disable"],
      stateDir: join(stateDir, "lab"),
    });
  });

  after(async () => {
    const res = await lab.down();
    rmSync(stateDir, { recursive: true, force: true });
    assert.deepEqual(res.problems, []);
  });

  // `ip route` lines, each ending in a space so that `startsWith("blackhole <dst> ")` matches whole CIDRs.
  const blackholes = (ns: string, family: "-4" | "-6"): string[] =>
    nsRun(ns, "ip", [family, "route", "show", "type", "blackhole"])
      .stdout.split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => `${l.trim()} `);

  it("puts a blackhole route for the node's IPv4 and IPv6 subnets", async () => {
    for (const n of topo.nodes) {
      const sn = subnetEnv(n.subnetFile, "FLANNEL_SUBNET").toString();
      const sn6 = subnetEnv(n.subnetFile, "FLANNEL_IPV6_SUBNET").toString();
      await waitFor(
        () =>
          blackholes(n.ns, "-4").some((l) => l.startsWith(`blackhole ${sn} `)) &&
          blackholes(n.ns, "-6").some((l) => l.startsWith(`blackhole ${sn6} `)),
        30_000,
        `blackhole routes for ${sn} and ${sn6} on ${n.name}`,
      );
      // Lowest priority, so that cni0's connected route for the same subnet keeps winning.
      assert.ok(
        blackholes(n.ns, "-4").includes(`blackhole ${sn} metric 4294967295 `),
        blackholes(n.ns, "-4").join("\n"),
      );
    }
  });

  it("pods stay reachable: the blackhole does not shadow the bridge's route, every pair pings", async () => {
    const m = await settledMatrix(lab);
    assert.deepEqual(m.failures, []);
    for (const n of topo.nodes) {
      const pod = n.pods[0];
      assert.ok(pod?.ip && pod.ipv6);
      assert.equal(nsRun(n.ns, "ping", ["-c", "1", "-W", "2", pod.ip]).code, 0);
      assert.equal(nsRun(n.ns, "ping", ["-6", "-c", "1", "-W", "2", pod.ipv6]).code, 0);
    }
  });

  it("restores a deleted blackhole route", async () => {
    const n = topo.nodes[0] as NodeInfo;
    for (const [family, key] of [
      ["-4", "FLANNEL_SUBNET"],
      ["-6", "FLANNEL_IPV6_SUBNET"],
    ] as const) {
      const sn = subnetEnv(n.subnetFile, key).toString();
      const del = nsRun(n.ns, "ip", [family, "route", "del", "blackhole", sn, "metric", "4294967295"]);
      assert.equal(del.code, 0, del.out);
      await waitFor(
        () => blackholes(n.ns, family).some((l) => l.startsWith(`blackhole ${sn} `)),
        30_000,
        `blackhole ${sn} to come back`,
      );
    }
  });

  it("masquerades without fully-random in both tables", () => {
    for (const n of topo.nodes) {
      for (const [family, table] of [
        ["ip", "flannel-ipv4"],
        ["ip6", "flannel-ipv6"],
      ] as const) {
        const post = nsRun(n.ns, "nft", ["list", "chain", family, table, "postrtg"]);
        assert.equal(post.code, 0, post.out);
        const masq = post.stdout.split("\n").filter((l) => l.includes("masquerade"));
        assert.equal(masq.length, 2, post.stdout);
        for (const l of masq) assert.match(l, /masquerade$/);
      }
    }
  });
});
