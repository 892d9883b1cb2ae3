// EtcdClient (src/subnet/etcd/client) against a real etcd 3.4, cross-checked with etcdctl: every call
// flanneld makes, int64 lease IDs, watches (events, compaction, cancel), auth with token renewal, TLS,
// failover across endpoints, and the errors an operator sees.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { EtcdClient, GrpcError, Status, type WatchResponse } from "../../src/subnet/etcd/client/client.ts";
import { generateTestCerts, mutualTls, startEtcd, type EtcdServer } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/netns.ts";
import { readFileSync } from "node:fs";

let etcd: EtcdServer;
let n = 0;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

const b = (s: string): Buffer => Buffer.from(s);
const soon = (ms = 5000): number => Date.now() + ms;
function prefix(): string {
  n += 1;
  return `/c${n}/`;
}
function prefixEnd(p: string): Buffer {
  const e = Buffer.from(p);
  e[e.length - 1] = (e[e.length - 1] as number) + 1;
  return e;
}

test("put, range, txn create-if-absent and deleteRange match what etcdctl sees", async () => {
  const c = new EtcdClient({ endpoints: [etcd.endpoint] });
  const p = prefix();
  try {
    const put = await c.put({ key: b(`${p}a`), value: b("1") }, soon());
    assert.ok(put.revision > 0);
    assert.equal(etcd.etcdctl(["get", `${p}a`, "--print-value-only"]).trim(), "1");
    etcd.etcdctl(["put", `${p}b`, "two"]);
    const r = await c.range({ key: b(p), rangeEnd: prefixEnd(p) }, soon());
    assert.deepEqual(
      r.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.version, kv.lease]),
      [
        [`${p}a`, "1", 1, "0"],
        [`${p}b`, "two", 1, "0"],
      ],
    );
    assert.equal(r.count, 2);
    assert.equal(r.revision, etcd.revision());
    assert.equal(r.kvs[1]?.modRevision, r.revision);

    const cmp = (key: string) => ({
      compare: [{ key: b(key), versionEquals: 0 }],
      success: [{ key: b(key), value: b("new") }],
    });
    assert.equal((await c.txn(cmp(`${p}a`), soon())).succeeded, false);
    assert.equal(etcd.etcdctl(["get", `${p}a`, "--print-value-only"]).trim(), "1");
    assert.equal((await c.txn(cmp(`${p}c`), soon())).succeeded, true);
    assert.equal(etcd.etcdctl(["get", `${p}c`, "--print-value-only"]).trim(), "new");

    await c.deleteRange({ key: b(`${p}a`) }, soon());
    assert.equal((await c.range({ key: b(`${p}a`) }, soon())).kvs.length, 0);
    await c.deleteRange({ key: b(`${p}a`) }, soon()); // already gone: fine

    // One transaction that deletes two keys and writes a third.
    const t = await c.txn(
      {
        compare: [],
        success: [{ deleteKey: b(`${p}b`) }, { deleteKey: b(`${p}c`) }, { key: b(`${p}d`), value: b("4") }],
      },
      soon(),
    );
    assert.equal(t.succeeded, true);
    assert.equal(etcd.etcdctl(["get", p, "--prefix", "--keys-only"]).trim(), `${p}d`);
  } finally {
    c.close();
  }
});

test("leases: 63-bit IDs round-trip, keys carry them, TimeToLive and revoke", async () => {
  const c = new EtcdClient({ endpoints: [etcd.endpoint] });
  const p = prefix();
  try {
    const l = await c.leaseGrant(600, soon());
    assert.equal(l.ttlSec, 600);
    assert.match(l.id, /^[1-9]\d*$/);
    const listed = etcd.etcdctl(["lease", "list"]);
    assert.ok(listed.includes(BigInt(l.id).toString(16)), `etcdctl lease list shows ${l.id}: ${listed}`);
    await c.put({ key: b(`${p}k`), value: b("v"), lease: l.id }, soon());
    const kv = (await c.range({ key: b(`${p}k`) }, soon())).kvs[0];
    assert.equal(kv?.lease, l.id);
    const json = etcd.etcdctl(["get", `${p}k`, "-w", "json"]);
    assert.equal(/"lease":(\d+)/.exec(json)?.[1], l.id);
    const ttl = await c.leaseTimeToLive(l.id, soon());
    assert.ok(ttl.ttlSec > 590 && ttl.ttlSec <= 600, String(ttl.ttlSec));
    await c.leaseRevoke(l.id, soon());
    assert.equal((await c.range({ key: b(`${p}k`) }, soon())).kvs.length, 0);
    assert.equal((await c.leaseTimeToLive(l.id, soon())).ttlSec, -1);
    await assert.rejects(c.leaseRevoke(l.id, soon()), (e: unknown) => {
      assert.ok(e instanceof GrpcError);
      assert.equal(e.code, 5); // NOT_FOUND
      assert.match(e.message, /requested lease not found/);
      return true;
    });
  } finally {
    c.close();
  }
});

