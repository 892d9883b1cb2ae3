// EtcdSubnetManager against a real etcd: upstream's TestAcquireLease / TestConfigChanged / TestRenewLease /
// TestCompleteLease / watch tests, plus start-before-etcd, TLS, basic auth and secret redaction.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import type { Lease, LeaseAttrs, LeaseWatchResult } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import {
  EtcdSubnetManager,
  freeSubnets,
  goDuration,
  type EtcdSubnetManagerOptions,
} from "../../src/subnet/etcd/manager.ts";
import { generateTestCerts, mutualTls, startEtcd, type EtcdServer } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/netns.ts";

let etcd: EtcdServer;
let n = 0;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

const CONFIG = '{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.1.0", "SubnetMax": "10.3.25.0" }';

function newPrefix(config: string | null = CONFIG, server = etcd): string {
  n += 1;
  const prefix = `/m${n}/network`;
  if (config !== null) server.etcdctl(["put", `${prefix}/config`, config]);
  return prefix;
}

function manager(
  prefix: string,
  more: Partial<EtcdSubnetManagerOptions> = {},
): { m: EtcdSubnetManager; logger: MemoryLogger } {
  const logger = new MemoryLogger();
  const m = new EtcdSubnetManager({
    endpoints: [etcd.endpoint],
    prefix,
    prevSubnet: null,
    prevIpv6Subnet: null,
    renewMarginMin: 60,
    logger,
    ...more,
  });
  return { m, logger };
}

const attrs = (ip: string): LeaseAttrs => ({
  publicIp: IpAddr.parse(ip),
  publicIpv6: null,
  backendType: "vxlan",
  backendData: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
});
const signal = (): AbortSignal => new AbortController().signal;

/** The lease keys under `prefix`, sorted. */
function leaseKeys(prefix: string): string[] {
  return etcd
    .etcdctl(["get", `${prefix}/subnets/`, "--prefix", "--keys-only"])
    .trim()
    .split(/\n+/)
    .sort();
}

function seed(prefix: string, subnets: string[], ip: string): void {
  for (const s of subnets) {
    etcd.etcdctl([
      "put",
      `${prefix}/subnets/${s.replace("/", "-")}`,
      `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan"}`,
    ]);
  }
}

test("name() names the previous subnet or None", () => {
  const { m } = manager("/x");
  assert.equal(m.name(), "Etcd Local Manager with Previous Subnet: None");
  m.close();
  const { m: m2 } = manager("/x", { prevSubnet: IpNet.parse("10.244.1.0/24") });
  assert.equal(m2.name(), "Etcd Local Manager with Previous Subnet: 10.244.1.0/24");
  m2.close();
});

test("freeSubnets: at most 100 candidates, skipping overlaps, stopping at max", () => {
  const taken = [IpNet.parse("10.3.1.0/24"), IpNet.parse("10.3.0.0/23"), null];
  const free = freeSubnets(IpAddr.parse("10.3.1.0"), IpAddr.parse("10.3.5.0"), 24, taken);
  assert.deepEqual(free.map(String), ["10.3.2.0/24", "10.3.3.0/24", "10.3.4.0/24", "10.3.5.0/24"]);
  assert.equal(freeSubnets(IpAddr.parse("10.0.0.0"), IpAddr.parse("10.255.255.0"), 24, []).length, 100);
  assert.equal(goDuration(23 * 3_600_000 + 59 * 60_000 + 59_500), "23h59m59.5s");
  assert.equal(goDuration(60_000), "1m0s");
});

test("getNetworkConfig validates the config text (upstream messages)", async () => {
  const { m } = manager(newPrefix('{"Network":"10.0.0.0/29"}'));
  try {
    await assert.rejects(m.getNetworkConfig(signal()), {
      message: "network is too small. Minimum useful network prefix is /28",
    });
  } finally {
    m.close();
  }
  const { m: m2 } = manager(newPrefix('{ "network": "10.3.0.0/16" }'));
  try {
    const cfg = await m2.getNetworkConfig(signal());
    assert.equal(String(cfg.subnetMin), "10.3.1.0");
    assert.equal(String(cfg.subnetMax), "10.3.255.0");
    assert.equal(cfg.subnetLen, 24);
  } finally {
    m2.close();
  }
});

