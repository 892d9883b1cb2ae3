import { test } from "node:test";
import assert from "node:assert/strict";
import { checkNetworkConfig, decodeBackendField, getField, parseConfig } from "./config.ts";
import type { NetworkConfig } from "./network-config.ts";

/** The fields a row asserts, printed as upstream's String() forms. */
function view(cfg: NetworkConfig): Record<string, unknown> {
  const s = (v: { toString(): string } | null): string | null => (v === null ? null : v.toString());
  return {
    enableIpv4: cfg.enableIpv4,
    enableIpv6: cfg.enableIpv6,
    network: s(cfg.network),
    subnetLen: cfg.subnetLen,
    subnetMin: s(cfg.subnetMin),
    subnetMax: s(cfg.subnetMax),
    ipv6Network: s(cfg.ipv6Network),
    ipv6SubnetLen: cfg.ipv6SubnetLen,
    ipv6SubnetMin: s(cfg.ipv6SubnetMin),
    ipv6SubnetMax: s(cfg.ipv6SubnetMax),
    backendType: cfg.backendType,
  };
}

interface Row {
  input: string;
  /** Run checkNetworkConfig after parsing (upstream's etcd mode). */
  check: boolean;
  want?: Partial<ReturnType<typeof view>>;
  error?: string;
}

// Every example of spec §2.3, plus §10.2 items 1–5.
const SPEC_ROWS: Row[] = [
  {
    input: `{ "network": "10.3.0.0/16" }`,
    check: true,
    want: { network: "10.3.0.0/16", subnetLen: 24, subnetMin: "10.3.1.0", subnetMax: "10.3.255.0" },
  },
  {
    input: `{ "enableIPv6": true, "ipv6Network": "fc00::/48", "enableIPv4": false }`,
    check: true,
    want: {
      enableIpv4: false,
      enableIpv6: true,
      ipv6SubnetLen: 64,
      ipv6SubnetMin: "fc00:0:0:1::",
      ipv6SubnetMax: "fc00:0:0:ffff::",
    },
  },
  {
    input: `{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.5.0", "SubnetMax": "10.3.8.0", "SubnetLen": 28 }`,
    check: false,
    want: { network: "10.3.0.0/16", subnetLen: 28, subnetMin: "10.3.5.0", subnetMax: "10.3.8.0" },
  },
  {
    input:
      `{ "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00:0:0:1::",` +
      ` "IPv6SubnetMax": "fc00:0:0:f::", "IPv6SubnetLen": 124, "enableIPv4": false }`,
    check: false,
    want: {
      enableIpv4: false,
      ipv6Network: "fc00::/48",
      ipv6SubnetLen: 124,
      ipv6SubnetMin: "fc00:0:0:1::",
      ipv6SubnetMax: "fc00:0:0:f::",
    },
  },
  {
    input: `{"Network":"10.0.0.0/22"}`,
    check: true,
    want: { subnetLen: 24, subnetMin: "10.0.1.0", subnetMax: "10.0.3.0" },
  },
  {
    input: `{"Network":"10.0.0.0/23"}`,
    check: true,
    want: { subnetLen: 25, subnetMin: "10.0.0.128", subnetMax: "10.0.1.128" },
  },
  {
    input: `{"Network":"10.0.0.0/28"}`,
    check: true,
    want: { subnetLen: 30, subnetMin: "10.0.0.4", subnetMax: "10.0.0.12" },
  },
  {
    input: `{"Network":"10.0.0.0/29"}`,
    check: true,
    error: "network is too small. Minimum useful network prefix is /28",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetLen":31}`,
    check: true,
    error: "SubnetLen must be less than /31",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetLen":17}`,
    check: true,
    error: "network must be able to accommodate at least four subnets",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.5"}`,
    check: true,
    error: "SubnetMin is not on a SubnetLen boundary: 10.0.1.5",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetMax":"10.1.0.0"}`,
    check: true,
    error: "SubnetMax is not in the range of the Network",
  },
  { input: `{"Network":"10.3.5.7/16"}`, check: false, want: { network: "10.3.0.0/16" } },
  { input: `{}`, check: false, want: { backendType: "udp", network: null, enableIpv4: true } },
  { input: `{}`, check: true, error: "please define a correct Network parameter in the flannel config" },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/125","EnableIPv4":false}`,
    check: true,
    error: "IPv6Network is too small. Minimum useful network prefix is /124",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/63","EnableIPv4":false}`,
    check: true,
    want: { ipv6SubnetLen: 65 },
  },
  {
    input: `{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":7890}}`,
    check: true,
    want: { subnetLen: 20, subnetMin: "10.10.0.0", subnetMax: "10.99.0.0", backendType: "udp" },
  },
  { input: `{"Network":"10.1.0.0/16"}`, check: true, want: { backendType: "udp" } },
  {
    input: `{"Network":"10.1.0.0/16","Backend":{"Type":"VXLAN"}}`,
    check: true,
    want: { backendType: "vxlan" },
  },
];

