import assert from "node:assert/strict";
import { request } from "node:http";
import { test } from "node:test";
import { FakeSubnetManager } from "../backend/fake-subnet-manager.ts";
import { startHealthz } from "../cli/healthz.ts";
import { IpAddr } from "../ip/addr.ts";
import { IpNet } from "../ip/net.ts";
import { FakeKernel } from "../kernel/fake-kernel.ts";
import type { Lease } from "../lease/lease.ts";
import { MemoryLogger } from "../log/logger.ts";
import { createMetrics, instrumentKernel, instrumentSubnetManager } from "./metrics.ts";
import { Registry } from "./registry.ts";

test("the registry renders counters, gauges and histograms in the Prometheus text format", () => {
  const r = new Registry();
  const c = r.counter("x_total", "Things\nhappened", ["kind"]);
  const g = r.gauge("y", "A level");
  const h = r.histogram("z_seconds", "Durations", [0.1, 1], ["loop"]);
  c.inc({ kind: "b" });
  c.inc({ kind: 'a"q' }, 2);
  g.set(7);
  h.observe(0.05, { loop: "v" });
  h.observe(0.5, { loop: "v" });
  h.observe(3, { loop: "v" });
  assert.equal(
    r.render(),
    [
      "# HELP x_total Things\\nhappened",
      "# TYPE x_total counter",
      'x_total{kind="a\\"q"} 2',
      'x_total{kind="b"} 1',
      "# HELP y A level",
      "# TYPE y gauge",
      "y 7",
      "# HELP z_seconds Durations",
      "# TYPE z_seconds histogram",
      'z_seconds_bucket{loop="v",le="0.1"} 1',
      'z_seconds_bucket{loop="v",le="1"} 2',
      'z_seconds_bucket{loop="v",le="+Inf"} 3',
      'z_seconds_sum{loop="v"} 3.55',
      'z_seconds_count{loop="v"} 3',
      "",
    ].join("\n"),
  );
});

test("the registry rejects wrong labels, negative increments and duplicate names", () => {
  const r = new Registry();
  const c = r.counter("a_total", "a", ["op"]);
  assert.throws(() => c.inc({}), /takes labels \[op\]/);
  assert.throws(() => c.inc({ op: "x", other: "y" }), /takes labels/);
  assert.throws(() => c.inc({ op: "x" }, -1), /cannot decrease/);
  assert.throws(() => r.gauge("a_total", "again"), /already registered/);
  assert.throws(() => r.gauge("bad name", "x"), /Invalid metric name/);
});

test("a bound series counts into the same series as inc(labels), and appears only once it has counted", () => {
  const r = new Registry();
  const c = r.counter("b_total", "b", ["op"]);
  const h = r.histogram("d_seconds", "d", [0.1, 1], ["loop"]);
  const x = c.labels({ op: "x" });
  const unused = c.labels({ op: "never" });
  const hv = h.labels({ loop: "v" });
  h.labels({ loop: "never" });
  assert.equal(r.render().includes("never"), false);
  x.inc();
  c.inc({ op: "x" }, 2);
  x.inc(3);
  assert.equal(c.get({ op: "x" }), 6);
  hv.observe(0.05);
  h.observe(0.5, { loop: "v" });
  assert.equal(h.count({ loop: "v" }), 2);
  assert.match(r.render(), /^d_seconds_bucket\{loop="v",le="0\.1"\} 1$/m);
  assert.match(r.render(), /^d_seconds_bucket\{loop="v",le="1"\} 2$/m);
  assert.equal(r.render().includes("never"), false);
  assert.throws(() => c.labels({}), /takes labels \[op\]/);
  assert.throws(() => c.labels({ op: "x", other: "y" }), /takes labels/);
  assert.throws(() => x.inc(-1), /cannot decrease/);
  assert.equal(c.get({ op: "x" }), 6);
  unused.inc(0);
  assert.match(r.render(), /^b_total\{op="never"\} 0$/m);
});

