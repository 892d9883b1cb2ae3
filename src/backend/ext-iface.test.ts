import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FlannelError } from "../errors.ts";
import { IpAddr } from "../ip/addr.ts";
import { FakeKernel } from "../kernel/fake-kernel.ts";
import { IFA_F_DEPRECATED, IFA_F_PERMANENT, type Kernel } from "../kernel/ports.ts";
import { MemoryLogger } from "../log/logger.ts";
import type { ExternalInterface } from "./backend.ts";
import {
  compileGoRegex,
  interfaceAddrs,
  selectExternalInterface,
  type ExtIfaceOptions,
} from "./ext-iface.ts";

const NONE: ExtIfaceOptions = {
  iface: [],
  ifaceRegex: [],
  ifaceCanReach: "",
  publicIp: "",
  publicIpv6: "",
  enableIpv4: true,
  enableIpv6: false,
};

/** lo, eth0 10.0.0.1/24 with the default route via 10.0.0.254, eth1 192.168.1.5/24 (host-only). */
function twoNics(): FakeKernel {
  const k = new FakeKernel();
  k.addHost({ iface: "eth0", addr: "10.0.0.1/24", gateway: "10.0.0.254" });
  k.addVeth("eth1", { addrs: ["192.168.1.5/24"], mtu: 9000 });
  return k;
}

function select(k: Kernel, opts: Partial<ExtIfaceOptions>): { ext: ExternalInterface; log: MemoryLogger } {
  const log = new MemoryLogger();
  const ext = selectExternalInterface(k, { ...NONE, ...opts }, log);
  return { ext, log };
}

/** The selection failure: its message, and the lines logged before it. */
function failure(k: Kernel, opts: Partial<ExtIfaceOptions>): { message: string; log: MemoryLogger } {
  const log = new MemoryLogger();
  try {
    selectExternalInterface(k, { ...NONE, ...opts }, log);
  } catch (err) {
    assert.ok(err instanceof FlannelError, String(err));
    assert.equal(err.code, "EXT_IFACE");
    return { message: err.message, log };
  }
  assert.fail("selection did not fail");
}

function summary(ext: ExternalInterface): string[] {
  return [
    ext.iface.name,
    String(ext.ifaceAddr),
    String(ext.ifaceV6Addr),
    String(ext.extAddr),
    String(ext.extV6Addr),
  ];
}

/** A kernel whose address list reports the given IFA_F_* flags (the fake marks every address permanent). */
function withFlags(k: FakeKernel, flags: Record<string, number>): Kernel {
  return {
    ...k,
    links: k.links,
    routes: k.routes,
    addrs: {
      ...k.addrs,
      list: (opts) =>
        k.addrs.list(opts).map((a) => ({ ...a, flags: flags[a.addr.ip.toString()] ?? a.flags })),
    },
  };
}

const FAIL_MATCH = "Failed to find interface to use that matches the interfaces and/or regexes provided";

