import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { NetworkConfig } from "../../config/network-config.ts";
import { FlannelError } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import { wireguardPublicKey } from "../../kernel/wireguard-key.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import type { BackendDeps } from "../backend.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { KERNEL_MODULE_MISSING } from "../kernel-module.ts";
import { decodeWireguardConfig, wireguardBackendData } from "./config.ts";
import { loadOrCreateWireguardKey } from "./keys.ts";
import { createWireguardBackend, selectEndpointFamily, type WireguardNetwork } from "./wireguard.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

const dir = mkdtempSync(join(tmpdir(), "fts-w-wg-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const keyFile = (): string => join(dir, `key${++n}`);

const K2 = Buffer.alloc(32, 2).toString("base64");
const K3 = Buffer.alloc(32, 3).toString("base64");
const PSK = Buffer.alloc(32, 9).toString("base64");

function config(backend: Record<string, unknown> = {}, dual = false): NetworkConfig {
  return fakeNetworkConfig(
    "wireguard",
    backend,
    dual ? { enableIpv6: true, ipv6Network: IpNet.parse("fd00:10::/56"), ipv6SubnetLen: 64 } : {},
  );
}

function lease(
  subnet: string,
  publicIp: string,
  key: string,
  opts: { v6?: string; publicIpv6?: string; port?: number; type?: string } = {},
): Lease {
  return {
    enableIpv4: true,
    enableIpv6: opts.v6 !== undefined,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: opts.v6 === undefined ? null : IpNet.parse(opts.v6),
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: opts.publicIpv6 === undefined ? null : IpAddr.parse(opts.publicIpv6),
      backendType: opts.type ?? "wireguard",
      backendData: wireguardBackendData(key, opts.port ?? 51820),
      ...(opts.v6 === undefined ? {} : { backendV6Data: wireguardBackendData(key, 51821) }),
    },
    expiration: null,
    asof: 0,
  };
}

function rig(dual = false): {
  kernel: FakeKernel;
  sm: FakeSubnetManager;
  deps: BackendDeps;
  log: MemoryLogger;
} {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", gateway: "192.168.0.254" });
  if (dual) kernel.addAddr("eth0", "2001:db8::1/64");
  const own: Lease = {
    ...lease("10.244.1.0/24", "192.168.0.1", K2),
    ...(dual ? { enableIpv6: true, ipv6Subnet: IpNet.parse("fd00:10:0:1::/64") } : {}),
  };
  const sm = new FakeSubnetManager({ lease: own });
  const log = new MemoryLogger();
  const ip = IpAddr.parse("192.168.0.1");
  const ip6 = dual ? IpAddr.parse("2001:db8::1") : null;
  const deps: BackendDeps = {
    subnetManager: sm,
    kernel,
    logger: log,
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: ip6, extV6Addr: ip6 },
  };
  return { kernel, sm, deps, log };
}

const wgLines = (k: FakeKernel): string[] =>
  k
    .dump()
    .split("\n")
    .filter((l) => l.startsWith("wg set") || l.includes("flannel-wg"));

test("config defaults and upstream's errors", () => {
  assert.deepEqual(decodeWireguardConfig({ Type: "wireguard" }, 1500), {
    listenPort: 51820,
    listenPortV6: 51821,
    mtu: 1500,
    psk: undefined,
    keepaliveSec: 0,
    mode: "separate",
  });
  assert.equal(
    decodeWireguardConfig({ mode: "auto", persistentkeepaliveinterval: 25 }, 1500).keepaliveSec,
    25,
  );
  assert.throws(() => decodeWireguardConfig({ Mode: "both" }, 1500), { message: "no valid Mode configured" });
  assert.throws(() => decodeWireguardConfig({ PSK: "bm90IGEga2V5" }, 1500), /^Error: could not parse psk: /);
  assert.throws(() => decodeWireguardConfig({ PSK: "!!" }, 1500), /^Error: could not parse psk: /);
  assert.equal(decodeWireguardConfig({ PSK: PSK }, 1500).psk, PSK);
  assert.throws(
    () => decodeWireguardConfig({ ListenPort: "1" }, 1500),
    /cannot unmarshal string .*ListenPort of type int/,
  );
});