test("TestAcquireLease: allocation in range, reuse by public IP, previous subnet (§10.2 item 7)", async () => {
  const prefix = newPrefix();
  seed(prefix, ["10.3.1.0/24", "10.3.2.0/24", "10.3.4.0/24", "10.3.5.0/24", "10.3.31.0/24"], "1.1.1.1");
  const { m, logger } = manager(prefix);
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    const sn = l.subnet?.toString() ?? "";
    const allowed = ["10.3.3.0/24", ...Array.from({ length: 20 }, (_, i) => `10.3.${i + 6}.0/24`)];
    assert.ok(allowed.includes(sn), sn);
    assert.equal(l.enableIpv4, true);
    assert.equal(l.enableIpv6, false);
    assert.match(logger.text(), /I Picking subnet in range 10\.3\.1\.0 \.\.\. 10\.3\.25\.0/);
    assert.match(
      logger.text(),
      new RegExp(`I Allocated lease \\(ip: ${sn} ipv6: ::/0\\) to current node \\(1\\.2\\.3\\.4\\) $`, "m"),
    );

    const again = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.equal(again.subnet?.toString(), sn);
    assert.match(
      logger.text(),
      new RegExp(`Found lease \\(ip: ${sn} ipv6: ::/0\\) for current IP \\(1\\.2\\.3\\.4\\), reusing`),
    );
  } finally {
    m.close();
  }

  const prefix2 = newPrefix();
  seed(prefix2, ["10.3.1.0/24", "10.3.2.0/24", "10.3.4.0/24", "10.3.5.0/24", "10.3.31.0/24"], "1.1.1.1");
  const { m: m2, logger: log2 } = manager(prefix2, { prevSubnet: IpNet.parse("10.3.6.0/24") });
  try {
    const l = await m2.acquireLease(attrs("1.2.3.4"), signal());
    assert.equal(l.subnet?.toString(), "10.3.6.0/24");
    assert.match(log2.text(), /I Found previously leased subnet \(10\.3\.6\.0\/24\), reusing/);
  } finally {
    m2.close();
  }

  const prefix3 = newPrefix();
  const { m: m3, logger: log3 } = manager(prefix3, { prevSubnet: IpNet.parse("10.4.1.0/24") });
  try {
    const l = await m3.acquireLease(attrs("1.2.3.4"), signal());
    assert.notEqual(l.subnet?.toString(), "10.4.1.0/24");
    assert.match(
      log3.text(),
      /E Found previously leased subnet \(10\.4\.1\.0\/24\) that is not compatible with the Etcd network config, ignoring/,
    );
  } finally {
    m3.close();
  }
});

test("acquireLease: out of subnets", async () => {
  const prefix = newPrefix('{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.1.0", "SubnetMax": "10.3.2.0" }');
  seed(prefix, ["10.3.1.0/24", "10.3.2.0/24"], "1.1.1.1");
  const { m } = manager(prefix);
  try {
    await assert.rejects(m.acquireLease(attrs("1.2.3.4"), signal()), { message: "out of subnets" });
  } finally {
    m.close();
  }
});

test("acquireLease: dual stack picks both families and writes a dual-stack key", async () => {
  const prefix = newPrefix(
    '{ "Network": "10.3.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "IPv6SubnetLen": 64 }',
  );
  const { m } = manager(prefix);
  try {
    const l = await m.acquireLease({ ...attrs("1.2.3.4"), publicIpv6: IpAddr.parse("fd00::4") }, signal());
    assert.equal(l.enableIpv6, true);
    assert.ok(l.ipv6Subnet && IpNet.parse("fd00:10::/56").containsNet(l.ipv6Subnet));
    const keys = etcd.etcdctl(["get", `${prefix}/subnets/`, "--prefix", "--keys-only"]).trim();
    assert.equal(keys, `${prefix}/subnets/${l.subnet?.ip}-24&${l.ipv6Subnet.ip}-64`);
  } finally {
    m.close();
  }
});

