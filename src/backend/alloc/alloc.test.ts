import assert from "node:assert/strict";
import { test } from "node:test";

import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { createAllocBackend } from "./alloc.ts";

const config = {
  network: IpNet.parse("10.244.0.0/16"),
  backend: { Type: "alloc" },
} as unknown as NetworkConfig;

test("alloc leases a subnet with the public IP and no backend type, and touches nothing", async () => {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", mtu: 9000 });
  const before = kernel.dump();
  const own = {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse("10.244.7.0/24"),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "" },
    expiration: null,
    asof: 0,
  };
  const sm = new FakeSubnetManager({ lease: own });
  const backend = createAllocBackend({
    subnetManager: sm,
    kernel,
    logger: new MemoryLogger(),
    extIface: {
      iface: eth0,
      ifaceAddr: IpAddr.parse("192.168.0.1"),
      extAddr: IpAddr.parse("203.0.113.9"),
      ifaceV6Addr: null,
      extV6Addr: null,
    },
  });
  const ac = new AbortController();
  const net = await backend.registerNetwork(config, ac.signal);
  assert.deepEqual(sm.acquired, [
    { publicIp: IpAddr.parse("203.0.113.9"), publicIpv6: null, backendType: "" },
  ]);
  assert.equal(net.lease().subnet?.toString(), "10.244.7.0/24");
  assert.equal(net.mtu(), 9000);
  let done = false;
  const running = net.run(ac.signal).then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false, "run must wait for the abort");
  ac.abort();
  await running;
  assert.equal(kernel.dump(), before);
});

test("alloc reports a failed lease with upstream's prefix", async () => {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24" });
  const ip = IpAddr.parse("192.168.0.1");
  const sm = new FakeSubnetManager({ lease: {} as never });
  sm.acquireLease = () => Promise.reject(new Error("out of subnets"));
  const backend = createAllocBackend({
    subnetManager: sm,
    kernel,
    logger: new MemoryLogger(),
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
  });
  await assert.rejects(backend.registerNetwork(config, new AbortController().signal), {
    message: "failed to acquire lease: out of subnets",
  });
});
