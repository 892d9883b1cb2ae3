import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { generateTestCerts, mutualTls, startEtcd } from "./etcd.ts";

test("startEtcd serves, compacts, restarts and cleans up", async () => {
  const etcd = await startEtcd();
  try {
    assert.match(etcd.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    etcd.etcdctl(["put", "/a", "1"]);
    etcd.etcdctl(["put", "/a", "2"]);
    const rev = await etcd.compact();
    assert.ok(rev >= 3);
    await etcd.kill();
    assert.equal(etcd.pid(), undefined);
    await etcd.start();
    assert.equal(etcd.etcdctl(["get", "/a", "--print-value-only"]).trim(), "2");
  } finally {
    await etcd.stop();
  }
  assert.equal(existsSync(etcd.dataDir), false);
});

test("startEtcd serves TLS with generated certificates", async (t) => {
  const certs = generateTestCerts();
  if (!certs) {
    t.skip("openssl is not installed");
    return;
  }
  const etcd = await startEtcd({ tls: mutualTls(certs) });
  try {
    assert.match(etcd.endpoint, /^https:/);
    etcd.etcdctl(["put", "/k", "v"]);
    assert.equal(etcd.etcdctl(["get", "/k", "--print-value-only"]).trim(), "v");
  } finally {
    await etcd.stop();
    certs.cleanup();
  }
});
