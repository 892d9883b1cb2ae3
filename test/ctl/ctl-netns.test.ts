// flannelctl doctor, trace and cleanup against a real namespace cluster (the lab: underlay bridge, etcd,
// flanneld with vxlan in each node namespace, pods attached through the flannel CNI plugin). Failures are
// produced on purpose — a deleted FDB entry, a stale flannel.1 address, a masked FORWARD chain, a missing
// conflist, flanneld bound to an interface the nodes do not share — and the commands must name them and the
// fix; on the healthy cluster doctor reports no failure; cleanup leaves nothing of flannel's behind and a
// flanneld started afterwards comes up cleanly.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { flanneldCommand } from "../../src/cli/node-flags.ts";
import { Lab, repoRoot } from "../../src/ctl/lab/lab.ts";
import { flanneldArgs, flannelConflist, type NodePlan } from "../../src/ctl/lab/plan.ts";
import {
  processStartTime,
  startDetached,
  stopProcess,
  type ProcessRecord,
} from "../../src/ctl/lab/processes.ts";
import type { Finding } from "../../src/ctl/doctor/checks.ts";
import type { TraceResult } from "../../src/ctl/trace/trace.ts";
import { requireRoot, waitFor } from "../helpers/netns.ts";

const ROOT = repoRoot();
const CTL = join(ROOT, "src", "cli", "flannelctl-main.ts");
let seq = 0;
const prefix = (): string => `fts-d${process.pid % 10000}${String.fromCharCode(97 + seq++)}`;

function inNs(
  ns: string,
  file: string,
  args: readonly string[],
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, file, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

function ctl(ns: string, args: readonly string[]): { code: number; stdout: string; stderr: string } {
  return inNs(ns, process.execPath, ["--import", "tsx", CTL, ...args]);
}

function sh(ns: string, cmd: string): string {
  const r = inNs(ns, "sh", ["-c", cmd]);
  if (r.code !== 0) throw new Error(`[${ns}] ${cmd}: ${r.stderr}`);
  return r.stdout;
}

interface DoctorJson {
  findings: Finding[];
}

function doctor(
  node: NodePlan,
  confDir: string,
  endpoint: string,
  extra: string[] = [],
): { code: number; findings: Finding[]; raw: string } {
  const r = ctl(node.ns, [
    "doctor",
    "--json",
    `--subnet-file=${node.subnetFile}`,
    `--cni-conf-dir=${confDir}`,
    `--etcd-endpoints=${endpoint}`,
    ...extra,
  ]);
  let parsed: DoctorJson;
  try {
    parsed = JSON.parse(r.stdout) as DoctorJson;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, findings: parsed.findings, raw: r.stdout };
}

function finding(fs: Finding[], check: string): Finding {
  const f = fs.find((x) => x.check === check);
  assert.ok(f, `no ${check} finding in ${JSON.stringify(fs)}`);
  return f;
}

function freshDir(): string {
  return join(mkdtempSync(join(tmpdir(), "fts-d-")), "state");
}

function writeConflist(node: NodePlan, dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "10-flannel.conflist"), JSON.stringify(flannelConflist(node)));
}

