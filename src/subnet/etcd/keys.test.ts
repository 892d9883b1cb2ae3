import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  goCompactJson,
  isIpv6OnlyKey,
  joinKey,
  makeSubnetKey,
  parseSubnetKey,
} from "./keys.ts";

test("parseSubnetKey: IPv4 key round-trips (TestSubnetNodev4)", () => {
  const k = parseSubnetKey("10.12.13.0-24");
  assert.ok(k);
  assert.equal(k.subnet.toString(), "10.12.13.0/24");
  assert.equal(k.ipv6Subnet, null);
  assert.equal(makeSubnetKey(k.subnet, k.ipv6Subnet), "10.12.13.0-24");
});

test("parseSubnetKey: dual-stack key round-trips (TestSubnetNodev6)", () => {
  const k = parseSubnetKey("10.12.13.0-24&fd00:12:13::-56");
  assert.ok(k);
  assert.equal(k.subnet.toString(), "10.12.13.0/24");
  assert.equal(k.ipv6Subnet?.toString(), "fd00:12:13::/56");
  assert.equal(makeSubnetKey(k.subnet, k.ipv6Subnet), "10.12.13.0-24&fd00:12:13::-56");
});

test("IPv6-only keys use upstream's empty IPv4 form 0.0.0.0-0 and round-trip", () => {
  const v6 = IpNet.parse("fd00:12:13::/64");
  assert.equal(makeSubnetKey(null, v6), "0.0.0.0-0&fd00:12:13::-64");
  const k = parseSubnetKey("/coreos.com/network/subnets/0.0.0.0-0&fd00:12:13::-64");
  assert.ok(k);
  assert.equal(isIpv6OnlyKey(k), true);
  assert.equal(k.ipv6Subnet?.toString(), "fd00:12:13::/64");
  const dual = parseSubnetKey("10.12.13.0-24&fd00:12:13::-64");
  assert.ok(dual);
  assert.equal(isIpv6OnlyKey(dual), false);
  const v4 = parseSubnetKey("0.0.0.0-0");
  assert.ok(v4);
  assert.equal(isIpv6OnlyKey(v4), false); // no IPv6 part: not an IPv6-only lease
});

test("parseSubnetKey: full etcd keys parse by their last element", () => {
  assert.equal(parseSubnetKey("/coreos.com/network/subnets/10.5.52.0-24")?.subnet.toString(), "10.5.52.0/24");
});

test("parseSubnetKey: invalid keys give null (TestSubnetNodeInvalid)", () => {
  for (const key of [
    "10",
    "10.12.13.0",
    "10.12.13-24",
    "10.12.13.300-24",
    "10.12.13.0-24hi",
    "&2001::-56",
    "10.12.13.0-24&:12:13:-56",
    "10.12.13.0-24&20011::-56",
    "10.12.13.0-24&2001-56",
    "10.12.13.0-24&2001::",
    "10.12.13.0-24&2001::-56hi",
  ]) {
    assert.equal(parseSubnetKey(key), null, key);
  }
});

test("parseSubnetKey: prefix lengths follow upstream's bit sizes (v4 0..31, v6 0..127)", () => {
  assert.equal(parseSubnetKey("10.0.0.0-31")?.subnet.prefixLen, 31);
  assert.equal(parseSubnetKey("10.0.0.1-32"), null);
  assert.equal(parseSubnetKey("10.0.0.0-24&fd00::-127")?.ipv6Subnet?.prefixLen, 127);
  assert.equal(parseSubnetKey("10.0.0.0-24&fd00::-128"), null);
  assert.equal(parseSubnetKey("10.0.0.0-024")?.subnet.prefixLen, 24); // ParseUint accepts leading zeros
  assert.equal(parseSubnetKey("10.0.0.0-24&FD00::-64"), null); // upper-case hex is not matched
  assert.equal(parseSubnetKey("10.0.0.5-24"), null); // host bits set (our deliberate difference)
});

test("joinKey joins like Go's path.Join", () => {
  assert.equal(
    joinKey("/coreos.com/network", "subnets", "10.5.52.0-24"),
    "/coreos.com/network/subnets/10.5.52.0-24",
  );
  assert.equal(joinKey("/coreos.com/network/", "config"), "/coreos.com/network/config");
});

const UPSTREAM =
  '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';

test("encodeLeaseAttrs is byte-compatible with upstream (reservations.md example)", () => {
  const out = encodeLeaseAttrs({
    publicIp: IpAddr.parse("192.168.64.3"),
    publicIpv6: null,
    backendType: "vxlan",
    backendData: '{ "VNI": 1,\n  "VtepMAC": "c6:d2:32:6f:8f:44" }',
  });
  assert.equal(out, UPSTREAM);
});

