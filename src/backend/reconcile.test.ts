import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../ip/addr.ts";
import { IpNet } from "../ip/net.ts";
import { NUD_PERMANENT, type Route } from "../kernel/ports.ts";
import { formatOp, plan, type ActualState, type DesiredPeer } from "./reconcile.ts";

const ip = (s: string): IpAddr => IpAddr.parse(s);
const DEV = 5;

function vxlanPeer(subnet: string, mac: string, publicIp: string): DesiredPeer {
  const sn = IpNet.parse(subnet);
  return {
    key: subnet,
    neighbour: { linkIndex: DEV, ip: sn.ip, mac },
    fdb: { linkIndex: DEV, mac, dst: ip(publicIp) },
    route: { family: 4, dst: sn, gw: sn.ip, linkIndex: DEV, onlink: true },
  };
}

/** The actual kernel state that exactly matches `peers`. */
function actualOf(peers: DesiredPeer[]): ActualState {
  return {
    neighbours: peers.flatMap((p) => (p.neighbour ? [{ ...p.neighbour, state: NUD_PERMANENT }] : [])),
    fdb: peers.flatMap((p) => (p.fdb ? [p.fdb] : [])),
    routes: peers.flatMap((p) =>
      p.route ? [{ ...p.route, table: 254, protocol: 3, scope: 0 } as Route] : [],
    ),
  };
}

function show(p: ReturnType<typeof plan>): string[] {
  return [
    ...p.adds.flatMap((a) => a.ops.map((o) => `+ ${a.peer}: ${formatOp(o)}`)),
    ...p.deletes.map((o) => `- ${formatOp(o)}`),
  ];
}

const A = vxlanPeer("10.244.2.0/24", "aa:00:00:00:00:02", "192.168.0.2");
const B = vxlanPeer("10.244.3.0/24", "aa:00:00:00:00:03", "192.168.0.3");

test("plan adds a new peer in ARP, FDB, route order", () => {
  assert.deepEqual(show(plan([A], { neighbours: [], fdb: [], routes: [] })), [
    "+ 10.244.2.0/24: neigh replace 10.244.2.0 lladdr aa:00:00:00:00:02 dev #5 nud permanent",
    "+ 10.244.2.0/24: fdb replace aa:00:00:00:00:02 dev #5 dst 192.168.0.2 self permanent",
    "+ 10.244.2.0/24: route replace 10.244.2.0/24 via 10.244.2.0 dev #5 onlink",
  ]);
});

test("plan is empty when the kernel matches", () => {
  assert.deepEqual(show(plan([A, B], actualOf([A, B]))), []);
});

test("plan deletes a departed peer's entries, route first, after all adds", () => {
  const C = vxlanPeer("10.244.4.0/24", "aa:00:00:00:00:04", "192.168.0.4");
  assert.deepEqual(show(plan([A, C], actualOf([A, B]))), [
    "+ 10.244.4.0/24: neigh replace 10.244.4.0 lladdr aa:00:00:00:00:04 dev #5 nud permanent",
    "+ 10.244.4.0/24: fdb replace aa:00:00:00:00:04 dev #5 dst 192.168.0.4 self permanent",
    "+ 10.244.4.0/24: route replace 10.244.4.0/24 via 10.244.4.0 dev #5 onlink",
    "- route del 10.244.3.0/24 via 10.244.3.0 dev #5 onlink",
    "- fdb del aa:00:00:00:00:03 dev #5 dst 192.168.0.3 self",
    "- neigh del 10.244.3.0 dev #5",
  ]);
});

test("plan replaces only the missing or different entries of a peer", () => {
  const actual = actualOf([A]);
  actual.fdb = []; // deleted by hand
  assert.deepEqual(show(plan([A], actual)), [
    "+ 10.244.2.0/24: fdb replace aa:00:00:00:00:02 dev #5 dst 192.168.0.2 self permanent",
  ]);
});