describe("flannelctl on a namespace cluster", { concurrency: false }, () => {
  it("doctor is all ok on a healthy vxlan cluster; trace lists the real entries and stops at a deleted FDB entry; doctor names injected faults; cleanup leaves nothing and flanneld restarts cleanly", async (t) => {
    if (!requireRoot(t)) return;
    const dir = freshDir();
    const lab = Lab.create(dir);
    let restarted: ProcessRecord | undefined;
    try {
      const topo = await lab.up({
        prefix: prefix(),
        nodes: 2,
        podsPerNode: 1,
        backend: "vxlan",
        stateDir: dir,
      });
      const plan = lab.layout;
      const [n1, n2] = plan.nodes as [NodePlan, NodePlan];
      const conf1 = join(n1.dir, "net.d");
      const conf2 = join(n2.dir, "net.d");
      writeConflist(n1, conf1);
      writeConflist(n2, conf2);
      const ep = plan.etcdEndpoint;

      // Healthy: no failure, no warning, and the checks that matter were really made.
      // Peers' entries may take a moment after the lease appears; poll.
      let healthy = doctor(n1, conf1, ep);
      await waitFor(
        () => {
          healthy = doctor(n1, conf1, ep);
          return healthy.code === 0;
        },
        30_000,
        "doctor to pass on node1",
      ).catch(() => assert.fail(`doctor on a healthy node:\n${healthy.raw}`));
      const bad = healthy.findings.filter((x) => x.status === "fail" || x.status === "warn");
      assert.deepEqual(bad, []);
      for (const c of [
        "cni-config",
        "subnet-env",
        "ip-forward",
        "flannel-device",
        "forward-chain",
        "masquerade",
        "own-lease",
        "public-ip",
        "peer-entries",
        "peer-reachability",
      ]) {
        assert.equal(finding(healthy.findings, c).status, "ok", c);
      }
      assert.equal(doctor(n2, conf2, ep).code, 0);

      // trace pod1 → pod2 names node2's real VTEP MAC and public IP.
      const pod1 = topo.nodes[0]?.pods[0]?.ip;
      const pod2 = topo.nodes[1]?.pods[0]?.ip;
      assert.ok(pod1 && pod2);
      const mac2 = (JSON.parse(sh(n2.ns, "ip -json link show flannel.1")) as { address: string }[])[0]
        ?.address;
      assert.ok(mac2);
      const tr = ctl(n1.ns, [
        "trace",
        "--json",
        `--subnet-file=${n1.subnetFile}`,
        `--etcd-endpoints=${ep}`,
        pod1,
        pod2,
      ]);
      assert.equal(tr.code, 0, tr.stdout + tr.stderr);
      const trace = JSON.parse(tr.stdout) as TraceResult;
      const entries = trace.steps.map((s) => s.entry);
      const subnet2 = `10.244.${pod2.split(".")[2]}.0`;
      assert.ok(entries.includes(`${subnet2}/24 via ${subnet2} dev flannel.1 onlink`), entries.join("\n"));
      assert.ok(entries.includes(`${subnet2} lladdr ${mac2} dev flannel.1 PERMANENT`), entries.join("\n"));
      assert.ok(
        entries.includes(`${mac2} dev flannel.1 dst ${n2.underlayIp} self permanent`),
        entries.join("\n"),
      );
      // The traced path is real: the pods reach each other.
      assert.equal(inNs(topo.nodes[0]?.pods[0]?.ns ?? "", "ping", ["-c", "1", "-W", "5", pod2]).code, 0);

      // Stop flanneld on node1 (it would repair what we break), then break things.
      const pid1 = topo.nodes[0]?.flanneldPid;
      const start1 = pid1 === undefined ? undefined : processStartTime(pid1);
      assert.ok(pid1 !== undefined && start1 !== undefined, "flanneld node1 runs");
      await stopProcess({ role: "flanneld node1", pid: pid1, startTime: start1 });
      sh(n1.ns, `bridge fdb del ${mac2} dev flannel.1 dst ${n2.underlayIp}`);
      const tr2 = ctl(n1.ns, [
        "trace",
        "--json",
        `--subnet-file=${n1.subnetFile}`,
        `--etcd-endpoints=${ep}`,
        pod1,
        pod2,
      ]);
      assert.equal(tr2.code, 1);
      const stopped = JSON.parse(tr2.stdout) as TraceResult;
      const last = stopped.steps.at(-1);
      assert.equal(last?.hop, "flannel.1 FDB");
      assert.equal(last?.status, "missing");
      assert.equal(
        last?.fix?.split("   #")[0],
        `bridge fdb replace ${mac2} dev flannel.1 dst ${n2.underlayIp} self permanent`,
      );

      sh(n1.ns, "ip addr add 10.42.7.0/32 dev flannel.1");
      sh(n1.ns, "iptables -I FORWARD 1 -j DROP");
      rmSync(join(conf1, "10-flannel.conflist"));
      const broken = doctor(n1, conf1, ep);
      assert.equal(broken.code, 1);
      const fails = Object.fromEntries(
        broken.findings.filter((x) => x.status === "fail").map((x) => [x.check, x]),
      );
      assert.deepEqual(Object.keys(fails).sort(), [
        "cni-config",
        "flannel-device",
        "forward-chain",
        "peer-entries",
      ]);
      assert.match(fails["cni-config"]?.summary ?? "", /No CNI config/);
      assert.match(fails["flannel-device"]?.fix ?? "", /^ip addr del 10\.42\.7\.0\/32 dev flannel\.1/);
      assert.equal(fails["forward-chain"]?.fix, "iptables -D FORWARD -j DROP");
      assert.match(
        fails["peer-entries"]?.fix ?? "",
        new RegExp(`bridge fdb replace ${mac2} dev flannel.1 dst ${n2.underlayIp.replace(/\./g, "\\.")}`),
      );

      // The human output: one line per check, with evidence and fix on failures.
      const human = ctl(n1.ns, [
        "doctor",
        `--subnet-file=${n1.subnetFile}`,
        `--cni-conf-dir=${conf1}`,
        `--etcd-endpoints=${ep}`,
      ]);
      assert.equal(human.code, 1);
      assert.match(
        human.stdout,
        /^FAIL {2}forward-chain +The FORWARD chain drops pod traffic .* \| evidence: rule 1 of FORWARD: -A FORWARD -j DROP \| fix: iptables -D FORWARD -j DROP$/m,
      );

      // cleanup: the dry run lists, the real run removes everything of flannel's.
      mkdirSync(n1.cniDataDir, { recursive: true });
      const dry = ctl(n1.ns, [
        "cleanup",
        "--dry-run",
        `--subnet-file=${n1.subnetFile}`,
        `--cni-data-dir=${n1.cniDataDir}`,
        `--ipam-data-dir=${n1.ipamDataDir}`,
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      for (const want of [
        "ip link delete flannel.1",
        "ip link delete cni0",
        "iptables -t filter -X FLANNEL-FWD",
        "iptables -t nat -X FLANNEL-POSTRTG",
        `rm -rf ${n1.subnetFile}`,
        `rm -rf ${n1.cniDataDir}`,
      ]) {
        assert.ok(dry.stdout.includes(want), `dry run lacks ${want}:\n${dry.stdout}`);
      }
      assert.ok(existsSync(n1.subnetFile), "the dry run removed nothing");
      sh(n1.ns, "ip link show flannel.1");
      const real = ctl(n1.ns, [
        "cleanup",
        `--subnet-file=${n1.subnetFile}`,
        `--cni-data-dir=${n1.cniDataDir}`,
        `--ipam-data-dir=${n1.ipamDataDir}`,
      ]);
      assert.equal(real.code, 0, real.stdout + real.stderr);
      const links = JSON.parse(sh(n1.ns, "ip -json link show")) as { ifname: string }[];
      assert.deepEqual(
        links.map((l) => l.ifname).filter((n) => /^(flannel|cni0)/.test(n)),
        [],
      );
      assert.doesNotMatch(
        sh(n1.ns, "iptables -S; iptables -t nat -S; ip6tables -S; ip6tables -t nat -S"),
        /FLANNEL|flanneld/,
      );
      assert.doesNotMatch(sh(n1.ns, "nft list tables || true"), /flannel/);
      assert.equal(existsSync(n1.subnetFile), false);
      assert.equal(existsSync(n1.cniDataDir), false);
      const again = ctl(n1.ns, [
        "cleanup",
        "--dry-run",
        `--subnet-file=${n1.subnetFile}`,
        `--cni-data-dir=${n1.cniDataDir}`,
        `--ipam-data-dir=${n1.ipamDataDir}`,
      ]);
      assert.match(again.stdout, /Nothing of flannel's is left/);
      // Our own DROP rule is not flannel's: cleanup leaves it; remove it for the restart.
      sh(n1.ns, "iptables -D FORWARD -j DROP");

      // A flanneld started afterwards comes up cleanly.
      restarted = startDetached([...flanneldCommand(ROOT), ...flanneldArgs(plan, n1)], {
        role: "flanneld node1 (restarted)",
        ns: n1.ns,
        logFile: join(n1.dir, "flanneld-restarted.log"),
      });
      await waitFor(() => existsSync(n1.subnetFile), 60_000, "node1's subnet.env after the restart");
      writeConflist(n1, conf1);
      let after = doctor(n1, conf1, ep);
      await waitFor(
        () => {
          after = doctor(n1, conf1, ep);
          return after.code === 0;
        },
        30_000,
        "doctor to pass after cleanup and restart",
      ).catch(() =>
        assert.fail(
          `doctor after restart:\n${after.raw}\n${readFileSync(join(n1.dir, "flanneld-restarted.log"), "utf8").slice(-3000)}`,
        ),
      );
      assert.equal(finding(after.findings, "flannel-device").status, "ok");
      assert.equal(finding(after.findings, "peer-entries").status, "ok");
    } finally {
      if (restarted) await stopProcess(restarted);
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("doctor names flanneld bound to an interface the nodes do not share (multi-NIC host) and the fix", async (t) => {
    if (!requireRoot(t)) return;
    const dir = freshDir();
    const lab = Lab.create(dir);
    // Each node gets a second NIC, nat0, on a segment of its own (like a VirtualBox NAT NIC: 10.0.<n>.15),
    // and flanneld is told to use it; the nodes' real shared network stays on eth0.
    const script = [
      "set -e",
      `N=$(ip -o -4 addr show dev eth0 | sed -E 's#.* 192\\.168\\.250\\.([0-9]+)/.*#\\1#')`,
      "ip link add nat0 type veth peer name nat0p",
      'ip addr add "10.0.$N.15/24" dev nat0',
      "ip link set nat0p up",
      "ip link set nat0 up",
      `exec ${flanneldCommand(ROOT).join(" ")} --iface=nat0 "$@"`,
    ].join("\n");
    try {
      await lab.up({
        prefix: prefix(),
        nodes: 2,
        podsPerNode: 0,
        backend: "vxlan",
        stateDir: dir,
        flanneldCmd: ["sh", "-c", script, "sh"],
      });
      const plan = lab.layout;
      const n1 = plan.nodes[0] as NodePlan;
      const conf1 = join(n1.dir, "net.d");
      writeConflist(n1, conf1);
      const r = doctor(n1, conf1, plan.etcdEndpoint);
      assert.equal(r.code, 1, r.raw);
      const reach = finding(r.findings, "peer-reachability");
      assert.equal(reach.status, "fail");
      assert.equal(reach.evidence.length, 1);
      assert.match(reach.evidence[0] ?? "", /^ping 10\.0\.12\.15 \(10\.244\.\d+\.0\/24\): no reply$/);
      assert.match(reach.fix ?? "", /--iface=eth0/);
      assert.match(reach.fix ?? "", /eth0 192\.168\.250\.11\/24/);
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("flanneld serves Prometheus metrics on the health port, counting leases, kernel writes and repairs", async (t) => {
    if (!requireRoot(t)) return;
    const dir = freshDir();
    const lab = Lab.create(dir);
    const port = 9911;
    const scrape = (ns: string): string => {
      const r = inNs(ns, process.execPath, [
        "-e",
        `fetch("http://127.0.0.1:${port}/metrics").then(async (r) => process.stdout.write(r.status + "\\n" + (await r.text())))`,
      ]);
      return r.stdout;
    };
    const value = (text: string, series: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? NaN : Number(line.slice(series.length + 1));
    };
    try {
      await lab.up({
        prefix: prefix(),
        nodes: 2,
        podsPerNode: 0,
        backend: "vxlan",
        stateDir: dir,
        extraFlanneldArgs: [`--healthz-port=${port}`, "--healthz-ip=127.0.0.1"],
      });
      const [n1, n2] = lab.layout.nodes as [NodePlan, NodePlan];
      let text = "";
      await waitFor(
        () => {
          text = scrape(n1.ns);
          return text.startsWith("200\n") && value(text, "flannel_leases") === 1;
        },
        30_000,
        "flannel_leases 1 on node1",
      ).catch(() => assert.fail(`metrics of node1:\n${text}`));
      assert.ok(value(text, 'flannel_kernel_operations_total{op="fdb.replace"}') >= 1, text);
      assert.ok(value(text, 'flannel_resync_duration_seconds_count{loop="vxlan"}') >= 1, text);
      assert.ok(value(text, "flannel_lease_expiry_timestamp_seconds") > Date.now() / 1000, text);
      assert.ok(value(text, 'flannel_lease_events_total{type="snapshot"}') >= 1, text);

      // Delete the FDB entry for node2 by hand: flanneld notices and repairs it, and counts the repair.
      const mac2 = (JSON.parse(sh(n2.ns, "ip -json link show flannel.1")) as { address: string }[])[0]
        ?.address;
      assert.ok(mac2);
      sh(n1.ns, `bridge fdb del ${mac2} dev flannel.1 dst ${n2.underlayIp}`);
      await waitFor(
        () => {
          text = scrape(n1.ns);
          return value(text, 'flannel_repairs_total{kind="fdb"}') >= 1;
        },
        30_000,
        "a counted FDB repair on node1",
      ).catch(() => assert.fail(`metrics of node1 after deleting the FDB entry:\n${text}`));
      assert.match(
        sh(n1.ns, "bridge fdb show dev flannel.1"),
        new RegExp(`${mac2} dst ${n2.underlayIp.replace(/\./g, "\\.")}`),
      );
    } finally {
      await lab.down();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });
});