test("acquireLease: dual stack, two nodes that listed together never share a subnet of either family", async () => {
  const prefix = newPrefix(
    '{ "Network": "10.3.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "IPv6SubnetLen": 64 }',
  );
  // A picks the first free IPv4 and IPv6 subnets. B, on its first try, the 51st IPv4 subnet and the first
  // IPv6 one: a different key, so etcd's create transaction alone lets both through.
  const a = manager(prefix, { random: () => 0 });
  const picks = [0.5, 0];
  const b = manager(prefix, { random: () => picks.shift() ?? 0.5 });
  const dual = (ip: string, ip6: string): LeaseAttrs => ({
    ...attrs(ip),
    publicIpv6: IpAddr.parse(ip6),
  });
  // B has listed the (empty) leases and picked; A then takes its lease before B's create reaches etcd.
  const create = b.m.registry.createSubnet.bind(b.m.registry);
  let la: Lease | undefined;
  b.m.registry.createSubnet = async (...args) => {
    la ??= await a.m.acquireLease(dual("10.0.0.1", "fd00::1"), signal());
    return create(...args);
  };
  try {
    const lb = await b.m.acquireLease(dual("10.0.0.2", "fd00::2"), signal());
    assert.ok(la !== undefined);
    assert.equal(la.ipv6Subnet?.toString(), "fd00:10:0:1::/64");
    assert.notEqual(lb.subnet?.toString(), la.subnet?.toString());
    assert.notEqual(lb.ipv6Subnet?.toString(), la.ipv6Subnet?.toString());
    assert.match(
      b.logger.text(),
      /Lease \(ip: 10\.3\.\d+\.0\/24 ipv6: fd00:10:0:1::\/64\) overlaps the lease \(ip: 10\.3\.1\.0\/24 ipv6: fd00:10:0:1::\/64\) that another node took at the same time, and first: giving it back/,
    );
    assert.deepEqual(
      leaseKeys(prefix),
      [la, lb].map((l) => `${prefix}/subnets/${l.subnet?.ip}-24&${l.ipv6Subnet?.ip}-64`).sort(),
    );
  } finally {
    a.m.close();
    b.m.close();
  }
});

test("acquireLease: dual stack, a lease whose check failed is given back, not reused by the next attempt", async () => {
  const prefix = newPrefix(
    '{ "Network": "10.3.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "IPv6SubnetLen": 64 }',
  );
  const { m, logger } = manager(prefix, { acquireRetryMs: 10 });
  const check = m.registry.subnetsCreatedAfter.bind(m.registry);
  let failures = 1;
  m.registry.subnetsCreatedAfter = async (revision) => {
    if (failures-- > 0) throw new Error("etcd went away");
    return check(revision);
  };
  try {
    const l = await m.acquireLease({ ...attrs("10.0.0.5"), publicIpv6: IpAddr.parse("fd00::5") }, signal());
    assert.match(logger.text(), /Failed to acquire lease \(retrying in 10ms\): etcd went away/);
    assert.doesNotMatch(logger.text(), /reusing/);
    assert.deepEqual(leaseKeys(prefix), [`${prefix}/subnets/${l.subnet?.ip}-24&${l.ipv6Subnet?.ip}-64`]);
  } finally {
    m.close();
  }
});

