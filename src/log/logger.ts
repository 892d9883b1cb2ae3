// klog-style logging, as upstream flanneld prints it, because operators grep these lines:
//   I1126 22:46:16.944123   12345 main.ts:42] message
// A Logger is passed in to whatever logs; there is no global logger.

export type Severity = "I" | "W" | "E" | "F";

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  /** Verbose logging: `log.v(4)?.info(...)` prints only when -v >= 4. */
  v(level: number): Pick<Logger, "info"> | undefined;
  /** A logger whose lines name `file` (e.g. "vxlan.ts") in the klog header. */
  child(file: string): Logger;
}

export interface KlogOptions {
  verbosity?: number;
  file?: string;
  write?: (line: string) => void;
  now?: () => Date;
  pid?: number;
}

let pending: string[] = [];
let scheduled = false;
let hooked = false;

function flushStderr(): void {
  scheduled = false;
  if (pending.length === 0) return;
  const text = pending.length === 1 ? pending[0]! : pending.join("");
  pending = [];
  process.stderr.write(text);
}

/**
 * The default sink: lines logged in one turn of the event loop are written to stderr together at the end of
 * the turn (and at exit). Writing to stderr is one synchronous write(2) per call when it is a file or a pipe,
 * and a lease snapshot logs one `Batch elem` line per peer, so a 1000-lease snapshot made 1000 writes.
 */
function writeStderr(line: string): void {
  pending.push(line);
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(flushStderr);
  if (!hooked) {
    hooked = true;
    process.on("exit", flushStderr);
  }
}

export class KlogLogger implements Logger {
  private readonly verbosity: number;
  private readonly file: string;
  private readonly write: (line: string) => void;
  private readonly now: () => Date;
  private readonly pid: number;

  constructor(opts: KlogOptions = {}) {
    this.verbosity = opts.verbosity ?? 0;
    this.file = opts.file ?? "flanneld.ts";
    this.write = opts.write ?? writeStderr;
    this.now = opts.now ?? (() => new Date());
    this.pid = opts.pid ?? process.pid;
  }

  info(msg: string): void {
    this.emit("I", msg);
  }
  warn(msg: string): void {
    this.emit("W", msg);
  }
  error(msg: string): void {
    this.emit("E", msg);
  }
  v(level: number): Pick<Logger, "info"> | undefined {
    return level <= this.verbosity ? this : undefined;
  }
  child(file: string): Logger {
    return new KlogLogger({
      verbosity: this.verbosity,
      file,
      write: this.write,
      now: this.now,
      pid: this.pid,
    });
  }

  private emit(sev: Severity, msg: string): void {
    const d = this.now();
    const p2 = (n: number): string => String(n).padStart(2, "0");
    const us = String(d.getMilliseconds() * 1000).padStart(6, "0");
    const head =
      `${sev}${p2(d.getMonth() + 1)}${p2(d.getDate())} ` +
      `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.${us} ` +
      `${String(this.pid).padStart(7, " ")} ${this.file}]`;
    this.write(`${head} ${msg}\n`);
  }
}

/** A logger that keeps its lines in memory, for tests. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  constructor(private readonly verbosity = 10) {}
  info(msg: string): void {
    this.lines.push(`I ${msg}`);
  }
  warn(msg: string): void {
    this.lines.push(`W ${msg}`);
  }
  error(msg: string): void {
    this.lines.push(`E ${msg}`);
  }
  v(level: number): Pick<Logger, "info"> | undefined {
    return level <= this.verbosity ? this : undefined;
  }
  child(): Logger {
    return this;
  }
  text(): string {
    return this.lines.join("\n");
  }
}
