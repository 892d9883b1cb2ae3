import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Netns, requireRoot } from "../../../test/helpers/netns.ts";
import { RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE } from "./codec.ts";
import { dropFilter } from "./socket.ts";

/** A classic BPF interpreter for the few instructions dropFilter emits; returns the accepted length. */
function runFilter(prog: ReturnType<typeof dropFilter>, packet: Buffer): number {
  let a = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const ins = prog[pc];
    assert.ok(ins !== undefined, `jump out of the program at ${pc}`);
    switch (ins.code) {
      case 0x20:
        a = packet.readUInt32BE(ins.k);
        break;
      case 0x28:
        a = packet.readUInt16BE(ins.k);
        break;
      case 0x15:
        pc += a === ins.k ? ins.jt : ins.jf;
        break;
      case 0x06:
        return ins.k;
      default:
        assert.fail(`unexpected BPF code ${ins.code}`);
    }
  }
  assert.fail("the program fell off its end");
}

function nlHeader(type: number, littleEndian: boolean, pid = 0): Buffer {
  const b = Buffer.alloc(16);
  if (littleEndian) {
    b.writeUInt16LE(type, 4);
    b.writeUInt32LE(pid, 12);
  } else {
    b.writeUInt16BE(type, 4);
    b.writeUInt32BE(pid, 12);
  }
  return b;
}

/** The environment of the child: marked as the child, and not a node:test subprocess (no test output). */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FTS_P_SOCKET_CHILD: "1" };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

const isChild = process.env.FTS_P_SOCKET_CHILD === "1";

if (!isChild)
  test("the drop filter discards exactly the listed message types, in either byte order", () => {
    for (const le of [true, false]) {
      const prog = dropFilter({ types: [RTM_NEWROUTE, RTM_NEWNEIGH] }, le);
      for (const t of [RTM_NEWROUTE, RTM_NEWNEIGH])
        assert.equal(runFilter(prog, nlHeader(t, le)), 0, `type ${t}`);
      for (const t of [RTM_DELROUTE, RTM_DELNEIGH, RTM_NEWLINK, 0x1800])
        assert.ok(runFilter(prog, nlHeader(t, le)) > 0, `type ${t} (${le ? "LE" : "BE"}) must pass`);
    }
  });

if (!isChild)
  test("the echo filter discards the listed types only from the listed port ids, in either byte order", () => {
    const ours = [0x12345678, 0x80001234]; // a process-id port and an autobind (negative) one
    for (const le of [true, false]) {
      const prog = dropFilter(
        { types: [RTM_NEWROUTE, RTM_NEWNEIGH], echoes: { types: [RTM_DELROUTE], portIds: ours } },
        le,
      );
      const verdict = (t: number, pid: number): number => runFilter(prog, nlHeader(t, le, pid));
      for (const pid of ours) {
        assert.equal(verdict(RTM_DELROUTE, pid), 0, `our delete (${pid}) must be dropped`);
        assert.ok(verdict(RTM_DELNEIGH, pid) > 0, "other types from our port pass");
        assert.ok(verdict(RTM_NEWLINK, pid) > 0, "other types from our port pass");
        assert.equal(verdict(RTM_NEWROUTE, pid), 0);
      }
      for (const pid of [0, 0x78563412, 0x12345679, 4242])
        assert.ok(verdict(RTM_DELROUTE, pid) > 0, `a deletion from port ${pid} must pass`);
      assert.equal(verdict(RTM_NEWNEIGH, 4242), 0);
      // Without port ids the echo part is left out entirely.
      assert.deepEqual(
        dropFilter({ types: [RTM_NEWROUTE], echoes: { types: [RTM_DELROUTE], portIds: [] } }, le),
        dropFilter({ types: [RTM_NEWROUTE] }, le),
      );
    }
  });

