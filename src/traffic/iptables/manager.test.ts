import { createMetrics } from "../../metrics/metrics.ts";
import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as setImmediatePromise } from "node:timers/promises";

import { IpNet } from "../../ip/net.ts";
import type { CommandRunner } from "../../kernel/command.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { masqRules, type IptablesRule } from "../rules.ts";
import { FakeIptables } from "./fake-iptables.ts";
import {
  bootstrapRules,
  ensureRules,
  IptablesFamily,
  IptablesManager,
  parseIptablesVersion,
  rulesExist,
} from "./manager.ts";

const N = IpNet.parse("10.10.0.0/16");
const P = IpNet.parse("10.10.1.0/24");
const N6 = IpNet.parse("fc00::/48");
const P6 = IpNet.parse("fc00:0:0:1::/64");

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

/** `-S POSTROUTING` + `-S FLANNEL-POSTRTG`, as the upstream functional test lists them. */
function listing(fake: FakeIptables, bin: string, table: string, builtin: string, chain: string): string {
  return fake.dump(bin, table, builtin) + fake.dump(bin, table, chain);
}

const masqOpts = (signal: AbortSignal) => ({
  network: N,
  subnet: P,
  prevNetwork: N,
  prevSubnet: P,
  ipv6Network: null,
  ipv6Subnet: null,
  prevIpv6Network: null,
  prevIpv6Subnet: null,
  signal,
});

const restoreLines = (stdin: string | undefined): string[] =>
  (stdin ?? "").split("\n").filter((l) => l !== "");

test("parseIptablesVersion uses upstream's regex", () => {
  assert.deepEqual(parseIptablesVersion("iptables v1.8.9 (nf_tables)\n"), [1, 8, 9]);
  assert.deepEqual(parseIptablesVersion("ip6tables-restore v1.6.1"), [1, 6, 1]);
  assert.equal(parseIptablesVersion("iptables 1.8"), undefined);
});

// Upstream TestEnsureRules: missing rules → exactly one restore of -A lines; all present → no restore at all.
test("ensureRules restores only when rules are missing", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ipt = new IptablesFamily(fake, 4, log);
  fake.exec("iptables", "nat", ["-A", "POSTROUTING", "-j", "RETURN"]); // someone else's rule
  const rules: IptablesRule[] = [
    { table: "nat", chain: "POSTROUTING", spec: ["-s", "127.0.0.1", "-d", "127.0.0.1", "-j", "RETURN"] },
    {
      table: "nat",
      chain: "POSTROUTING",
      spec: ["-s", "127.0.0.1", "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE", "--random-fully"],
    },
  ];
  await ensureRules(ipt, rules, log);
  const restores = fake.callsOf("iptables-restore");
  assert.equal(restores.length, 1);
  assert.deepEqual(restores[0]?.args, ["--noflush", "--wait"]);
  assert.equal(
    restores[0]?.stdin,
    "*nat\n" +
      "-A POSTROUTING -s 127.0.0.1 -d 127.0.0.1 -j RETURN\n" +
      "-A POSTROUTING -s 127.0.0.1 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully\n" +
      "COMMIT\n",
  );
  assert.match(log.text(), /Some iptables rules are missing; deleting and recreating rules/);

  await ensureRules(ipt, rules, log);
  assert.equal(fake.callsOf("iptables-restore").length, 1, "no restore when every rule exists");
});

