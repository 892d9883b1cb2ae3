#!/usr/bin/env node
// Runs the test suite with node:test through tsx. Node 20's --test takes no globs, so the files are listed here.
//   node scripts/test.mjs            all tests (unit + kernel + cluster; the latter need root and skip without it)
//   node scripts/test.mjs --unit     only the unit tests beside the sources and in bench/ (no root, no kernel)
//   node scripts/test.mjs FILE...    just those files
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const explicit = args.filter((a) => !a.startsWith("--"));

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

// bench/ holds unit tests of the benchmark's own arithmetic (no root, no kernel).
const files = explicit.length > 0 ? explicit : walk("src", walk("bench", unitOnly ? [] : walk("test", [])));
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
const res = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=2", "--test-reporter=spec", ...files],
  { stdio: "inherit" },
);
process.exit(res.status ?? 1);