describe("selectExternalInterface without interface flags", () => {
  it("uses the default-route interface and its address", () => {
    const { ext, log } = select(twoNics(), {});
    assert.deepEqual(summary(ext), ["eth0", "10.0.0.1", "null", "10.0.0.1", "null"]);
    assert.equal(ext.iface.mtu, 1500);
    assert.deepEqual(log.lines, [
      "I Determining IP address of default interface",
      "I Using interface with name eth0 and address 10.0.0.1",
      "I Defaulting external address to interface address (10.0.0.1)",
    ]);
  });

  it("fails without a default route", () => {
    const k = new FakeKernel();
    k.addVeth("eth0", { addrs: ["10.0.0.1/24"] });
    assert.equal(
      failure(k, {}).message,
      "Failed to find any valid interface to use: failed to get default interface: unable to find default route",
    );
  });

  it("fails when the default route has no interface", () => {
    const k = new FakeKernel();
    k.addVeth("eth0", { addrs: ["10.0.0.1/24"] });
    k.routes.replace({ family: 4, dst: null, type: "blackhole" });
    assert.equal(
      failure(k, {}).message,
      "Failed to find any valid interface to use: failed to get default interface: found default route but could not determine interface",
    );
  });

  it("uses the interface owning --public-ip and advertises that address", () => {
    const { ext, log } = select(twoNics(), { publicIp: "192.168.1.5" });
    assert.deepEqual(summary(ext), ["eth1", "192.168.1.5", "null", "192.168.1.5", "null"]);
    assert.ok(log.lines.includes("I Searching for interface using 192.168.1.5"));
    assert.ok(log.lines.includes("I Using 192.168.1.5 as external address"));
  });

  it("requires --public-ip to be local when no interface flag is given (spec A3)", () => {
    assert.equal(
      failure(twoNics(), { publicIp: "54.1.2.3" }).message,
      "Failed to find any valid interface to use: error looking up interface 54.1.2.3: no interface with given IP found",
    );
  });

  it("fails when the interface has no MTU", () => {
    const k = new FakeKernel();
    k.addHost({ iface: "eth0", addr: "10.0.0.1/24", gateway: "10.0.0.254", mtu: 0 });
    assert.equal(
      failure(k, {}).message,
      "Failed to find any valid interface to use: failed to determine MTU for 10.0.0.1 interface",
    );
  });

  it("fails when the default interface has no IPv4 address", () => {
    const k = new FakeKernel();
    k.addHost({ iface: "eth0", addr: "10.0.0.1/24", gateway: "10.0.0.254" });
    const k2 = withFlags(k, { "10.0.0.1": IFA_F_PERMANENT | IFA_F_DEPRECATED });
    assert.equal(
      failure(k2, {}).message,
      "Failed to find any valid interface to use: failed to find IPv4 address for interface eth0",
    );
  });

  it("refuses a configuration with neither family", () => {
    assert.equal(failure(twoNics(), { enableIpv4: false }).message, "none defined stack");
  });
});

describe("selectExternalInterface with --iface", () => {
  it("finds an interface by name", () => {
    assert.deepEqual(summary(select(twoNics(), { iface: ["eth1"] }).ext), [
      "eth1",
      "192.168.1.5",
      "null",
      "192.168.1.5",
      "null",
    ]);
  });

  it("finds an interface by IP and keeps that exact address", () => {
    const k = twoNics();
    k.addAddr("eth1", "192.168.1.6/24"); // secondary: never preferred, but asked for by value
    assert.equal(select(k, { iface: ["192.168.1.6"] }).ext.ifaceAddr?.toString(), "192.168.1.6");
  });

  it("tries each value in order and logs the misses", () => {
    const { ext, log } = select(twoNics(), { iface: ["eth9", "172.16.0.1", "eth1", "eth0"] });
    assert.equal(ext.iface.name, "eth1");
    assert.deepEqual(
      log.lines.filter((l) => l.includes("Could not")),
      [
        "I Could not find valid interface matching eth9: error looking up interface eth9: route ip+net: no such network interface",
        "I Could not find valid interface matching 172.16.0.1: error looking up interface 172.16.0.1: no interface with given IP found",
      ],
    );
  });

  it("fails with upstream's message when nothing matches", () => {
    assert.equal(failure(twoNics(), { iface: ["eth9"] }).message, FAIL_MATCH);
  });

  it("uses --public-ip as the external address and rejects a malformed one", () => {
    const { ext } = select(twoNics(), { iface: ["eth0"], publicIp: "203.0.113.7" });
    assert.deepEqual(summary(ext), ["eth0", "10.0.0.1", "null", "203.0.113.7", "null"]);
    const { message, log } = failure(twoNics(), { iface: ["eth0"], publicIp: "bogus" });
    assert.equal(message, FAIL_MATCH);
    assert.ok(
      log.lines.includes("I Could not find valid interface matching eth0: invalid public IP address: bogus"),
    );
  });

  it("treats an empty value as the default-route interface, as upstream", () => {
    assert.equal(select(twoNics(), { iface: [""] }).ext.iface.name, "eth0");
    assert.equal(select(twoNics(), { ifaceRegex: [""] }).ext.iface.name, "eth0");
  });

  it("goes on to the regexes after every --iface missed", () => {
    const { ext } = select(twoNics(), { iface: ["eth9"], ifaceRegex: ["^192\\."] });
    assert.equal(ext.iface.name, "eth1");
  });
});