// Child mode (run inside the test's namespace): subscribes, then writes ROUTES routes in one synchronous
// batch as flanneld's apply does (the event loop cannot drain meanwhile), deletes two of them itself (one
// request, one batch), has `ip route del` delete a third, and prints the events.
const ROUTES = 5000;
if (isChild) {
  const { createNetlinkKernel } = await import("./netlink-kernel.ts");
  const { IpAddr } = await import("../../ip/addr.ts");
  const { IpNet } = await import("../../ip/net.ts");
  const k = createNetlinkKernel();
  const ac = new AbortController();
  const events: string[] = [];
  k.events.subscribe((ev) => {
    events.push(
      ev.type === "route-deleted"
        ? `route-deleted ${String(ev.route.dst)}`
        : ev.type === "neigh-deleted"
          ? `neigh-deleted ${ev.family} ${ev.linkIndex} ${String(ev.ip)} ${ev.mac ?? "-"}`
          : ev.type,
    );
  }, ac.signal);
  const link = k.links.get("d0");
  if (link === undefined) throw new Error("no d0");
  const route = (i: number) => ({
    family: 4 as const,
    dst: IpNet.parse(`10.${1 + (i >> 8)}.${i & 255}.0/24`),
    gw: IpAddr.parse("192.168.77.2"),
    linkIndex: link.index,
  });
  const errs = k.batch(
    Array.from({ length: ROUTES }, (_, i) => ({ op: "route-replace" as const, route: route(i) })),
  );
  assert.equal(errs.filter((e) => e !== undefined).length, 0);
  k.routes.delete(route(7));
  assert.equal(k.batch([{ op: "route-delete", route: route(9) }])[0], undefined);
  // Notifications arrive in order: once this one is in, ours would have been too.
  execFileSync("ip", ["route", "del", "10.1.8.0/24"]);
  // Neighbour and FDB deletions carry no sender: ours, single or many in a batch, are made while the
  // subscription is out of the neighbour group (NetlinkKernel.quietly); someone else's still arrive.
  const vx = k.links.get("vx0");
  if (vx === undefined) throw new Error("no vx0");
  const n = { linkIndex: link.index, ip: IpAddr.parse("192.168.77.9"), mac: "02:00:00:00:00:09" };
  const f = { linkIndex: vx.index, mac: "02:00:00:00:00:07", dst: IpAddr.parse("192.168.77.7") };
  k.neighbours.replace(n);
  k.fdb.replace(f);
  k.neighbours.delete(n);
  k.fdb.delete(f);
  const peers = Array.from({ length: 20 }, (_, i) => ({
    n: { linkIndex: link.index, ip: IpAddr.parse(`192.168.77.${100 + i}`), mac: "02:00:00:00:01:00" },
    f: {
      linkIndex: vx.index,
      mac: `02:00:00:00:01:${(i + 16).toString(16)}`,
      dst: IpAddr.parse(`192.168.77.${100 + i}`),
    },
  }));
  const written = k.batch(
    peers.flatMap((p) => [
      { op: "neigh-replace" as const, neighbour: p.n },
      { op: "fdb-replace" as const, fdb: p.f },
    ]),
  );
  const removed = k.batch(
    peers.flatMap((p) => [
      { op: "neigh-delete" as const, neighbour: p.n },
      { op: "fdb-delete" as const, fdb: p.f },
    ]),
  );
  assert.equal([...written, ...removed].filter((e) => e !== undefined).length, 0);
  const gone = (ip: string): boolean =>
    !k.neighbours.list({ linkIndex: link.index, family: 4 }).some((x) => x.ip.toString() === ip) &&
    !k.fdb.list({ linkIndex: vx.index }).some((x) => x.dst?.toString() === ip);
  assert.ok(["192.168.77.9", "192.168.77.7", ...peers.map((p) => p.n.ip.toString())].every(gone));
  k.fdb.replace(f);
  execFileSync("bridge", ["fdb", "del", "02:00:00:00:00:07", "dev", "vx0", "dst", "192.168.77.7"]);
  const last = `neigh-deleted bridge ${vx.index} 192.168.77.7 02:00:00:00:00:07`;
  const deadline = Date.now() + 20_000;
  while (!(events.includes("route-deleted 10.1.8.0/24") && events.includes(last)) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300)); // an overflow, if any, is reported by the same drain
  ac.abort();
  k.close();
  process.stdout.write(`EVENTS ${JSON.stringify(events)}\n`);
  process.stdout.write(`INDEXES ${JSON.stringify({ d0: link.index, vx0: vx.index })}\n`);
} else {
  test("our own route, neighbour and FDB changes do not come back as events; a deletion by someone else does", (t) => {
    if (!requireRoot(t)) return;
    const ns = Netns.create("fts-p");
    try {
      ns.run("ip", ["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
      ns.run("ip", ["addr", "add", "192.168.77.1/24", "dev", "d0"]);
      ns.run("ip", ["link", "set", "d0", "up"]);
      ns.run("ip", ["link", "set", "d1", "up"]);
      ns.run("ip", ["link", "add", "vx0", "type", "vxlan", "id", "7", "dstport", "4789", "dev", "d0"]);
      ns.run("ip", ["link", "set", "vx0", "up"]);
      const out = execFileSync(
        "ip",
        ["netns", "exec", ns.name, process.execPath, "--import", "tsx", import.meta.filename],
        { encoding: "utf8", env: childEnv(), timeout: 120_000 },
      );
      const line = out.split("\n").find((l) => l.startsWith("EVENTS ")) ?? "EVENTS []";
      const events = JSON.parse(line.slice(7)) as string[];
      assert.ok(events.includes("route-deleted 10.1.8.0/24"), `no deletion event in ${out.slice(0, 300)}`);
      assert.ok(!events.includes("route-deleted 10.1.7.0/24"), `our own delete came back: ${out}`);
      assert.ok(!events.includes("route-deleted 10.1.9.0/24"), `our own batched delete came back: ${out}`);
      assert.ok(!events.includes("overflow"), `the event socket overflowed: ${out.slice(0, 300)}`);
      const idx = JSON.parse(
        out
          .split("\n")
          .find((l) => l.startsWith("INDEXES "))
          ?.slice(8) ?? "{}",
      ) as {
        d0: number;
        vx0: number;
      };
      assert.deepEqual(
        events.filter((e) => e.startsWith("neigh-deleted") && !e.includes(" 192.168.77.2 ")),
        [`neigh-deleted bridge ${idx.vx0} 192.168.77.7 02:00:00:00:00:07`],
        out,
      );
    } finally {
      ns.delete();
    }
  });
}
