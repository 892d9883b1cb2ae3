// Real-kernel tests of the traffic managers: the real iptables/ip6tables/nft binaries run inside a fresh
// network namespace (through a CommandRunner that prefixes `ip netns exec <ns>`), and the results are read back
// with the same tools. The datapath test sends real packets through a router namespace that masquerades.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { IpNet } from "../../src/ip/net.ts";
import type { CommandResult, CommandRunner } from "../../src/kernel/command.ts";
import { SpawnCommandRunner } from "../../src/kernel/spawn.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import { IptablesManager } from "../../src/traffic/iptables/manager.ts";
import type { TrafficManager } from "../../src/traffic/manager.ts";
import { NftablesManager } from "../../src/traffic/nftables/manager.ts";
import { Netns, requireRoot, vethPair, waitFor } from "../helpers/netns.ts";

/** Runs every command inside `ns`; `rename` swaps programs (e.g. iptables → iptables-legacy). */
class NetnsCommandRunner implements CommandRunner {
  // flanneld's own runner (posix_spawn).
  private readonly exec = new SpawnCommandRunner();
  constructor(
    private readonly ns: Netns,
    private readonly rename: (file: string) => string = (f) => f,
  ) {}
  run(file: string, args: readonly string[], opts: { stdin?: string } = {}): Promise<CommandResult> {
    return this.exec.run("ip", ["netns", "exec", this.ns.name, this.rename(file), ...args], opts);
  }
}

// Debian's `iptables` is the nf_tables variant; the legacy (x_tables) one must work the same.
const VARIANTS: { name: string; rename: (f: string) => string }[] = [
  { name: "nft", rename: (f) => f },
  { name: "legacy", rename: (f) => f.replace(/^(ip6?tables)/, "$1-legacy") },
];

const N = IpNet.parse("10.10.0.0/16");
const P = IpNet.parse("10.10.1.0/24");
const N6 = IpNet.parse("fd10:10::/48");
const P6 = IpNet.parse("fd10:10:0:1::/64");

// Spec §6.1 goldens (upstream dist/functional-test-k8s.sh).
const GOLDEN_NAT = `-P POSTROUTING ACCEPT
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-N FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.1.0/24 -d 10.10.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.0.0/16 -d 10.10.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.10.0.0/16 -d 10.10.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.10.0.0/16 -d 10.10.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
`;
const GOLDEN_FILTER = `-P FORWARD ACCEPT
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-N FLANNEL-FWD
-A FLANNEL-FWD -s 10.10.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.10.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
`;
// Spec §6.2 golden (upstream e2e/rules.go).
const GOLDEN_NFT_POSTRTG = `table ip flannel-ipv4 {
	chain postrtg {
		comment "chain to manage traffic masquerading by flannel"
		type nat hook postrouting priority srcnat; policy accept;
		meta mark 0x00004000 return
		ip saddr 10.10.1.0/24 ip daddr 10.10.0.0/16 return
		ip saddr 10.10.0.0/16 ip daddr 10.10.1.0/24 return
		ip saddr != 10.10.1.0/24 ip daddr 10.10.0.0/16 return
		ip saddr 10.10.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != 10.10.0.0/16 ip daddr 10.10.0.0/16 masquerade fully-random
	}
}
`;
const GOLDEN_NFT_FORWARD = `table ip flannel-ipv4 {
	chain forward {
		comment "chain to accept flannel traffic"
		type filter hook forward priority filter; policy accept;
		ip saddr 10.10.0.0/16 accept
		ip daddr 10.10.0.0/16 accept
	}
}
`;

const namespaces: Netns[] = [];
const children: { kill(): boolean }[] = [];
after(() => {
  for (const c of children) c.kill();
  for (const ns of namespaces) ns.delete();
});

function netns(): Netns {
  const ns = Netns.create("fts-t");
  namespaces.push(ns);
  return ns;
}

function masqOpts(signal: AbortSignal, v6 = false) {
  return {
    network: N,
    subnet: P,
    prevNetwork: null,
    prevSubnet: null,
    ipv6Network: v6 ? N6 : null,
    ipv6Subnet: v6 ? P6 : null,
    prevIpv6Network: null,
    prevIpv6Subnet: null,
    signal,
  };
}