test("instrumentKernel counts kernel writes and failures, not reads", () => {
  const m = createMetrics();
  const k = instrumentKernel(new FakeKernel(), m);
  instrumentKernel(k, m); // a second wrap must not double-count
  k.addVeth("eth0", { up: true, addrs: ["192.168.1.2/24"] });
  const eth0 = k.links.get("eth0");
  assert.ok(eth0);
  k.routes.replace({ family: 4, dst: IpNet.parse("10.1.0.0/24"), linkIndex: eth0.index });
  k.routes.list({ family: 4 });
  k.fail("routes.replace", "ENETUNREACH");
  assert.throws(() =>
    k.routes.replace({ family: 4, dst: IpNet.parse("10.2.0.0/24"), linkIndex: eth0.index }),
  );
  assert.equal(m.kernelOps.get({ op: "routes.replace" }), 2);
  assert.equal(m.kernelFailures.get({ op: "routes.replace" }), 1);
  assert.equal(m.kernelOps.get({ op: "routes.delete" }), 0);
  assert.match(m.render(), /flannel_kernel_operations_total\{op="routes.replace"\} 2/);

  // Batched writes count once each, with the same labels, whether or not the batch uses the port methods.
  const gw = IpNet.parse("10.3.0.0/24");
  k.fail("routes.replace", "ENETUNREACH");
  const res = k.batch?.([
    { op: "route-replace", route: { family: 4, dst: gw, linkIndex: eth0.index } },
    { op: "route-replace", route: { family: 4, dst: IpNet.parse("10.4.0.0/24"), linkIndex: eth0.index } },
  ]);
  assert.equal(res?.length, 2);
  assert.equal(m.kernelOps.get({ op: "routes.replace" }), 4);
  assert.equal(m.kernelFailures.get({ op: "routes.replace" }), 2);
});

function lease(subnet: string, expiresAt: Date | null = null): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.parse("192.168.1.1"), publicIpv6: null, backendType: "vxlan" },
    expiration: expiresAt,
    asof: 0,
  };
}

test("instrumentSubnetManager counts events, other nodes' leases and the own lease's expiry", async () => {
  const m = createMetrics();
  const own = lease("10.244.1.0/24", new Date(1_800_000_000_000));
  const fake = new FakeSubnetManager({ lease: own });
  const sm = instrumentSubnetManager(fake, m);
  await sm.acquireLease(own.attrs, new AbortController().signal);
  assert.equal(m.leaseExpiry.get(), 1_800_000_000);

  const ac = new AbortController();
  const seen: number[] = [];
  const done = (async () => {
    for await (const batch of sm.watchLeases(ac.signal)) {
      seen.push(batch.length);
      if (seen.length === 2) ac.abort();
    }
  })();
  await fake.push({ snapshot: [own, lease("10.244.2.0/24"), lease("10.244.3.0/24")] });
  void fake.push({
    events: [
      { type: "removed", lease: lease("10.244.2.0/24") },
      { type: "added", lease: lease("10.244.1.0/24", new Date(1_900_000_000_000)) },
    ],
  });
  await done;
  assert.equal(m.leases.get(), 1);
  assert.equal(m.leaseEvents.get({ type: "snapshot" }), 1);
  assert.equal(m.leaseEvents.get({ type: "removed" }), 1);
  assert.equal(m.leaseEvents.get({ type: "added" }), 1);
  assert.equal(m.leaseExpiry.get(), 1_900_000_000, "a renewal seen on the watch moves the expiry");
});

test("the healthz server serves /metrics when given metrics, and 404 without", async () => {
  const m = createMetrics();
  m.countRepair("fdb");
  const get = (port: number, path: string): Promise<{ status: number; type: string; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }),
        );
      });
      req.on("error", reject);
      req.end();
    });
  const withMetrics = await startHealthz({
    ip: "127.0.0.1",
    port: 0,
    isReady: () => true,
    logger: new MemoryLogger(),
    metrics: m,
  });
  const without = await startHealthz({
    ip: "127.0.0.1",
    port: 0,
    isReady: () => true,
    logger: new MemoryLogger(),
  });
  try {
    const r = await get(withMetrics.port, "/metrics");
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    assert.match(r.body, /^flannel_repairs_total\{kind="fdb"\} 1$/m);
    assert.equal((await get(without.port, "/metrics")).status, 404);
  } finally {
    await withMetrics.close();
    await without.close();
  }
});
