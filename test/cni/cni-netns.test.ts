// The flannel CNI plugin for real: run as a runtime would, inside a "node" namespace, delegating to the
// Debian reference plugins (bridge + host-local, portmap) which build cni0 and the pod veths. Every
// namespace is created here (prefix fts-c) and deleted afterwards; nothing touches the root namespace.

import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { Netns, requireRoot } from "../helpers/netns.ts";
import {
  buildPluginBundle,
  runConfList,
  runFlannel,
  runFlannelAsync,
  type PluginLauncher,
  type PluginRun,
} from "./cni-runner.ts";

const isRoot = process.getuid?.() === 0;
const V4_ENV =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const V6_ENV =
  "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const DUAL_ENV = V4_ENV + "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\n";

let work = "";
let bundle: PluginLauncher = { kind: "tsx" };
before(async () => {
  if (!isRoot) return;
  work = mkdtempSync(join(tmpdir(), "fts-cni-netns-"));
  bundle = await buildPluginBundle(join(work, "build"));
});
after(() => {
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

/** One node namespace with its subnet.env, flannel dataDir and host-local store, and its pods. */
class Lab {
  readonly node = Netns.create("fts-c");
  readonly pods: Netns[] = [];
  readonly dir = mkdtempSync(join(work, "lab-"));
  readonly subnetFile = join(this.dir, "run/subnet.env");
  readonly dataDir = join(this.dir, "flannel-data");
  readonly ipamDir = join(this.dir, "host-local");

  constructor(subnetEnv: string | null) {
    mkdirSync(join(this.dir, "run"));
    if (subnetEnv !== null) writeFileSync(this.subnetFile, subnetEnv);
  }

  pod(): Netns {
    const p = Netns.create("fts-c");
    this.pods.push(p);
    return p;
  }

  netconf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: "1.0.0",
      name: "cni-flannel",
      type: "flannel",
      subnetFile: this.subnetFile,
      dataDir: this.dataDir,
      ipam: { dataDir: this.ipamDir },
      ...extra,
    };
  }

  run(
    command: string,
    pod: Netns,
    containerId: string,
    opts: { conf?: string; launcher?: PluginLauncher; cniPath?: string } = {},
  ): PluginRun {
    return runFlannel(this.node, opts.launcher ?? bundle, {
      command,
      containerId,
      netnsPath: `/var/run/netns/${pod.name}`,
      conf: opts.conf ?? JSON.stringify(this.netconf()),
      ...(opts.cniPath === undefined ? {} : { cniPath: opts.cniPath }),
    });
  }

  /** Links in the node namespace other than lo and cni0 (i.e. pod veths). */
  veths(): string[] {
    return this.node
      .ipJson<{ ifname: string }[]>(["link", "show"])
      .map((l) => l.ifname)
      .filter((n) => n !== "lo" && n !== "cni0");
  }

  /** IP reservations in host-local's store (files named after addresses). */
  reservations(): string[] {
    const dir = join(this.ipamDir, "cni-flannel");
    if (!existsSync(dir)) return [];
    return readdirSync(dir).filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"));
  }

  scratchFiles(): string[] {
    return existsSync(this.dataDir) ? readdirSync(this.dataDir) : [];
  }

  close(): void {
    for (const p of this.pods) p.delete();
    this.node.delete();
  }
}

async function withLab(
  t: TestContext,
  subnetEnv: string | null,
  fn: (lab: Lab) => void | Promise<void>,
): Promise<void> {
  if (!requireRoot(t)) return;
  const lab = new Lab(subnetEnv);
  try {
    await fn(lab);
  } finally {
    lab.close();
  }
}

function ok(r: PluginRun, what: string): Record<string, unknown> {
  assert.equal(r.code, 0, `${what} failed (${r.code}): ${r.stdout}\n${r.stderr}`);
  return r.json ?? {};
}

function resultIps(result: Record<string, unknown>): string[] {
  return ((result["ips"] ?? []) as { address: string }[]).map((i) => i.address);
}