// Upstream TestBootstrapRules: rules that exist are deleted and re-appended, per table, in order.
test("bootstrapRules emits -D/-A pairs for existing rules", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ipt = new IptablesFamily(fake, 4, log);
  const r1 = ["-s", "127.0.0.1", "-d", "127.0.0.1", "-j", "RETURN"];
  const r2 = ["-s", "127.0.0.1", "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE", "--random-fully"];
  const rules: IptablesRule[] = [
    { table: "filter", chain: "INPUT", spec: r1 },
    { table: "filter", chain: "INPUT", spec: r2.slice(0, 5).concat(["-j", "ACCEPT"]) },
    { table: "nat", chain: "POSTROUTING", spec: r1 },
    { table: "nat", chain: "POSTROUTING", spec: r2 },
  ];
  await bootstrapRules(ipt, rules, log);
  await bootstrapRules(ipt, rules, log);
  const [first, second] = fake.callsOf("iptables-restore");
  assert.deepEqual(restoreLines(first?.stdin), [
    "*filter",
    "-A INPUT " + r1.join(" "),
    "-A INPUT -s 127.0.0.1 ! -d 224.0.0.0/4 -j ACCEPT",
    "COMMIT",
    "*nat",
    "-A POSTROUTING " + r1.join(" "),
    "-A POSTROUTING " + r2.join(" "),
    "COMMIT",
  ]);
  assert.deepEqual(restoreLines(second?.stdin), [
    "*filter",
    "-D INPUT " + r1.join(" "),
    "-A INPUT " + r1.join(" "),
    "-D INPUT -s 127.0.0.1 ! -d 224.0.0.0/4 -j ACCEPT",
    "-A INPUT -s 127.0.0.1 ! -d 224.0.0.0/4 -j ACCEPT",
    "COMMIT",
    "*nat",
    "-D POSTROUTING " + r1.join(" "),
    "-A POSTROUTING " + r1.join(" "),
    "-D POSTROUTING " + r2.join(" "),
    "-A POSTROUTING " + r2.join(" "),
    "COMMIT",
  ]);
  // And the state holds each rule once, in order.
  assert.equal(fake.dump("iptables", "nat", "POSTROUTING").split("\n").length, 4);
});

test("setup installs the golden masquerade and forward rules and logs upstream's texts", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 60_000 });
  await m.init(ac.signal);
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
  await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
  assert.equal(listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG"), GOLDEN_NAT);
  assert.equal(listing(fake, "iptables", "filter", "FORWARD", "FLANNEL-FWD"), GOLDEN_FILTER);
  assert.equal(fake.callsOf("ip6tables-restore").length, 0);
  for (const text of [
    "I Starting flannel in iptables mode...",
    "I Setting up masking rules",
    "I Changing default FORWARD chain policy to ACCEPT",
    "I bootstrap done",
  ]) {
    assert.ok(log.lines.includes(text), `log has ${text}: ${log.text()}`);
  }
  assert.doesNotMatch(log.text(), /recycle/);
  ac.abort();
  await m.wait();
});

test("init probes only the network's families; a setup that needs the other probes it then", async () => {
  const fake = new FakeIptables();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
  await m.init(ac.signal, { ipv4: true, ipv6: false });
  assert.deepEqual(
    fake.callsOf("iptables").map((c) => c.args.join(" ")),
    ["--version"],
  );
  assert.equal(fake.callsOf("ip6tables").length, 0);
  await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
  assert.equal(fake.callsOf("ip6tables").length, 0);
  await m.setupAndEnsureForwardRules({ network: null, ipv6Network: N6, signal: ac.signal });
  assert.deepEqual(fake.callsOf("ip6tables")[0]?.args, ["--version"]);
  assert.match(fake.dump("ip6tables", "filter", "FLANNEL-FWD"), /-A FLANNEL-FWD -s fc00::\/48 /);
  ac.abort();
  await m.wait();
});

test("background setup resolves before any iptables process runs and sets the chains up afterwards", async () => {
  const fake = new FakeIptables();
  // Every setup process waits until released: nothing of the setup can finish before the test says so.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const held: CommandRunner = {
    run: async (file, args, opts) => {
      if (!args.includes("--version")) await released;
      return fake.run(file, args, opts);
    },
  };
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: held, logger: log, resyncMs: 60_000 });
  await m.init(ac.signal);
  await m.setupAndEnsureMasqRules({ ...masqOpts(ac.signal), background: true });
  await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal, background: true });
  assert.deepEqual(
    fake.calls.filter((c) => !c.args.includes("--version")),
    [],
    "no iptables process has finished when the setup resolves",
  );
  assert.ok(!log.lines.includes("I bootstrap done"));
  release();
  for (let i = 0; i < 100 && fake.callsOf("iptables-restore").length < 2; i++) await setImmediatePromise();
  await setImmediatePromise();
  assert.equal(listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG"), GOLDEN_NAT);
  assert.equal(listing(fake, "iptables", "filter", "FORWARD", "FLANNEL-FWD"), GOLDEN_FILTER);
  ac.abort();
  await m.wait();
});