test('BackendData is exactly {"PublicKey":…,"Port":…}', () => {
  assert.equal(wireguardBackendData(K2, 51820), `{"PublicKey":"${K2}","Port":51820}`);
});

test("the key file is created 0400 with a wg-compatible key and reused", () => {
  const path = join(dir, "sub", "wgkey");
  const a = loadOrCreateWireguardKey(path);
  assert.equal(statSync(path).mode & 0o777, 0o400);
  assert.equal(readFileSync(path, "utf8"), a.privateKey);
  assert.equal(a.publicKey, wireguardPublicKey(a.privateKey));
  assert.deepEqual(loadOrCreateWireguardKey(path), a);
  const bad = join(dir, "bad");
  writeFileSync(bad, "garbage");
  assert.throws(() => loadOrCreateWireguardKey(bad), /does not hold a base64 key/);
});

test("auto mode endpoint selection follows upstream's selectMode", () => {
  const ip = (s: string): IpAddr => IpAddr.parse(s);
  assert.equal(selectEndpointFamily(ip("10.0.0.2"), null, ip("10.0.0.1"), ip("2001:db8::1")), 4);
  assert.equal(
    selectEndpointFamily(ip("203.0.113.2"), ip("2001:db8::2"), ip("203.0.113.1"), ip("2001:db8::1")),
    4,
  );
  assert.equal(selectEndpointFamily(ip("10.0.0.2"), ip("2001:db8::2"), ip("10.0.0.1"), ip("2001:db8::1")), 6);
  assert.equal(selectEndpointFamily(ip("10.0.0.2"), ip("fd00::2"), ip("10.0.0.1"), ip("2001:db8::1")), 4);
  assert.equal(selectEndpointFamily(ip("10.0.0.2"), ip("2001:db8::2"), ip("10.0.0.1"), ip("fd00::1")), 4);
});

test("wireguard: device, key, address, route, MTU 1420, lease data; peers added, repaired, removed; devices deleted at exit", async () => {
  const { kernel, sm, deps } = rig();
  const file = keyFile();
  kernel.addVeth("flannel-wg"); // a leftover is recreated
  const net = (await createWireguardBackend(deps, { keyFile: file, checkMs: 60_000 }).registerNetwork(
    config({ PSK, PersistentKeepaliveInterval: 25 }),
    new AbortController().signal,
  )) as WireguardNetwork;
  const pub = wireguardPublicKey(readFileSync(file, "utf8"));
  assert.equal(net.mtu(), 1420);
  assert.equal(sm.acquired[0]!.backendType, "wireguard");
  assert.equal(sm.acquired[0]!.backendData, `{"PublicKey":"${pub}","Port":51820}`);
  assert.equal(sm.acquired[0]!.backendV6Data, undefined);
  const ctl = new AbortController();
  const running = net.run(ctl.signal);
  await sm.push({
    snapshot: [
      lease("10.244.2.0/24", "192.168.0.2", K2),
      lease("10.244.3.0/24", "192.168.0.3", K3, { port: 0 }),
      lease("10.244.4.0/24", "192.168.0.4", K3, { type: "vxlan" }),
    ],
  });
  const expected = [
    "ip link add flannel-wg type wireguard mtu 1420 up",
    "ip addr add 10.244.1.0/32 dev flannel-wg",
    "ip route add 10.244.0.0/16 dev flannel-wg scope link",
    `wg set flannel-wg listen-port 51820 public-key ${pub}`,
    `wg set flannel-wg peer ${K2} preshared-key (set) endpoint 192.168.0.2:51820 persistent-keepalive 25 allowed-ips 10.244.2.0/24`,
    `wg set flannel-wg peer ${K3} preshared-key (set) endpoint 192.168.0.3:51820 persistent-keepalive 25 allowed-ips 10.244.3.0/24`,
  ];
  assert.deepEqual(wgLines(kernel), expected);

  // Drift: a peer removed by hand, a stranger added, the route deleted → all repaired in one pass.
  kernel.wireguard.configure("flannel-wg", {
    peers: [
      { publicKey: K3, allowedIps: [], remove: true },
      { publicKey: PSK, allowedIps: [IpNet.parse("10.244.9.0/24")] },
    ],
  });
  kernel.routes.delete({ family: 4, dst: IpNet.parse("10.244.0.0/16") });
  net.reconcileNow();
  assert.deepEqual(wgLines(kernel), expected);

  // The device deleted by hand: recreated with the same key, port, address, route and peers.
  kernel.links.delete("flannel-wg");
  net.reconcileNow();
  assert.deepEqual(wgLines(kernel), expected);

  // A lease removed: its peer goes, by public key.
  await sm.push({ events: [{ type: "removed", lease: lease("10.244.2.0/24", "192.168.0.2", K2) }] });
  assert.deepEqual(wgLines(kernel), [...expected.slice(0, 4), expected[5]]);

  ctl.abort();
  await running;
  assert.equal(kernel.links.get("flannel-wg"), undefined);
});