// The remaining rules of §2.2 and the Go decoding behaviour of §2.1.
const MORE_ROWS: Row[] = [
  {
    input: `{"Network":"0.0.0.0/0"}`,
    check: true,
    error: "please define a correct Network parameter in the flannel config",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}`,
    check: true,
    error: "SubnetMin is not in the range of the Network",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetMax":"10.0.3.7"}`,
    check: true,
    error: "SubnetMax is not on a SubnetLen boundary: 10.0.3.7",
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetLen":30}`,
    check: true,
    want: { subnetLen: 30, subnetMin: "10.0.0.4", subnetMax: "10.0.255.252" },
  },
  {
    input: `{"Network":"10.0.0.0/16","SubnetLen":18}`,
    check: true,
    want: { subnetLen: 18, subnetMin: "10.0.64.0", subnetMax: "10.0.192.0" },
  },
  { input: `{"Network":"10.0.0.0/16","SubnetMin":"0.0.0.0"}`, check: true, want: { subnetMin: "10.0.1.0" } },
  { input: `{"EnableIPv4":false}`, check: true, want: { enableIpv4: false, network: null, subnetLen: 0 } },
  {
    input: `{"EnableIPv6":true,"Network":"10.0.0.0/16"}`,
    check: true,
    error: "please define a correct IPv6Network parameter in the flannel config",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":127,"EnableIPv4":false}`,
    check: true,
    error: "SubnetLen must be less than /127",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":49,"EnableIPv4":false}`,
    check: true,
    error: "network must be able to accommodate at least four subnets",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd01::","EnableIPv4":false}`,
    check: true,
    error: "IPv6SubnetMin is not in the range of the IPv6Network",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd01::","EnableIPv4":false}`,
    check: true,
    error: "IPv6SubnetMax is not in the range of the IPv6Network",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd00:0:0:1::1","EnableIPv4":false}`,
    check: true,
    error: "IPv6SubnetMin is not on a SubnetLen boundary: fd00:0:0:1::1",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd00:0:0:2::8","EnableIPv4":false}`,
    check: true,
    error: "IPv6SubnetMax is not on a SubnetLen boundary: fd00:0:0:2::8",
  },
  {
    input: `{"EnableIPv6":true,"IPv6Network":"fd00::/124","EnableIPv4":false}`,
    check: true,
    want: { ipv6SubnetLen: 126, ipv6SubnetMin: "fd00::4", ipv6SubnetMax: "fd00::c" },
  },
  {
    input: `{"Network":"10.42.0.0/16","EnableIPv6":true,"IPv6Network":"2001:cafe:42::/56"}`,
    check: true,
    want: {
      subnetLen: 24,
      subnetMin: "10.42.1.0",
      ipv6SubnetLen: 64,
      ipv6SubnetMin: "2001:cafe:42:1::",
      ipv6SubnetMax: "2001:cafe:42:ff::",
    },
  },
  // Go encoding/json: keys case-insensitive, last duplicate wins, unknown and removed keys ignored.
  {
    input: `{"NETWORK":"10.1.0.0/16","network":"10.2.0.0/16"}`,
    check: false,
    want: { network: "10.2.0.0/16" },
  },
  {
    input: `{"Network":"10.1.0.0/16","network":"10.2.0.0/16","Network":"10.3.0.0/16"}`,
    check: false,
    want: { network: "10.3.0.0/16" },
  },
  {
    input: `{"Network":"10.1.0.0/16","Networks":["x"],"IPv6Networks":5,"BackendType":"vxlan","Foo":{"a":[1]}}`,
    check: false,
    want: { network: "10.1.0.0/16", backendType: "udp" },
  },
  { input: `{"enableipv4":null,"SubnetLen":null}`, check: false, want: { enableIpv4: true, subnetLen: 0 } },
  { input: `null`, check: false, want: { enableIpv4: true, backendType: "udp" } },
  { input: `{"Backend":{"type":"Host-GW"}}`, check: false, want: { backendType: "host-gw" } },
  { input: `{"Backend":{}}`, check: false, want: { backendType: "" } },
  { input: `{"Backend":null}`, check: false, want: { backendType: "" } },
  { input: `{"Backend":{"Type":"udp","TYPE":"vxlan"}}`, check: false, want: { backendType: "vxlan" } },
  { input: `{"SubnetMin":"::ffff:10.3.1.0"}`, check: false, want: { subnetMin: "10.3.1.0" } },
  // Exact Go errors.
  {
    input: `{"Backend":"vxlan"}`,
    check: false,
    error:
      "error decoding Backend property of config: json: cannot unmarshal string into Go value of type struct { Type string }",
  },
  {
    input: `{"Backend":["vxlan"]}`,
    check: false,
    error:
      "error decoding Backend property of config: json: cannot unmarshal array into Go value of type struct { Type string }",
  },
  {
    input: `{"Backend":{"Type":1}}`,
    check: false,
    error:
      "error decoding Backend property of config: json: cannot unmarshal number into Go struct field .Type of type string",
  },
  { input: `{"Network":"fc00::/48"}`, check: false, error: "invalid IPv4 CIDR format" },
  { input: `{"Network":"10.0.0.0"}`, check: false, error: "invalid CIDR address: 10.0.0.0" },
  { input: `{"Network":"010.0.0.0/8"}`, check: false, error: "invalid CIDR address: 010.0.0.0/8" },
  { input: `{"Network":10}`, check: false, error: "invalid CIDR address: 10" },
  { input: `{"Network":null}`, check: false, error: "invalid CIDR address: null" },
  { input: `{"IPv6Network":"10.0.0.0/8"}`, check: false, error: "invalid IPv6 CIDR format" },
  { input: `{"SubnetMin":"10.0.0"}`, check: false, error: "invalid IP address format" },
  { input: `{"SubnetMax":""}`, check: false, error: "invalid IP address format" },
  { input: `{"SubnetMin":"fc00::1"}`, check: false, error: "invalid IPv4 address format" },
  { input: `{"IPv6SubnetMin":"fc00:::1"}`, check: false, error: "invalid IP address format" },
  { input: `{"IPv6SubnetMax":"10.0.0.0"}`, check: false, error: "invalid IPv6 address format" },
  { input: `{"IPv6SubnetMin":null}`, check: false, want: { ipv6SubnetMin: null } },
  {
    input: `{"SubnetLen":"24"}`,
    check: false,
    error: "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint",
  },
  {
    input: `{"SubnetLen":-1}`,
    check: false,
    error: "json: cannot unmarshal number -1 into Go struct field Config.SubnetLen of type uint",
  },
  {
    input: `{"IPv6SubnetLen":24.5}`,
    check: false,
    error: "json: cannot unmarshal number 24.5 into Go struct field Config.IPv6SubnetLen of type uint",
  },
  {
    input: `{"EnableIPv6":"true"}`,
    check: false,
    error: "json: cannot unmarshal string into Go struct field Config.EnableIPv6 of type bool",
  },
  {
    input: `{"enablenftables":1}`,
    check: false,
    error: "json: cannot unmarshal number into Go struct field Config.EnableNFTables of type bool",
  },
  // A type error is remembered while decoding continues; an invalid address stops decoding at once.
  {
    input: `{"SubnetLen":"24","EnableIPv6":"yes"}`,
    check: false,
    error: "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint",
  },
  { input: `{"SubnetLen":"24","Network":"bad"}`, check: false, error: "invalid CIDR address: bad" },
  {
    input: `{"SubnetLen":"24","Backend":"vxlan"}`,
    check: false,
    error: "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint",
  },
  { input: `[]`, check: false, error: "json: cannot unmarshal array into Go value of type subnet.Config" },
  { input: `"x"`, check: false, error: "json: cannot unmarshal string into Go value of type subnet.Config" },
  // Syntax errors: Go's text plus the position; a syntax error anywhere wins over a type error before it.
  { input: ``, check: false, error: "unexpected end of JSON input (line 1, column 1)" },
  {
    input: `{"Network":"10.0.0.0/8"`,
    check: false,
    error: "unexpected end of JSON input (line 1, column 24)",
  },
  {
    input: `{\n  "Network": "10.0.0.0/8",\n}`,
    check: false,
    error: "invalid character '}' looking for beginning of object key string (line 3, column 1)",
  },
  {
    input: `{"SubnetLen":"x" "Network":1}`,
    check: false,
    error: "invalid character '\"' after object key:value pair (line 1, column 18)",
  },
  {
    input: `{'Network':1}`,
    check: false,
    error: "invalid character '\\'' looking for beginning of object key string (line 1, column 2)",
  },
  {
    input: `{"a":tru}`,
    check: false,
    error: "invalid character '}' in literal true (expecting 'e') (line 1, column 9)",
  },
  {
    input: `{"a":01}`,
    check: false,
    error: "invalid character '1' after object key:value pair (line 1, column 7)",
  },
  {
    input: `{"a":"x\ty"}`,
    check: false,
    error: "invalid character '\\t' in string literal (line 1, column 8)",
  },
  {
    input: `{"a":"\\q"}`,
    check: false,
    error: "invalid character 'q' in string escape code (line 1, column 8)",
  },
  { input: `{} {}`, check: false, error: "invalid character '{' after top-level value (line 1, column 4)" },
  {
    input: `{"a":[1,]}`,
    check: false,
    error: "invalid character ']' looking for beginning of value (line 1, column 9)",
  },
  { input: `{"a" 1}`, check: false, error: "invalid character '1' after object key (line 1, column 6)" },
  { input: `{"a":-}`, check: false, error: "invalid character '}' in numeric literal (line 1, column 7)" },
  {
    input: `{"a":1.}`,
    check: false,
    error: "invalid character '}' after decimal point in numeric literal (line 1, column 8)",
  },
];

