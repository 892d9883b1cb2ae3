import assert from "node:assert/strict";
import { test } from "node:test";

import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { newAnnotations } from "./annotations.ts";
import { containsCidr, leaseChanged, nodePodCidrs, nodeToLease, planNodeAnnotations } from "./node-lease.ts";

const A = newAnnotations("flannel.alpha.coreos.com");
const P = "flannel.alpha.coreos.com/";

// Upstream TestContainsCIDR (spec §10.2 item 10).
for (const [outer, inner, want] of [
  ["10.244.0.0/16", "10.244.255.0/24", true],
  ["10.244.0.0/16", "10.244.0.0/15", false],
  ["2001:0db8:1234::/48", "2001:0db8:1234:ffff::/64", true],
  ["2001:0db8:1234::/48", "fe02::/32", false],
] as const) {
  test(`containsCidr(${outer}, ${inner}) is ${want}`, () => {
    assert.equal(containsCidr(IpNet.parse(outer), IpNet.parse(inner)), want);
  });
}

test("nodePodCidrs: podCIDRs wins over podCIDR; more than two is an error", () => {
  const r = nodePodCidrs(
    { spec: { podCIDR: "10.1.0.0/24", podCIDRs: ["10.1.0.0/24", "fd00:1::/64"] } },
    "n1",
  );
  assert.equal(r.v4?.toString(), "10.1.0.0/24");
  assert.equal(r.v6?.toString(), "fd00:1::/64");
  assert.equal(nodePodCidrs({ spec: { podCIDR: "fd00:2::/64" } }, "n1").v6?.toString(), "fd00:2::/64");
  assert.throws(() => nodePodCidrs({ spec: {} }, "n1"), { message: 'node "n1" pod cidr not assigned' });
  assert.throws(
    () =>
      nodePodCidrs(
        { spec: { podCIDR: "10.1.0.0/24", podCIDRs: ["10.1.0.0/24", "10.2.0.0/24", "fd00::/64"] } },
        "n1",
      ),
    {
      message: 'node "n1" pod cidrs should be IPv4/IPv6 only or dualstack',
    },
  );
});

test("nodeToLease turns a peer node into a lease with its annotations", () => {
  const l = nodeToLease(
    {
      metadata: {
        name: "n2",
        resourceVersion: "42",
        annotations: {
          [`${P}backend-type`]: "vxlan",
          [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}',
          [`${P}public-ip`]: "192.168.1.2",
          [`${P}backend-v6-data`]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:f6"}',
          [`${P}public-ipv6`]: "fd00::2",
        },
      },
      spec: { podCIDR: "10.244.2.0/24", podCIDRs: ["10.244.2.0/24", "fd00:244:2::/64"] },
    },
    A,
    { v4: true, v6: true },
    new Date(0),
  );
  assert.equal(l.subnet?.toString(), "10.244.2.0/24");
  assert.equal(l.ipv6Subnet?.toString(), "fd00:244:2::/64");
  assert.equal(l.attrs.publicIp.toString(), "192.168.1.2");
  assert.equal(l.attrs.publicIpv6?.toString(), "fd00::2");
  assert.equal(l.attrs.backendType, "vxlan");
  assert.equal(l.attrs.backendData, '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}');
  assert.equal(l.attrs.backendV6Data, '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:f6"}');
  assert.deepEqual([l.enableIpv4, l.enableIpv6, l.asof], [true, true, 42]);
  assert.equal(l.expiration?.getTime(), 24 * 3600 * 1000);
});

test("nodeToLease rejects nodes without public-ip or without a v4 podCIDR (upstream messages)", () => {
  assert.throws(
    () =>
      nodeToLease({ metadata: { name: "x" }, spec: { podCIDR: "10.0.0.0/24" } }, A, { v4: true, v6: false }),
    {
      message: "invalid IP address format",
    },
  );
  assert.throws(
    () =>
      nodeToLease(
        {
          metadata: { name: "x", annotations: { [`${P}public-ip`]: "1.2.3.4" } },
          spec: { podCIDR: "fd00::/64", podCIDRs: ["fd00::/64"] },
        },
        A,
        { v4: true, v6: false },
      ),
    { message: "missing IPv4 address on n.Spec.PodCIDRs" },
  );
});

test("planNodeAnnotations: nothing to do when the node already carries the attributes", () => {
  const attrs = {
    publicIp: IpAddr.parse("1.2.3.4"),
    publicIpv6: null,
    backendType: "vxlan",
    backendData: '{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:aa"}',
  };
  const first = planNodeAnnotations({}, attrs, A);
  assert.deepEqual(first?.changes, {
    [`${P}backend-type`]: "vxlan",
    [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:aa"}',
    [`${P}public-ip`]: "1.2.3.4",
    [`${P}kube-subnet-manager`]: "true",
  });
  assert.equal(planNodeAnnotations(first?.changes ?? {}, attrs, A), null);
});

test("planNodeAnnotations: udp/alloc leases write an empty backend-type and backend-data null", () => {
  const plan = planNodeAnnotations(
    {},
    { publicIp: IpAddr.parse("1.2.3.4"), publicIpv6: null, backendType: "" },
    A,
  );
  assert.equal(plan?.changes[`${P}backend-type`], "");
  assert.equal(plan?.changes[`${P}backend-data`], "null");
});

test("leaseChanged: labels do not matter; VTEP MAC, public IP and podCIDR changes do (either family)", () => {
  const base = {
    metadata: {
      annotations: {
        [`${P}backend-data`]: "a",
        [`${P}public-ip`]: "1.1.1.1",
        [`${P}public-ipv6`]: "fd00::1",
      },
    },
    spec: { podCIDR: "10.0.0.0/24" },
  };
  const fam = { v4: true, v6: true };
  assert.equal(leaseChanged(base, structuredClone(base), A, fam), false);
  const mac = structuredClone(base);
  mac.metadata.annotations[`${P}backend-data`] = "b";
  assert.equal(
    leaseChanged(base, mac, A, fam),
    true,
    "v4-only change in dual stack (upstream drops it, A10)",
  );
  const cidr = structuredClone(base);
  cidr.spec.podCIDR = "10.0.1.0/24";
  assert.equal(leaseChanged(base, cidr, A, fam), true);
});
