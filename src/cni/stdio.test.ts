import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FdWriter, readAll } from "./stdio.ts";

const root = mkdtempSync(join(tmpdir(), "fts-cni-stdio-"));
after(() => rmSync(root, { recursive: true, force: true }));
let fifos = 0;

/** A FIFO opened at both ends, each non-blocking unless asked otherwise. */
function fifo(blocking = false): { r: number; w: number } {
  const path = join(root, `fifo-${++fifos}`);
  execFileSync("mkfifo", [path]);
  const nb = blocking ? 0 : constants.O_NONBLOCK;
  const r = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const w = openSync(path, constants.O_WRONLY | nb);
  return { r, w };
}

/** Everything readable from a pipe descriptor until its writers are gone. */
function drain(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = new Socket({ fd, readable: true, writable: false });
    s.on("data", (b: Buffer) => chunks.push(b));
    s.on("error", reject);
    s.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

test("readAll reads a blocking descriptor to its end without the stream", async () => {
  const { r, w } = fifo(true);
  writeSync(w, "hello ");
  writeSync(w, "world");
  closeSync(w);
  const text = await readAll(r, () => {
    throw new Error("the stream is not needed");
  });
  closeSync(r);
  assert.equal(text, "hello world");
});

test("readAll continues with the stream when the descriptor is non-blocking (EAGAIN), losing nothing", async () => {
  const { r, w } = fifo();
  writeSync(w, "part one, ");
  let streamed = false;
  const reading = readAll(r, () => {
    streamed = true;
    return new Socket({ fd: r, readable: true, writable: false });
  });
  // readAll has read part one and met EAGAIN (the writer is still open) before this runs
  assert.equal(streamed, true);
  writeSync(w, "part two");
  closeSync(w);
  assert.equal(await reading, "part one, part two");
});

test("FdWriter writes with plain calls, and through the stream from the first EAGAIN on, in order", async () => {
  const { r, w } = fifo();
  // fill the pipe, so that the next write fails with EAGAIN
  let filled = 0;
  for (;;) {
    try {
      filled += writeSync(w, Buffer.alloc(4096, "z"));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, "EAGAIN");
      break;
    }
  }
  const stream = new Socket({ fd: w, readable: false, writable: true });
  let streams = 0;
  const out = new FdWriter(w, () => {
    streams += 1;
    return stream;
  });
  out.write("first ");
  out.write("second");
  assert.equal(streams, 1);
  const drained = drain(r);
  stream.end();
  const text = await drained;
  assert.equal(text.length, filled + "first second".length);
  assert.equal(text.slice(filled), "first second");
});
