// gRPC over Node's built-in HTTP/2, as much of it as an etcd client needs: unary calls with a deadline and
// bidirectional streams, length-prefixed messages (uncompressed), status from the trailers, and a channel
// over several endpoints that moves to the next one when an endpoint cannot be reached.
//
// Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md (request headers, message framing,
// `grpc-status`/`grpc-message` trailers, "trailers-only" responses, `grpc-timeout`).

import * as http2 from "node:http2";

/** gRPC status codes used here (the rest are reported by number). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

const STATUS_NAMES: Record<number, string> = {
  0: "OK",
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};

/**
 * A call that ended with a non-OK status. The message is the server's text (etcd's are like
 * "etcdserver: permission denied"), or what went wrong on the way; `code` is the gRPC status.
 * `connectFailed` is set when no connection to the endpoint could be made: the request never left.
 */
export class GrpcError extends Error {
  override name = "GrpcError";
  constructor(
    readonly code: number,
    message: string,
    readonly endpoint: string,
    readonly connectFailed = false,
  ) {
    super(message);
  }

  get codeName(): string {
    return STATUS_NAMES[this.code] ?? String(this.code);
  }
}

export interface TlsFiles {
  ca?: Buffer | undefined;
  cert: Buffer;
  key: Buffer;
}

/** Splits a stream of length-prefixed gRPC messages. */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingLen = 0;

  /** Adds bytes; returns the messages completed by them. */
  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingLen += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.pendingLen < 5) break;
      const head = this.head(5);
      if ((head[0] as number) !== 0) throw new Error("gRPC: compressed messages are not supported");
      const len = head.readUInt32BE(1);
      if (this.pendingLen < 5 + len) break;
      const all = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
      out.push(all.subarray(5, 5 + len));
      const rest = all.subarray(5 + len);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingLen = rest.length;
    }
    return out;
  }

  private head(n: number): Buffer {
    const first = this.pending[0] as Buffer;
    if (first.length >= n) return first;
    const all = Buffer.concat(this.pending);
    this.pending = [all];
    return all;
  }

  get buffered(): number {
    return this.pendingLen;
  }
}

export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

interface Endpoint {
  url: string;
  session: http2.ClientHttp2Session | undefined;
  connected: boolean;
  lastError: string;
}

/** Endpoints as given to --etcd-endpoints: `http://h:p`, `https://h:p`, or bare `h:p` (http, or https with TLS). */
export function normalizeEndpoint(ep: string, tls: boolean): string {
  const s = ep.trim();
  if (/^https?:\/\//i.test(s)) {
    const u = new URL(s);
    return `${u.protocol}//${u.host}`;
  }
  if (/^unix:/i.test(s) || s.includes("://")) {
    throw new Error(
      `unsupported etcd endpoint ${JSON.stringify(ep)}: use http://host:port or https://host:port`,
    );
  }
  return `${tls ? "https" : "http"}://${s}`;
}

export interface CallOptions {
  /** Absolute deadline, ms since the epoch. */
  deadline: number;
  metadata?: Record<string, string> | undefined;
}

/** How long an idle HTTP/2 connection may go without an answered PING before it is dropped. */
const PING_EVERY_MS = 30_000;
const PING_TIMEOUT_MS = 10_000;

/**
 * HTTP/2 connections to a list of endpoints; calls go to the current one, and a call whose connection
 * cannot be made moves on to the next endpoint. One connection per endpoint, opened on demand.
 */
export class GrpcChannel {
  private readonly endpoints: Endpoint[];
  private current = 0;
  private closed = false;

  constructor(
    endpoints: readonly string[],
    private readonly tls: TlsFiles | undefined,
  ) {
    if (endpoints.length === 0) throw new Error("no etcd endpoints given");
    this.endpoints = endpoints.map((url) => ({
      url: normalizeEndpoint(url, tls !== undefined),
      session: undefined,
      connected: false,
      lastError: "",
    }));
  }

  get endpointUrls(): string[] {
    return this.endpoints.map((e) => e.url);
  }

  close(): void {
    this.closed = true;
    for (const ep of this.endpoints) {
      ep.session?.destroy();
      ep.session = undefined;
    }
  }

