// Kubernetes mode end to end: three node namespaces run `bin/flanneld --kube-subnet-mgr` against the fake API
// server, which holds three Node objects with podCIDRs 10.244.{1,2,3}.0/24; one pod per node is attached
// through our CNI plugin. For vxlan and host-gw: every ordered pod pair pings, each Node carries upstream's
// annotations and the NetworkUnavailable=False condition, deleting a Node object removes its routes on the
// others; with vxlan a restarted flanneld whose device was deleted gets its VTEP MAC back from the
// annotation. Faults: a node without podCIDR and a denied `pods: get` end in upstream's error text plus a hint.
//
// Layout: the namespace lab (etcd stays idle: no flanneld is pointed at it). The fake API server runs as a
// child process inside the underlay namespace, listening on the bridge address that every node reaches; the
// test drives it through a unix socket (fake-kube-remote.ts), so the root namespace gets no network at all.
// Node 2 finds its name through POD_NAME/POD_NAMESPACE (a pod GET), the others through NODE_NAME.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { flanneldCommand } from "../../src/cli/node-flags.ts";
import { Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import type { LabPlan, NodePlan } from "../../src/ctl/lab/plan.ts";
import type { LabTopology } from "../../src/ctl/lab/topology.ts";
import type { KubeObject } from "../helpers/fake-kube-api.ts";
import { RemoteFakeKubeApi } from "../helpers/fake-kube-remote.ts";
import { waitFor } from "../helpers/netns.ts";
import { bridgeFdb, ipJson, nsRun } from "../helpers/cluster.ts";

const isRoot = process.getuid?.() === 0;
const P = "flannel.alpha.coreos.com";
const POD_NS = "kube-flannel";
const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
// klog lines only: a stack frame ("    at fn (file.ts:1:2)") would mean an unhandled crash.
const STACK_FRAME = /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m;

const podCidr = (node: { index: number }): string => `10.244.${node.index}.0/24`;

interface Flanneld {
  node: string;
  child: ChildProcess;
  log: () => string;
  exit: Promise<number | null>;
  running: () => boolean;
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

/**
 * Polls `cond` until it holds; throws at once (with the log) when one of `daemons` exits meanwhile, so a
 * crashing flanneld fails the test in seconds, not at the deadline.
 */
async function whileRunning(
  daemons: Flanneld[],
  cond: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = daemons.find((f) => !f.running());
    if (dead) throw new Error(`flanneld on ${dead.node} exited while waiting for ${what}:\n${dead.log()}`);
    if (cond()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}:\n${daemons.map((f) => f.log()).join("\n")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopFlanneld(f: Flanneld): Promise<number | null> {
  if (!f.running()) return f.exit;
  f.child.kill("SIGTERM"); // by the PID we started (ip netns exec execs node, so it is flanneld's PID)
  const timer = setTimeout(() => f.running() && f.child.kill("SIGKILL"), 15_000);
  try {
    return await f.exit;
  } finally {
    clearTimeout(timer);
  }
}

for (const backend of ["vxlan", "host-gw"] as const) {
  describe(
    `kube cluster with ${backend}`,
    { skip: isRoot ? false : "needs root (network namespaces)" },
    () => {
      const stateDir = mkdtempSync(join(tmpdir(), `fts-kube-${backend}-`));
      const labDir = join(stateDir, "lab");
      const netConf = join(stateDir, "net-conf.json");
      const lab = Lab.create(labDir);
      const started: Flanneld[] = [];
      const daemons = new Map<string, Flanneld>(); // node name → its current flanneld
      let api: RemoteFakeKubeApi | undefined;
      let plan: LabPlan;
      let topo: LabTopology;
      let nextRun = 0;

      const kube = (): RemoteFakeKubeApi => {
        assert.ok(api, "the fake API server is not running");
        return api;
      };

      /** Starts bin/flanneld in `ns` in kube mode; env picks the node (NODE_NAME or POD_NAME/POD_NAMESPACE). */
      function startFlanneld(
        node: string,
        ns: string,
        env: Record<string, string>,
        subnetFile: string,
      ): Flanneld {
        const childEnv: NodeJS.ProcessEnv = { ...process.env };
        for (const k of ["NODE_NAME", "POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST"])
          delete childEnv[k];
        const child = spawn(
          "ip",
          [
            "netns",
            "exec",
            ns,
            ...flanneldCommand(repoRoot()),
            "--kube-subnet-mgr",
            `--kube-api-url=${kube().url}`,
            `--net-config-path=${netConf}`,
            "--iface=eth0",
            "--ip-masq",
            `--subnet-file=${subnetFile}`,
          ],
          { stdio: ["ignore", "pipe", "pipe"], env: { ...childEnv, ...env } },
        );
        let out = "";
        child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
        let done = false;
        const exit = new Promise<number | null>((resolve) =>
          child.once("exit", (code) => {
            done = true;
            resolve(code);
          }),
        );
        const f: Flanneld = { node, child, log: () => out, exit, running: () => !done };
        started.push(f);
        return f;
      }

      function startNode(n: NodePlan): Flanneld {
        // node2 looks its name up through its pod, as the DaemonSet does; the others are told.
        const env: Record<string, string> =
          n.index === 2
            ? { POD_NAME: `kube-flannel-ds-${n.name}`, POD_NAMESPACE: POD_NS }
            : { NODE_NAME: n.name };
        const f = startFlanneld(n.name, n.ns, env, n.subnetFile);
        daemons.set(n.name, f);
        return f;
      }

      const daemon = (name: string): Flanneld => {
        const f = daemons.get(name);
        assert.ok(f, `no flanneld for ${name}`);
        return f;
      };

      const node = async (name: string): Promise<KubeObject> => {
        const n = await kube().getNode(name);
        assert.ok(n, `Node ${name} is missing from the API server`);
        return n;
      };

      const annotations = (n: KubeObject): Record<string, string> =>
        ((n.metadata as { annotations?: Record<string, string> }).annotations ?? {}) as Record<
          string,
          string
        >;

      before(async () => {
        writeFileSync(netConf, JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }));
        topo = await lab.up({
          prefix: `fts-q${backend === "vxlan" ? "v" : "h"}${process.pid % 10000}`,
          nodes: 3,
          podsPerNode: 1,
          backend,
          stateDir: labDir,
          flanneldCmd: null, // started below, in kube mode
          subnetTimeoutMs: 60_000,
          prepareNodes: async (l) => {
            plan = l.layout;
            api = await RemoteFakeKubeApi.start({ ns: plan.underlayNs, host: plan.bridgeIp, dir: stateDir });
            for (const n of plan.nodes) {
              await api.addNode({
                metadata: { name: n.name, labels: { "kubernetes.io/hostname": n.name } },
                spec: { podCIDR: podCidr(n), podCIDRs: [podCidr(n)] },
                status: {
                  addresses: [{ type: "InternalIP", address: n.underlayIp }],
                  conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }],
                },
              });
            }
            await api.addPod(POD_NS, "kube-flannel-ds-node2", "node2");
            for (const n of plan.nodes) startNode(n);
            // Fail fast with the log of a flanneld that died, instead of the lab's subnet.env timeout.
            await whileRunning(
              [...daemons.values()],
              () => plan.nodes.every((n) => existsSync(n.subnetFile)),
              60_000,
              "every node's subnet.env",
            );
          },
        });
      });

      after(async () => {
        await Promise.all(started.map((f) => stopFlanneld(f)));
        await api?.close();
        const res = await lab.down();
        rmSync(stateDir, { recursive: true, force: true });
        assert.deepEqual(res.problems, []);
      });

      it("every ordered pod pair pings", async () => {
        const m = await lab.connectivityMatrix();
        assert.equal(m.pods.length, 3);
        assert.deepEqual(m.failures, []);
        assert.ok(m.allOk);
      });

      it("leases each node its Node's podCIDR and writes subnet.env", () => {
        const mtu = backend === "vxlan" ? 1450 : 1500;
        for (const n of plan.nodes) {
          assert.equal(
            readFileSync(n.subnetFile, "utf8"),
            `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.${n.index}.1/24\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=true\n`,
          );
        }
        assert.match(daemon("node2").log(), /Created subnet manager: Kubernetes Subnet Manager - node2/);
      });

      it("annotates every Node and sets NetworkUnavailable=False", async () => {
        for (const n of plan.nodes) {
          // The condition is patched after the subnet file is written (CompleteLease): poll for it.
          const obj = await waitFor(
            async () => {
              const o = await node(n.name);
              const conds = (o.status?.["conditions"] ?? []) as { type: string }[];
              return conds.some((c) => c.type === "NetworkUnavailable") ? o : undefined;
            },
            30_000,
            `the NetworkUnavailable condition of ${n.name}`,
          );
          assert.ok(obj);
          const a = annotations(obj);
          assert.equal(a[`${P}/kube-subnet-manager`], "true");
          assert.equal(a[`${P}/backend-type`], backend);
          assert.equal(a[`${P}/public-ip`], n.underlayIp);
          if (backend === "vxlan") {
            const data = a[`${P}/backend-data`] ?? "";
            const m = /^\{"VNI":1,"VtepMAC":"([^"]+)"\}$/.exec(data);
            assert.ok(m, `backend-data of ${n.name}: ${data}`);
            assert.match(m[1] as string, MAC_RE);
            // The advertised MAC is the device's.
            const [dev] = ipJson<{ address: string }[]>(n.ns, ["link", "show", "flannel.1"]);
            assert.equal(dev?.address, m[1]);
          } else {
            assert.equal(a[`${P}/backend-data`], "null");
          }
          const conds = (obj.status?.["conditions"] ?? []) as Record<string, string>[];
          const nu = conds.filter((c) => c["type"] === "NetworkUnavailable");
          assert.equal(nu.length, 1);
          const c = nu[0] as Record<string, string>;
          assert.equal(c["status"], "False");
          assert.equal(c["reason"], "FlannelIsUp");
          assert.equal(c["message"], "Flannel is running on this node");
          assert.match(c["lastHeartbeatTime"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
          assert.match(c["lastTransitionTime"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
          // The strategic merge kept the kubelet's condition and the spec.
          assert.ok(conds.some((x) => x["type"] === "Ready" && x["status"] === "True"));
          assert.deepEqual(obj.spec?.["podCIDRs"], [podCidr(n)]);
        }
        // Every write went to the status subresource as a strategic merge patch (RBAC: nodes/status patch).
        const writes = (await kube().requests()).filter((r) => r.method !== "GET");
        assert.ok(writes.length >= 6, `expected annotation and condition patches, got ${writes.length}`);
        for (const w of writes) {
          assert.equal(w.method, "PATCH");
          assert.match(w.path, /^\/api\/v1\/nodes\/node[123]\/status$/);
          assert.match(w.contentType ?? "", /^application\/strategic-merge-patch\+json/);
        }
      });

      if (backend === "vxlan") {
        it("a restarted flanneld keeps its VTEP MAC, even when its device is gone", async () => {
          const n = plan.nodes[0] as NodePlan;
          const before = annotations(await node(n.name))[`${P}/backend-data`];
          const mac = /"VtepMAC":"([^"]+)"/.exec(before ?? "")?.[1];
          assert.ok(mac, `no VtepMAC in ${before}`);

          assert.equal(await stopFlanneld(daemon(n.name)), 0);
          // Without the device, only the annotation can give the MAC back; peers still point at it.
          assert.equal(nsRun(n.ns, "ip", ["link", "del", "flannel.1"]).code, 0);
          const f = startNode(n);
          await whileRunning(
            [f],
            () => f.log().includes("flannel is ready"),
            30_000,
            "the restarted flanneld to be ready",
          );
          assert.ok(f.log().includes(`Interface flannel.1 mac address set to: ${mac}`), f.log());
          const [dev] = ipJson<{ address: string }[]>(n.ns, ["link", "show", "flannel.1"]);
          assert.equal(dev?.address, mac);
          assert.equal(annotations(await node(n.name))[`${P}/backend-data`], before);
          // The peers' FDB and neighbour entries still name the old MAC: traffic flows only if it is kept.
          const m = await waitFor(
            async () => {
              const r = await lab.connectivityMatrix();
              return r.allOk ? r : undefined;
            },
            30_000,
            "every pod pair to ping after the restart",
          );
          assert.equal(m?.pods.length, 3);
        });
      }

      it("deleting a Node object removes its routes on the others", async () => {
        const gone = plan.nodes[2] as NodePlan;
        const cidr = podCidr(gone);
        const others = plan.nodes.filter((n) => n !== gone);
        const routeTo = (ns: string): boolean =>
          ipJson<{ dst: string }[]>(ns, ["route", "show", cidr]).some((r) => r.dst === cidr);
        for (const o of others) assert.ok(routeTo(o.ns), `${o.name} has no route to ${cidr} yet`);

        await kube().deleteNode(gone.name);
        for (const o of others) {
          await waitFor(() => !routeTo(o.ns), 30_000, `the route to ${cidr} on ${o.name} to go`);
          if (backend === "vxlan") {
            const gw = cidr.replace("/24", "");
            await waitFor(
              () =>
                !ipJson<{ dst: string }[]>(o.ns, ["neigh", "show", "dev", "flannel.1"]).some(
                  (x) => x.dst === gw,
                ) && !bridgeFdb(o.ns, "flannel.1").some((e) => e.dst === gone.underlayIp),
              30_000,
              `the neighbour and FDB entries of ${gone.name} on ${o.name} to go`,
            );
          }
        }
        // The remaining nodes still reach each other.
        const [a, b] = others.map((o) => topo.nodes.find((t) => t.name === o.name)?.pods[0]);
        assert.ok(a?.ip && b?.ip);
        assert.equal(nsRun(a.ns, "ping", ["-c", "2", "-W", "2", b.ip]).code, 0);
      });

      if (backend === "host-gw") {
        // host-gw creates no device before the lease, so a failing flanneld in node1's namespace leaves
        // node1's own state alone; each run gets its own subnet file.
        const runFault = async (env: Record<string, string>): Promise<string> => {
          const n = plan.nodes[0] as NodePlan;
          nextRun += 1;
          const subnetFile = join(stateDir, `fault-${nextRun}.env`);
          const f = startFlanneld("fault", n.ns, env, subnetFile);
          assert.equal(await exitWithin(f, 60_000), 1, f.log());
          assert.equal(existsSync(subnetFile), false);
          assert.doesNotMatch(f.log(), STACK_FRAME, f.log());
          return f.log();
        };

        it("a node without podCIDR: exit 1 with upstream's error and how to assign one", async () => {
          await kube().addNode({ metadata: { name: "node9" }, spec: {} });
          const log = await runFault({ NODE_NAME: "node9" });
          assert.ok(
            log.includes(
              'Error registering network: failed to acquire lease: node "node9" pod cidr not assigned',
            ),
            log,
          );
          assert.match(
            log,
            /Hint: .*spec\.podCIDR.*--allocate-node-cidrs=true.*kubectl patch node node9/,
            log,
          );
          // Nothing was advertised for the node.
          assert.equal(annotations(await node("node9"))[`${P}/kube-subnet-manager`], undefined);
        });

        it("SIGTERM while waiting for the node list ends flanneld cleanly, without a sync error", async () => {
          await kube().forbid("list", "nodes"); // the informer's first list keeps failing
          try {
            const n = plan.nodes[0] as NodePlan;
            nextRun += 1;
            const f = startFlanneld(
              "fault",
              n.ns,
              { NODE_NAME: "node9" },
              join(stateDir, `fault-${nextRun}.env`),
            );
            await waitFor(
              () => f.log().includes("Failed to list nodes"),
              30_000,
              "flanneld to retry the node list",
            );
            assert.match(f.log(), /Failed to list nodes .*RBAC permission "nodes: list, watch"/);
            f.child.kill("SIGTERM");
            assert.equal(await exitWithin(f, 15_000), 0, f.log());
            assert.doesNotMatch(f.log(), /deadline exceeded|Failed to create SubnetManager/, f.log());
            assert.doesNotMatch(f.log(), STACK_FRAME, f.log());
          } finally {
            await kube().allow("list", "nodes");
          }
        });

        it("pods: get forbidden: exit 1 naming the pod, the server's reason and the missing permission", async () => {
          await kube().addPod(POD_NS, "kube-flannel-ds-node9", "node9");
          await kube().forbid("get", "pods");
          try {
            const log = await runFault({ POD_NAME: "kube-flannel-ds-node9", POD_NAMESPACE: POD_NS });
            assert.ok(
              log.includes(
                `Failed to create SubnetManager: error retrieving pod spec for '${POD_NS}/kube-flannel-ds-node9': ` +
                  `pods "kube-flannel-ds-node9" is forbidden: User "system:serviceaccount:kube-flannel:flannel" ` +
                  `cannot get resource "pods" in API group "" in the namespace "${POD_NS}"`,
              ),
              log,
            );
            assert.match(log, /Hint: .*RBAC permission "pods: get"/, log);
          } finally {
            await kube().allow("get", "pods");
          }
        });
      }
    },
  );
}
