import assert from "node:assert/strict";
import { test } from "node:test";
import type { NetworkConfig } from "../../config/network-config.ts";
import { FlannelError } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import { waitFor } from "../../../test/helpers/netns.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import type { BackendDeps } from "../backend.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { KERNEL_MODULE_MISSING } from "../kernel-module.ts";
import { RouteNetwork } from "../route-network.ts";
import { createIpipBackend } from "./ipip.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

function config(backend: Record<string, unknown> = { Type: "ipip" }): NetworkConfig {
  return fakeNetworkConfig("ipip", backend);
}

function lease(subnet: string, publicIp: string, type = "ipip"): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.parse(publicIp), publicIpv6: null, backendType: type },
    expiration: null,
    asof: 0,
  };
}

function rig(opts: { publicIp?: string } = {}): {
  kernel: FakeKernel;
  sm: FakeSubnetManager;
  deps: BackendDeps;
  log: MemoryLogger;
} {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", gateway: "192.168.0.254" });
  const sm = new FakeSubnetManager({ lease: lease("10.244.1.0/24", "192.168.0.1") });
  const log = new MemoryLogger();
  const ip = IpAddr.parse("192.168.0.1");
  const deps: BackendDeps = {
    subnetManager: sm,
    kernel,
    logger: log,
    extIface: {
      iface: eth0,
      ifaceAddr: ip,
      extAddr: opts.publicIp === undefined ? ip : IpAddr.parse(opts.publicIp),
      ifaceV6Addr: null,
      extV6Addr: null,
    },
  };
  return { kernel, sm, deps, log };
}

const signal = new AbortController().signal;

test("ipip creates flannel.ipip (local = iface address), MTU iface − 20, /32 address, lease type ipip", async () => {
  const { kernel, sm, deps, log } = rig({ publicIp: "203.0.113.7" });
  const net = await createIpipBackend(deps).registerNetwork(config(), signal);
  assert.equal(net.mtu(), 1480); // §10.2 item 12
  assert.equal(sm.acquired[0]!.backendType, "ipip");
  assert.equal(sm.acquired[0]!.publicIp.toString(), "203.0.113.7");
  assert.equal(sm.acquired[0]!.backendData, undefined); // annotation `null`, as upstream
  const dump = kernel.dump();
  assert.match(dump, /^ip link add flannel\.ipip type ipip local 192\.168\.0\.1 remote any mtu 1480 up$/m);
  assert.match(dump, /^ip addr add 10\.244\.1\.0\/32 dev flannel\.ipip$/m);
  assert.ok(log.lines.some((l) => l.includes("IPIP config: DirectRouting=false")));
});

test("ipip routes peers onlink via their public IP on flannel.ipip; DirectRouting uses eth0 for reachable peers", async () => {
  const { kernel, sm, deps } = rig();
  const net = (await createIpipBackend(deps, { checkMs: 60_000 }).registerNetwork(
    config({ Type: "ipip", DirectRouting: true }),
    signal,
  )) as RouteNetwork;
  const ctl = new AbortController();
  const running = net.run(ctl.signal);
  await sm.push({
    snapshot: [
      lease("10.244.2.0/24", "192.168.0.2"), // on eth0's subnet: direct
      lease("10.244.3.0/24", "198.51.100.3"), // behind the default gateway: tunnel
      lease("10.244.4.0/24", "192.168.0.4", "vxlan"), // another backend: ignored
    ],
  });
  const routes = kernel
    .dump()
    .split("\n")
    .filter((l) => l.startsWith("ip route add 10.244."));
  assert.deepEqual(routes, [
    "ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0 onlink",
    "ip route add 10.244.3.0/24 via 198.51.100.3 dev flannel.ipip onlink",
  ]);
  // A removed peer's route goes; a route deleted by hand comes back at the next pass.
  await sm.push({ events: [{ type: "removed", lease: lease("10.244.2.0/24", "192.168.0.2") }] });
  kernel.routes.delete({ family: 4, dst: IpNet.parse("10.244.3.0/24") });
  net.reconcileNow();
  assert.deepEqual(
    kernel
      .dump()
      .split("\n")
      .filter((l) => l.startsWith("ip route add 10.244.")),
    ["ip route add 10.244.3.0/24 via 198.51.100.3 dev flannel.ipip onlink"],
  );
  ctl.abort();
  await running;
});