test("a peer whose MAC changed gets the new entries before the old FDB entry goes", () => {
  const A2 = vxlanPeer("10.244.2.0/24", "aa:00:00:00:00:22", "192.168.0.2");
  assert.deepEqual(show(plan([A2], actualOf([A]))), [
    "+ 10.244.2.0/24: neigh replace 10.244.2.0 lladdr aa:00:00:00:00:22 dev #5 nud permanent",
    "+ 10.244.2.0/24: fdb replace aa:00:00:00:00:22 dev #5 dst 192.168.0.2 self permanent",
    "- fdb del aa:00:00:00:00:02 dev #5 dst 192.168.0.2 self",
  ]);
});

test("a peer whose public IP changed gets its FDB entry replaced and the old remote removed", () => {
  const A3 = vxlanPeer("10.244.2.0/24", "aa:00:00:00:00:02", "192.168.0.99");
  assert.deepEqual(show(plan([A3], actualOf([A]))), [
    "+ 10.244.2.0/24: fdb replace aa:00:00:00:00:02 dev #5 dst 192.168.0.99 self permanent",
    "- fdb del aa:00:00:00:00:02 dev #5 dst 192.168.0.2 self",
  ]);
});

test("a differing route is replaced and reports the previous one; one with another metric is deleted", () => {
  const want: DesiredPeer = {
    key: "10.244.2.0/24",
    route: { family: 4, dst: IpNet.parse("10.244.2.0/24"), gw: ip("192.168.0.2"), linkIndex: 2 },
  };
  const other: Route = { family: 4, dst: IpNet.parse("10.244.2.0/24"), gw: ip("192.168.0.7"), linkIndex: 2 };
  const p = plan([want], { neighbours: [], fdb: [], routes: [other, { ...other, metric: 100 }] });
  assert.deepEqual(show(p), [
    "+ 10.244.2.0/24: route replace 10.244.2.0/24 via 192.168.0.2 dev #2",
    "- route del 10.244.2.0/24 via 192.168.0.7 dev #2 metric 100",
  ]);
  const first = p.adds[0]?.ops[0];
  assert.equal(first?.op === "route-replace" ? first.previous : undefined, other);
});

test("a desired route without a link index matches whatever link the kernel chose (direct routing)", () => {
  const want: DesiredPeer = {
    key: "d",
    route: { family: 4, dst: IpNet.parse("10.244.2.0/24"), gw: ip("192.168.0.2") },
  };
  const have: Route = { family: 4, dst: IpNet.parse("10.244.2.0/24"), gw: ip("192.168.0.2"), linkIndex: 2 };
  assert.deepEqual(show(plan([want], { neighbours: [], fdb: [], routes: [have] })), []);
});

test("non-permanent neighbours and FDB entries without a remote are never deleted", () => {
  const actual: ActualState = {
    neighbours: [{ linkIndex: DEV, ip: ip("10.244.9.0"), mac: "aa:00:00:00:00:09", state: 0x02 }],
    fdb: [{ linkIndex: DEV, mac: "aa:00:00:00:00:09", dst: null }],
    routes: [],
  };
  assert.deepEqual(show(plan([], actual)), []);
});

test("plan works the same for IPv6", () => {
  const sn = IpNet.parse("fd00:2::/64");
  const peer: DesiredPeer = {
    key: "fd00:2::/64",
    neighbour: { linkIndex: 6, ip: sn.ip, mac: "aa:00:00:00:00:02" },
    fdb: { linkIndex: 6, mac: "aa:00:00:00:00:02", dst: ip("fc00::2") },
    route: { family: 6, dst: sn, gw: sn.ip, linkIndex: 6, onlink: true },
  };
  assert.deepEqual(show(plan([peer], { neighbours: [], fdb: [], routes: [] })), [
    "+ fd00:2::/64: neigh replace fd00:2:: lladdr aa:00:00:00:00:02 dev #6 nud permanent",
    "+ fd00:2::/64: fdb replace aa:00:00:00:00:02 dev #6 dst fc00::2 self permanent",
    "+ fd00:2::/64: route replace fd00:2::/64 via fd00:2:: dev #6 onlink",
  ]);
  assert.deepEqual(show(plan([peer], actualOf([peer]))), []);
});