function podAddrs(pod: Netns, family: "inet" | "inet6"): string[] {
  const links = pod.ipJson<
    { ifname: string; addr_info: { family: string; local: string; prefixlen: number; scope: string }[] }[]
  >(["addr", "show", "dev", "eth0"]);
  return (links[0]?.addr_info ?? [])
    .filter((a) => a.family === family && a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`);
}

describe("flannel CNI plugin in network namespaces", { concurrency: false }, () => {
  test("bin/flannel (built bundle): ADD gives the pod an IP, cni0 and the network route; DEL undoes it; DEL twice", async (t) => {
    await withLab(t, V4_ENV, (lab) => {
      const pod = lab.pod();
      const res = ok(lab.run("ADD", pod, "ctr-a"), "ADD");
      const ips = resultIps(res);
      assert.equal(ips.length, 1);
      assert.match(ips[0] ?? "", /^10\.1\.17\.\d+\/24$/);
      assert.deepEqual(podAddrs(pod, "inet"), ips);
      // the pod reaches the cluster network through the bridge's address (isGateway)
      const routes = pod.ipJson<{ dst: string; gateway?: string; dev: string }[]>(["route", "show"]);
      assert.ok(
        routes.some((r) => r.dst === "10.1.0.0/16" && r.gateway === "10.1.17.1" && r.dev === "eth0"),
        JSON.stringify(routes),
      );
      const cni0 = lab.node.ipJson<{ addr_info: { local: string; prefixlen: number }[] }[]>([
        "addr",
        "show",
        "dev",
        "cni0",
      ]);
      assert.ok(cni0[0]?.addr_info.some((a) => a.local === "10.1.17.1" && a.prefixlen === 24));
      assert.equal(lab.veths().length, 1);

      // the stored delegate conf: exact bytes, 0600 in a 0700 dir; host-local honoured ipam.dataDir
      const stored = readFileSync(join(lab.dataDir, "ctr-a"), "utf8");
      assert.equal(
        stored,
        `{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"dataDir":${JSON.stringify(lab.ipamDir)},` +
          `"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},` +
          `"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}`,
      );
      assert.equal(statSync(join(lab.dataDir, "ctr-a")).mode & 0o777, 0o600);
      assert.equal(statSync(lab.dataDir).mode & 0o777, 0o700);
      assert.deepEqual(lab.reservations(), [ips[0]?.split("/")[0]]);
      assert.equal(
        readFileSync(join(lab.ipamDir, "cni-flannel", ips[0]?.split("/")[0] ?? ""), "utf8").split(/\r?\n/)[0],
        "ctr-a",
      );

      ok(lab.run("DEL", pod, "ctr-a"), "DEL");
      assert.deepEqual(lab.reservations(), []);
      assert.deepEqual(lab.veths(), []);
      assert.deepEqual(lab.scratchFiles(), []);
      assert.deepEqual(
        pod.ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname),
        ["lo"],
      );
      ok(lab.run("DEL", pod, "ctr-a"), "second DEL");
    });
  });

  test("200 ADD/DEL cycles leave no reserved IP, no veth and no stored conf", async (t) => {
    await withLab(t, V4_ENV, async (lab) => {
      // four pods cycling side by side: also exercises host-local's store locking under concurrency
      const WORKERS = 4;
      const CYCLES = 200;
      const pods = Array.from({ length: WORKERS }, () => lab.pod());
      await Promise.all(
        pods.map(async (pod, w) => {
          for (let i = w; i < CYCLES; i += WORKERS) {
            const inv = {
              containerId: `cycle-${i}`,
              netnsPath: `/var/run/netns/${pod.name}`,
              conf: JSON.stringify(lab.netconf()),
            };
            ok(await runFlannelAsync(lab.node, bundle, { ...inv, command: "ADD" }), `ADD #${i}`);
            ok(await runFlannelAsync(lab.node, bundle, { ...inv, command: "DEL" }), `DEL #${i}`);
          }
        }),
      );
      assert.deepEqual(lab.reservations(), []);
      assert.deepEqual(lab.veths(), []);
      assert.deepEqual(lab.scratchFiles(), []);
    });
  });

  test("IPv6-only ADD (plugin from sources via tsx): v6 address and route to the v6 network", async (t) => {
    await withLab(t, V6_ENV, (lab) => {
      const pod = lab.pod();
      const res = ok(lab.run("ADD", pod, "ctr-v6", { launcher: { kind: "tsx" } }), "ADD");
      const ips = resultIps(res);
      assert.equal(ips.length, 1);
      assert.match(ips[0] ?? "", /^fc00::[0-9a-f]+\/64$/);
      assert.deepEqual(podAddrs(pod, "inet6"), ips);
      const routes = pod.ipJson<{ dst: string; gateway?: string }[]>(["-6", "route", "show"]);
      assert.ok(
        routes.some((r) => r.dst === "fc00::/48" && r.gateway === "fc00::1"),
        JSON.stringify(routes),
      );
      ok(lab.run("DEL", pod, "ctr-v6", { launcher: { kind: "tsx" } }), "DEL");
      assert.deepEqual(lab.reservations(), []);
      assert.deepEqual(lab.veths(), []);
    });
  });

  test("dual-stack ADD: one address per family, both networks routed", async (t) => {
    await withLab(t, DUAL_ENV, (lab) => {
      const pod = lab.pod();
      const ips = resultIps(ok(lab.run("ADD", pod, "ctr-dual"), "ADD"));
      assert.equal(ips.length, 2);
      assert.match(ips[0] ?? "", /^10\.1\.17\.\d+\/24$/);
      assert.match(ips[1] ?? "", /^fc00::[0-9a-f]+\/64$/);
      assert.ok(pod.ipJson<{ dst: string }[]>(["route", "show"]).some((r) => r.dst === "10.1.0.0/16"));
      assert.ok(pod.ipJson<{ dst: string }[]>(["-6", "route", "show"]).some((r) => r.dst === "fc00::/48"));
      ok(lab.run("DEL", pod, "ctr-dual"), "DEL");
      assert.deepEqual(lab.reservations(), []);
    });
  });

  test("two pods on one node ping each other via cni0", async (t) => {
    await withLab(t, V4_ENV, (lab) => {
      const a = lab.pod();
      const b = lab.pod();
      const ipA = resultIps(ok(lab.run("ADD", a, "ctr-ping-a"), "ADD a"))[0]?.split("/")[0] ?? "";
      const ipB = resultIps(ok(lab.run("ADD", b, "ctr-ping-b"), "ADD b"))[0]?.split("/")[0] ?? "";
      assert.notEqual(ipA, ipB);
      a.run("ping", ["-c", "2", "-W", "5", ipB]);
      b.run("ping", ["-c", "2", "-W", "5", ipA]);
      const bridged = lab.node.ipJson<{ ifname: string; master?: string }[]>([
        "link",
        "show",
        "master",
        "cni0",
      ]);
      assert.equal(bridged.length, 2);
      ok(lab.run("DEL", a, "ctr-ping-a"), "DEL a");
      ok(lab.run("DEL", b, "ctr-ping-b"), "DEL b");
      assert.deepEqual(lab.veths(), []);
    });
  });

  test("stock conflist chained with portmap: DNAT rule for the pod, removed on DEL", async (t) => {
    await withLab(t, V4_ENV, (lab) => {
      const pod = lab.pod();
      const list = {
        name: "cbr0",
        cniVersion: "0.3.1",
        plugins: [
          {
            type: "flannel",
            delegate: { hairpinMode: true, isDefaultGateway: true },
            subnetFile: lab.subnetFile,
            dataDir: lab.dataDir,
            ipam: { dataDir: lab.ipamDir },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      };
      const runtimeConfig = { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }] };
      const opts = { containerId: "ctr-pm", netnsPath: `/var/run/netns/${pod.name}`, runtimeConfig };
      const add = runConfList(lab.node, bundle, list, "ADD", opts);
      ok(add, "conflist ADD");
      const ip = resultIps(add.result as Record<string, unknown>)[0]?.split("/")[0] ?? "";
      assert.match(ip, /^10\.1\.17\.\d+$/);
      // isDefaultGateway from the manifest's delegate: the pod's default route is the bridge
      assert.ok(
        pod
          .ipJson<{ dst: string; gateway?: string }[]>(["route", "show"])
          .some((r) => r.dst === "default" && r.gateway === "10.1.17.1"),
      );
      const nat = lab.node.run("iptables-save", ["-t", "nat"]);
      assert.match(nat, new RegExp(`--dport 18080 .*--to-destination ${ip.replace(/\./g, "\\.")}:80`));
      const stored = JSON.parse(readFileSync(join(lab.dataDir, "ctr-pm"), "utf8")) as Record<string, unknown>;
      assert.equal(stored["cniVersion"], "0.3.1");
      assert.equal(stored["name"], "cbr0");
      assert.equal(stored["hairpinMode"], true);

      ok(runConfList(lab.node, bundle, list, "DEL", { ...opts, prevResult: add.result }), "conflist DEL");
      assert.doesNotMatch(lab.node.run("iptables-save", ["-t", "nat"]), /--dport 18080/);
      assert.deepEqual(lab.veths(), []);
      assert.deepEqual(lab.reservations(), []);
      assert.deepEqual(lab.scratchFiles(), []);
    });
  });

  describe(
    "failures end in a CNI error with a useful message and leave nothing behind",
    { concurrency: false },
    () => {
      function assertClean(lab: Lab, pod: Netns): void {
        assert.deepEqual(lab.scratchFiles(), []);
        assert.deepEqual(lab.veths(), []);
        assert.deepEqual(lab.reservations(), []);
        const podLinks = pod.ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname);
        assert.deepEqual(podLinks, ["lo"]);
      }
      function cniError(r: PluginRun): { code: number; msg: string } {
        assert.notEqual(r.code, 0, `expected a failure, got ${r.stdout}`);
        assert.ok(r.json, `stdout is not CNI error JSON: ${r.stdout}`);
        return r.json as { code: number; msg: string };
      }

      test("missing subnet.env", async (t) => {
        await withLab(t, null, (lab) => {
          const pod = lab.pod();
          const e = cniError(lab.run("ADD", pod, "ctr-e1"));
          assert.equal(e.code, 11);
          assert.match(
            e.msg,
            new RegExp(
              `open ${lab.subnetFile}: no such file or directory \\(flanneld is not running on this node`,
            ),
          );
          assertClean(lab, pod);
        });
      });

      test("half-written subnet.env", async (t) => {
        await withLab(t, "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MT", (lab) => {
          const pod = lab.pod();
          const e = cniError(lab.run("ADD", pod, "ctr-e2"));
          assert.equal(e.code, 999);
          assert.match(
            e.msg,
            /is missing FLANNEL_MTU, FLANNEL_IPMASQ\. Check the flannel pod log for this node\.$/,
          );
          assertClean(lab, pod);
        });
      });

      test("missing delegate plugin", async (t) => {
        await withLab(t, V4_ENV, (lab) => {
          const pod = lab.pod();
          const empty = mkdtempSync(join(lab.dir, "cni-bin-"));
          const e = cniError(lab.run("ADD", pod, "ctr-e3", { cniPath: empty }));
          assert.equal(e.code, 999);
          assert.match(
            e.msg,
            new RegExp(`^failed to delegate add: failed to find plugin "bridge" in path \\[${empty}\\]`),
          );
          assertClean(lab, pod);
        });
      });

      test("delegate that fails half-way (no address left after bridge made the veth): undone", async (t) => {
        // a /30 has one address for pods (.2) besides the gateway (.1)
        await withLab(t, V4_ENV.replace("10.1.17.1/24", "10.1.17.1/30"), (lab) => {
          const first = lab.pod();
          const second = lab.pod();
          ok(lab.run("ADD", first, "ctr-first"), "ADD first");
          const e = cniError(lab.run("ADD", second, "ctr-second"));
          assert.match(e.msg, /no IP addresses available/);
          assert.deepEqual(lab.scratchFiles(), ["ctr-first"]);
          assert.equal(lab.veths().length, 1);
          assert.deepEqual(
            second.ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname),
            ["lo"],
          );
          ok(lab.run("DEL", first, "ctr-first"), "DEL first");
          assertClean(lab, first);
        });
      });

      test("malformed netconf", async (t) => {
        await withLab(t, V4_ENV, (lab) => {
          const pod = lab.pod();
          const e = cniError(
            lab.run("ADD", pod, "ctr-e5", { conf: '{"name":"cni-flannel",\n "type": "flannel",\n}' }),
          );
          assert.equal(e.code, 6);
          assert.match(e.msg, /invalid JSON at line 3, column 1/);
          assertClean(lab, pod);
        });
      });

      test("unknown CNI_COMMAND", async (t) => {
        await withLab(t, V4_ENV, (lab) => {
          const pod = lab.pod();
          const e = cniError(lab.run("ATTACH", pod, "ctr-e6"));
          assert.equal(e.code, 4);
          assert.equal(e.msg, "unknown CNI_COMMAND: ATTACH");
          assertClean(lab, pod);
        });
      });
    },
  );
});
