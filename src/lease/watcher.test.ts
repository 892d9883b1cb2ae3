import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../ip/addr.ts";
import { IpNet } from "../ip/net.ts";
import { MemoryLogger } from "../log/logger.ts";
import type { SubnetManager } from "../subnet/manager.ts";
import type { Lease, LeaseEvent, LeaseWatchResult } from "./lease.ts";
import { LeaseWatcher, sameSubnet, watchLeaseBatches } from "./watcher.ts";
import { seededRandom } from "../../test/helpers/random.ts";

function lease(opts: {
  v4?: string;
  v6?: string;
  ip?: string;
  flags?: "v4" | "v6" | "dual" | "none";
}): Lease {
  const flags = opts.flags ?? (opts.v4 && opts.v6 ? "dual" : opts.v6 ? "v6" : "v4");
  return {
    enableIpv4: flags === "v4" || flags === "dual",
    enableIpv6: flags === "v6" || flags === "dual",
    subnet: opts.v4 === undefined ? null : IpNet.parse(opts.v4),
    ipv6Subnet: opts.v6 === undefined ? null : IpNet.parse(opts.v6),
    attrs: {
      publicIp: IpAddr.parse(opts.ip ?? "192.168.0.1"),
      publicIpv6: null,
      backendType: "vxlan",
    },
    expiration: null,
    asof: 0,
  };
}

/** Events as "added 10.244.2.0/24@192.168.0.2" lines, so failures read well. */
function show(events: LeaseEvent[]): string[] {
  return events.map(
    (e) =>
      `${e.type} ${String(e.lease.subnet ?? "-")} ${String(e.lease.ipv6Subnet ?? "-")}@${e.lease.attrs.publicIp.toString()}`,
  );
}

const own = lease({ v4: "10.244.1.0/24" });

test("reset reports new leases as added, ignores the own subnet, and reports vanished ones as removed", () => {
  const w = new LeaseWatcher(own, new MemoryLogger());
  const a = lease({ v4: "10.244.2.0/24", ip: "192.168.0.2" });
  const b = lease({ v4: "10.244.3.0/24", ip: "192.168.0.3" });
  assert.deepEqual(show(w.reset([own, a, b])), [
    "added 10.244.2.0/24 -@192.168.0.2",
    "added 10.244.3.0/24 -@192.168.0.3",
  ]);
  // Second snapshot: a stays (no event), b gone, c new. The own lease is never reported as removed.
  const c = lease({ v4: "10.244.4.0/24", ip: "192.168.0.4" });
  assert.deepEqual(show(w.reset([own, a, c])), [
    "added 10.244.4.0/24 -@192.168.0.4",
    "removed 10.244.3.0/24 -@192.168.0.3",
  ]);
  assert.deepEqual(show(w.reset([])), [
    "removed 10.244.2.0/24 -@192.168.0.2",
    "removed 10.244.4.0/24 -@192.168.0.4",
  ]);
});

test("update upserts added leases and removal emits the stored lease with its attributes", () => {
  const log = new MemoryLogger();
  const w = new LeaseWatcher(own, log);
  const a1 = lease({ v4: "10.244.2.0/24", ip: "192.168.0.2" });
  const a2 = lease({ v4: "10.244.2.0/24", ip: "192.168.0.22" });
  assert.deepEqual(show(w.update([{ type: "added", lease: a1 }])), ["added 10.244.2.0/24 -@192.168.0.2"]);
  assert.deepEqual(show(w.update([{ type: "added", lease: a2 }])), ["added 10.244.2.0/24 -@192.168.0.22"]);
  assert.equal(w.known().length, 1);
  // etcd deletions carry no attributes: the watcher must hand back what it stored.
  const bare = lease({ v4: "10.244.2.0/24", ip: "0.0.0.0" });
  assert.deepEqual(show(w.update([{ type: "removed", lease: bare }])), [
    "removed 10.244.2.0/24 -@192.168.0.22",
  ]);
  assert.equal(w.known().length, 0);
  assert.deepEqual(log.lines, []);
});