test("encodeLeaseAttrs: omitempty rules and IPv6", () => {
  assert.equal(
    encodeLeaseAttrs({ publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "" }),
    '{"PublicIP":"0.0.0.0","PublicIPv6":null}',
  );
  assert.equal(
    encodeLeaseAttrs({
      publicIp: IpAddr.parse("10.0.0.1"),
      publicIpv6: IpAddr.parse("fd00:0:0::1"),
      backendType: "vxlan",
      backendData: '{"VNI":1}',
      backendV6Data: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}',
    }),
    '{"PublicIP":"10.0.0.1","PublicIPv6":"fd00::1","BackendType":"vxlan","BackendData":{"VNI":1},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
  );
  assert.throws(
    () =>
      encodeLeaseAttrs({ publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "x", backendData: "{bad" }),
    /BackendData is not valid JSON: \{bad/,
  );
});

test("goCompactJson: whitespace dropped, strings kept, HTML characters escaped like Go", () => {
  assert.equal(
    goCompactJson('{ "a" : [1, 2.50, "x y"],\n "b": "<&>" }'),
    '{"a":[1,2.50,"x y"],"b":"\\u003c\\u0026\\u003e"}',
  );
  assert.equal(goCompactJson('"a\\" b"'), '"a\\" b"');
});

test("decodeLeaseAttrs: upstream value round-trips byte for byte", () => {
  const r = decodeLeaseAttrs(UPSTREAM);
  assert.ok(r.ok);
  assert.equal(r.value.publicIp.toString(), "192.168.64.3");
  assert.equal(r.value.publicIpv6, null);
  assert.equal(r.value.backendType, "vxlan");
  assert.equal(r.value.backendData, '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}');
  assert.equal(encodeLeaseAttrs(r.value), UPSTREAM);
});

test("decodeLeaseAttrs: Go semantics (case-insensitive keys, last duplicate wins, unknown ignored)", () => {
  const r = decodeLeaseAttrs(
    '{"publicip":"1.1.1.1","PublicIP":"2.2.2.2","publicIPv6":"fd00::2","backendtype":"host-gw","Extra":[1,{"x":"}"}],"backenddata": {"a" : "}"} }',
  );
  assert.ok(r.ok);
  assert.equal(r.value.publicIp.toString(), "2.2.2.2");
  assert.equal(r.value.publicIpv6?.toString(), "fd00::2");
  assert.equal(r.value.backendType, "host-gw");
  assert.equal(r.value.backendData, '{"a" : "}"}');
  // Data a lease does not carry is absent, not undefined (deepEqual and encodeLeaseAttrs tell them apart).
  assert.deepEqual(Object.keys(r.value), ["publicIp", "publicIpv6", "backendType", "backendData"]);
  const none = decodeLeaseAttrs('{"PublicIP":"1.2.3.4","BackendV6Data":{}}');
  assert.ok(none.ok);
  assert.deepEqual(Object.keys(none.value), ["publicIp", "publicIpv6", "backendType", "backendV6Data"]);
});

test("decodeLeaseAttrs keeps BackendData as written whatever JSON.stringify would make of it", () => {
  const cases: [string, string][] = [
    // Go's escape of "<", a number written 1.0, a key V8 would move first
    [
      '{"PublicIP":"1.2.3.4","BackendData":{"VNI":1.0,"s":"\\u003c","b":1,"2":3}}',
      '{"VNI":1.0,"s":"\\u003c","b":1,"2":3}',
    ],
    ['{"PublicIP":"1.2.3.4","Backend\\u0044ata":{"a":1}}', '{"a":1}'],
    ['{ "PublicIP" : "1.2.3.4" ,\n "BackendData" : [ 1 , "]" ] }', '[ 1 , "]" ]'],
    ['{"PublicIP":"1.2.3.4","BackendData":{"a":{"b":[{"c":"\\"}"}]}}}', '{"a":{"b":[{"c":"\\"}"}]}}'],
    ['{"PublicIP":"1.2.3.4","BackendData":true,"BackendV6Data":-1.5e3}', "true"],
  ];
  for (const [text, backendData] of cases) {
    const r = decodeLeaseAttrs(text);
    assert.ok(r.ok, text);
    assert.equal(r.value.publicIp.toString(), "1.2.3.4");
    assert.equal(r.value.backendData, backendData, text);
  }
  const last = decodeLeaseAttrs(cases[4]![0]);
  assert.ok(last.ok);
  assert.equal(last.value.backendV6Data, "-1.5e3");
});

test("decodeLeaseAttrs: garbage is an error result, never a throw", () => {
  for (const bad of [
    "",
    "garbage",
    "[1,2]",
    "null",
    '{"PublicIP":"300.1.1.1"}',
    '{"PublicIP":"fd00::1"}',
    '{"PublicIPv6":"1.2.3.4"}',
    '{"BackendType":5}',
    '{"PublicIP":',
  ]) {
    const r = decodeLeaseAttrs(bad);
    assert.equal(r.ok, false, bad);
  }
  const missing = decodeLeaseAttrs("{}");
  assert.ok(missing.ok);
  assert.equal(missing.value.publicIp.toString(), "0.0.0.0");
});

test("makeSubnetKey prints IPv6 in Go's compressed form", () => {
  assert.equal(
    makeSubnetKey(IpNet.parse("10.1.0.0/24"), IpNet.parse("fd00:0012:0013:0000::/64")),
    "10.1.0.0-24&fd00:12:13::-64",
  );
});