test("clearChain: -N alone on a fresh node, -N then -F when the chain exists, both in a failure", async () => {
  const fake = new FakeIptables();
  const ipt = new IptablesFamily(fake, 4, new MemoryLogger());
  const chainCalls = (): string[] =>
    fake
      .callsOf("iptables")
      .map((c) => c.args.filter((a) => a !== "--wait").join(" "))
      .filter((a) => a.includes("FLANNEL-FWD"));
  await ipt.clearChain("filter", "FLANNEL-FWD");
  assert.deepEqual(chainCalls(), ["-t filter -N FLANNEL-FWD"]);
  fake.exec("iptables", "filter", ["-A", "FLANNEL-FWD", "-j", "ACCEPT"]);
  await ipt.clearChain("filter", "FLANNEL-FWD");
  assert.deepEqual(chainCalls().slice(1), ["-t filter -N FLANNEL-FWD", "-t filter -F FLANNEL-FWD"]);
  assert.equal(fake.dump("iptables", "filter", "FLANNEL-FWD"), "-N FLANNEL-FWD\n");
  // -N and -F both fail (here: the xtables lock is held): the error names both.
  const locked: CommandRunner = {
    run: async (file, args, opts) =>
      args.includes("-N") || args.includes("-F")
        ? { code: 4, stdout: "", stderr: "Another app is currently holding the xtables lock." }
        : fake.run(file, args, opts),
  };
  const lockedIpt = new IptablesFamily(locked, 4, new MemoryLogger());
  await assert.rejects(lockedIpt.clearChain("filter", "FLANNEL-FWD"), (err: Error) => {
    assert.match(err.message, /-F FLANNEL-FWD.*exit status 4/);
    assert.match(err.message, /creating it first: exit status 4: Another app is currently holding/);
    return true;
  });
});

test("a restart with the rules in place re-creates them without duplicates", async () => {
  const fake = new FakeIptables();
  const ac = new AbortController();
  for (let i = 0; i < 2; i++) {
    const m = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
    await m.init(ac.signal);
    await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
    await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
  }
  assert.equal(listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG"), GOLDEN_NAT);
  assert.equal(listing(fake, "iptables", "filter", "FORWARD", "FLANNEL-FWD"), GOLDEN_FILTER);
  ac.abort();
});

test("the resync loop repairs a deleted rule and then stays quiet", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const metrics = createMetrics();
  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 5, metrics });
  try {
    await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
    const rule = masqRules({ network: N, subnet: P, randomFully: true })[3]!;
    fake.exec("iptables", "nat", ["-D", rule.chain, ...rule.spec]);
    assert.notEqual(listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG"), GOLDEN_NAT);
    const deadline = Date.now() + 10_000;
    while (listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG") !== GOLDEN_NAT) {
      assert.ok(Date.now() < deadline, "rule repaired in time");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.match(log.text(), /Some iptables rules are missing; deleting and recreating rules/);
  } finally {
    ac.abort();
    await m.wait();
  }
  // Once repaired, further resyncs only check.
  const restores = fake.callsOf("iptables-restore").length;
  assert.equal(restores, 2);
  // Each resync is timed and the repair is counted on /metrics.
  const text = metrics.render();
  assert.match(text, /flannel_repairs_total\{kind="iptables-rules"\} 1/);
  assert.match(text, /flannel_resync_duration_seconds_count\{loop="iptables"\} [1-9]/);
});

