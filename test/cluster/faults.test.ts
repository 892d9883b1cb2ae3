// Bad input and lost dependencies at the daemon level, on a one-node lab (etcd on the underlay, the node
// namespace without flanneld): malformed net-conf in etcd, a garbage lease value, etcd down at start and an
// unknown backend type. Each ends in upstream's error text (or a clearer one) and never in a crash or a stack
// trace; where upstream retries, flanneld keeps retrying and recovers once the input is fixed.

import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdPut, startLabEtcd } from "../../src/ctl/lab/etcd.ts";
import { flanneldCommand } from "../../src/cli/node-flags.ts";
import { ETCD_NETWORK_CONFIG_KEY, Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import { stopProcess, type ProcessRecord } from "../../src/ctl/lab/processes.ts";
import type { LabTopology } from "../../src/ctl/lab/topology.ts";
import { waitFor } from "../helpers/netns.ts";

const isRoot = process.getuid?.() === 0;

interface Flanneld {
  child: ChildProcess;
  log: () => string;
  exit: Promise<number | null>;
}

describe(
  "flanneld faced with bad input",
  { skip: isRoot ? false : "needs root (network namespaces)" },
  () => {
    const stateDir = mkdtempSync(join(tmpdir(), "fts-faults-"));
    const lab = Lab.create(join(stateDir, "lab"));
    const running: Flanneld[] = [];
    let topo: LabTopology;
    let n = 0;

    function startFlanneld(args: string[]): Flanneld {
      n += 1;
      const node = topo.nodes[0];
      assert.ok(node);
      const child = spawn(
        "ip",
        [
          "netns",
          "exec",
          node.ns,
          ...flanneldCommand(repoRoot()),
          ...(args.some((a) => a.startsWith("--iface")) ? [] : ["--iface=eth0"]),
          `--subnet-file=${join(stateDir, `subnet-${n}.env`)}`,
          ...args,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      const f = { child, log: () => out, exit };
      running.push(f);
      return f;
    }

    async function stop(f: Flanneld): Promise<number | null> {
      f.child.kill("SIGTERM");
      return f.exit;
    }

    async function exitWithin(f: Flanneld, ms: number): Promise<number | null> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`flanneld did not exit within ${ms} ms:\n${f.log()}`)), ms);
      });
      try {
        return await Promise.race([f.exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }

    const noStackTrace = (log: string): void => assert.doesNotMatch(log, /^\s+at .+\(.*:\d+:\d+\)$/m, log);

    before(async () => {
      topo = await lab.up({
        prefix: `fts-f${process.pid % 10000}`,
        nodes: 1,
        podsPerNode: 0,
        backend: "vxlan",
        stateDir: join(stateDir, "lab"),
        flanneldCmd: null,
        // No flanneld runs in the lab itself; the lab waits for a subnet file, so give it one.
        prepareNodes: (l) => {
          for (const node of l.layout.nodes) {
            writeFileSync(
              node.subnetFile,
              "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n",
            );
          }
        },
      });
    });

    after(async () => {
      for (const f of running) {
        if (f.child.exitCode === null && f.child.signalCode === null) await stop(f);
      }
      await lab.down();
      rmSync(stateDir, { recursive: true, force: true });
    });

    const put = (key: string, value: string): void => etcdPut(topo.underlayNs, topo.etcdEndpoint, key, value);

    it(
      "keeps retrying a malformed net-conf and comes up once it is fixed",
      { timeout: 120_000 },
      async () => {
        put(ETCD_NETWORK_CONFIG_KEY, '{"Network": "10.244.0.0/16", ');
        const f = startFlanneld([`--etcd-endpoints=${topo.etcdEndpoint}`]);
        await waitFor(
          () => (f.log().match(/Couldn't fetch network config: /g) ?? []).length >= 2,
          30_000,
          `repeated config errors:\n${f.log()}`,
        );
        put(ETCD_NETWORK_CONFIG_KEY, '{"Network": "10.244.0.0/16", "SubnetLen": 33}');
        await waitFor(
          () => f.log().includes("Couldn't fetch network config: SubnetLen must be less than /31"),
          30_000,
          `the validation error:\n${f.log()}`,
        );
        put(ETCD_NETWORK_CONFIG_KEY, '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}');
        await waitFor(() => f.log().includes("flannel is ready"), 30_000, `readiness:\n${f.log()}`);
        assert.equal(f.child.exitCode, null);
        assert.equal(await stop(f), 0);
        noStackTrace(f.log());
      },
    );

    it(
      "ignores a garbage lease value under the subnets prefix, at start and while running",
      { timeout: 120_000 },
      async () => {
        put("/coreos.com/network/subnets/10.244.200.0-24", "this is not JSON");
        const f = startFlanneld([`--etcd-endpoints=${topo.etcdEndpoint}`]);
        await waitFor(() => f.log().includes("flannel is ready"), 30_000, `readiness:\n${f.log()}`);
        put("/coreos.com/network/subnets/10.244.201.0-24", '{"PublicIP": 17}');
        put("/coreos.com/network/subnets/not-a-subnet", "{}");
        // A valid lease written afterwards is still programmed: the watch survived the garbage.
        put(
          "/coreos.com/network/subnets/10.244.202.0-24",
          '{"PublicIP":"192.168.250.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}',
        );
        const node = topo.nodes[0];
        assert.ok(node);
        await waitFor(
          () =>
            spawnSync("ip", ["netns", "exec", node.ns, "ip", "route", "show", "10.244.202.0/24"], {
              encoding: "utf8",
            }).stdout.includes("flannel.1"),
          30_000,
          `route for the valid lease after garbage:\n${f.log()}`,
        );
        assert.equal(f.child.exitCode, null);
        assert.equal(await stop(f), 0);
        noStackTrace(f.log());
      },
    );

    it("retries while etcd is down at start and comes up when it starts", { timeout: 120_000 }, async () => {
      const plan = lab.layout;
      const port = 2479;
      const endpoint = `http://${plan.bridgeIp}:${port}`;
      const f = startFlanneld([`--etcd-endpoints=${endpoint}`]);
      await waitFor(
        () => (f.log().match(/Couldn't fetch network config: /g) ?? []).length >= 2,
        60_000,
        `repeated connection errors:\n${f.log()}`,
      );
      let etcd: ProcessRecord | undefined;
      try {
        etcd = await startLabEtcd({
          ns: plan.underlayNs,
          host: plan.bridgeIp,
          clientPort: port,
          peerPort: port + 1,
          dataDir: join(stateDir, "etcd2"),
          logFile: join(stateDir, "etcd2.log"),
        });
        etcdPut(
          plan.underlayNs,
          endpoint,
          ETCD_NETWORK_CONFIG_KEY,
          '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
        );
        await waitFor(() => f.log().includes("flannel is ready"), 60_000, `readiness:\n${f.log()}`);
        assert.equal(await stop(f), 0);
      } finally {
        if (etcd) await stopProcess(etcd);
      }
      noStackTrace(f.log());
    });

    it("exits 1 with upstream's message for an unknown backend type", { timeout: 120_000 }, async () => {
      put(ETCD_NETWORK_CONFIG_KEY, '{"Network": "10.244.0.0/16", "Backend": {"Type": "carrier-pigeon"}}');
      const f = startFlanneld([`--etcd-endpoints=${topo.etcdEndpoint}`]);
      assert.equal(await exitWithin(f, 60_000), 1);
      assert.match(f.log(), /Error fetching backend: unknown backend type: carrier-pigeon/);
      noStackTrace(f.log());
    });

    it("exits 1 naming the interface when --iface matches nothing", { timeout: 120_000 }, async () => {
      put(ETCD_NETWORK_CONFIG_KEY, '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}');
      const f = startFlanneld([`--etcd-endpoints=${topo.etcdEndpoint}`, "--iface=eth9"]);
      assert.equal(await exitWithin(f, 60_000), 1);
      assert.match(f.log(), /eth9/);
      assert.match(
        f.log(),
        /Failed to find interface to use that matches the interfaces and\/or regexes provided/,
      );
      noStackTrace(f.log());
    });
  },
);
