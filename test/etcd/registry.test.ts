// EtcdRegistry against a real etcd (test/helpers/etcd.ts): keys, values, TTLs, create-if-absent, watches
// with compaction, garbage values, restarts and bursts.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import type { LeaseAttrs, LeaseEvent, LeaseWatchResult } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import { CONFIG_NOT_FOUND, EtcdRegistry, SubnetExistsError } from "../../src/subnet/etcd/registry.ts";
import { startEtcd, type EtcdServer } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/netns.ts";

let etcd: EtcdServer;
let n = 0;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

/** A registry on a fresh prefix, so tests sharing the server do not see each other's keys. */
function registry(logger = new MemoryLogger()): { reg: EtcdRegistry; prefix: string; logger: MemoryLogger } {
  n += 1;
  const prefix = `/t${n}/network`;
  return { reg: new EtcdRegistry({ endpoints: [etcd.endpoint], prefix, logger }), prefix, logger };
}

const attrs = (ip: string): LeaseAttrs => ({
  publicIp: IpAddr.parse(ip),
  publicIpv6: null,
  backendType: "vxlan",
  backendData: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
});
/** The etcd lease ID of a key (int64: read from the JSON text, not through JSON.parse). */
function leaseOf(key: string): bigint {
  const m = /"lease":(\d+)/.exec(etcd.etcdctl(["get", key, "-w", "json"]));
  return BigInt(m?.[1] ?? "0");
}
const net = (s: string): IpNet => IpNet.parse(s);

/** Collects everything a watch yields into `out` until aborted. */
function collect(it: AsyncIterable<LeaseWatchResult[]>, out: LeaseWatchResult[][]): Promise<void> {
  return (async () => {
    for await (const b of it) out.push(b);
  })();
}
const events = (batches: LeaseWatchResult[][]): LeaseEvent[] =>
  batches.flat().flatMap((r) => ("events" in r ? r.events : []));
const snapshots = (batches: LeaseWatchResult[][]): LeaseWatchResult[] =>
  batches.flat().filter((r) => "snapshot" in r);

test("getNetworkConfig: missing config gives upstream's exact message, present config its text", async () => {
  const { reg, prefix } = registry();
  try {
    await assert.rejects(reg.getNetworkConfig(), { message: CONFIG_NOT_FOUND });
    etcd.etcdctl(["put", `${prefix}/config`, '{"Network":"10.5.0.0/16"}']);
    assert.equal(await reg.getNetworkConfig(), '{"Network":"10.5.0.0/16"}');
  } finally {
    reg.close();
  }
});

