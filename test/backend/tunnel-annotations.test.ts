// What the ipip and wireguard backends advertise, as the kube subnet manager writes it onto the node
// (§3.2): the backends' lease attributes through planNodeAnnotations, compared with upstream's values —
// ipip's backend-data is `null`, wireguard's `{"PublicKey":…,"Port":…}`, v6 data only for wireguard.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import type { BackendDeps } from "../../src/backend/backend.ts";
import { FakeSubnetManager } from "../../src/backend/fake-subnet-manager.ts";
import { createIpipBackend } from "../../src/backend/ipip/ipip.ts";
import { createWireguardBackend } from "../../src/backend/wireguard/wireguard.ts";
import type { NetworkConfig } from "../../src/config/network-config.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { FakeKernel } from "../../src/kernel/fake-kernel.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import { newAnnotations } from "../../src/subnet/kube/annotations.ts";
import { planNodeAnnotations } from "../../src/subnet/kube/node-lease.ts";

const dir = mkdtempSync(join(tmpdir(), "fts-w-ann-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function setup(dual: boolean): { deps: BackendDeps; sm: FakeSubnetManager; config: NetworkConfig } {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24" });
  if (dual) kernel.addAddr("eth0", "2001:db8::1/64");
  const sm = new FakeSubnetManager({
    lease: {
      enableIpv4: true,
      enableIpv6: dual,
      subnet: IpNet.parse("10.244.1.0/24"),
      ipv6Subnet: dual ? IpNet.parse("fd00:10:0:1::/64") : null,
      attrs: { publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "" },
      expiration: null,
      asof: 0,
    },
  });
  const ip = IpAddr.parse("192.168.0.1");
  const ip6 = dual ? IpAddr.parse("2001:db8::1") : null;
  return {
    sm,
    deps: {
      subnetManager: sm,
      kernel,
      logger: new MemoryLogger(),
      extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: ip6, extV6Addr: ip6 },
    },
    config: {
      enableIpv4: true,
      enableIpv6: dual,
      enableNftables: false,
      network: IpNet.parse("10.244.0.0/16"),
      ipv6Network: dual ? IpNet.parse("fd00:10::/56") : null,
      subnetLen: 24,
      subnetMin: null,
      subnetMax: null,
      ipv6SubnetLen: dual ? 64 : 0,
      ipv6SubnetMin: null,
      ipv6SubnetMax: null,
      backendType: "",
      backend: {},
    },
  };
}

const A = newAnnotations("flannel.alpha.coreos.com");
const signal = new AbortController().signal;

test("ipip: backend-type ipip, backend-data null, public-ip", async () => {
  const { deps, sm, config } = setup(false);
  await createIpipBackend(deps).registerNetwork(
    { ...config, backendType: "ipip", backend: { Type: "ipip" } },
    signal,
  );
  assert.deepEqual(planNodeAnnotations({}, sm.acquired[0]!, A)?.changes, {
    "flannel.alpha.coreos.com/backend-type": "ipip",
    "flannel.alpha.coreos.com/backend-data": "null",
    "flannel.alpha.coreos.com/public-ip": "192.168.0.1",
    "flannel.alpha.coreos.com/kube-subnet-manager": "true",
  });
});

test("wireguard dual-stack: backend-data and backend-v6-data with the public key and each device's port", async () => {
  const { deps, sm, config } = setup(true);
  const net = await createWireguardBackend(deps, { keyFile: join(dir, "k") }).registerNetwork(
    { ...config, backendType: "wireguard", backend: { Type: "wireguard" } },
    signal,
  );
  const pub = JSON.parse(sm.acquired[0]!.backendData!).PublicKey as string;
  assert.equal(Buffer.from(pub, "base64").length, 32);
  assert.deepEqual(planNodeAnnotations({}, sm.acquired[0]!, A)?.changes, {
    "flannel.alpha.coreos.com/backend-type": "wireguard",
    "flannel.alpha.coreos.com/backend-data": `{"PublicKey":"${pub}","Port":51820}`,
    "flannel.alpha.coreos.com/public-ip": "192.168.0.1",
    "flannel.alpha.coreos.com/backend-v6-data": `{"PublicKey":"${pub}","Port":51821}`,
    "flannel.alpha.coreos.com/public-ipv6": "2001:db8::1",
    "flannel.alpha.coreos.com/kube-subnet-manager": "true",
  });
  assert.equal(net.mtu(), 1420);
});