test("separate mode dual-stack: two devices, v6 on its own port; auto mode: one device carrying both", async () => {
  {
    const { kernel, sm, deps } = rig(true);
    const net = await createWireguardBackend(deps, { keyFile: keyFile() }).registerNetwork(
      config({}, true),
      new AbortController().signal,
    );
    assert.match(sm.acquired[0]!.backendV6Data ?? "", /"Port":51821}$/);
    const ctl = new AbortController();
    const running = net.run(ctl.signal);
    await sm.push({
      snapshot: [
        lease("10.244.2.0/24", "192.168.0.2", K3, { v6: "fd00:10:0:2::/64", publicIpv6: "2001:db8::2" }),
      ],
    });
    const lines = wgLines(kernel);
    assert.ok(
      lines.includes("ip -6 route add fd00:10::/56 dev flannel-wg-v6 scope link metric 1024"),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => l.startsWith("wg set flannel-wg-v6 listen-port 51821 ")));
    assert.ok(
      lines.includes(
        `wg set flannel-wg-v6 peer ${K3} endpoint [2001:db8::2]:51821 allowed-ips fd00:10:0:2::/64`,
      ),
    );
    assert.ok(
      lines.includes(`wg set flannel-wg peer ${K3} endpoint 192.168.0.2:51820 allowed-ips 10.244.2.0/24`),
    );
    ctl.abort();
    await running;
    assert.equal(kernel.links.get("flannel-wg-v6"), undefined);
  }
  {
    const { kernel, sm, deps } = rig(true);
    const net = await createWireguardBackend(deps, { keyFile: keyFile() }).registerNetwork(
      config({ Mode: "auto" }, true),
      new AbortController().signal,
    );
    const ctl = new AbortController();
    const running = net.run(ctl.signal);
    await sm.push({
      snapshot: [
        lease("10.244.2.0/24", "192.168.0.2", K3, { v6: "fd00:10:0:2::/64", publicIpv6: "2001:db8::2" }),
      ],
    });
    const lines = wgLines(kernel);
    assert.equal(kernel.links.get("flannel-wg-v6"), undefined);
    // RFC 1918 peer address and a global IPv6 on both sides: IPv6 endpoint, on the peer's single port (A16).
    assert.ok(
      lines.includes(
        `wg set flannel-wg peer ${K3} endpoint [2001:db8::2]:51820 allowed-ips 10.244.2.0/24,fd00:10:0:2::/64`,
      ),
      lines.join("\n"),
    );
    ctl.abort();
    await running;
  }
});

test("a kernel without the wireguard module gives a plain error with a hint", async () => {
  const { kernel, deps } = rig();
  kernel.fail("links.addWireguard", "EOPNOTSUPP");
  const file = keyFile();
  const err = await createWireguardBackend(deps, { keyFile: file })
    .registerNetwork(config(), new AbortController().signal)
    .then(
      () => assert.fail("expected a failure"),
      (e: unknown) => e,
    );
  assert.ok(err instanceof FlannelError);
  assert.equal(err.code, KERNEL_MODULE_MISSING);
  assert.match(
    err.message,
    /^the wireguard backend needs the kernel's wireguard module, which this kernel does not have/,
  );
  assert.match(err.message, /load it or choose another backend \(vxlan\)$/);
  assert.throws(() => statSync(file), { code: "ENOENT" }); // no key file written for nothing
});