describe("selectExternalInterface with --iface-regex", () => {
  it("matches addresses before names, interfaces in kernel order", () => {
    // eth1 matches by name, but eth0 matches by address and addresses are checked first.
    const { ext } = select(twoNics(), { ifaceRegex: ["^eth1$|^10\\.0\\."] });
    assert.deepEqual(summary(ext), ["eth0", "10.0.0.1", "null", "10.0.0.1", "null"]);
  });

  it("falls back to the interface name", () => {
    assert.equal(select(twoNics(), { ifaceRegex: ["th1"] }).ext.iface.name, "eth1");
  });

  it("accepts a Go (?i) flag group", () => {
    assert.equal(select(twoNics(), { ifaceRegex: ["(?i)^ETH1$"] }).ext.iface.name, "eth1");
  });

  it("logs a no-match listing the interfaces and their addresses", () => {
    const { message, log } = failure(twoNics(), { ifaceRegex: ["^wlan"] });
    assert.equal(message, FAIL_MATCH);
    assert.deepEqual(log.lines, [
      "I Could not find valid interface matching ^wlan: could not match pattern ^wlan to any of the available network interfaces (lo:[], eth0:[10.0.0.1], eth1:[192.168.1.5])",
    ]);
  });

  it("logs a pattern that does not compile and tries the next one", () => {
    const { ext, log } = select(twoNics(), { ifaceRegex: ["(", "^eth0$"] });
    assert.equal(ext.iface.name, "eth0");
    assert.match(
      log.lines[0] ?? "",
      /^I Could not find valid interface matching \(: could not compile the IP address regex '\(': /,
    );
  });
});

describe("selectExternalInterface with --iface-can-reach", () => {
  it("uses the interface and source address of the route to that IP", () => {
    const { ext, log } = select(twoNics(), { ifaceCanReach: "192.168.1.77" });
    assert.deepEqual(summary(ext), ["eth1", "192.168.1.5", "null", "192.168.1.5", "null"]);
    assert.ok(log.lines.includes("I Determining interface to use based on given ifcanreach: 192.168.1.77"));
  });

  it("follows the default route for remote destinations", () => {
    assert.equal(select(twoNics(), { ifaceCanReach: "8.8.8.8" }).ext.iface.name, "eth0");
  });

  it("logs an unreachable destination and fails", () => {
    const k = new FakeKernel();
    k.addVeth("eth0", { addrs: ["10.0.0.1/24"] });
    const { message, log } = failure(k, { ifaceCanReach: "8.8.8.8" });
    assert.equal(message, FAIL_MATCH);
    assert.match(
      log.lines.at(-1) ?? "",
      /^I Could not find valid interface matching ifaceCanReach: 8\.8\.8\.8: failed to get ifcanreach based interface: couldn't lookup route to 8\.8\.8\.8: .*ENETUNREACH/,
    );
  });
});

describe("address preference", () => {
  it("prefers global, then permanent, then non-temporary, and skips deprecated", () => {
    const k = new FakeKernel();
    k.addVeth("eth0", { addrs: ["169.254.1.1/16", "10.0.0.9/24", "10.1.0.8/24", "10.2.0.7/24"] });
    k.addAddr("eth0", "fd00::5/64");
    k.addAddr("eth0", "fd00::6/64");
    k.addAddr("eth0", "fe80::1/64");
    const flagged = withFlags(k, {
      "10.0.0.9": 0, // dynamic (DHCP)
      "10.1.0.8": IFA_F_PERMANENT | IFA_F_DEPRECATED,
      "fd00::5": IFA_F_PERMANENT | 0x01, // temporary (privacy) address
    });
    const link = k.links.get("eth0")!.index;
    assert.deepEqual(interfaceAddrs(flagged, link, 4).map(String), ["10.2.0.7", "10.0.0.9", "169.254.1.1"]);
    assert.deepEqual(interfaceAddrs(flagged, link, 6).map(String), ["fd00::6", "fd00::5", "fe80::1"]);
  });

  it("uses a link-local address when there is nothing else", () => {
    const k = new FakeKernel();
    k.addVeth("eth0", { addrs: ["169.254.3.4/16"] });
    assert.equal(select(k, { iface: ["eth0"] }).ext.ifaceAddr?.toString(), "169.254.3.4");
  });
});

describe("dual stack and IPv6", () => {
  function dual(): FakeKernel {
    const k = twoNics();
    k.addAddr("eth0", "2001:db8::1/64");
    k.routes.replace({
      family: 6,
      dst: null,
      gw: IpAddr.parse("2001:db8::ffff"),
      linkIndex: k.links.get("eth0")!.index,
    });
    k.addAddr("eth1", "fd00:1::5/64");
    return k;
  }
  const DUAL = { enableIpv4: true, enableIpv6: true };

  it("uses the default-route interface for both families", () => {
    const { ext, log } = select(dual(), DUAL);
    assert.deepEqual(summary(ext), ["eth0", "10.0.0.1", "2001:db8::1", "10.0.0.1", "2001:db8::1"]);
    assert.ok(log.lines.includes("I Using interface with name eth0 and v6 address 2001:db8::1"));
    assert.ok(log.lines.includes("I Defaulting external v6 address to interface address (2001:db8::1)"));
  });

  it("requires both default routes on the same interface", () => {
    const k = dual();
    k.routes.replace({
      family: 6,
      dst: null,
      gw: IpAddr.parse("fd00:1::ffff"),
      linkIndex: k.links.get("eth1")!.index,
    });
    assert.equal(
      failure(k, DUAL).message,
      "Failed to find any valid interface to use: v6 default route interface eth1 must be the same with v4 default route interface eth0",
    );
  });

  it("fails without an IPv6 default route", () => {
    const k = twoNics();
    k.addAddr("eth0", "2001:db8::1/64");
    assert.equal(
      failure(k, DUAL).message,
      "Failed to find any valid interface to use: failed to get default v6 interface: unable to find default v6 route",
    );
  });

  it("--iface=<IPv4> with --public-ipv6 on another interface is refused", () => {
    const { log } = failure(dual(), { ...DUAL, iface: ["10.0.0.1"], publicIpv6: "fd00:1::5" });
    assert.ok(
      log.lines.includes(
        "I Could not find valid interface matching 10.0.0.1: v6 interface eth1 must be the same with v4 interface eth0",
      ),
      log.text(),
    );
  });

  it("--iface=<IPv4> with --public-ipv6 on the same interface uses both", () => {
    const { ext } = select(dual(), { ...DUAL, iface: ["192.168.1.5"], publicIpv6: "fd00:1::5" });
    assert.deepEqual(summary(ext), ["eth1", "192.168.1.5", "fd00:1::5", "192.168.1.5", "fd00:1::5"]);
  });

  it("--iface=<IPv4> alone fills the IPv6 address from that interface (upstream leaves it empty)", () => {
    const { ext } = select(dual(), { ...DUAL, iface: ["192.168.1.5"] });
    assert.deepEqual(summary(ext), ["eth1", "192.168.1.5", "fd00:1::5", "192.168.1.5", "fd00:1::5"]);
  });

  it("a dual-stack regex needs an address of each family on one interface, else matches names", () => {
    assert.equal(select(dual(), { ...DUAL, ifaceRegex: ["^(192\\.168|fd00)"] }).ext.iface.name, "eth1");
    // Matches eth0's IPv4 address only: no interface matches by address, and no name matches either.
    const { message } = failure(dual(), { ...DUAL, ifaceRegex: ["^10\\."] });
    assert.equal(message, FAIL_MATCH);
  });

  it("IPv6 only: uses v6 addresses and leaves the IPv4 fields empty", () => {
    const { ext } = select(dual(), { enableIpv4: false, enableIpv6: true });
    assert.deepEqual(summary(ext), ["eth0", "null", "2001:db8::1", "null", "2001:db8::1"]);
    const r = select(dual(), { enableIpv4: false, enableIpv6: true, iface: ["fd00:1::5"] });
    assert.deepEqual(summary(r.ext), ["eth1", "null", "fd00:1::5", "null", "fd00:1::5"]);
  });

  it("IPv6 only: an interface without IPv6 address is refused", () => {
    const { log } = failure(twoNics(), { enableIpv4: false, enableIpv6: true, iface: ["eth1"] });
    assert.ok(
      log.lines.includes(
        "I Could not find valid interface matching eth1: failed to find IPv6 address for interface eth1",
      ),
    );
  });
});

describe("compileGoRegex", () => {
  it("translates leading flag groups and reports compile errors upstream's way", () => {
    assert.ok(compileGoRegex("(?i)ETH").test("eth0"));
    assert.throws(() => compileGoRegex("[a"), /^Error: could not compile the IP address regex '\[a': /);
  });
});
