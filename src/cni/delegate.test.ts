import assert from "node:assert/strict";
import { test } from "node:test";
import { buildDelegate } from "./delegate.ts";
import { parseNetConf } from "./netconf.ts";
import { parseSubnetEnv } from "./subnet-env.ts";

const V4 =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const V6 =
  "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const DUAL = V4 + "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\n";

function render(netconf: object, env: string): string {
  return buildDelegate(parseNetConf(JSON.stringify(netconf)), parseSubnetEnv(env, "subnet.env")).json;
}
const BASE = { name: "cni-flannel", type: "flannel", subnetFile: "/x", dataDir: "/y" };

test("§8.7 IPv4: exact bytes (compact, keys sorted)", () => {
  assert.equal(
    render(BASE, V4),
    '{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],' +
      '"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}',
  );
});

test("§8.7 two IPv4 networks: one route each, ranges only v4", () => {
  const env = V4.replace("10.1.0.0/16", "10.1.0.0/16,192.168.0.0/16");
  assert.equal(
    render(BASE, env),
    '{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],' +
      '"routes":[{"dst":"10.1.0.0/16"},{"dst":"192.168.0.0/16"}],"type":"host-local"},' +
      '"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}',
  );
});

test("§8.7 IPv6 only", () => {
  assert.equal(
    render(BASE, V6),
    '{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"fc00::/64"}]],"routes":[{"dst":"fc00::/48"}],' +
      '"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}',
  );
});

test("§8.7 dual stack: v4 range and route first", () => {
  assert.equal(
    render(BASE, DUAL),
    '{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}],[{"subnet":"fc00::/64"}]],' +
      '"routes":[{"dst":"10.1.0.0/16"},{"dst":"fc00::/48"}],"type":"host-local"},' +
      '"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}',
  );
});

test("§8.7 user ipam: type and unknown keys kept, user routes first (struct order dst, gw)", () => {
  const ipam = {
    type: "my-ipam",
    "unknown-param": "unknown-value",
    routes: [{ dst: "10.96.0.0/12" }, { gw: "10.1.17.20", dst: "192.168.244.0/24" }],
  };
  const d = JSON.parse(render({ ...BASE, ipam }, V4)) as { ipam: unknown };
  assert.deepEqual(d.ipam, {
    type: "my-ipam",
    "unknown-param": "unknown-value",
    routes: [{ dst: "10.96.0.0/12" }, { dst: "192.168.244.0/24", gw: "10.1.17.20" }, { dst: "10.1.0.0/16" }],
    ranges: [[{ subnet: "10.1.17.0/24" }]],
  });
  assert.match(
    render({ ...BASE, ipam }, V4),
    /"ipam":\{"ranges":.*,"routes":\[\{"dst":"10\.96\.0\.0\/12"\},\{"dst":"192\.168\.244\.0\/24","gw":"10\.1\.17\.20"\}/,
  );
  // without a type, host-local
  const noType = JSON.parse(render({ ...BASE, ipam: { routes: [] } }, V4)) as { ipam: { type: string } };
  assert.equal(noType.ipam.type, "host-local");
});

test("user routes go through CNI's Route struct: unknown keys dropped, omitempty, dst keeps host bits", () => {
  const ipam = {
    routes: [{ DST: "10.96.0.5/12", gw: "", mtu: 0, priority: 7, table: 0, extra: 1, scope: null }],
  };
  assert.match(
    render({ ...BASE, ipam }, V4),
    /"routes":\[\{"dst":"10\.96\.0\.5\/12","priority":7,"table":0\},/,
  );
  assert.match(
    render({ ...BASE, ipam: { routes: [{ dst: "2001:DB8:0:0::/64", gw: "2001:db8::0001" }] } }, V4),
    /\{"dst":"2001:db8::\/64","gw":"2001:db8::1"\}/,
  );
});

test("bad user routes: upstream's wrapping plus where", () => {
  const bad = (routes: unknown, re: RegExp): void =>
    assert.throws(
      () => render({ ...BASE, ipam: { routes } }, V4),
      (e: Error) =>
        e.message.startsWith(
          "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: ",
        ) && re.test(e.message),
    );
  bad("10.0.0.0/8", /must be an array of routes, not the string "10\.0\.0\.0\/8"/);
  bad([{ dst: "10.0.0/8" }], /ipam\.routes\[0\]\.dst: invalid CIDR address: 10\.0\.0\/8/);
  bad([{ dst: "10.0.0.0/8" }, { gw: "1.2.3.4" }], /ipam\.routes\[1\] needs "dst"/);
  bad([{ dst: "10.0.0.0/8", gw: "x" }], /ipam\.routes\[0\]\.gw must be an IP address/);
  bad([{ dst: "10.0.0.0/8", mtu: 1.5 }], /ipam\.routes\[0\]\.mtu must be an integer/);
});

test("defaults never override the user's delegate keys; cniVersion and runtimeConfig are copied", () => {
  const netconf = {
    name: "cbr0",
    cniVersion: "0.3.1",
    type: "flannel",
    delegate: {
      hairpinMode: true,
      isDefaultGateway: true,
      ipMasq: true,
      mtu: 1400,
      isGateway: false,
      cniVersion: "9",
    },
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
  };
  const d = JSON.parse(render(netconf, V4)) as Record<string, unknown>;
  assert.equal(d["ipMasq"], true);
  assert.equal(d["mtu"], 1400);
  assert.equal(d["isGateway"], false);
  assert.equal(d["cniVersion"], "0.3.1");
  assert.deepEqual(d["runtimeConfig"], netconf.runtimeConfig);
});

test("§8.7 stock manifest conflist delegate, exact bytes", () => {
  const netconf = {
    name: "cbr0",
    cniVersion: "0.3.1",
    type: "flannel",
    delegate: { hairpinMode: true, isDefaultGateway: true },
  };
  const env =
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
  assert.equal(
    render(netconf, env),
    '{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],' +
      '"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,' +
      '"mtu":1450,"name":"cbr0","type":"bridge"}',
  );
});

test("a non-bridge delegate gets no isGateway; IPMASQ=false turns the bridge's masquerade on", () => {
  const d = JSON.parse(
    render({ ...BASE, delegate: { type: "ipvlan" } }, V4.replace("IPMASQ=true", "IPMASQ=false")),
  ) as Record<string, unknown>;
  assert.equal(d["type"], "ipvlan");
  assert.equal(d["isGateway"], undefined);
  assert.equal(d["ipMasq"], true);
});

test("delegate validation: upstream's exact messages", () => {
  const bad = (delegate: unknown, msg: string): void =>
    assert.throws(() => render({ ...BASE, delegate }, V4), new Error(msg));
  bad({ type: 5 }, "'delegate' dictionary, if present, must have (string) 'type' field");
  bad({ type: null }, "'delegate' dictionary, if present, must have (string) 'type' field");
  bad({ name: "x" }, "'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  bad({ ipam: {} }, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
});

test("user strings are escaped as Go does (HTML characters)", () => {
  assert.match(render({ ...BASE, delegate: { note: "<a&b>" } }, V4), /"note":"\\u003ca\\u0026b\\u003e"/);
});