test("removal of an unknown lease logs upstream's line and emits the event's lease", () => {
  const log = new MemoryLogger();
  const w = new LeaseWatcher(own, log);
  const ghost = lease({ v4: "10.244.9.0/24", ip: "192.168.0.9" });
  assert.deepEqual(show(w.update([{ type: "removed", lease: ghost }])), [
    "removed 10.244.9.0/24 -@192.168.0.9",
  ]);
  assert.deepEqual(log.lines, ["E Removed subnet (10.244.9.0/24) and ipv6 subnet (<nil>) were not found"]);
});

test("events about the own subnet are ignored, by the event lease's flags", () => {
  const ownDual = lease({ v4: "10.244.1.0/24", v6: "fd00:1::/64" });
  const w = new LeaseWatcher(ownDual, new MemoryLogger());
  // v4-only lease with our v4 subnet: ours.
  assert.deepEqual(w.update([{ type: "added", lease: lease({ v4: "10.244.1.0/24" }) }]), []);
  // v6-only lease with our v6 subnet: ours.
  assert.deepEqual(w.update([{ type: "added", lease: lease({ v6: "fd00:1::/64" }) }]), []);
  // dual-stack lease with our v4 subnet but another v6 subnet: not ours.
  assert.equal(
    w.update([{ type: "added", lease: lease({ v4: "10.244.1.0/24", v6: "fd00:2::/64" }) }]).length,
    1,
  );
  // legacy lease with neither flag: compared by v4 subnet.
  assert.deepEqual(w.update([{ type: "added", lease: lease({ v4: "10.244.1.0/24", flags: "none" }) }]), []);
});

test("same subnet matching by family: v6-only leases are matched by their v6 subnet", () => {
  const w = new LeaseWatcher(lease({ v6: "fd00:1::/64" }), new MemoryLogger());
  w.update([{ type: "added", lease: lease({ v6: "fd00:2::/64", ip: "192.168.0.2" }) }]);
  w.update([{ type: "added", lease: lease({ v6: "fd00:2::/64", ip: "192.168.0.3" }) }]);
  assert.equal(w.known().length, 1);
  assert.deepEqual(
    show(w.update([{ type: "removed", lease: lease({ v6: "fd00:2::/64", ip: "0.0.0.0" }) }])),
    ["removed - fd00:2::/64@192.168.0.3"],
  );
});

test("watchLeaseBatches merges one pull into one batch and logs each element", async () => {
  const pulls: LeaseWatchResult[][] = [
    [
      { snapshot: [own, lease({ v4: "10.244.2.0/24" })] },
      { events: [{ type: "added", lease: lease({ v4: "10.244.3.0/24" }) }] },
    ],
    [{ events: [{ type: "added", lease: own }] }], // only our own lease: no batch
    [{ events: [{ type: "removed", lease: lease({ v4: "10.244.2.0/24" }) }] }],
  ];
  const sm = {
    async *watchLeases() {
      yield* pulls;
    },
  } as unknown as SubnetManager;
  const log = new MemoryLogger();
  const batches: string[][] = [];
  for await (const b of watchLeaseBatches(sm, own, log, new AbortController().signal)) batches.push(show(b));
  assert.deepEqual(batches, [
    ["added 10.244.2.0/24 -@192.168.0.1", "added 10.244.3.0/24 -@192.168.0.1"],
    ["removed 10.244.2.0/24 -@192.168.0.1"],
  ]);
  assert.equal(log.lines.filter((l) => l.startsWith("I Batch elem [")).length, 3);
  assert.match(
    log.lines[0] ?? "",
    /^I Batch elem \[0\] is \{ lease\.Event\{Type:added, .*Subnet:10\.244\.2\.0\/24/,
  );
});

test("watchLeaseBatches yields an empty batch for a snapshot of only our own lease, not for our own event", async () => {
  const pulls: LeaseWatchResult[][] = [
    [{ snapshot: [own] }], // a cluster of one: the backend still learns that the start-up state is complete
    [{ events: [{ type: "added", lease: own }] }],
    [{ snapshot: [own] }], // a re-list after a reconnect that changed nothing
  ];
  const sm = {
    async *watchLeases() {
      yield* pulls;
    },
  } as unknown as SubnetManager;
  const batches: string[][] = [];
  for await (const b of watchLeaseBatches(sm, own, new MemoryLogger(), new AbortController().signal))
    batches.push(show(b));
  assert.deepEqual(batches, [[], []]);
});

/** The linear-scan watcher the index replaced: the reference its results must equal. */
class LinearWatcher {
  leases: Lease[] = [];
  constructor(private readonly own: Lease) {}
  private isOwn(l: Lease): boolean {
    return sameSubnet(l.enableIpv4, l.enableIpv6, this.own, l);
  }
  private find(l: Lease): number {
    return this.leases.findIndex((o) => sameSubnet(o.enableIpv4, o.enableIpv6, o, l));
  }
  reset(snapshot: readonly Lease[]): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    const previous = [...this.leases];
    const next: Lease[] = [];
    for (const nl of snapshot) {
      if (this.isOwn(nl)) continue;
      next.push(nl);
      const i = previous.findIndex((o) => sameSubnet(o.enableIpv4, o.enableIpv6, o, nl));
      if (i === -1) out.push({ type: "added", lease: nl });
      else previous.splice(i, 1);
    }
    for (const l of previous) out.push({ type: "removed", lease: l });
    this.leases = next;
    return out;
  }
  update(events: readonly LeaseEvent[]): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    for (const e of events) {
      if (this.isOwn(e.lease)) continue;
      const i = this.find(e.lease);
      if (e.type === "added") {
        if (i === -1) this.leases.push(e.lease);
        else this.leases[i] = e.lease;
        out.push(e);
      } else {
        const stored = this.leases[i];
        if (stored !== undefined) this.leases.splice(i, 1);
        out.push({ type: "removed", lease: stored ?? e.lease });
      }
    }
    return out;
  }
}