for (const [name, rows] of [
  ["spec §2.3 examples", SPEC_ROWS],
  ["rules and Go decoding", MORE_ROWS],
] as const) {
  test(`parseConfig/checkNetworkConfig: ${name}`, () => {
    for (const row of rows) {
      const label = `${row.check ? "parse+check" : "parse"} ${row.input}`;
      const run = (): NetworkConfig => {
        const cfg = parseConfig(row.input);
        if (row.check) checkNetworkConfig(cfg);
        return cfg;
      };
      if (row.error !== undefined) {
        assert.throws(run, (e: unknown) => e instanceof Error && e.message === row.error, label);
        assert.ok(row.want === undefined, label);
      } else {
        const got = view(run());
        const want = row.want ?? {};
        const picked = Object.fromEntries(Object.keys(want).map((k) => [k, got[k]]));
        assert.deepEqual(picked, want, label);
      }
    }
  });
}

test("parseConfig keeps the Backend object for the backend, with Go's duplicate-key result", () => {
  const cfg = parseConfig(
    `{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":2,"vni":3,"Port":8472,"__proto__":1}}`,
  );
  assert.equal(cfg.backendType, "vxlan");
  assert.equal(getField(cfg.backend, "VNI"), 3);
  assert.equal(getField(cfg.backend, "port"), 8472);
  assert.equal(getField(cfg.backend, "GBP"), undefined);
  assert.equal(getField(cfg.backend, "__proto__"), 1);
  assert.equal(Object.getPrototypeOf(cfg.backend), Object.prototype);
  // A repeated exact key moves to its last position, so it beats a differently-cased key between them.
  const dup = parseConfig(`{"Backend":{"VNI":1,"vni":2,"VNI":3}}`);
  assert.equal(getField(dup.backend, "VNI"), 3);
  assert.deepEqual(parseConfig(`{"Network":"10.1.0.0/16"}`).backend, {});
});

