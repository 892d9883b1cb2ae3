import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSubnetEnv } from "./subnet-env.ts";

const F = "/run/flannel/subnet.env";
const strs = (nets: { toString(): string }[]): string[] => nets.map((n) => n.toString());

test("IPv4 file: subnet is masked to its network, MTU and IPMASQ parsed", () => {
  const env = parseSubnetEnv(
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    F,
  );
  assert.deepEqual(strs(env.networks), ["10.1.0.0/16"]);
  assert.equal(env.subnet?.toString(), "10.1.17.0/24");
  assert.deepEqual(env.ipv6Networks, []);
  assert.equal(env.ipv6Subnet, null);
  assert.equal(env.mtu, 1472);
  assert.equal(env.ipMasq, true);
});

test("dual stack, network lists, de-duplication and CRLF", () => {
  const env = parseSubnetEnv(
    "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16,10.1.2.3/16\r\n" +
      "FLANNEL_SUBNET=10.1.17.1/24\r\nFLANNEL_IPV6_NETWORK=fc00::/48\r\nFLANNEL_IPV6_SUBNET=fc00::1/64\r\n" +
      "FLANNEL_MTU=1450\r\nFLANNEL_IPMASQ=false",
    F,
  );
  assert.deepEqual(strs(env.networks), ["10.1.0.0/16", "192.168.0.0/16"]);
  assert.deepEqual(strs(env.ipv6Networks), ["fc00::/48"]);
  assert.equal(env.ipv6Subnet?.toString(), "fc00::/64");
  assert.equal(env.ipMasq, false);
});

test("IPMASQ is true only for the exact text true; unknown keys, blanks and dotenv syntax are ignored", () => {
  const env = parseSubnetEnv(
    "# comment\n\nexport FLANNEL_MTU=9\nFLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n" +
      "FLANNEL_MTU=0100\nFLANNEL_IPMASQ=True\nOTHER\n",
    F,
  );
  assert.equal(env.mtu, 100);
  assert.equal(env.ipMasq, false);
});

test("a later line overrides an earlier one", () => {
  const env = parseSubnetEnv(
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_NETWORK=10.2.0.0/16\nFLANNEL_SUBNET=10.2.3.1/24\nFLANNEL_MTU=1\nFLANNEL_IPMASQ=true\n",
    F,
  );
  assert.deepEqual(strs(env.networks), ["10.2.0.0/16"]);
});

test("missing keys: upstream's message and order (§10.2 case 18)", () => {
  assert.throws(
    () => parseSubnetEnv("foo=bar\n", F),
    new Error(
      `${F} is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ`,
    ),
  );
  // a half-written file (flanneld killed mid-write by an old non-atomic writer)
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUB", F),
    new Error(`${F} is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ`),
  );
  assert.throws(
    () =>
      parseSubnetEnv("FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1\n", F),
    new Error(`${F} is missing FLANNEL_IPMASQ`),
  );
});

test("a recognised key without '=' is an error naming the line, not a crash", () => {
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_MTU\n", F),
    /subnet\.env line 2 has "FLANNEL_MTU" without a value: write it as FLANNEL_MTU=<value>/,
  );
});

test("bad values name the line, the key and the value", () => {
  assert.throws(
    () => parseSubnetEnv("FLANNEL_SUBNET=10.1.17\n", F),
    /line 1: FLANNEL_SUBNET: invalid CIDR address: 10\.1\.17$/,
  );
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16,nope\n", F),
    /line 1: FLANNEL_NETWORK: invalid CIDR address: nope$/,
  );
  assert.throws(
    () => parseSubnetEnv("FLANNEL_NETWORK= 10.1.0.0/16\n", F),
    /invalid CIDR address: {2}10\.1\.0\.0\/16/,
  );
  assert.throws(
    () => parseSubnetEnv("FLANNEL_MTU=-1\n", F),
    /FLANNEL_MTU: strconv\.ParseUint: parsing "-1": invalid syntax/,
  );
  assert.throws(() => parseSubnetEnv("FLANNEL_MTU=4294967296\n", F), /value out of range/);
  assert.throws(() => parseSubnetEnv("FLANNEL_MTU=\n", F), /parsing "": invalid syntax/);
});
