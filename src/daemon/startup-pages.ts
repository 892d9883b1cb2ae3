// Giving back the pages of files that flanneld touched only to start.
//
// Most of a Node process's resident memory is pages of the `node` binary itself: its code, read-only data
// and dynamic symbol table (~30 MB in a bare `node -e`; docs/performance.md, "Seventh round", step 5). Many
// of them are used only while Node starts and compiles its modules and while flanneld programs its first
// snapshot of leases. Once that is over, flanneld unmaps the clean pages of its read-only file mappings with
// madvise(MADV_DONTNEED). The pages stay in the page cache, shared with every other process that maps the
// same files; the ones flanneld still uses come back on their next access as minor faults (no disk read
// while the page cache holds them), and the rest are no longer flanneld's and can be reclaimed by the kernel
// like any unmapped file page.
//
// Only mappings without anonymous pages are touched: a private file mapping that was written to (the
// relocated read-only data of the dynamic linker, a debugger's breakpoint) holds copies that exist nowhere
// else, and dropping them would bring back the file's unrelocated bytes.

import { readFileSync } from "node:fs";
import koffi from "koffi";

/** A mapping whose resident pages can be dropped and read back from its file. */
export interface PageRange {
  start: bigint;
  end: bigint;
  /** Resident kB when the mapping was read (what unmapping gives back, until pages fault in again). */
  rssKb: number;
  path: string;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/;

/**
 * The mappings of `smaps` (the text of /proc/<pid>/smaps) that are releasable: backed by a file (the path
 * starts with "/"), neither writable nor locked, with resident pages and no anonymous (copied-on-write) ones.
 */
export function releasablePageRanges(smaps: string): PageRange[] {
  const out: PageRange[] = [];
  let cur: { start: bigint; end: bigint; path: string; ok: boolean; rss: number; anon: number } | undefined;
  const flush = (): void => {
    if (cur?.ok === true && cur.rss > 0 && cur.anon === 0)
      out.push({ start: cur.start, end: cur.end, rssKb: cur.rss, path: cur.path });
    cur = undefined;
  };
  for (const line of smaps.split("\n")) {
    const m = HEADER.exec(line);
    if (m) {
      flush();
      const perms = m[3] ?? "";
      const path = m[4] ?? "";
      cur = {
        start: BigInt(`0x${m[1] ?? "0"}`),
        end: BigInt(`0x${m[2] ?? "0"}`),
        path,
        ok: perms[0] === "r" && perms[1] !== "w" && path.startsWith("/"),
        rss: 0,
        anon: -1, // unknown until its line is read: a mapping without one is left alone
      };
      continue;
    }
    if (cur === undefined) continue;
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    if (key === "Rss") cur.rss = parseInt(line.slice(colon + 1), 10);
    else if (key === "Anonymous") cur.anon = parseInt(line.slice(colon + 1), 10);
    else if (key === "Locked" && parseInt(line.slice(colon + 1), 10) !== 0) cur.ok = false;
    else if (key === "VmFlags" && /\b(lo|io|pf)\b/.test(line.slice(colon + 1))) cur.ok = false;
  }
  flush();
  return out;
}

export interface ReleaseResult {
  /** Mappings unmapped. */
  ranges: number;
  /** Resident bytes they held. */
  bytes: number;
  /** Mappings madvise refused (their pages stay). */
  failed: number;
}

const MADV_DONTNEED = 4;
type Madvise = (addr: bigint, len: bigint, advice: number) => number;
let madvise: Madvise | undefined;

/**
 * Unmaps the resident pages of this process's releasable file mappings (`releasablePageRanges` of
 * /proc/self/smaps). Synchronous: nothing else of this thread runs between reading the mappings and
 * dropping them. Throws when /proc/self/smaps cannot be read.
 */
export function releaseStartupPages(smapsPath = "/proc/self/smaps"): ReleaseResult {
  const ranges = releasablePageRanges(readFileSync(smapsPath, "utf8"));
  const advise = (madvise ??= koffi.load("libc.so.6").func("int madvise(uintptr_t, size_t, int)") as Madvise);
  const res: ReleaseResult = { ranges: 0, bytes: 0, failed: 0 };
  for (const r of ranges) {
    if (advise(r.start, r.end - r.start, MADV_DONTNEED) === 0) {
      res.ranges += 1;
      res.bytes += r.rssKb * 1024;
    } else res.failed += 1;
  }
  return res;
}