test("watch: created, then puts and deletes in order, from a past revision too; cancel ends it quietly", async () => {
  const c = new EtcdClient({ endpoints: [etcd.endpoint] });
  const p = prefix();
  const got: WatchResponse[] = [];
  let ended: GrpcError | null | undefined;
  try {
    const first = await c.put({ key: b(`${p}0`), value: b("before") }, soon());
    const w = await c.watch(
      { key: b(p), rangeEnd: prefixEnd(p), startRevision: first.revision },
      { onResponse: (r) => got.push(r), onEnd: (e) => (ended = e) },
      soon(),
    );
    for (let i = 1; i <= 50; i++) etcd.etcdctl(["put", `${p}${i}`, `v${i}`]);
    etcd.etcdctl(["del", `${p}7`]);
    const evs = () => got.flatMap((r) => r.events);
    await waitFor(() => evs().length === 52, 20_000, "52 events");
    assert.ok(got[0]?.created);
    assert.deepEqual(evs()[0] && [evs()[0]?.type, evs()[0]?.kv.value.toString()], ["Put", "before"]);
    assert.equal(evs()[50]?.kv.value.toString(), "v50");
    assert.deepEqual([evs()[51]?.type, evs()[51]?.kv.key.toString()], ["Delete", `${p}7`]);
    const revs = evs().map((e) => e.kv.modRevision);
    assert.deepEqual(
      revs,
      [...revs].sort((x, y) => x - y),
    );
    w.cancel();
    etcd.etcdctl(["put", `${p}after`, "x"]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(evs().length, 52);
    assert.equal(ended, undefined, "no end is reported after cancel()");
  } finally {
    c.close();
  }
});

test("watch from a compacted revision: etcd cancels it with compact_revision", async () => {
  const c = new EtcdClient({ endpoints: [etcd.endpoint] });
  const p = prefix();
  try {
    const old = await c.put({ key: b(`${p}x`), value: b("1") }, soon());
    await c.put({ key: b(`${p}x`), value: b("2") }, soon());
    const compacted = await etcd.compact();
    const got: WatchResponse[] = [];
    let ended: GrpcError | null | undefined;
    const w = await c.watch(
      { key: b(p), rangeEnd: prefixEnd(p), startRevision: old.revision },
      { onResponse: (r) => got.push(r), onEnd: (e) => (ended = e) },
      soon(),
    );
    await waitFor(() => got.some((r) => r.canceled), 10_000, "the cancel");
    const cancel = got.find((r) => r.canceled);
    assert.equal(cancel?.compactRevision, compacted);
    w.cancel();
    assert.equal(ended, undefined);
  } finally {
    c.close();
  }
});

test("an unreachable etcd fails fast with the endpoint and the cause; a dead endpoint is skipped", async () => {
  const dead = await startEtcd();
  const deadEndpoint = dead.endpoint;
  await dead.stop();
  const c1 = new EtcdClient({ endpoints: [deadEndpoint] });
  try {
    await assert.rejects(c1.range({ key: b("/x") }, soon()), (e: unknown) => {
      assert.ok(e instanceof GrpcError);
      assert.equal(e.code, Status.UNAVAILABLE);
      assert.equal(e.connectFailed, true);
      assert.match(e.message, /ECONNREFUSED/);
      assert.equal(e.endpoint, deadEndpoint);
      return true;
    });
    await assert.rejects(
      c1.watch(
        { key: b("/x"), startRevision: 0 },
        { onResponse: () => undefined, onEnd: () => undefined },
        soon(),
      ),
      (e: unknown) => e instanceof GrpcError && e.connectFailed,
    );
  } finally {
    c1.close();
  }
  const c2 = new EtcdClient({ endpoints: [deadEndpoint, etcd.endpoint] });
  try {
    const p = prefix();
    await c2.put({ key: b(`${p}k`), value: b("v") }, soon());
    assert.equal((await c2.range({ key: b(`${p}k`) }, soon())).kvs.length, 1);
    const got: WatchResponse[] = [];
    const w = await c2.watch(
      { key: b(`${p}k`), startRevision: 0 },
      { onResponse: (r) => got.push(r), onEnd: () => undefined },
      soon(),
    );
    etcd.etcdctl(["put", `${p}k`, "w"]);
    await waitFor(() => got.some((r) => r.events.length > 0), 10_000, "the event");
    w.cancel();
  } finally {
    c2.close();
  }
});

test("a call past its deadline fails with DEADLINE_EXCEEDED", async () => {
  const c = new EtcdClient({ endpoints: [etcd.endpoint] });
  try {
    await assert.rejects(c.range({ key: b("/x") }, Date.now() - 1), { code: Status.DEADLINE_EXCEEDED });
    // The client still works afterwards.
    await c.range({ key: b("/x") }, soon());
  } finally {
    c.close();
  }
});

test("a watch survives nothing by itself: etcd stopping ends it with UNAVAILABLE (the registry resumes)", async () => {
  const own = await startEtcd();
  const c = new EtcdClient({ endpoints: [own.endpoint] });
  try {
    let ended: GrpcError | null | undefined;
    await c.watch(
      { key: b("/k"), startRevision: 0 },
      { onResponse: () => undefined, onEnd: (e) => (ended = e) },
      soon(),
    );
    await own.kill();
    await waitFor(() => ended !== undefined, 20_000, "the end of the watch");
    assert.ok(ended instanceof GrpcError);
    await own.start();
    // The next call reconnects.
    await c.put({ key: b("/k"), value: b("v") }, soon(10_000));
  } finally {
    c.close();
    await own.stop();
  }
});

test("auth: calls carry a token; a wrong password is refused; a revoked token is renewed", async () => {
  const own = await startEtcd({ extraArgs: ["--auth-token", "simple"] });
  const password = "pw-Secret-123";
  const user = { user: `root:${password}` };
  try {
    own.etcdctl(["user", "add", `root:${password}`]);
    own.etcdctl(["auth", "enable"]);
    const c = new EtcdClient({ endpoints: [own.endpoint], auth: { username: "root", password } });
    try {
      await c.put({ key: b("/a/k"), value: b("v") }, soon());
      assert.equal(own.etcdctl(["get", "/a/k", "--print-value-only"], user).trim(), "v");
      // Disabling and re-enabling auth drops every simple token: the client must authenticate again.
      own.etcdctl(["auth", "disable"], user);
      own.etcdctl(["auth", "enable"]);
      assert.equal((await c.range({ key: b("/a/k") }, soon())).kvs.length, 1);
    } finally {
      c.close();
    }
    const bad = new EtcdClient({ endpoints: [own.endpoint], auth: { username: "root", password: "nope" } });
    try {
      await assert.rejects(bad.range({ key: b("/a/k") }, soon()), (e: unknown) => {
        assert.ok(e instanceof GrpcError);
        assert.equal(e.code, Status.INVALID_ARGUMENT);
        assert.match(e.message, /authentication failed/);
        return true;
      });
    } finally {
      bad.close();
    }
    const none = new EtcdClient({ endpoints: [own.endpoint] });
    try {
      await assert.rejects(none.range({ key: b("/a/k") }, soon()), (e: unknown) => {
        assert.ok(e instanceof GrpcError);
        assert.match(e.message, /user name is empty|permission denied/);
        return true;
      });
    } finally {
      none.close();
    }
  } finally {
    await own.stop();
  }
});

test("TLS with a client certificate; without one the server refuses", async (t) => {
  const certs = generateTestCerts();
  if (!certs) {
    t.skip("openssl is not installed");
    return;
  }
  const own = await startEtcd({ tls: mutualTls(certs) });
  try {
    const tls = {
      ca: readFileSync(certs.caFile),
      cert: readFileSync(certs.clientCertFile),
      key: readFileSync(certs.clientKeyFile),
    };
    const c = new EtcdClient({ endpoints: [own.endpoint], tls });
    try {
      await c.put({ key: b("/tls/k"), value: b("v") }, soon());
      assert.equal((await c.range({ key: b("/tls/k") }, soon())).kvs[0]?.value.toString(), "v");
    } finally {
      c.close();
    }
    const plain = new EtcdClient({ endpoints: [own.endpoint.replace("https:", "http:")] });
    try {
      await assert.rejects(plain.range({ key: b("/tls/k") }, soon(3000)), GrpcError);
    } finally {
      plain.close();
    }
  } finally {
    await own.stop();
    certs.cleanup();
  }
});
