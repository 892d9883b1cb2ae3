import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { installConf, installConfMain } from "./install-conf.ts";

test("installConf copies content and mode and leaves no temp file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fts-q-ic-"));
  try {
    const src = join(dir, "cni-conf.json");
    const dest = join(dir, "10-flannel.conflist");
    writeFileSync(src, '{"name":"cbr0"}');
    chmodSync(src, 0o640);
    writeFileSync(dest, "old");
    await installConf(src, dest);
    assert.equal(readFileSync(dest, "utf8"), '{"name":"cbr0"}');
    assert.equal(statSync(dest).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(dir).sort(), ["10-flannel.conflist", "cni-conf.json"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("installConfMain reports usage and missing files clearly", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fts-q-ic-"));
  try {
    let err = "";
    assert.equal(await installConfMain(["only-one"], (s) => (err += s)), 2);
    assert.match(err, /^Usage: install-conf <source> <destination>/);
    err = "";
    assert.equal(await installConfMain([join(dir, "nope"), join(dir, "d")], (s) => (err += s)), 1);
    assert.match(err, /Cannot read source .*nope/);
    err = "";
    writeFileSync(join(dir, "s"), "x");
    assert.equal(
      await installConfMain([join(dir, "s"), join(dir, "missing-dir", "d")], (s) => (err += s)),
      1,
    );
    assert.match(err, /missing-dir exists and is writable/);
    assert.deepEqual(readdirSync(dir), ["s"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
