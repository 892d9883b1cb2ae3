import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeVxlanConfig, describeVxlanConfig } from "./config.ts";

test("defaults: VNI 1, port 0 (kernel default 8472), everything off, MTU from the interface", () => {
  assert.deepEqual(decodeVxlanConfig({ Type: "vxlan" }, 1500), {
    vni: 1,
    port: 0,
    gbp: false,
    learning: false,
    directRouting: false,
    mtu: 1500,
  });
  assert.equal(
    describeVxlanConfig(decodeVxlanConfig({}, 1500)),
    "VXLAN config: VNI=1 Port=0 GBP=false Learning=false DirectRouting=false",
  );
});

test("keys match case-insensitively, the last duplicate wins, null keeps the default", () => {
  const cfg = decodeVxlanConfig({ vni: 4, VNI: 5, directrouting: true, LEARNING: true, mtu: null }, 9000);
  assert.equal(cfg.vni, 5);
  assert.equal(cfg.directRouting, true);
  assert.equal(cfg.learning, true);
  assert.equal(cfg.mtu, 9000);
});

test("wrong JSON types are Go decode errors naming the field", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ VNI: "1" }, "json: cannot unmarshal string into Go struct field .VNI of type int"],
    [{ Port: 1.5 }, "json: cannot unmarshal number 1.5 into Go struct field .Port of type int"],
    [{ GBP: 1 }, "json: cannot unmarshal number into Go struct field .GBP of type bool"],
    [
      { DirectRouting: "true" },
      "json: cannot unmarshal string into Go struct field .DirectRouting of type bool",
    ],
  ];
  for (const [backend, msg] of cases) {
    assert.throws(() => decodeVxlanConfig(backend, 1500), {
      message: `error decoding VXLAN backend config: ${msg}`,
    });
  }
});

test("values the kernel would refuse are explained", () => {
  assert.throws(
    () => decodeVxlanConfig({ VNI: 16777216 }, 1500),
    /^Error: Invalid VXLAN VNI 16777216: set Backend\.VNI/,
  );
  assert.throws(() => decodeVxlanConfig({ Port: 70000 }, 1500), /^Error: Invalid VXLAN port 70000/);
  assert.throws(
    () => decodeVxlanConfig({ MTU: 100 }, 1500),
    /^Error: Invalid VXLAN MTU 100: the base MTU must be at least 138/,
  );
});