test("rulesExist: one -S per chain; -C only where the chain holds a line it cannot place", async () => {
  const fake = new FakeIptables();
  const ipt = new IptablesFamily(fake, 4, new MemoryLogger());
  const rules = masqRules({ network: N, subnet: P, randomFully: true });
  await bootstrapRules(ipt, rules, new MemoryLogger());
  const args = (): string[] =>
    fake.callsOf("iptables").map((c) => c.args.filter((a) => a !== "--wait").join(" "));
  const since = (n: number): string[] => args().slice(n);

  // Every rule in place: the two chains are listed, nothing else runs.
  let n = args().length;
  assert.equal(await rulesExist(ipt, rules), true);
  assert.deepEqual(since(n), ["-t nat -S FLANNEL-POSTRTG", "-t nat -S POSTROUTING"]);

  // A rule gone from a chain that holds only the set's rules: absent without asking -C.
  const gone = rules[3]!;
  fake.exec("iptables", "nat", ["-D", gone.chain, ...gone.spec]);
  n = args().length;
  assert.equal(await rulesExist(ipt, rules), false);
  assert.ok(!since(n).some((a) => a.includes(" -C ")), "no -C");

  // A line the set does not know (another tool's rule, or one of ours printed another way): -C decides.
  fake.exec("iptables", "nat", ["-A", gone.chain, ...gone.spec]);
  fake.exec("iptables", "nat", ["-A", "FLANNEL-POSTRTG", "-s", "192.0.2.1/32", "-j", "RETURN"]);
  n = args().length;
  assert.equal(await rulesExist(ipt, rules), true);
  assert.deepEqual(
    since(n).filter((a) => a.includes(" -C ")),
    [],
    "every rule of the set is listed as written",
  );
  fake.exec("iptables", "nat", ["-D", gone.chain, ...gone.spec]);
  n = args().length;
  assert.equal(await rulesExist(ipt, rules), false);
  assert.deepEqual(
    since(n).filter((a) => a.includes(" -C ")),
    [`-t nat -C ${gone.chain} ${gone.spec.join(" ")}`],
  );
});

test("a rule iptables prints differently from how flannel writes it is found by -C, not repaired", async () => {
  const fake = new FakeIptables();
  // This iptables prints every address with its prefix length, even a whole network's (it does for a host).
  const printsOtherwise: CommandRunner = {
    run: async (file, args, opts) => {
      const res = await fake.run(file, args, opts);
      return args.includes("-S")
        ? { ...res, stdout: res.stdout.replace(/(-[sd]) (\S+?)( |$)/gm, "$1 $2/x$3") }
        : res;
    },
  };
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: printsOtherwise, logger: log, resyncMs: 5 });
  try {
    await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
    const checks = (): number => fake.callsOf("iptables").filter((c) => c.args.includes("-C")).length;
    const before = checks();
    const deadline = Date.now() + 10_000;
    while (checks() < before + 6) {
      assert.ok(Date.now() < deadline, "resyncs ran");
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    ac.abort();
    await m.wait();
  }
  assert.doesNotMatch(log.text(), /Some iptables rules are missing/);
  assert.equal(listing(fake, "iptables", "filter", "FORWARD", "FLANNEL-FWD"), GOLDEN_FILTER);
});

test("a changed subnet recycles the previous subnet's rules", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const oldSubnet = IpNet.parse("10.10.7.0/24");
  const old = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
  await old.setupAndEnsureMasqRules({ ...masqOpts(ac.signal), subnet: oldSubnet, prevSubnet: oldSubnet });
  // Someone appended a rule after flannel's chain was set up; the recycled rules must go, this one stay.
  fake.exec("iptables", "nat", ["-A", "POSTROUTING", "-j", "RETURN"]);

  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 60_000 });
  await m.setupAndEnsureMasqRules({ ...masqOpts(ac.signal), prevSubnet: oldSubnet });
  assert.match(
    log.text(),
    /Current network or subnet \(10\.10\.0\.0\/16, 10\.10\.1\.0\/24\) is not equal to previous one \(10\.10\.0\.0\/16, 10\.10\.7\.0\/24\), trying to recycle old iptables rules/,
  );
  const nat = fake.dump("iptables", "nat");
  assert.doesNotMatch(nat, /10\.10\.7\.0/);
  assert.match(nat, /-A POSTROUTING -j RETURN\n/);
  assert.equal(
    listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG").includes(GOLDEN_NAT.split("\n")[3]!),
    true,
  );
  ac.abort();
});

test("old iptables (1.6.1): no --random-fully and no iptables-restore --wait", async () => {
  const fake = new FakeIptables();
  fake.version = "1.6.1";
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
  assert.equal(
    listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG"),
    GOLDEN_NAT.replaceAll(" --random-fully", ""),
  );
  assert.deepEqual(fake.callsOf("iptables-restore")[0]?.args, ["--noflush"]);
  ac.abort();
});

test("--ip-masq-fully-random-disable drops --random-fully", async () => {
  const fake = new FakeIptables();
  const ac = new AbortController();
  const m = new IptablesManager({
    commands: fake,
    logger: new MemoryLogger(),
    resyncMs: 60_000,
    randomFullyDisable: true,
  });
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
  assert.doesNotMatch(fake.dump("iptables", "nat"), /random-fully/);
  ac.abort();
});