test("the indexed watcher agrees with a linear scan on random mixed-family events and snapshots", () => {
  // A small subnet space with all four flag kinds makes collisions between families (a v4-only and a
  // dual-stack lease with the same v4 subnet, repeated subnets in a snapshot) frequent.
  const rnd = seededRandom(12345);
  const flagKinds = ["v4", "v6", "dual", "none"] as const;
  const random = (): Lease => {
    const flags = flagKinds[rnd(4)] ?? "v4";
    const v4 = rnd(5) === 0 ? undefined : `10.244.${rnd(6)}.0/24`;
    const v6 = rnd(5) === 0 ? undefined : `fd00:${rnd(6)}::/64`;
    return lease({
      flags,
      ip: `192.168.0.${rnd(250)}`,
      ...(v4 === undefined ? {} : { v4 }),
      ...(v6 === undefined ? {} : { v6 }),
    });
  };
  const ownL = lease({ v4: "10.244.0.0/24", v6: "fd00:0::/64" });
  for (let round = 0; round < 200; round++) {
    const w = new LeaseWatcher(ownL, new MemoryLogger());
    const ref = new LinearWatcher(ownL);
    for (let step = 0; step < 40; step++) {
      if (rnd(8) === 0) {
        const snap = Array.from({ length: rnd(8) }, random);
        assert.deepEqual(show(w.reset(snap)), show(ref.reset(snap)), `round ${round} step ${step} reset`);
      } else {
        const events: LeaseEvent[] = Array.from({ length: 1 + rnd(4) }, () => ({
          type: rnd(3) === 0 ? "removed" : "added",
          lease: random(),
        }));
        assert.deepEqual(show(w.update(events)), show(ref.update(events)), `round ${round} step ${step}`);
      }
      assert.deepEqual(
        show(w.known().map((l) => ({ type: "added", lease: l }))),
        show(ref.leases.map((l) => ({ type: "added" as const, lease: l }))),
      );
    }
  }
});

test("20,000 streamed leases are each found again by their subnet on removal", () => {
  // A removal must hand back the stored lease (not the bare event's) and log nothing for every one of them.
  const log = new MemoryLogger();
  const w = new LeaseWatcher(own, log);
  const all = Array.from({ length: 20_000 }, (_, i) =>
    lease({ v4: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`, ip: "192.168.0.2" }),
  );
  for (const l of all) w.update([{ type: "added", lease: l }]);
  assert.equal(w.known().length, 20_000);
  for (const l of all) {
    const [e] = w.update([{ type: "removed", lease: { ...l, attrs: { ...l.attrs } } }]);
    assert.ok(e?.lease === l, `removal of ${String(l.subnet)} did not return the stored lease`);
  }
  assert.equal(w.known().length, 0);
  assert.deepEqual(log.lines, []);
});