test("parseConfig only ever throws Errors with a message, whatever the input", () => {
  const samples = [
    `{`,
    `[`,
    `{"a":[[[[`,
    `"\\u12`,
    `\ufeff{}`,
    `{"Network":{"a":1}}`,
    `{"SubnetLen":1e400}`,
    "[".repeat(5000),
    `{"Backend":{"Type":{}}}`,
  ];
  for (const s of samples) {
    assert.throws(
      () => parseConfig(s),
      (e: unknown) => e instanceof Error && e.message.length > 0 && !/Maximum call stack/.test(e.message),
      s.slice(0, 40),
    );
  }
  assert.throws(() => parseConfig("[".repeat(5000)), /exceeded max depth/);
  assert.throws(() => parseConfig(`\ufeff{}`), /invalid character '\\ufeff' looking for beginning of value/);
});

test("decodeBackendField decodes Go-typed fields with Go-like errors", () => {
  const be = { vni: 4, Port: 8472, gbp: true, Name: "x", Neg: -1, Frac: 1.5, Nul: null };
  assert.equal(decodeBackendField(be, "VNI", "uint", "VXLAN"), 4);
  assert.equal(decodeBackendField(be, "GBP", "bool", "VXLAN"), true);
  assert.equal(decodeBackendField(be, "name", "string", "VXLAN"), "x");
  assert.equal(decodeBackendField(be, "Missing", "int", "VXLAN"), undefined);
  assert.equal(decodeBackendField(be, "Nul", "int", "VXLAN"), undefined);
  assert.equal(decodeBackendField(be, "Neg", "int", "VXLAN"), -1);
  const cases: [string, "int" | "uint" | "bool" | "string", string][] = [
    ["Name", "uint", "json: cannot unmarshal string into Go struct field .Name of type uint"],
    ["Neg", "uint", "json: cannot unmarshal number -1 into Go struct field .Neg of type uint"],
    ["Frac", "int", "json: cannot unmarshal number 1.5 into Go struct field .Frac of type int"],
    ["GBP", "int", "json: cannot unmarshal bool into Go struct field .GBP of type int"],
    ["Port", "bool", "json: cannot unmarshal number into Go struct field .Port of type bool"],
    ["VNI", "string", "json: cannot unmarshal number into Go struct field .VNI of type string"],
  ];
  for (const [field, kind, msg] of cases) {
    assert.throws(
      () => decodeBackendField(be, field, kind, "VXLAN"),
      { message: `error decoding VXLAN backend config: ${msg}` },
      `${field} as ${kind}`,
    );
  }
  assert.throws(() => decodeBackendField({ a: [1] }, "A", "int", "UDP"), {
    message:
      "error decoding UDP backend config: json: cannot unmarshal array into Go struct field .A of type int",
  });
});

test("getField matches case-insensitively and the last match wins", () => {
  assert.equal(getField({ Type: "a", type: "b" }, "TYPE"), "b");
  assert.equal(getField({ directrouting: true }, "DirectRouting"), true);
  assert.equal(getField({ "\u017fubnet": 1 }, "Subnet"), 1); // Go folds U+017F to s
  assert.equal(getField({}, "x"), undefined);
});
