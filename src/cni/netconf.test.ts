import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_DATA_DIR, DEFAULT_SUBNET_FILE, parseNetConf } from "./netconf.ts";

test("defaults (§8.7): subnetFile and dataDir", () => {
  const c = parseNetConf('{"name":"cni-flannel","type":"flannel"}');
  assert.equal(c.subnetFile, "/run/flannel/subnet.env");
  assert.equal(c.dataDir, "/var/lib/cni/flannel");
  assert.equal(DEFAULT_SUBNET_FILE, c.subnetFile);
  assert.equal(DEFAULT_DATA_DIR, c.dataDir);
  assert.equal(c.cniVersion, "");
  assert.equal(c.delegate, null);
});

test("Go decoding: case-insensitive field names, null keeps the default, unknown keys ignored", () => {
  const c = parseNetConf(
    '{"NAME":"n","SubnetFile":"/a","datadir":null,"whatever":[1],"Delegate":{"Type":"x"}}',
  );
  assert.equal(c.name, "n");
  assert.equal(c.subnetFile, "/a");
  assert.equal(c.dataDir, DEFAULT_DATA_DIR);
  // map keys stay case-sensitive
  assert.deepEqual(c.delegate, { Type: "x" });
});

test("malformed JSON says where", () => {
  assert.throws(
    () => parseNetConf('{\n  "name": "x",\n}'),
    /^Error: failed to load netconf: invalid JSON at line 3, column 1 \(offset 17\): Expected double-quoted property name/,
  );
  assert.throws(() => parseNetConf(""), /failed to load netconf: invalid JSON: the input is empty/);
});

test("wrong types name the field", () => {
  assert.throws(
    () => parseNetConf('{"subnetFile":5}'),
    new Error('failed to load netconf: "subnetFile" must be a string, not the number 5'),
  );
  assert.throws(
    () => parseNetConf('{"delegate":[]}'),
    new Error('failed to load netconf: "delegate" must be an object, not an array'),
  );
  assert.throws(() => parseNetConf("[1]"), /the netconf must be a JSON object, not an array/);
  assert.throws(
    () => parseNetConf('{"capabilities":{"portMappings":"yes"}}'),
    /"capabilities\.portMappings" must be true or false/,
  );
});