test("IPv6 rules go through ip6tables with ff00::/8", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 60_000 });
  await m.setupAndEnsureMasqRules({
    ...masqOpts(ac.signal),
    network: null,
    subnet: null,
    ipv6Network: N6,
    ipv6Subnet: P6,
    prevIpv6Network: N6,
    prevIpv6Subnet: P6,
  });
  await m.setupAndEnsureForwardRules({ network: null, ipv6Network: N6, signal: ac.signal });
  assert.equal(fake.callsOf("iptables-restore").length, 0);
  assert.equal(fake.callsOf("ip6tables-restore").length, 2);
  const nat = fake.dump("ip6tables", "nat", "FLANNEL-POSTRTG");
  assert.match(
    nat,
    /-A FLANNEL-POSTRTG -s fc00::\/48 ! -d ff00::\/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully/,
  );
  assert.match(nat, /-A FLANNEL-POSTRTG ! -s fc00::\/48 -d fc00:0:0:1::\/64 /);
  assert.match(fake.dump("ip6tables", "filter", "FLANNEL-FWD"), /-A FLANNEL-FWD -s fc00::\/48 /);
  assert.ok(log.lines.includes("I Setting up masking rules for IPv6"));
  assert.ok(log.lines.includes("I IPv6: Changing default FORWARD chain policy to ACCEPT"));
  ac.abort();
});

test("cleanUp removes flannel's chains and the jumps into them, and nothing else", async () => {
  const fake = new FakeIptables();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
  fake.exec("iptables", "nat", ["-A", "POSTROUTING", "-j", "RETURN"]);
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
  await m.setupAndEnsureForwardRules({ network: N, ipv6Network: null, signal: ac.signal });
  ac.abort();
  await m.wait();

  const c = new IptablesManager({ commands: fake, logger: new MemoryLogger(), resyncMs: 60_000 });
  await c.cleanUp();
  assert.equal(
    fake.dump("iptables", "nat", "POSTROUTING"),
    "-P POSTROUTING ACCEPT\n-A POSTROUTING -j RETURN\n",
  );
  assert.doesNotMatch(fake.dump("iptables", "nat") + fake.dump("iptables", "filter"), /FLANNEL/);
  await c.cleanUp(); // idempotent
});

test("a missing iptables binary: setup logs upstream's error, cleanUp rejects", async () => {
  const fake = new FakeIptables();
  fake.version = null;
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 60_000 });
  await m.init(ac.signal);
  await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
  assert.ok(
    log.lines.includes(
      'E Failed to setup IPTables. iptables binary was not found: exec: "iptables": executable file not found in $PATH',
    ),
    log.text(),
  );
  await assert.rejects(
    m.cleanUp(),
    /failed to setup IPTables\. iptables binary was not found: exec: "iptables"/,
  );
  // With a previous subnet to recycle, the setup itself fails (the daemon exits).
  await assert.rejects(
    m.setupAndEnsureMasqRules({ ...masqOpts(ac.signal), prevSubnet: IpNet.parse("10.10.9.0/24") }),
    /executable file not found/,
  );
  ac.abort();
  await m.wait();
});

test("a failing iptables-restore is logged with its stderr and retried by the resync", async () => {
  const fake = new FakeIptables();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const realRun = fake.run.bind(fake);
  let failRestores = 1;
  fake.run = async (file, args, opts) => {
    if (file === "iptables-restore" && failRestores-- > 0) {
      return { code: 1, stdout: "", stderr: "iptables-restore: line 2 failed" };
    }
    return realRun(file, args, opts);
  };
  const m = new IptablesManager({ commands: fake, logger: log, resyncMs: 5 });
  try {
    await m.setupAndEnsureMasqRules(masqOpts(ac.signal));
    assert.match(
      log.text(),
      /E Failed to bootstrap IPTables: failed to apply partial iptables-restore unable to run iptables-restore \(, iptables-restore: line 2 failed\): exit status 1/,
    );
    const deadline = Date.now() + 10_000;
    while (listing(fake, "iptables", "nat", "POSTROUTING", "FLANNEL-POSTRTG") !== GOLDEN_NAT) {
      assert.ok(Date.now() < deadline, "rules installed by the resync in time");
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    ac.abort();
    await m.wait();
  }
});
