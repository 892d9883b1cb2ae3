import assert from "node:assert/strict";
import { test } from "node:test";

import { macFromBackendData, newAnnotations } from "./annotations.ts";

// Upstream Test_newAnnotations (spec §3.2, §10.2 item 9).
const GOOD: [string, string][] = [
  ["flannel.alpha.coreos.com", "flannel.alpha.coreos.com/backend-type"],
  ["flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/backend-type"],
  ["flannel.alpha.coreos.com/prefix", "flannel.alpha.coreos.com/prefix-backend-type"],
  ["flannel.alpha.coreos.com/prefix-", "flannel.alpha.coreos.com/prefix-backend-type"],
  ["org.com", "org.com/backend-type"],
  ["org9.com", "org9.com/backend-type"],
  ["org.com/9", "org.com/9-backend-type"],
];

for (const [prefix, want] of GOOD) {
  test(`newAnnotations(${JSON.stringify(prefix)}) names backend-type ${want}`, () => {
    assert.equal(newAnnotations(prefix).backendType, want);
  });
}

for (const prefix of ["org", "org/", "org/prefix", "org.COM", "org.com/PREFIX"]) {
  test(`newAnnotations(${JSON.stringify(prefix)}) is rejected with upstream's message`, () => {
    assert.throws(() => newAnnotations(prefix), {
      message: "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*",
    });
  });
}

test("a prefix with two slashes is rejected", () => {
  assert.throws(() => newAnnotations("a.b/c/d"), {
    message: "subnet/kube: prefix can contain at most single slash",
  });
});

test("the default prefix yields every annotation name of the spec", () => {
  assert.deepEqual(newAnnotations("flannel.alpha.coreos.com"), {
    subnetKubeManaged: "flannel.alpha.coreos.com/kube-subnet-manager",
    backendData: "flannel.alpha.coreos.com/backend-data",
    backendV6Data: "flannel.alpha.coreos.com/backend-v6-data",
    backendType: "flannel.alpha.coreos.com/backend-type",
    backendPublicIp: "flannel.alpha.coreos.com/public-ip",
    backendPublicIpv6: "flannel.alpha.coreos.com/public-ipv6",
    backendPublicIpOverwrite: "flannel.alpha.coreos.com/public-ip-overwrite",
    backendPublicIpv6Overwrite: "flannel.alpha.coreos.com/public-ipv6-overwrite",
    nodePublicIp: "flannel.alpha.coreos.com/node-public-ip",
    nodePublicIpv6: "flannel.alpha.coreos.com/node-public-ipv6",
  });
});

test("macFromBackendData reads VtepMAC and ignores anything else", () => {
  assert.equal(macFromBackendData('{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}'), "12:c6:65:89:b4:e3");
  assert.equal(macFromBackendData("null"), undefined);
  assert.equal(macFromBackendData(""), undefined);
  assert.equal(macFromBackendData(undefined), undefined);
  assert.equal(macFromBackendData('{"VNI":1}'), undefined);
  assert.equal(macFromBackendData("not json"), undefined);
});