test("acquireLease: dual stack does not reuse a previous IPv6 subnet that another lease holds", async () => {
  const prefix = newPrefix(
    '{ "Network": "10.3.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "IPv6SubnetLen": 64 }',
  );
  etcd.etcdctl([
    "put",
    `${prefix}/subnets/10.3.7.0-24&fd00:10:0:5::-64`,
    '{"PublicIP":"10.0.0.7","PublicIPv6":"fd00::7","BackendType":"vxlan"}',
  ]);
  const { m } = manager(prefix, {
    prevSubnet: IpNet.parse("10.3.9.0/24"),
    prevIpv6Subnet: IpNet.parse("fd00:10:0:5::/64"),
  });
  try {
    const l = await m.acquireLease({ ...attrs("10.0.0.9"), publicIpv6: IpAddr.parse("fd00::9") }, signal());
    assert.notEqual(l.ipv6Subnet?.toString(), "fd00:10:0:5::/64");
    assert.notEqual(l.subnet?.toString(), "10.3.7.0/24");
  } finally {
    m.close();
  }
});

test("acquireLease: IPv6-only leases by public IPv6 under a 0.0.0.0-0& key, reuses and watches it", async () => {
  const prefix = newPrefix(
    '{ "EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "Backend": {"Type": "vxlan"} }',
  );
  const v6attrs = (ip: string): LeaseAttrs => ({
    publicIp: IpAddr.zero(4),
    publicIpv6: IpAddr.parse(ip),
    backendType: "vxlan",
    backendV6Data: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
  });
  const a = manager(prefix);
  const b = manager(prefix);
  try {
    const la = await a.m.acquireLease(v6attrs("fd00::a"), signal());
    const lb = await b.m.acquireLease(v6attrs("fd00::b"), signal());
    for (const l of [la, lb]) {
      assert.equal(l.enableIpv4, false);
      assert.equal(l.subnet, null);
      assert.equal(l.enableIpv6, true);
      assert.ok(l.ipv6Subnet && IpNet.parse("fd00:10::/56").containsNet(l.ipv6Subnet));
      assert.equal(l.ipv6Subnet.prefixLen, 64);
    }
    // Two nodes share PublicIP 0.0.0.0: each must still get its own subnet.
    assert.notEqual(la.ipv6Subnet?.toString(), lb.ipv6Subnet?.toString());
    assert.deepEqual(
      leaseKeys(prefix),
      [la, lb].map((l) => `${prefix}/subnets/0.0.0.0-0&${l.ipv6Subnet?.ip}-64`).sort(),
    );
    const value = etcd.etcdctl([
      "get",
      `${prefix}/subnets/0.0.0.0-0&${la.ipv6Subnet?.ip}-64`,
      "--print-value-only",
    ]);
    assert.equal(
      value.trim(),
      '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::a","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    );

    // A restart finds its lease again by public IPv6.
    const again = await a.m.acquireLease(v6attrs("fd00::a"), signal());
    assert.equal(again.ipv6Subnet?.toString(), la.ipv6Subnet?.toString());
    assert.match(
      a.logger.text(),
      /Found lease \(ip: 0\.0\.0\.0\/0 ipv6: fd00:10:0:[0-9a-f]+::\/64\) for current IP \(fd00::a\), reusing/,
    );

    // The watch reports IPv6-only leases without an IPv4 subnet.
    const ac = new AbortController();
    const it = a.m.watchLeases(ac.signal)[Symbol.asyncIterator]();
    const first = (await it.next()).value as LeaseWatchResult[];
    ac.abort();
    const snap = first.flatMap((r) => ("snapshot" in r ? r.snapshot : []));
    assert.equal(snap.length, 2);
    for (const l of snap) {
      assert.equal(l.subnet, null);
      assert.equal(l.enableIpv4, false);
      assert.equal(l.enableIpv6, true);
    }

    // The renewal re-puts the same key.
    await a.m.renewLease(again);
    assert.ok(again.expiration && again.expiration.getTime() > Date.now() + 23 * 3600_000);
  } finally {
    a.m.close();
    b.m.close();
  }
});

test("acquireLease: IPv6-only reuses the previous FLANNEL_IPV6_SUBNET", async () => {
  const prefix = newPrefix('{ "EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10::/56" }');
  const { m, logger } = manager(prefix, { prevIpv6Subnet: IpNet.parse("fd00:10:0:7::/64") });
  try {
    const l = await m.acquireLease(
      { publicIp: IpAddr.zero(4), publicIpv6: IpAddr.parse("fd00::7"), backendType: "host-gw" },
      signal(),
    );
    assert.equal(l.ipv6Subnet?.toString(), "fd00:10:0:7::/64");
    assert.match(logger.text(), /Found previously leased subnet \(fd00:10:0:7::\/64\), reusing/);
  } finally {
    m.close();
  }
});

test("TestConfigChanged: a lease outside a changed network is deleted and a new one allocated", async () => {
  const prefix = newPrefix('{ "Network": "10.3.0.0/16" }');
  const { m, logger } = manager(prefix);
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.ok(IpNet.parse("10.3.0.0/16").containsNet(l.subnet as IpNet));
    etcd.etcdctl(["put", `${prefix}/config`, '{ "Network": "10.4.0.0/16" }']);
    const l2 = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.ok(IpNet.parse("10.4.0.0/16").containsNet(l2.subnet as IpNet), String(l2.subnet));
    assert.match(logger.text(), /but not compatible with current config, deleting/);
    const keys = etcd
      .etcdctl(["get", `${prefix}/subnets/`, "--prefix", "--keys-only"])
      .trim()
      .split("\n");
    assert.deepEqual(keys, [`${prefix}/subnets/${l2.subnet?.ip}-24`]);
  } finally {
    m.close();
  }
});

