import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { releasablePageRanges } from "./startup-pages.ts";

const mapping = (head: string, f: { rss: number; anon?: number; locked?: number; flags?: string }): string =>
  [
    head,
    "Size:               2048 kB",
    `Rss:                ${String(f.rss)} kB`,
    "Pss:                 100 kB",
    ...(f.anon === undefined ? [] : [`Anonymous:          ${String(f.anon)} kB`]),
    `Locked:             ${String(f.locked ?? 0)} kB`,
    `VmFlags: ${f.flags ?? "rd mr mw me"}`,
  ].join("\n");

test("releasable: clean read-only file mappings with resident pages, and nothing else", () => {
  const smaps = [
    mapping("55d0a0000000-55d0a1000000 r-xp 00400000 fe:01 1234   /usr/bin/node", { rss: 4096, anon: 0 }),
    // relocated read-only data: its pages are private copies
    mapping("55d0a1000000-55d0a1100000 r--p 01400000 fe:01 1234   /usr/bin/node", { rss: 900, anon: 900 }),
    mapping("55d0a1100000-55d0a1200000 rw-p 01500000 fe:01 1234   /usr/bin/node", { rss: 64, anon: 0 }),
    mapping("55d0a2000000-55d0a3000000 rw-p 00000000 00:00 0      [heap]", { rss: 8000, anon: 8000 }),
    mapping("7f0000000000-7f0000100000 r--p 00000000 fe:01 99     /usr/lib/x86_64-linux-gnu/libc.so.6", {
      rss: 120,
      anon: 0,
    }),
    mapping("7f0000100000-7f0000200000 r--p 00000000 fe:01 98     /usr/lib/locale/C.utf8/LC_CTYPE", {
      rss: 0,
      anon: 0,
    }),
    mapping("7f0000200000-7f0000300000 r-xp 00000000 fe:01 97     /opt/locked.so", {
      rss: 64,
      anon: 0,
      locked: 64,
      flags: "rd ex mr mw me lo",
    }),
    mapping("7f0000300000-7f0000400000 r--s 00000000 fe:01 96     /dev/shm/something", { rss: 8, anon: 0 }),
    // no Anonymous line (an older kernel or a cut-off read): left alone
    mapping("7f0000400000-7f0000500000 r--p 00000000 fe:01 95     /usr/lib/libz.so.1", { rss: 16 }),
    mapping("7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0      [vdso]", { rss: 8, anon: 0 }),
    mapping("7f0000500000-7f0000600000 r-xp 00000000 fe:01 94     /usr/lib/x (deleted)", { rss: 8, anon: 0 }),
  ].join("\n");
  assert.deepEqual(
    releasablePageRanges(`${smaps}\n`).map((r) => [
      r.start.toString(16),
      r.end.toString(16),
      r.rssKb,
      r.path,
    ]),
    [
      ["55d0a0000000", "55d0a1000000", 4096, "/usr/bin/node"],
      ["7f0000000000", "7f0000100000", 120, "/usr/lib/x86_64-linux-gnu/libc.so.6"],
      ["7f0000300000", "7f0000400000", 8, "/dev/shm/something"],
      ["7f0000500000", "7f0000600000", 8, "/usr/lib/x (deleted)"],
    ],
  );
  assert.deepEqual(releasablePageRanges(""), []);
});

// A process that has loaded what flanneld loads releases its start-up pages and goes on working: it loads
// more code, compiles, compresses. A private mapping with copied-on-write pages (the relocated read-only
// data) is left alone; dropping it would bring back unrelocated bytes, and the process would crash.
test("a Node process gives back tens of MB of file pages and goes on working", () => {
  const script = `
    const { readFileSync } = require("node:fs");
    require("node:http2"); require("node:child_process"); require("node:dgram"); require("node:net");
    const file = () => Number(/RssFile:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
    import(${JSON.stringify(new URL("./startup-pages.ts", import.meta.url).href)}).then((m) => {
      const before = file();
      const r = m.releaseStartupPages();
      const after = file();
      const zlib = require("node:zlib");
      const text = JSON.stringify(Array.from({ length: 20000 }, (_, i) => ({ i, s: "x".repeat(i % 50) })));
      const back = zlib.inflateSync(zlib.deflateSync(text)).toString();
      const later = file();
      console.log(JSON.stringify({ before, after, later, r, same: back === text, n: JSON.parse(back).length }));
    });`;
  const res = spawnSync(process.execPath, ["--import", "tsx", "-e", script], { encoding: "utf8" });
  assert.equal(res.status, 0, `exit ${String(res.status)} (signal ${String(res.signal)}):\n${res.stderr}`);
  const out = JSON.parse(res.stdout) as {
    before: number;
    after: number;
    later: number;
    r: { ranges: number; bytes: number; failed: number };
    same: boolean;
    n: number;
  };
  const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MB`;
  const seen = `file pages ${mb(out.before)} → ${mb(out.after)} → ${mb(out.later)}; released ${mb(out.r.bytes)}`;
  assert.ok(out.r.ranges > 0 && out.r.failed === 0, seen);
  assert.ok(out.r.bytes > 10 * 2 ** 20, seen);
  assert.ok(out.before - out.after > 10 * 2 ** 20, seen);
  assert.ok(out.later > out.after, `pages come back when used: ${seen}`);
  assert.ok(out.same && out.n === 20000);
});
