// The extension backend end to end: three node namespaces running `bin/flanneld` with hooks that create and
// remove host-gw-style routes (`ip route replace $SUBNET via $PUBLIC_IP`, exec'd without a shell as upstream does
// since v0.28.2), one pod per node through our CNI plugin. Every ordered pod pair pings; a node whose lease goes
// away has its route removed by the SubnetRemoveCommand hook on the others.

import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdPut } from "../../src/ctl/lab/etcd.ts";
import { flanneldCommand } from "../../src/cli/node-flags.ts";
import { ETCD_NETWORK_CONFIG_KEY, Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import { flanneldArgs } from "../../src/ctl/lab/plan.ts";
import type { LabTopology } from "../../src/ctl/lab/topology.ts";
import { waitFor } from "../helpers/netns.ts";

const isRoot = process.getuid?.() === 0;

const CONFIG = JSON.stringify({
  Network: "10.244.0.0/16",
  Backend: {
    Type: "extension",
    SubnetAddCommand: "ip route replace $SUBNET via $PUBLIC_IP",
    SubnetRemoveCommand: "ip route del $SUBNET via $PUBLIC_IP",
  },
});

describe("etcd cluster with the extension backend", { skip: isRoot ? false : "needs root" }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), "fts-cluster-ext-"));
  const lab = Lab.create(join(stateDir, "lab"));
  const daemons: ChildProcess[] = [];
  let topo: LabTopology;

  before(async () => {
    topo = await lab.up({
      prefix: `fts-ex${process.pid % 10000}`,
      nodes: 3,
      podsPerNode: 1,
      backend: "extension",
      stateDir: join(stateDir, "lab"),
      // The lab's net-conf names only a backend type; the hooks need the whole Backend object, so this test
      // writes the config and starts flanneld itself.
      flanneldCmd: null,
      prepareNodes: (l) => {
        const plan = l.layout;
        etcdPut(plan.underlayNs, plan.etcdEndpoint, ETCD_NETWORK_CONFIG_KEY, CONFIG);
        for (const node of plan.nodes) {
          const child = spawn(
            "ip",
            ["netns", "exec", node.ns, ...flanneldCommand(repoRoot()), ...flanneldArgs(plan, node)],
            { stdio: "ignore" },
          );
          daemons.push(child);
        }
      },
    });
  });

  after(async () => {
    for (const d of daemons) {
      if (d.exitCode === null && d.signalCode === null) {
        d.kill("SIGTERM");
        await new Promise((r) => d.once("exit", r));
      }
    }
    await lab.down();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("the hooks' routes give pod-to-pod connectivity in every direction", async () => {
    const m = await waitFor(
      async () => {
        const r = await lab.connectivityMatrix();
        return r.allOk ? r : undefined;
      },
      30_000,
      "a green matrix",
    );
    assert.ok(m);
    assert.equal(m.pods.length, 3);
    const n1 = topo.nodes[0];
    assert.ok(n1);
    const routes = spawnSync("ip", ["netns", "exec", n1.ns, "ip", "route"], { encoding: "utf8" }).stdout;
    for (const peer of topo.nodes.slice(1)) {
      assert.match(
        routes,
        new RegExp(`^10\\.244\\.\\d+\\.0/24 via ${peer.underlayIp.replace(/\./g, "\\.")} dev eth0`, "m"),
      );
    }
  });

  it("a lease that goes away runs SubnetRemoveCommand on the other nodes", async () => {
    const [n1, , n3] = topo.nodes;
    assert.ok(n1 && n3);
    const key = spawnSync(
      "ip",
      [
        "netns",
        "exec",
        topo.underlayNs,
        "etcdctl",
        `--endpoints=${topo.etcdEndpoint}`,
        "get",
        "--prefix",
        "--keys-only",
        "/coreos.com/network/subnets/",
      ],
      { encoding: "utf8" },
    )
      .stdout.split("\n")
      .filter((k) => k !== "");
    const n3Daemon = daemons[2];
    assert.ok(n3Daemon);
    n3Daemon.kill("SIGTERM");
    await new Promise((r) => n3Daemon.once("exit", r));
    const viaN3 = (): boolean =>
      spawnSync("ip", ["netns", "exec", n1.ns, "ip", "route"], { encoding: "utf8" }).stdout.includes(
        `via ${n3.underlayIp} `,
      );
    assert.ok(viaN3());
    // Removing node3's lease (as its expiry would) makes node1 run the remove hook.
    const own = key.find((k) =>
      spawnSync(
        "ip",
        [
          "netns",
          "exec",
          topo.underlayNs,
          "etcdctl",
          `--endpoints=${topo.etcdEndpoint}`,
          "get",
          "--print-value-only",
          k,
        ],
        { encoding: "utf8" },
      ).stdout.includes(`"${n3.underlayIp}"`),
    );
    assert.ok(own, "node3's lease key");
    spawnSync("ip", [
      "netns",
      "exec",
      topo.underlayNs,
      "etcdctl",
      `--endpoints=${topo.etcdEndpoint}`,
      "del",
      own,
    ]);
    await waitFor(() => !viaN3(), 30_000, "node1's route via node3 to be removed by the hook");
  });
});
