import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { FLANNELD_NODE_FLAGS, flanneldCommand } from "./node-flags.ts";

const root = join(fileURLToPath(import.meta.url), "..", "..", "..");
const flags = FLANNELD_NODE_FLAGS.join(" ");

test("bin/flanneld and the image's /opt/bin/flanneld run dist/flanneld.cjs with FLANNELD_NODE_FLAGS", () => {
  const bin = readFileSync(join(root, "bin", "flanneld"), "utf8");
  assert.ok(bin.includes(`\nexec node ${flags} "$dir/../dist/flanneld.cjs" "$@"\n`), "bin/flanneld");
  const dockerfile = readFileSync(join(root, "deploy", "Dockerfile"), "utf8");
  assert.ok(
    dockerfile.includes(`exec node ${flags} /opt/flannel-ts/dist/flanneld.cjs "$@"`),
    "deploy/Dockerfile's /opt/bin/flanneld launcher",
  );
});

const start = join(root, "dist", "flanneld.cjs");
const built = existsSync(start) ? false : "dist/flanneld.cjs is not built (npm run build)";
const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;

/** Runs `fn` with a fresh temporary directory, deleted afterwards. */
function inTempDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "fts-node-flags-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("bin/flanneld runs as a program", { skip: built }, () => {
  // --version prints on stderr, as upstream's does.
  const res = spawnSync(join(root, "bin", "flanneld"), ["--version"], { encoding: "utf8", env });
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stderr, /^v\d/);
});

test(
  "the usage line names flanneld, also when the start file is Node's main module (the image)",
  { skip: built },
  () => {
    for (const cmd of [[join(root, "bin", "flanneld")], flanneldCommand(root)]) {
      const res = spawnSync(cmd[0] as string, [...cmd.slice(1), "--help"], { encoding: "utf8", env });
      assert.match(res.stderr, /^Usage: flanneld \[OPTION\]\.\.\.\n/, cmd.join(" "));
    }
  },
);

test(
  "flanneld keeps the heap FLANNELD_NODE_FLAGS made and takes code caches made with V8's default flags",
  { skip: built },
  () => {
    inTempDir((dir) => {
      // A code cache made by a Node with no flags, as Node's embedded cache for its own modules is.
      const source = "(function add(a, b) { return a + b; })";
      const made = spawnSync(
        process.execPath,
        [
          "-e",
          `process.stdout.write(new (require("vm").Script)(${JSON.stringify(source)}).createCachedData().toString("base64"))`,
        ],
        { encoding: "utf8", env },
      );
      assert.equal(made.status, 0, made.stderr);
      // Preloaded, it looks when flanneld exits (after `--version`): whether V8 takes the cache, how large
      // the young generation gets when many objects survive (two semi-spaces of at most 2 MB with the flag,
      // 16 MB each at V8's default), and how many threads the process has.
      const probe = join(dir, "probe.cjs");
      writeFileSync(
        probe,
        `process.on("exit", () => {
const vm = require("vm"), v8 = require("v8");
const s = new vm.Script(${JSON.stringify(source)}, { cachedData: Buffer.from(${JSON.stringify(made.stdout)}, "base64") });
const keep = [];
for (let i = 0; i < 1000000; i++) keep.push({ i, s: "x" + i });
const young = v8.getHeapSpaceStatistics().find((x) => x.space_name === "new_space").space_size;
const threads = require("fs").readdirSync("/proc/self/task").length;
process.stderr.write("probe " + JSON.stringify({ rejected: s.cachedDataRejected, young, threads, kept: keep.length }) + "\\n");
});
`,
      );
      type Probe = { rejected: boolean; young: number; threads: number };
      const probeOf = (cmd: string[]): Probe => {
        const res = spawnSync(cmd[0] as string, [...cmd.slice(1), "--version"], { encoding: "utf8", env });
        assert.equal(res.status, 0, res.stderr);
        const line = /^probe (.*)$/m.exec(res.stderr);
        assert.ok(line, res.stderr);
        return JSON.parse(line[1] as string) as Probe;
      };
      const [node, ...rest] = flanneldCommand(root);
      const flanneld = probeOf([node as string, "-r", probe, ...rest]);
      assert.equal(flanneld.rejected, false, "dist/flanneld.cjs sets the flags back to V8's defaults");
      assert.ok(
        flanneld.young <= 4 * 2 ** 20,
        `young generation ${flanneld.young} B: at most two 2 MB semi-spaces`,
      );
      // The probe can tell: the flags alone make V8 refuse the cache, and no flags let the young generation grow.
      const flagsOnly = probeOf([
        process.execPath,
        ...FLANNELD_NODE_FLAGS,
        "-r",
        probe,
        join(root, "dist", "flanneld.js"),
      ]);
      assert.equal(flagsOnly.rejected, true);
      const noFlags = probeOf([process.execPath, "-r", probe, join(root, "dist", "flanneld.js")]);
      assert.ok(noFlags.young > 4 * 2 ** 20, `young generation ${noFlags.young} B without the flags`);
      // --v8-pool-size=1: V8's background work on one thread instead of Node's default four.
      assert.ok(
        flanneld.threads <= noFlags.threads - 3,
        `flanneld has ${flanneld.threads} threads, Node with no flags ${noFlags.threads}`,
      );
    });
  },
);

test(
  "the start file says so and exits 1 when flanneld's bundle is missing beside it",
  { skip: built },
  () => {
    inTempDir((dir) => {
      copyFileSync(start, join(dir, "flanneld.cjs"));
      const res = spawnSync(
        process.execPath,
        [...FLANNELD_NODE_FLAGS, join(dir, "flanneld.cjs"), "--version"],
        {
          encoding: "utf8",
          env,
        },
      );
      assert.equal(res.status, 1);
      assert.match(res.stderr, /^flanneld: cannot load \.\/flanneld\.js: .*flanneld\.js/);
    });
  },
);
