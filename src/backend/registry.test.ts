import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../ip/addr.ts";
import { IpNet } from "../ip/net.ts";
import { FakeKernel } from "../kernel/fake-kernel.ts";
import { MemoryLogger } from "../log/logger.ts";
import type { BackendDeps } from "./backend.ts";
import { FakeSubnetManager } from "./fake-subnet-manager.ts";
import { backendFactories, getBackend } from "./registry.ts";

function deps(): BackendDeps {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24" });
  const own = {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse("10.244.1.0/24"),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.parse("192.168.0.1"), publicIpv6: null, backendType: "" },
    expiration: null,
    asof: 0,
  };
  const ip = IpAddr.parse("192.168.0.1");
  return {
    subnetManager: new FakeSubnetManager({ lease: own }),
    kernel,
    logger: new MemoryLogger(),
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
  };
}

test("the registry names exactly the backends that exist", () => {
  assert.deepEqual(Object.keys(backendFactories).sort(), [
    "alloc",
    "extension",
    "host-gw",
    "ipip",
    "udp",
    "vxlan",
    "wireguard",
  ]);
});

test("getBackend matches the type lower-cased", () => {
  assert.ok(getBackend("VXLAN", deps()));
  assert.ok(getBackend("Host-GW", deps()));
});

test("getBackend refuses unknown types with upstream's message, lower-cased", () => {
  assert.throws(() => getBackend("Geneve", deps()), { message: "unknown backend type: geneve" });
  // Not fooled by names every object has.
  assert.throws(() => getBackend("constructor", deps()), { message: "unknown backend type: constructor" });
});