test("acquireLease: a reservation (key without TTL) is reused and stays without TTL", async () => {
  const prefix = newPrefix();
  seed(prefix, ["10.3.9.0/24"], "1.2.3.4");
  const { m } = manager(prefix);
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.equal(l.subnet?.toString(), "10.3.9.0/24");
    assert.equal(l.expiration, null);
    assert.doesNotMatch(etcd.etcdctl(["get", `${prefix}/subnets/10.3.9.0-24`, "-w", "json"]), /"lease"/);
  } finally {
    m.close();
  }
});

test("TestRenewLease: renewal grants a new ~24 h TTL and keeps the attributes", async () => {
  const prefix = newPrefix();
  const { m } = manager(prefix);
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    const key = `${prefix}/subnets/${l.subnet?.ip}-24`;
    const before = etcd.etcdctl(["get", key, "-w", "json"]);
    l.expiration = new Date(Date.now() + 1000);
    await m.renewLease(l);
    assert.ok(l.expiration && l.expiration.getTime() > Date.now() + 86_000_000);
    const afterJson = etcd.etcdctl(["get", key, "-w", "json"]);
    assert.notEqual(/"lease":(\d+)/.exec(afterJson)?.[1], /"lease":(\d+)/.exec(before)?.[1]);
    const { lease } = await m.registry.getSubnet(l.subnet as IpNet, null);
    assert.ok(lease?.expiration && lease.expiration.getTime() > Date.now() + 86_000_000);
    assert.deepEqual(
      { ip: lease?.attrs.publicIp.toString(), data: lease?.attrs.backendData },
      { ip: "1.2.3.4", data: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}' },
    );
  } finally {
    m.close();
  }
});

test("TestCompleteLease: renews at expiration - margin, then resolves 'revoked' when the key is deleted", async () => {
  const prefix = newPrefix();
  const { m, logger } = manager(prefix, { renewMarginMin: 1 });
  const ac = new AbortController();
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    // Re-put the key with a 62 s etcd lease: renewal (expiry - 1 min margin) is due in about 2 s. The
    // expiration comes from etcd (the own-key watch), not from the object we pass in.
    await m.registry.updateSubnet(l.subnet as IpNet, null, l.attrs, 62);
    l.expiration = new Date(Date.now() + 86_400_000);
    const completing = m.completeLease({ ...l }, ac.signal);
    await waitFor(() => /I Lease renewed, new expiration: /.test(logger.text()), 20_000, "the renewal");
    await waitFor(
      () => /I Waiting for 2[23]h\d+m[\d.]+s to renew lease/.test(logger.text()),
      20_000,
      "the reschedule",
    );
    etcd.etcdctl(["del", `${prefix}/subnets/${l.subnet?.ip}-24`]);
    assert.equal(await completing, "revoked");
    assert.match(logger.text(), /E Lease has been revoked\. Shutting down daemon\./);
  } finally {
    ac.abort();
    m.close();
  }
});

