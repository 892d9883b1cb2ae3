import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { FLANNELD_NODE_FLAGS } from "./node-flags.ts";

const root = join(fileURLToPath(import.meta.url), "..", "..", "..");
const flags = FLANNELD_NODE_FLAGS.join(" ");

test("bin/flanneld and the image's /opt/bin/flanneld start Node with FLANNELD_NODE_FLAGS", () => {
  const bin = readFileSync(join(root, "bin", "flanneld"), "utf8");
  assert.equal(bin.split("\n")[0], `#!/usr/bin/env -S node ${flags}`);
  const dockerfile = readFileSync(join(root, "deploy", "Dockerfile"), "utf8");
  assert.ok(
    dockerfile.includes(`exec node ${flags} /opt/flannel-ts/dist/flanneld.js "$@"`),
    "deploy/Dockerfile's /opt/bin/flanneld launcher",
  );
});

const dist = join(root, "dist", "flanneld.js");
const built = existsSync(dist) ? false : "dist/flanneld.js is not built (npm run build)";
const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;

test("bin/flanneld runs as a program (env -S splits the #! line)", { skip: built }, () => {
  // --version prints on stderr, as upstream's does.
  const res = spawnSync(join(root, "bin", "flanneld"), ["--version"], { encoding: "utf8", env });
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stderr, /^v\d/);
});

test(
  "the usage line names flanneld, also when the bundle is started directly (the image's launcher)",
  {
    skip: built,
  },
  () => {
    for (const cmd of [[join(root, "bin", "flanneld")], [process.execPath, ...FLANNELD_NODE_FLAGS, dist]]) {
      const res = spawnSync(cmd[0] as string, [...cmd.slice(1), "--help"], { encoding: "utf8", env });
      assert.match(res.stderr, /^Usage: flanneld \[OPTION\]\.\.\.\n/, cmd.join(" "));
    }
  },
);