for (const variant of VARIANTS) {
  test(`iptables (${variant.name}): golden listings, repair by the resync, full cleanUp`, async (t) => {
    if (!requireRoot(t)) return;
    const ns = netns();
    const bin = (b: string): string => variant.rename(b);
    const ipt = (ns: Netns, b: string, table: string, chain: string): string =>
      ns.run(bin(b), ["-t", table, "-S", chain]);
    const ac = new AbortController();
    const log = new MemoryLogger();
    // Every process the manager runs, as `<program> <args>`.
    const calls: string[] = [];
    const runner = new NetnsCommandRunner(ns, variant.rename);
    const m = new IptablesManager({
      commands: {
        run: (file, args, opts) => {
          calls.push([file, ...args].join(" "));
          return runner.run(file, args, opts);
        },
      },
      logger: log,
      resyncMs: 200,
    });
    try {
      await m.init(ac.signal);
      await m.setupAndEnsureMasqRules(masqOpts(ac.signal, true));
      await m.setupAndEnsureForwardRules({ network: N, ipv6Network: N6, signal: ac.signal });
      assert.equal(
        ipt(ns, "iptables", "nat", "POSTROUTING") + ipt(ns, "iptables", "nat", "FLANNEL-POSTRTG"),
        GOLDEN_NAT,
      );
      assert.equal(
        ipt(ns, "iptables", "filter", "FORWARD") + ipt(ns, "iptables", "filter", "FLANNEL-FWD"),
        GOLDEN_FILTER,
      );
      const nat6 = ipt(ns, "ip6tables", "nat", "FLANNEL-POSTRTG");
      assert.match(
        nat6,
        /-A FLANNEL-POSTRTG -s fd10:10::\/48 ! -d ff00::\/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully/,
      );
      assert.match(ipt(ns, "ip6tables", "filter", "FLANNEL-FWD"), /-A FLANNEL-FWD -d fd10:10::\/48 /);
      assert.doesNotMatch(log.text(), /^E /m);

      // With every rule in place, a resync lists each chain once and finds every rule as iptables prints it:
      // no `-C`, no repair. Four rule sets (masquerade and forward, IPv4 and IPv6) of two chains each.
      await waitFor(() => log.text().split("bootstrap done").length > 4, 10_000, "four bootstraps");
      calls.length = 0;
      await waitFor(() => calls.length >= 16, 10_000, "two resyncs of every rule set");
      assert.deepEqual(
        calls.filter((c) => !/ -S (POSTROUTING|FLANNEL-POSTRTG|FORWARD|FLANNEL-FWD)$/.test(c)),
        [],
        "a resync with every rule in place runs `-S <chain>` only",
      );
      assert.doesNotMatch(log.text(), /Some iptables rules are missing/);

      // An operator (or another tool) deletes one rule: the next resync puts the whole set back in order.
      ns.run(bin("iptables"), [
        "-t",
        "nat",
        "-D",
        "FLANNEL-POSTRTG",
        "-s",
        "10.10.0.0/16",
        "-d",
        "10.10.1.0/24",
        "-m",
        "comment",
        "--comment",
        "flanneld masq",
        "-j",
        "RETURN",
      ]);
      ns.run(bin("iptables"), [
        "-t",
        "filter",
        "-D",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "flanneld forward",
        "-j",
        "FLANNEL-FWD",
      ]);
      await waitFor(
        () =>
          ipt(ns, "iptables", "nat", "POSTROUTING") + ipt(ns, "iptables", "nat", "FLANNEL-POSTRTG") ===
          GOLDEN_NAT,
        20_000,
        "masquerade rules repaired",
      );
      await waitFor(
        () =>
          ipt(ns, "iptables", "filter", "FORWARD") + ipt(ns, "iptables", "filter", "FLANNEL-FWD") ===
          GOLDEN_FILTER,
        20_000,
        "forward rules repaired",
      );
      assert.match(log.text(), /Some iptables rules are missing; deleting and recreating rules/);
    } finally {
      ac.abort();
      await m.wait();
    }

    const c = new IptablesManager({
      commands: new NetnsCommandRunner(ns, variant.rename),
      logger: new MemoryLogger(),
      resyncMs: 200,
    });
    await c.cleanUp();
    for (const b of ["iptables", "ip6tables"]) {
      for (const table of ["nat", "filter"]) {
        assert.doesNotMatch(
          ns.run(bin(b), ["-t", table, "-S"]),
          /FLANNEL|flanneld/,
          `${bin(b)} -t ${table} is clean`,
        );
      }
    }
    await c.cleanUp();
  });
}