test("completeLease resolves 'interrupted' on abort and retries a failed renewal", async () => {
  const own = await startEtcd();
  const prefix = newPrefix(CONFIG, own);
  const logger = new MemoryLogger();
  const m = new EtcdSubnetManager({
    endpoints: [own.endpoint],
    prefix,
    prevSubnet: null,
    prevIpv6Subnet: null,
    renewMarginMin: 1,
    logger,
    renewRetryMs: 200,
    callTimeoutMs: 1000,
  });
  const ac = new AbortController();
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    l.expiration = new Date(Date.now() + 60_000);
    await own.kill();
    const completing = m.completeLease(l, ac.signal);
    await waitFor(
      () => (logger.text().match(/E Error renewing lease \(trying again in 1 min\): /g) ?? []).length >= 2,
      20_000,
      "two failed renewals",
    );
    ac.abort();
    assert.equal(await completing, "interrupted");
  } finally {
    ac.abort();
    m.close();
    await own.stop();
  }
});

test("TestWatchLeaseAdded / Removed: watchLeases yields a snapshot, then added and removed events", async () => {
  const prefix = newPrefix();
  seed(prefix, ["10.3.1.0/24"], "1.1.1.1");
  const { m } = manager(prefix);
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    const done = (async () => {
      for await (const b of m.watchLeases(ac.signal)) got.push(b);
    })();
    await waitFor(() => got.length > 0, 10_000, "the snapshot");
    const snap = got[0]?.[0];
    assert.ok(snap && "snapshot" in snap);
    assert.deepEqual(
      snap.snapshot.map((x: Lease) => String(x.subnet)),
      ["10.3.1.0/24"],
    );
    seed(prefix, ["10.3.2.0/24"], "2.2.2.2");
    etcd.etcdctl(["del", `${prefix}/subnets/10.3.1.0-24`]);
    const evs = (): { type: string; sn: string }[] =>
      got
        .flat()
        .flatMap((r) =>
          "events" in r ? r.events.map((e) => ({ type: e.type, sn: String(e.lease.subnet) })) : [],
        );
    await waitFor(() => evs().length === 2, 10_000, "two events");
    assert.deepEqual(evs(), [
      { type: "added", sn: "10.3.2.0/24" },
      { type: "removed", sn: "10.3.1.0/24" },
    ]);
    ac.abort();
    await done;
  } finally {
    ac.abort();
    m.close();
  }
});

test("acquireLease with etcd down at start keeps retrying until etcd comes up", async () => {
  const own = await startEtcd();
  const prefix = newPrefix(CONFIG, own);
  await own.kill();
  const logger = new MemoryLogger();
  const m = new EtcdSubnetManager({
    endpoints: [own.endpoint],
    prefix,
    prevSubnet: null,
    prevIpv6Subnet: null,
    renewMarginMin: 60,
    logger,
    acquireRetryMs: 100,
    callTimeoutMs: 1000,
  });
  try {
    const acquiring = m.acquireLease(attrs("1.2.3.4"), signal());
    await waitFor(
      () => (logger.text().match(/E Failed to acquire lease/g) ?? []).length >= 2,
      30_000,
      "retries",
    );
    await own.start();
    const l = await acquiring;
    assert.ok(IpNet.parse("10.3.0.0/16").containsNet(l.subnet as IpNet));
  } finally {
    m.close();
    await own.stop();
  }
});

