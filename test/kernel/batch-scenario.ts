// The batched-write contract scenario: the same writes go through `applyWrites` on FakeKernel (in-process)
// and on the netlink kernel (as a script inside a fresh namespace), and both print the same JSON: the
// error of every write and the resulting entries. More writes than one netlink chunk (128) are sent, with
// failing writes in the middle and at the end of chunks, so chunking and mapping each answer back to its
// write are both exercised.
//
// Precondition (both kernels): eth0 is up with 10.0.0.1/24.
// With BENCH=1 the netlink run also times 3000 writes batched and one by one (not part of the comparison).

import { pathToFileURL } from "node:url";

import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { applyWrites, applyWritesOneByOne } from "../../src/kernel/batch.ts";
import { KernelError, type Kernel, type KernelWrite } from "../../src/kernel/ports.ts";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const PEERS = 200;

function peerWrites(dev: number, from: number, to: number, del: boolean): KernelWrite[] {
  const out: KernelWrite[] = [];
  for (let i = from; i < to; i++) {
    const sn = IpNet.parse(`10.${200 + Math.floor(i / 250)}.${i % 250}.0/24`);
    const mac = `0e:2a:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
    const dst = IpAddr.parse(`10.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`);
    const route = { family: 4 as const, dst: sn, gw: sn.ip, linkIndex: dev, onlink: true };
    if (del) {
      out.push({ op: "route-delete", route });
      out.push({ op: "fdb-delete", fdb: { linkIndex: dev, mac, dst } });
      out.push({ op: "neigh-delete", neighbour: { linkIndex: dev, ip: sn.ip } });
    } else {
      out.push({ op: "neigh-replace", neighbour: { linkIndex: dev, ip: sn.ip, mac } });
      out.push({ op: "fdb-replace", fdb: { linkIndex: dev, mac, dst } });
      out.push({ op: "route-replace", route });
    }
  }
  return out;
}

export function runBatchScenario(k: Kernel, opts: { bench?: boolean } = {}): Record<string, Json> {
  const out: Record<string, Json> = {};
  const eth0 = k.links.get("eth0");
  if (!eth0) throw new Error("Scenario precondition: eth0 must exist");
  const dev = k.links.addVxlan({
    name: "flannel.1",
    vni: 1,
    local: IpAddr.parse("10.0.0.1"),
    vtepIndex: eth0.index,
    port: 0,
    learning: false,
    gbp: false,
  }).index;
  k.links.setUp("flannel.1");
  const errs = (list: (Error | undefined)[]): Json =>
    list.flatMap((e, i) =>
      e === undefined ? [] : [`${i}: ${e instanceof KernelError ? e.errno : e.message}`],
    );
  const state = (): Json => ({
    routes: k.routes
      .list({ family: 4 })
      .filter((r) => r.linkIndex === dev)
      .map(
        (r) => `${r.dst?.toString() ?? "default"} via ${r.gw?.toString() ?? "-"} onlink ${r.onlink === true}`,
      )
      .sort(),
    neigh: k.neighbours
      .list({ family: 4, linkIndex: dev })
      .map((n) => `${n.ip.toString()} ${n.mac} ${n.state}`)
      .sort(),
    fdb: k.fdb
      .list({ linkIndex: dev })
      .filter((e) => e.dst !== null)
      .map((e) => `${e.mac} ${e.dst?.toString() ?? "-"}`)
      .sort(),
  });

  // 1. Adds of 200 peers (600 writes), with writes that fail and writes that succeed on absence between.
  const adds = peerWrites(dev, 0, PEERS, false);
  const bad: KernelWrite[] = [
    {
      op: "neigh-replace",
      neighbour: { linkIndex: 9999, ip: IpAddr.parse("10.9.9.9"), mac: "0e:00:00:00:00:01" },
    },
    { op: "route-delete", route: { family: 4, dst: IpNet.parse("10.99.0.0/24") } },
    { op: "fdb-delete", fdb: { linkIndex: dev, mac: "0e:00:00:00:00:99", dst: IpAddr.parse("10.0.9.9") } },
    { op: "neigh-delete", neighbour: { linkIndex: dev, ip: IpAddr.parse("10.99.0.0") } },
  ];
  out.addErrors = errs(applyWrites(k, [...adds.slice(0, 250), ...bad, ...adds.slice(250)]));
  out.afterAdds = state();
  // 2. The first 150 peers leave; deleting them twice shows deletes succeed on absence in a batch too.
  const dels = peerWrites(dev, 0, 150, true);
  out.delErrors = errs(applyWrites(k, [...dels, ...dels]));
  out.afterDeletes = state();
  // 3. The batch and the one-by-one path agree on the same writes.
  out.oneByOneErrors = errs(applyWritesOneByOne(k, [...bad, ...peerWrites(dev, 150, PEERS, true)]));
  out.afterAll = state();
  // 4. Failures where a chunk ends (its last request is the one the netlink kernel asks an ack for), a
  //    chunk that fails entirely, and a failing last write: 42 peers (126 writes), 130 failures, 8 peers
  //    (24 writes), one failure.
  const fail = bad[0]!;
  const edge = [
    ...peerWrites(dev, 0, 42, false),
    ...Array.from({ length: 130 }, () => fail),
    ...peerWrites(dev, 42, 50, false),
    fail,
  ];
  out.edgeErrors = errs(applyWrites(k, edge));
  out.afterEdge = state();
  out.edgeDelErrors = errs(applyWrites(k, peerWrites(dev, 0, 50, true)));

  if (opts.bench === true) {
    const many = peerWrites(dev, 0, 1000, false);
    const t0 = process.hrtime.bigint();
    applyWritesOneByOne(k, many);
    const t1 = process.hrtime.bigint();
    applyWrites(k, peerWrites(dev, 0, 1000, true));
    applyWrites(k, many);
    const t2 = process.hrtime.bigint();
    out.bench = {
      oneByOneUsPerWrite: Number(t1 - t0) / 1e3 / many.length,
      batchedUsPerWrite: Number(t2 - t1) / 1e3 / (2 * many.length),
    };
  }
  k.links.delete("flannel.1");
  return out;
}

// As a script: run on the netlink kernel of the current namespace, print the JSON.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { createNetlinkKernel } = await import("../../src/kernel/netlink/netlink-kernel.ts");
  const k = createNetlinkKernel();
  try {
    process.stdout.write(JSON.stringify(runBatchScenario(k, { bench: process.env.BENCH === "1" })) + "\n");
  } finally {
    k.close();
  }
}