test("createSubnet stores upstream's value bytes under the upstream key with a 24 h etcd lease", async () => {
  const { reg, prefix } = registry();
  try {
    const { expiration: exp } = await reg.createSubnet(
      net("10.5.52.0/24"),
      null,
      { ...attrs("192.168.64.3") },
      86400,
    );
    assert.ok(exp.getTime() > Date.now() + 86_000_000);
    const key = `${prefix}/subnets/10.5.52.0-24`;
    assert.equal(
      etcd.etcdctl(["get", key, "--print-value-only"]).trim(),
      '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    );
    const leaseHex = leaseOf(key).toString(16);
    const ttl = JSON.parse(etcd.etcdctl(["lease", "timetolive", leaseHex, "-w", "json"])) as {
      "granted-ttl": number;
    };
    assert.equal(ttl["granted-ttl"], 86400);

    // Create-if-absent: a second create fails and its etcd lease is revoked again.
    const leasesBefore = etcd.etcdctl(["lease", "list"]);
    await assert.rejects(
      reg.createSubnet(net("10.5.52.0/24"), null, attrs("1.1.1.1"), 86400),
      (err) => err instanceof SubnetExistsError,
    );
    assert.equal(etcd.etcdctl(["lease", "list"]), leasesBefore);
    assert.match(etcd.etcdctl(["get", key, "--print-value-only"]), /192\.168\.64\.3/);

    const { lease } = await reg.getSubnet(net("10.5.52.0/24"), null);
    assert.equal(lease?.attrs.publicIp.toString(), "192.168.64.3");
    assert.equal(lease?.enableIpv4, true);

    await reg.deleteSubnet(net("10.5.52.0/24"), null);
    await reg.deleteSubnet(net("10.5.52.0/24"), null); // absent: still fine
    assert.equal((await reg.getSubnet(net("10.5.52.0/24"), null)).lease, null);
  } finally {
    reg.close();
  }
});

test("getSubnets: dual-stack keys, reservations without TTL, and bad nodes skipped with a log line", async () => {
  const { reg, prefix, logger } = registry();
  try {
    await reg.createSubnet(net("10.12.13.0/24"), net("fd00:12:13::/56"), attrs("10.0.0.1"), 86400);
    etcd.etcdctl(["put", `${prefix}/subnets/10.12.14.0-24`, '{"PublicIP":"10.0.0.2","PublicIPv6":null}']);
    etcd.etcdctl(["put", `${prefix}/subnets/10.12.15.0-24`, "garbage"]);
    etcd.etcdctl(["put", `${prefix}/subnets/not-a-subnet`, "{}"]);
    const { leases, revision } = await reg.getSubnets();
    assert.ok(revision > 0);
    assert.deepEqual(leases.map((l) => `${l.subnet}|${l.ipv6Subnet}|${l.enableIpv6}`).sort(), [
      "10.12.13.0/24|fd00:12:13::/56|true",
      "10.12.14.0/24|null|false",
    ]);
    assert.equal(leases.find((l) => l.subnet?.toString() === "10.12.14.0/24")?.expiration, null);
    assert.match(logger.text(), /W Ignoring bad subnet node: .*10\.12\.15\.0-24.*not a JSON object/);
    assert.match(logger.text(), /W Ignoring bad subnet node: failed to parse subnet key .*not-a-subnet/);
  } finally {
    reg.close();
  }
});

test("updateSubnet renews with a new 24 h etcd lease and keeps the value", async () => {
  const { reg, prefix } = registry();
  try {
    await reg.createSubnet(net("10.1.1.0/24"), null, attrs("10.0.0.1"), 60);
    const key = `${prefix}/subnets/10.1.1.0-24`;
    const first = leaseOf(key);
    const exp = await reg.updateSubnet(net("10.1.1.0/24"), null, attrs("10.0.0.1"), 86400);
    assert.ok(exp !== null && exp.getTime() > Date.now() + 86_000_000);
    assert.notEqual(leaseOf(key), first);
    const { lease } = await reg.getSubnet(net("10.1.1.0/24"), null);
    assert.ok(lease?.expiration && lease.expiration.getTime() > Date.now() + 86_000_000);
    assert.equal(lease?.attrs.backendData, '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}');
  } finally {
    reg.close();
  }
});

test("watchSubnets: snapshot first, then added (with attrs and TTL) and removed events", async () => {
  const { reg } = registry();
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    await reg.createSubnet(net("10.2.1.0/24"), null, attrs("10.0.0.1"), 86400);
    const done = collect(reg.watchSubnets(ac.signal), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the snapshot");
    const first = got[0]?.[0];
    assert.ok(first && "snapshot" in first);
    assert.deepEqual(
      first.snapshot.map((l) => l.subnet?.toString()),
      ["10.2.1.0/24"],
    );

    await reg.createSubnet(net("10.2.2.0/24"), null, attrs("10.0.0.2"), 86400);
    await reg.deleteSubnet(net("10.2.1.0/24"), null);
    await waitFor(() => events(got).length === 2, 10_000, "two events");
    const [added, removed] = events(got);
    assert.equal(added?.type, "added");
    assert.equal(added?.lease.subnet?.toString(), "10.2.2.0/24");
    assert.equal(added?.lease.attrs.publicIp.toString(), "10.0.0.2");
    assert.equal(added?.lease.enableIpv4, true);
    assert.ok(added?.lease.expiration && added.lease.expiration.getTime() > Date.now() + 86_000_000);
    assert.equal(removed?.type, "removed");
    assert.equal(removed?.lease.subnet?.toString(), "10.2.1.0/24");
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets: a garbage value is logged and skipped, and the watch goes on", async () => {
  const { reg, prefix, logger } = registry();
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    const done = collect(reg.watchSubnets(ac.signal), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the snapshot");
    etcd.etcdctl(["put", `${prefix}/subnets/10.3.1.0-24`, "{not json"]);
    etcd.etcdctl(["put", `${prefix}/subnets/10.3.2.0-24`, '{"PublicIP":"300.1.1.1"}']);
    etcd.etcdctl(["put", `${prefix}/subnets/whatever`, "x"]);
    await reg.createSubnet(net("10.3.3.0/24"), null, attrs("10.0.0.3"), 86400);
    await waitFor(() => events(got).length >= 1, 10_000, "the valid event");
    assert.deepEqual(
      events(got).map((e) => e.lease.subnet?.toString()),
      ["10.3.3.0/24"],
    );
    assert.match(
      logger.text(),
      /E error parsing etcd event: .*10\.3\.1\.0-24: lease value is not a JSON object/,
    );
    assert.match(logger.text(), /E error parsing etcd event: .*10\.3\.2\.0-24: invalid PublicIP in lease/);
    assert.match(logger.text(), /E error parsing etcd event: Put ".*whatever": not a subnet, skipping/);
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets recovers from compaction: re-lists, yields a snapshot and resumes", async () => {
  const { reg, logger } = registry();
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    await reg.createSubnet(net("10.4.1.0/24"), null, attrs("10.0.0.1"), 86400);
    await reg.deleteSubnet(net("10.4.1.0/24"), null);
    await reg.createSubnet(net("10.4.2.0/24"), null, attrs("10.0.0.2"), 86400);
    await etcd.compact();
    // Watching from revision 1 is behind the compaction horizon: etcd cancels that watch.
    const done = collect(reg.watchSubnets(ac.signal, 1), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the recovery snapshot");
    const snap = snapshots(got)[0];
    assert.ok(snap && "snapshot" in snap);
    assert.deepEqual(
      snap.snapshot.map((l) => l.subnet?.toString()),
      ["10.4.2.0/24"],
    );
    assert.match(logger.text(), /fell behind compaction, re-listing and resuming/);
    await reg.createSubnet(net("10.4.3.0/24"), null, attrs("10.0.0.3"), 86400);
    await waitFor(
      () => events(got).some((e) => e.lease.subnet?.toString() === "10.4.3.0/24"),
      10_000,
      "an event after recovery",
    );
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets: 200 leases written in one go all arrive, batched for a slow consumer", async () => {
  const { reg } = registry();
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    const it = reg.watchSubnets(ac.signal)[Symbol.asyncIterator]();
    const first = await it.next();
    assert.ok(!first.done && first.value[0] && "snapshot" in first.value[0]);
    // The consumer is busy while all 200 are written concurrently; the next pulls must hold them all.
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        reg.createSubnet(
          net(`10.${100 + Math.floor(i / 100)}.${i % 100}.0/24`),
          null,
          attrs("10.0.0.9"),
          86400,
        ),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    while (events(got).length < 200) {
      const r = await Promise.race([
        it.next(),
        new Promise<never>((_, rej) =>
          setTimeout(() => rej(new Error(`only ${events(got).length} of 200`)), 20_000),
        ),
      ]);
      assert.ok(!r.done);
      got.push(r.value);
    }
    const subnets = new Set(events(got).map((e) => e.lease.subnet?.toString()));
    assert.equal(subnets.size, 200);
    assert.ok(events(got).every((e) => e.type === "added"));
    assert.ok(got.length < 200, `expected batching, got ${got.length} batches`);
    ac.abort();
    await it.return?.(undefined);
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets survives etcd being stopped and restarted, and later events arrive", async () => {
  const own = await startEtcd();
  const logger = new MemoryLogger();
  const reg = new EtcdRegistry({ endpoints: [own.endpoint], prefix: "/coreos.com/network", logger });
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    const done = collect(reg.watchSubnets(ac.signal), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the snapshot");
    await reg.createSubnet(net("10.6.1.0/24"), null, attrs("10.0.0.1"), 86400);
    await waitFor(() => events(got).length === 1, 10_000, "the first event");
    await own.kill();
    await waitFor(() => /etcd watch channel for .* closed/.test(logger.text()), 20_000, "the disconnect log");
    await own.start();
    // Written by another client while ours reconnects.
    own.etcdctl([
      "put",
      "/coreos.com/network/subnets/10.6.2.0-24",
      '{"PublicIP":"10.0.0.2","PublicIPv6":null}',
    ]);
    await waitFor(
      () => events(got).some((e) => e.lease.subnet?.toString() === "10.6.2.0/24"),
      30_000,
      "the event written after the restart",
    );
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
    await own.stop();
  }
});

test("watchSubnet (one key) reports a removal that happened behind a compaction", async () => {
  const { reg, logger } = registry();
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    await reg.createSubnet(net("10.7.1.0/24"), null, attrs("10.0.0.1"), 86400);
    const rev = (await reg.getSubnet(net("10.7.1.0/24"), null)).revision;
    await reg.deleteSubnet(net("10.7.1.0/24"), null);
    await reg.createSubnet(net("10.7.2.0/24"), null, attrs("10.0.0.2"), 86400);
    await etcd.compact();
    const done = collect(reg.watchSubnet(ac.signal, net("10.7.1.0/24"), null, rev + 1), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the recovery snapshot");
    const snap = snapshots(got)[0];
    assert.ok(snap && "snapshot" in snap);
    assert.deepEqual(snap.snapshot, []); // the key is gone: the consumer sees its removal
    assert.match(logger.text(), /fell behind compaction/);
    await reg.createSubnet(net("10.7.1.0/24"), null, attrs("10.0.0.3"), 86400);
    await waitFor(() => events(got).length === 1, 10_000, "the event after recovery");
    assert.equal(events(got)[0]?.lease.attrs.publicIp.toString(), "10.0.0.3");
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets: aborting while the consumer is not pulling ends the watch cleanly", async () => {
  const { reg } = registry();
  const ac = new AbortController();
  try {
    const it = reg.watchSubnets(ac.signal)[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false); // the snapshot
    for (let i = 0; i < 20; i++)
      await reg.createSubnet(net(`10.8.${i}.0/24`), null, attrs("10.0.0.1"), 86400);
    ac.abort();
    // Whatever was pending may still come out; then the iteration ends.
    for (let r = await it.next(); !r.done; r = await it.next()) {
      assert.ok(Array.isArray(r.value));
    }
  } finally {
    ac.abort();
    reg.close();
  }
});

test("watchSubnets survives a restart followed by a compaction (resumes from a fresh snapshot or events)", async () => {
  const own = await startEtcd();
  const logger = new MemoryLogger();
  const reg = new EtcdRegistry({ endpoints: [own.endpoint], prefix: "/coreos.com/network", logger });
  const ac = new AbortController();
  const got: LeaseWatchResult[][] = [];
  try {
    const done = collect(reg.watchSubnets(ac.signal), got);
    await waitFor(() => snapshots(got).length === 1, 10_000, "the snapshot");
    await own.kill();
    await own.start();
    for (let i = 0; i < 5; i++) {
      own.etcdctl([
        "put",
        `/coreos.com/network/subnets/10.9.${i}.0-24`,
        '{"PublicIP":"10.0.0.2","PublicIPv6":null}',
      ]);
    }
    own.etcdctl(["del", "/coreos.com/network/subnets/10.9.0.0-24"]);
    await own.compact();
    own.etcdctl([
      "put",
      "/coreos.com/network/subnets/10.9.9.0-24",
      '{"PublicIP":"10.0.0.9","PublicIPv6":null}',
    ]);
    // Replay the stream into a set of known subnets: it must end as exactly what etcd holds.
    const state = (): string[] => {
      const s = new Set<string>();
      for (const r of got.flat()) {
        if ("snapshot" in r) {
          s.clear();
          for (const l of r.snapshot) s.add(String(l.subnet));
        } else {
          for (const e of r.events) {
            if (e.type === "added") s.add(String(e.lease.subnet));
            else s.delete(String(e.lease.subnet));
          }
        }
      }
      return [...s].sort();
    };
    await waitFor(
      () => state().join() === "10.9.1.0/24,10.9.2.0/24,10.9.3.0/24,10.9.4.0/24,10.9.9.0/24",
      30_000,
      `the watched state to match etcd (have ${state().join()})`,
    );
    ac.abort();
    await done;
  } finally {
    ac.abort();
    reg.close();
    await own.stop();
  }
});
