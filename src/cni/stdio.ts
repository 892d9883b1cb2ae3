// The plugin's stdin, stdout and stderr, read and written with plain fs calls. The plugin runs once per pod
// ADD/DEL, so its start-up is most of its cost, and process.stdin/stdout/stderr are streams whose set-up
// costs more than the whole exchange: ~7 ms of CPU for reading stdin through process.stdin and ~3 ms for
// the stdout/stderr streams, on top of the modules the delegate's spawnSync loads anyway (bench machine).
//
// A runtime hands the plugin blocking pipes, but a descriptor may be non-blocking (O_NONBLOCK belongs to
// the open file, shared with whoever else holds it, e.g. a Node.js parent's own stdout). A plain call then
// fails with EAGAIN; from that point the stream takes over, so nothing is lost and order is kept.

import { readSync, writeSync } from "node:fs";

const CHUNK = 64 * 1024;

/** Reads `fd` to its end; continues with `stream()` (the same descriptor) if it is non-blocking. */
export async function readAll(fd: number, stream: () => AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for (;;) {
    const buf = Buffer.allocUnsafe(CHUNK);
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      for await (const chunk of stream()) chunks.push(chunk as Buffer);
      break;
    }
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Writes whole texts to `fd`; after the first EAGAIN, everything goes through `stream()` (same descriptor). */
export class FdWriter {
  private viaStream: NodeJS.WritableStream | undefined;

  constructor(
    private readonly fd: number,
    private readonly stream: () => NodeJS.WritableStream,
  ) {}

  write(text: string): void {
    const buf = Buffer.from(text, "utf8");
    let off = 0;
    while (off < buf.length && this.viaStream === undefined) {
      try {
        off += writeSync(this.fd, buf, off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        this.viaStream = this.stream();
      }
    }
    if (off < buf.length) this.viaStream?.write(buf.subarray(off));
  }
}
