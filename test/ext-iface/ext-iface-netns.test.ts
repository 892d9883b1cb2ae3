// External interface selection on a real kernel: a node namespace with two veth "NICs" — eth0 NAT-like
// (carries the default route, like VirtualBox/Vagrant's 10.0.2.15) and eth1 host-only-like (the network
// the nodes share, 192.168.56.0/24) — the classic case where --iface, --iface-regex or --iface-can-reach
// must pick eth1 instead of the default-route interface. The peers live in a second namespace.
// `ip -json` is the independent oracle for what the kernel says.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";

import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";

const SCRIPT = fileURLToPath(new URL("./select-in-netns.ts", import.meta.url));

interface Result {
  ok: boolean;
  iface?: string;
  mtu?: number;
  ifaceAddr?: string | null;
  ifaceV6Addr?: string | null;
  extAddr?: string | null;
  extV6Addr?: string | null;
  error?: string;
  log: string[];
}

const BASE = {
  iface: [] as string[],
  ifaceRegex: [] as string[],
  ifaceCanReach: "",
  publicIp: "",
  publicIpv6: "",
  enableIpv4: true,
  enableIpv6: false,
};

describe("external interface selection in a namespace", { concurrency: false }, () => {
  let node: Netns | undefined;
  let lan: Netns | undefined;
  const isRoot = process.getuid?.() === 0;

  before(() => {
    if (!isRoot) return;
    node = Netns.create("fts-i");
    lan = Netns.create("fts-i");
    vethPair(node, "eth0", "10.0.2.15/24", lan, "nat0", "10.0.2.2/24");
    vethPair(node, "eth1", "192.168.56.10/24", lan, "ho0", "192.168.56.1/24");
    node.run("ip", ["link", "set", "eth1", "mtu", "1400"]);
    node.run("ip", ["route", "add", "default", "via", "10.0.2.2", "dev", "eth0"]);
    // Dual stack: IPv6 on both NICs (nodad: usable at once), the v6 default route on eth0 as well.
    node.run("ip", ["addr", "add", "fd00:2::15/64", "dev", "eth0", "nodad"]);
    node.run("ip", ["addr", "add", "fd00:56::10/64", "dev", "eth1", "nodad"]);
    lan.run("ip", ["addr", "add", "fd00:2::2/64", "dev", "nat0", "nodad"]);
    node.run("ip", ["-6", "route", "add", "default", "via", "fd00:2::2", "dev", "eth0"]);
  });

  after(() => {
    node?.delete();
    lan?.delete();
  });

  function select(opts: Partial<typeof BASE>): Result {
    assert.ok(node);
    return JSON.parse(node.runTs(SCRIPT, [JSON.stringify({ ...BASE, ...opts })])) as Result;
  }

  function picked(r: Result): [string | undefined, string | null | undefined] {
    assert.ok(r.ok, `selection failed: ${r.error}\n${r.log.join("\n")}`);
    return [r.iface, r.ifaceAddr];
  }

  it("without flags uses the default-route interface", (t) => {
    if (!requireRoot(t)) return;
    const r = select({});
    assert.deepEqual(picked(r), ["eth0", "10.0.2.15"]);
    assert.equal(r.extAddr, "10.0.2.15");
    assert.equal(r.mtu, 1500);
  });

  it("--iface by name and by IP pick the host-only NIC", (t) => {
    if (!requireRoot(t)) return;
    const r = select({ iface: ["eth1"] });
    assert.deepEqual(picked(r), ["eth1", "192.168.56.10"]);
    assert.equal(r.mtu, 1400);
    assert.deepEqual(picked(select({ iface: ["192.168.56.10"] })), ["eth1", "192.168.56.10"]);
    assert.deepEqual(picked(select({ iface: ["eth7", "eth1"] })), ["eth1", "192.168.56.10"]);
  });

  it("--iface-regex matches the host-only NIC by address and by name", (t) => {
    if (!requireRoot(t)) return;
    assert.deepEqual(picked(select({ ifaceRegex: ["^192\\.168\\.56\\."] })), ["eth1", "192.168.56.10"]);
    assert.deepEqual(picked(select({ ifaceRegex: ["^eth1$"] })), ["eth1", "192.168.56.10"]);
  });

  it("--iface-can-reach follows the kernel's route, as `ip route get` does", (t) => {
    if (!requireRoot(t)) return;
    const ns = node;
    assert.ok(ns);
    for (const dst of ["192.168.56.1", "192.168.56.200", "10.0.2.2", "203.0.113.9"]) {
      const routes: { dev: string; prefsrc: string }[] = ns.ipJson(["route", "get", dst]);
      const oracle = routes[0];
      assert.ok(oracle);
      assert.deepEqual(picked(select({ ifaceCanReach: dst })), [oracle.dev, oracle.prefsrc], dst);
    }
    assert.deepEqual(picked(select({ ifaceCanReach: "192.168.56.1" })), ["eth1", "192.168.56.10"]);
  });

  it("dual stack uses one interface for both families", (t) => {
    if (!requireRoot(t)) return;
    const r = select({ enableIpv6: true });
    assert.deepEqual([r.iface, r.ifaceAddr, r.ifaceV6Addr], ["eth0", "10.0.2.15", "fd00:2::15"]);
    const r1 = select({ enableIpv6: true, iface: ["eth1"] });
    assert.deepEqual([r1.iface, r1.ifaceAddr, r1.ifaceV6Addr], ["eth1", "192.168.56.10", "fd00:56::10"]);
  });

  it("fails with upstream's messages when nothing fits", (t) => {
    if (!requireRoot(t)) return;
    const r = select({ iface: ["eth7"] });
    assert.equal(r.ok, false);
    assert.equal(
      r.error,
      "Failed to find interface to use that matches the interfaces and/or regexes provided",
    );
    assert.ok(
      r.log.includes(
        "I Could not find valid interface matching eth7: error looking up interface eth7: route ip+net: no such network interface",
      ),
    );
    const p = select({ publicIp: "198.51.100.1" });
    assert.equal(
      p.error,
      "Failed to find any valid interface to use: error looking up interface 198.51.100.1: no interface with given IP found",
    );
  });
});