  private session(ep: Endpoint): http2.ClientHttp2Session {
    if (this.closed) throw new GrpcError(Status.CANCELLED, "etcd client closed", ep.url);
    const existing = ep.session;
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    const opts: http2.SecureClientSessionOptions = {};
    if (this.tls !== undefined) {
      if (this.tls.ca !== undefined) opts.ca = this.tls.ca;
      opts.cert = this.tls.cert;
      opts.key = this.tls.key;
      opts.minVersion = "TLSv1.2";
    }
    const s = http2.connect(ep.url, opts);
    ep.session = s;
    ep.connected = false;
    s.on("connect", () => {
      ep.connected = true;
    });
    s.on("error", (err: Error) => {
      ep.lastError = err.message;
    });
    // Pings only while a call is open: a gRPC server's keepalive enforcement (grpc-go, which etcd uses) may
    // count pings on a connection without streams as abuse and close it with GOAWAY after a few.
    const pinger = setInterval(() => {
      if (s.closed || s.destroyed || (openCalls.get(s) ?? 0) === 0) return;
      const t = setTimeout(() => s.destroy(new Error("etcd did not answer an HTTP/2 ping")), PING_TIMEOUT_MS);
      t.unref();
      try {
        s.ping((err) => {
          clearTimeout(t);
          if (err) s.destroy(err);
        });
      } catch {
        clearTimeout(t);
      }
    }, PING_EVERY_MS);
    pinger.unref();
    s.on("close", () => {
      clearInterval(pinger);
      if (ep.session === s) ep.session = undefined;
    });
    // An idle connection does not keep the process alive; open streams do (see ref/unref in request()).
    s.unref();
    return s;
  }

  /** Runs `attempt` against the current endpoint, then the others in turn while it fails to connect. */
  private async withFailover<T>(attempt: (ep: Endpoint) => Promise<T>): Promise<T> {
    const n = this.endpoints.length;
    let last: GrpcError | undefined;
    for (let i = 0; i < n; i++) {
      const idx = (this.current + i) % n;
      const ep = this.endpoints[idx] as Endpoint;
      try {
        const out = await attempt(ep);
        this.current = idx;
        return out;
      } catch (err) {
        if (!(err instanceof GrpcError) || !err.connectFailed) throw err;
        last = err;
      }
    }
    throw last as GrpcError;
  }

  /** One unary call: request message in, response message out. */
  unary(path: string, message: Uint8Array, opts: CallOptions): Promise<Buffer> {
    return this.withFailover((ep) => this.unaryOnce(ep, path, message, opts));
  }

  private unaryOnce(ep: Endpoint, path: string, message: Uint8Array, opts: CallOptions): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const remaining = opts.deadline - Date.now();
      if (remaining <= 0) {
        reject(new GrpcError(Status.DEADLINE_EXCEEDED, "context deadline exceeded", ep.url));
        return;
      }
      let call: Call;
      try {
        call = this.request(ep, path, opts.metadata, remaining);
      } catch (err) {
        reject(err);
        return;
      }
      const messages: Buffer[] = [];
      const timer = setTimeout(
        () => call.cancel(new GrpcError(Status.DEADLINE_EXCEEDED, "context deadline exceeded", ep.url)),
        remaining,
      );
      call.listen(
        (m) => messages.push(m),
        (err) => {
          clearTimeout(timer);
          if (err) reject(err);
          else if (messages.length !== 1) {
            reject(
              new GrpcError(Status.INTERNAL, `expected one response message, got ${messages.length}`, ep.url),
            );
          } else resolve(messages[0] as Buffer);
        },
      );
      call.write(message);
      call.end();
    });
  }

  /**
   * A bidirectional stream on the current endpoint (moving on when it cannot connect), with `first`
   * written at once (etcd answers, and sends its response headers, only after a request). Resolves when
   * the response headers arrive; attach to the call with `listen()`.
   */
  async stream(path: string, metadata: Record<string, string> | undefined, first: Uint8Array): Promise<Call> {
    return this.withFailover(async (ep) => {
      const call = this.request(ep, path, metadata, undefined);
      call.write(first);
      await call.opened;
      return call;
    });
  }

  private request(
    ep: Endpoint,
    path: string,
    metadata: Record<string, string> | undefined,
    timeoutMs: number | undefined,
  ): Call {
    const s = this.session(ep);
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...metadata,
    };
    if (timeoutMs !== undefined) headers["grpc-timeout"] = `${Math.min(Math.ceil(timeoutMs), 99_999_999)}m`;
    const req = s.request(headers);
    return new Call(req, ep, s);
  }
}

/**
 * One gRPC call on an HTTP/2 stream. Messages and the end are held until `listen()` is called, so a
 * caller may attach later (after awaiting `opened`) without losing any.
 */
export class Call {
  /** Resolves when etcd answers with response headers; rejects when the call ends before that. */
  readonly opened: Promise<void>;