test("TLS: certificates from openssl, client certificate required", async (t) => {
  const certs = generateTestCerts();
  if (!certs) {
    t.skip("openssl is not installed");
    return;
  }
  const own = await startEtcd({ tls: mutualTls(certs) });
  try {
    const prefix = newPrefix(CONFIG, own);
    const logger = new MemoryLogger();
    const m = new EtcdSubnetManager({
      endpoints: [own.endpoint],
      prefix,
      caFile: certs.caFile,
      certFile: certs.clientCertFile,
      keyFile: certs.clientKeyFile,
      prevSubnet: null,
      prevIpv6Subnet: null,
      renewMarginMin: 60,
      logger,
    });
    try {
      const l = await m.acquireLease(attrs("1.2.3.4"), signal());
      assert.ok(l.subnet);
      assert.doesNotMatch(logger.text(), /no certificate provided/);
      assert.doesNotMatch(logger.text(), /BEGIN/); // no key material in logs
    } finally {
      m.close();
    }
    // Only one of key/cert given: upstream's warning, and plain http (which this TLS server refuses).
    const logger2 = new MemoryLogger();
    const m2 = new EtcdSubnetManager({
      endpoints: [own.endpoint],
      prefix,
      certFile: certs.clientCertFile,
      prevSubnet: null,
      prevIpv6Subnet: null,
      renewMarginMin: 60,
      logger: logger2,
      callTimeoutMs: 2000,
    });
    try {
      assert.match(
        logger2.text(),
        /^W no certificate provided: connecting to etcd with http\. This is insecure$/m,
      );
    } finally {
      m2.close();
    }
  } finally {
    await own.stop();
    certs.cleanup();
  }
});

test("basic auth works, and a wrong password never appears in logs or errors", async () => {
  const own = await startEtcd();
  const password = "s3cr3t-Pa55word";
  try {
    own.etcdctl(["user", "add", `root:${password}`]);
    own.etcdctl(["auth", "enable"]);
    const user = { user: `root:${password}` };
    n += 1;
    const prefix = `/m${n}/network`;
    own.etcdctl(["put", `${prefix}/config`, CONFIG], user);

    const logger = new MemoryLogger();
    const opts = {
      endpoints: [own.endpoint],
      prefix,
      username: "root",
      prevSubnet: null,
      prevIpv6Subnet: null,
      renewMarginMin: 60,
      logger,
      acquireRetryMs: 100,
    };
    const m = new EtcdSubnetManager({ ...opts, password });
    try {
      const l = await m.acquireLease(attrs("1.2.3.4"), signal());
      assert.ok(l.subnet);
    } finally {
      m.close();
    }

    const wrong = "Wr0ng-Secret-xyz";
    const bad = new EtcdSubnetManager({ ...opts, password: wrong });
    try {
      const err = await bad.acquireLease(attrs("1.2.3.5"), signal()).then(
        () => assert.fail("acquire with a wrong password succeeded"),
        (e: unknown) => e,
      );
      const text = `${String(err)} ${(err as Error).stack ?? ""} ${logger.text()}`;
      assert.ok(!text.includes(wrong), "wrong password leaked");
      assert.ok(!text.includes(password), "password leaked");
      assert.match(String(err), /auth/i);
    } finally {
      bad.close();
    }
  } finally {
    await own.stop();
  }
});

test("acquireLease: a bad config throws at once (it is not retried like an unreachable etcd)", async () => {
  const { m } = manager(newPrefix('{"Network":"10.0.0.0/29"}'), { acquireRetryMs: 10 });
  try {
    await assert.rejects(m.acquireLease(attrs("1.2.3.4"), signal()), {
      message: "network is too small. Minimum useful network prefix is /28",
    });
  } finally {
    m.close();
  }
});

test("several endpoints: a dead one does not stop acquire", async () => {
  const dead = await startEtcd();
  const deadEndpoint = dead.endpoint;
  await dead.stop();
  const prefix = newPrefix();
  const { m } = manager(prefix, {
    endpoints: [deadEndpoint, etcd.endpoint],
    acquireRetryMs: 100,
    callTimeoutMs: 2000,
  });
  try {
    const l = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.ok(l.subnet);
    const l2 = await m.acquireLease(attrs("1.2.3.4"), signal());
    assert.equal(String(l2.subnet), String(l.subnet));
  } finally {
    m.close();
  }
});