test("an existing flannel.ipip: reused when right, recreated when local differs, refused when not ipip", async () => {
  {
    const { kernel, deps, log } = rig();
    kernel.links.addIpip({ name: "flannel.ipip", local: IpAddr.parse("192.168.0.9") });
    await createIpipBackend(deps).registerNetwork(config(), signal);
    assert.match(kernel.dump(), /flannel\.ipip type ipip local 192\.168\.0\.1 /);
    assert.ok(
      log.lines.some((l) =>
        l.includes(
          `"flannel.ipip" already exists with incompatible attributes: local=192.168.0.9 remote=<nil>; recreating device`,
        ),
      ),
    );
  }
  {
    const { kernel, deps } = rig();
    kernel.links.addIpip({ name: "flannel.ipip", local: IpAddr.parse("192.168.0.1") });
    const before = kernel.links.get("flannel.ipip")!.index;
    await createIpipBackend(deps).registerNetwork(config(), signal);
    assert.equal(kernel.links.get("flannel.ipip")!.index, before);
  }
  {
    const { kernel, deps } = rig();
    kernel.links.addBridge("flannel.ipip");
    await assert.rejects(createIpipBackend(deps).registerNetwork(config(), signal), {
      message: "flannel.ipip isn't an ipip mode device, please remove device and try again",
    });
  }
});

test("a kernel without the ipip module gives a plain error with a hint", async () => {
  const { kernel, deps } = rig();
  kernel.fail("links.addIpip", "EOPNOTSUPP");
  const err = await createIpipBackend(deps)
    .registerNetwork(config(), signal)
    .then(
      () => assert.fail("expected a failure"),
      (e: unknown) => e,
    );
  assert.ok(err instanceof FlannelError);
  assert.equal(err.code, KERNEL_MODULE_MISSING);
  assert.match(
    err.message,
    /^the ipip backend needs the kernel's ipip module, which this kernel does not have \(modprobe ipip failed \/ link type not supported: .*EOPNOTSUPP\): load it or choose another backend \(vxlan\)$/,
  );
  assert.match(err.hint ?? "", /modprobe ipip/);
});

test("ipip config errors: wrong types, IPv4 disabled", async () => {
  const { deps } = rig();
  await assert.rejects(createIpipBackend(deps).registerNetwork(config({ DirectRouting: "yes" }), signal), {
    message:
      "error decoding IPIP backend config: json: cannot unmarshal string into Go struct field .DirectRouting of type bool",
  });
  await assert.rejects(
    createIpipBackend(deps).registerNetwork({ ...config(), enableIpv4: false, enableIpv6: true }, signal),
    /supports IPv4 only/,
  );
});

test("a deleted flannel.ipip is recreated with its address and every peer's route (kernel event)", async () => {
  const { kernel, sm, deps, log } = rig();
  const net = (await createIpipBackend(deps, { checkMs: 60_000, retryMs: 10 }).registerNetwork(
    config(),
    signal,
  )) as RouteNetwork;
  const ctl = new AbortController();
  const running = net.run(ctl.signal);
  await sm.push({
    snapshot: [lease("10.244.2.0/24", "198.51.100.2"), lease("10.244.3.0/24", "198.51.100.3")],
  });
  const before = kernel.dump();
  const oldIndex = kernel.links.get("flannel.ipip")!.index;
  kernel.links.delete("flannel.ipip");
  await waitFor(() => kernel.dump() === before, 10_000, "flannel.ipip and its routes back");
  assert.notEqual(kernel.links.get("flannel.ipip")!.index, oldIndex);
  assert.match(before, /^ip route add 10\.244\.3\.0\/24 via 198\.51\.100\.3 dev flannel\.ipip onlink$/m);
  assert.ok(log.lines.some((l) => l.includes("Interface flannel.ipip deleted; recreating it")));
  ctl.abort();
  await running;
});