test("nftables: golden listings and cleanUp", async (t) => {
  if (!requireRoot(t)) return;
  const ns = netns();
  const ac = new AbortController();
  const log = new MemoryLogger();
  const m = new NftablesManager({ commands: new NetnsCommandRunner(ns), logger: log });
  await m.init(ac.signal);
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal, true));
  await m.setupAndEnsureForwardRules({ network: N, ipv6Network: N6, signal: ac.signal });
  // Twice: the flush in each transaction keeps it idempotent.
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal, true));
  assert.equal(ns.run("nft", ["list", "chain", "ip", "flannel-ipv4", "postrtg"]), GOLDEN_NFT_POSTRTG);
  assert.equal(ns.run("nft", ["list", "chain", "ip", "flannel-ipv4", "forward"]), GOLDEN_NFT_FORWARD);
  const v6 = ns.run("nft", ["list", "chain", "ip6", "flannel-ipv6", "postrtg"]);
  assert.match(v6, /ip6 saddr fd10:10::\/48 ip6 daddr != ff00::\/8 masquerade fully-random/);
  assert.doesNotMatch(ns.run("nft", ["list", "ruleset"]), /masqueradeTest/, "the probe changed nothing");
  assert.doesNotMatch(log.text(), /^[EW] /m);

  await m.cleanUp();
  assert.doesNotMatch(ns.run("nft", ["list", "tables"]), /flannel/);
  await m.cleanUp();
});

/**
 * pod ns (10.10.1.2) → router ns (10.10.1.1 | 192.168.77.1, runs the manager) → outside ns (192.168.77.2).
 * The outside has no route back to 10.10.0.0/16, so only masqueraded traffic gets an answer, and the TCP
 * server reports the source address it saw.
 */
async function checkMasquerade(makeManager: (runner: CommandRunner) => TrafficManager): Promise<void> {
  const pod = netns();
  const router = netns();
  const outside = netns();
  vethPair(pod, "eth0", "10.10.1.2/24", router, "cni0", "10.10.1.1/24");
  vethPair(router, "eth0", "192.168.77.1/24", outside, "eth0", "192.168.77.2/24");
  pod.run("ip", ["route", "add", "default", "via", "10.10.1.1"]);
  router.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);

  const server = outside.spawn(process.execPath, [
    "-e",
    "require('net').createServer((s) => s.end(s.remoteAddress)).listen(7777, '192.168.77.2', () => console.log('listening'))",
  ]);
  children.push(server);
  let serverOut = "";
  server.stdout?.on("data", (d: Buffer) => (serverOut += d.toString()));
  await waitFor(() => serverOut.includes("listening"), 20_000, "TCP server listening");

  const connect = (): string =>
    pod.run(process.execPath, [
      "-e",
      "const s = require('net').connect(7777, '192.168.77.2'); let d = ''; s.setTimeout(2000, () => process.exit(3));" +
        "s.on('data', (b) => (d += b)); s.on('end', () => { process.stdout.write(d); process.exit(0); });" +
        "s.on('error', () => process.exit(2));",
    ]);

  // Control: without the rules, the outside cannot answer (no route back to the pod network).
  assert.throws(connect);

  const ac = new AbortController();
  const m = makeManager(new NetnsCommandRunner(router));
  try {
    await m.init(ac.signal);
    await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
    await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
    assert.equal(await waitFor(() => connect(), 20_000, "TCP answer through the router"), "192.168.77.1");
    // Pod-to-pod traffic inside the cluster network is not masqueraded: its rules say RETURN.
  } finally {
    ac.abort();
    await m.wait();
    server.kill();
  }
}

test("iptables: pod traffic leaving the cluster network is masqueraded", async (t) => {
  if (!requireRoot(t)) return;
  await checkMasquerade(
    (commands) => new IptablesManager({ commands, logger: new MemoryLogger(), resyncMs: 60_000 }),
  );
});

test("nftables: pod traffic leaving the cluster network is masqueraded", async (t) => {
  if (!requireRoot(t)) return;
  await checkMasquerade((commands) => new NftablesManager({ commands, logger: new MemoryLogger() }));
});