  private readonly decoder = new FrameDecoder();
  private status: number | undefined;
  private statusMessage = "";
  private gotHeaders = false;
  private ended = false;
  private failure: GrpcError | undefined;
  private queue: Buffer[] = [];
  private result: GrpcError | null | undefined;
  private onMessage: ((m: Buffer) => void) | undefined;
  private onEnd: ((err: GrpcError | null) => void) | undefined;
  private resolveOpened!: () => void;
  private rejectOpened!: (err: GrpcError) => void;

  constructor(
    private readonly req: http2.ClientHttp2Stream,
    private readonly ep: Endpoint,
    session: http2.ClientHttp2Session,
  ) {
    this.opened = new Promise<void>((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });
    this.opened.catch(() => undefined);
    // An open call keeps the process alive, as a socket would; an idle connection does not.
    const open = (openCalls.get(session) ?? 0) + 1;
    openCalls.set(session, open);
    if (open === 1) session.ref();
    req.on("response", (h) => {
      this.gotHeaders = true;
      const httpStatus = Number(h[":status"]);
      if (h["grpc-status"] !== undefined)
        this.setStatus(h); // trailers-only response
      else if (httpStatus !== 200) {
        this.failure = new GrpcError(Status.UNKNOWN, `etcd answered HTTP ${httpStatus}`, ep.url);
      }
      this.resolveOpened();
    });
    req.on("data", (chunk: Buffer) => {
      let msgs: Buffer[];
      try {
        msgs = this.decoder.push(chunk);
      } catch (err) {
        this.cancel(new GrpcError(Status.INTERNAL, (err as Error).message, ep.url));
        return;
      }
      for (const m of msgs) {
        if (this.ended) return;
        if (this.onMessage !== undefined) this.onMessage(m);
        else this.queue.push(m);
      }
    });
    req.on("trailers", (t) => this.setStatus(t));
    req.on("error", (err: Error) => {
      this.failure ??= this.unavailable(err.message);
    });
    req.on("close", () => {
      const left = (openCalls.get(session) ?? 1) - 1;
      openCalls.set(session, left);
      if (left === 0 && !session.destroyed) session.unref();
      this.finish();
    });
  }

  /** Attaches the consumer; messages and an end that came before are delivered now. */
  listen(onMessage: (m: Buffer) => void, onEnd: (err: GrpcError | null) => void): void {
    this.onMessage = onMessage;
    this.onEnd = onEnd;
    const queued = this.queue;
    this.queue = [];
    for (const m of queued) onMessage(m);
    if (this.result !== undefined) onEnd(this.result);
  }

  /**
   * The call ended without a status. If no connection was ever made, the connection's own error (e.g.
   * ECONNREFUSED) says why, and the channel may try the next endpoint.
   */
  private unavailable(why: string): GrpcError {
    const connectFailed = !this.gotHeaders && !this.ep.connected;
    const text = connectFailed && this.ep.lastError !== "" ? this.ep.lastError : why;
    return new GrpcError(Status.UNAVAILABLE, text, this.ep.url, connectFailed);
  }

  private setStatus(h: http2.IncomingHttpHeaders): void {
    this.status = Number(h["grpc-status"]);
    const m = h["grpc-message"];
    if (typeof m === "string") {
      try {
        this.statusMessage = decodeURIComponent(m);
      } catch {
        this.statusMessage = m;
      }
    }
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    let result: GrpcError | null;
    if (this.failure !== undefined) result = this.failure;
    else if (this.status === Status.OK) result = null;
    else if (this.status !== undefined) {
      result = new GrpcError(
        this.status,
        this.statusMessage || (STATUS_NAMES[this.status] ?? ""),
        this.ep.url,
      );
    } else {
      result = this.unavailable(`stream closed without a status (HTTP/2 code ${this.req.rstCode ?? "none"})`);
    }
    this.result = result;
    this.rejectOpened(result ?? new GrpcError(Status.UNKNOWN, "call ended before it opened", this.ep.url));
    this.onEnd?.(result);
  }

  write(message: Uint8Array): void {
    if (this.ended || this.req.closed || this.req.writableEnded) return;
    this.req.write(frame(message));
  }

  /** Half-closes: no more messages from us. */
  end(): void {
    if (!this.req.closed && !this.req.writableEnded) this.req.end();
  }

  /** Ends the call now (RST_STREAM CANCEL) and reports `err` (or CANCELLED) as its end. */
  cancel(err?: GrpcError): void {
    if (this.failure === undefined) {
      this.failure = err ?? new GrpcError(Status.CANCELLED, "call cancelled", this.ep.url);
    }
    if (!this.req.closed) this.req.close(http2.constants.NGHTTP2_CANCEL);
  }
}

/** Open calls per connection. */
const openCalls = new WeakMap<http2.ClientHttp2Session, number>();
