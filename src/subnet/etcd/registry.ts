// EtcdRegistry: the lease store of the etcd subnet manager, over the etcd v3 API (our own small client,
// ./client/, docs/adr/0004-etcd-client.md). Same keys, values and TTL handling as upstream's pkg/subnet/etcd/registry.go, so upstream and
// flannel-ts nodes can share one etcd.
//
// Design notes:
// - Plain RPCs (KV Range/Put/Txn/DeleteRange, Lease Grant/Revoke/TimeToLive): each call carries a deadline, leases are plain IDs (no keep-alive machinery: renewal grants a new lease
//   and re-puts, as upstream does — the old lease is left to expire, quirk A9), and create-if-absent is a
//   single `Version(key) == 0` transaction.
// - A key without an etcd lease (lease ID 0) is a reservation: its Lease has `expiration: null`.
// - A watch is one gRPC stream. When it ends (etcd restarted, connection lost) it is opened again after a
//   backoff (100 ms doubling up to 5 s, `DoublingBackoff`, reset by the next response) from the revision
//   after the last event seen. A watch that etcd cancels because its revision was compacted cannot resume:
//   we re-list, hand out a snapshot and watch again from the snapshot's revision (upstream: "fell behind
//   compaction, re-listing").
// - Watch output goes through a BatchQueue: the producer appends as responses arrive; the consumer takes
//   everything pending in one pull. Events are never dropped; a snapshot supersedes the events queued
//   before it (the re-list already reflects them). Responses are handled strictly in arrival order
//   (a promise chain) because an added event needs an async TTL lookup.
// - Malformed keys or values under the prefix are logged and skipped; they never end a watch.

import { readFileSync } from "node:fs";
import {
  EtcdClient,
  GrpcError,
  type KeyValue,
  type Watch,
  type WatchEvent,
  type WatchResponse,
} from "./client/client.ts";
import { IpAddr } from "../../ip/addr.ts";
import type { IpNet } from "../../ip/net.ts";
import type { Lease, LeaseAttrs, LeaseEvent, LeaseWatchResult } from "../../lease/lease.ts";
import type { Logger } from "../../log/logger.ts";
import { FlannelError, errorMessage, redact } from "../../errors.ts";
import { sleep } from "../../util/sleep.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  isIpv6OnlyKey,
  joinKey,
  makeSubnetKey,
  parseSubnetKey,
  type SubnetKey,
} from "./keys.ts";
import { appendAll } from "../../util/array.ts";

/** Upstream's errConfigNotFound text, verbatim. */
export const CONFIG_NOT_FOUND =
  "flannel config not found in etcd store. Did you create your config using etcdv3 API?";

export interface EtcdRegistryOptions {
  endpoints: readonly string[];
  /** Key prefix, e.g. `/coreos.com/network`. */
  prefix: string;
  keyFile?: string | undefined;
  certFile?: string | undefined;
  caFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  logger: Logger;
  /** Deadline of each etcd call; default 10 s. */
  callTimeoutMs?: number;
}

/** Concurrent TimeToLive calls when listing or watching many leases. */
const TTL_LOOKUPS_IN_FLIGHT = 64;

/** A subnet key and its lease value, or an error text naming the key when either is malformed. */
function decodeKv(kv: KeyValue): { sk: SubnetKey; attrs: LeaseAttrs } | string {
  const key = kv.key.toString("utf8");
  const sk = parseSubnetKey(key);
  if (sk === null) return `failed to parse subnet key ${key}`;
  const attrs = decodeLeaseAttrs(kv.value.toString("utf8"));
  return attrs.ok ? { sk, attrs: attrs.value } : `${key}: ${attrs.error}`;
}
/** 100 ms, doubling, capped at 5 s: the reconnect backoff of upstream's watch loops. */
export class DoublingBackoff {
  constructor(
    readonly duration = 100,
    private readonly maxMs = 5000,
  ) {}
  next(): DoublingBackoff {
    return new DoublingBackoff(Math.min(this.duration * 2, this.maxMs), this.maxMs);
  }
}

/** A lease key's subnets (IPv4 null for an IPv6-only key) and the revision that created it. */
export interface CreatedSubnetKey {
  subnet: IpNet | null;
  ipv6Subnet: IpNet | null;
  createRevision: number;
}

/** Thrown by createSubnet when the key exists (upstream errSubnetAlreadyexists). */
export class SubnetExistsError extends FlannelError {
  constructor(key: string) {
    super("ESUBNETEXISTS", `subnet already exists: ${key}`);
  }
}

/**
 * A queue whose consumer takes everything pending at once. `close()` ends the iteration after the
 * pending items are taken.
 */
export class BatchQueue<T> {
  private items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: T): void {
    this.items.push(item);
    this.notify();
  }

  /** Replaces everything pending by `item` (a snapshot supersedes earlier events). */
  replace(item: T): void {
    this.items = [item];
    this.notify();
  }

  /** The last pending item, for merging into it. */
  last(): T | undefined {
    return this.items[this.items.length - 1];
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *drain(): AsyncGenerator<T[]> {
    for (;;) {
      if (this.items.length > 0) {
        const batch = this.items;
        this.items = [];
        yield batch;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** Pushes events into the queue, merging with the pending events batch if there is one. */
function pushEvents(queue: BatchQueue<LeaseWatchResult>, events: LeaseEvent[]): void {
  if (events.length === 0) return;
  const last = queue.last();
  if (last !== undefined && "events" in last) appendAll(last.events, events);
  else queue.push({ events });
}

export class EtcdRegistry {
  private readonly client: EtcdClient;
  private readonly log: Logger;
  private readonly callTimeoutMs: number;
  private readonly secrets: string[];
  readonly subnetsKey: string;
  readonly configKey: string;

  constructor(private readonly opts: EtcdRegistryOptions) {
    this.log = opts.logger;
    this.callTimeoutMs = opts.callTimeoutMs ?? 10_000;
    this.secrets = [opts.password].filter((s): s is string => s !== undefined && s !== "");
    this.subnetsKey = joinKey(opts.prefix, "subnets");
    this.configKey = joinKey(opts.prefix, "config");
    let tls: { ca?: Buffer | undefined; cert: Buffer; key: Buffer } | undefined;
    if (!opts.keyFile || !opts.certFile) {
      this.log.warn("no certificate provided: connecting to etcd with http. This is insecure");
    } else {
      tls = {
        // Without a CA, Node uses its bundled roots, as Go's TLS client uses the system's.
        ca: opts.caFile ? readTls(opts.caFile, "--etcd-cafile") : undefined,
        key: readTls(opts.keyFile, "--etcd-keyfile"),
        cert: readTls(opts.certFile, "--etcd-certfile"),
      };
    }
    const auth =
      opts.username !== undefined && opts.username !== ""
        ? { username: opts.username, password: opts.password ?? "" }
        : undefined;
    this.client = new EtcdClient({ endpoints: opts.endpoints, tls, auth });
  }

  /** Closes the client; pending calls fail. */
  close(): void {
    this.client.close();
  }

  /** An error safe to log (never the password), naming the endpoints when none could be reached. */
  private clean(err: unknown): Error {
    if (err instanceof GrpcError && err.connectFailed) {
      return new FlannelError(
        "EETCDUNREACHABLE",
        `cannot reach etcd at ${this.opts.endpoints.join(",")}: ${redact(err.message, this.secrets)}`,
        { hint: "check that etcd is running and that --etcd-endpoints (and TLS/auth flags) are right" },
      );
    }
    const msg = redact(errorMessage(err), this.secrets);
    if (err instanceof Error && msg === err.message) return err;
    return new Error(msg);
  }

  private deadline(): number {
    return Date.now() + this.callTimeoutMs;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.clean(err);
    }
  }

  /** The text of `<prefix>/config`; throws upstream's message when it is absent. */
  async getNetworkConfig(): Promise<string> {
    const res = await this.call(() =>
      this.client.range({ key: Buffer.from(this.configKey) }, this.deadline()),
    );
    const kv = res.kvs[0];
    if (kv === undefined) throw new FlannelError("ECONFIGNOTFOUND", CONFIG_NOT_FOUND);
    return kv.value.toString("utf8");
  }

  /** Expiration of an etcd lease; null when the key has no lease (a reservation). */
  private async expirationOf(leaseId: string): Promise<Date | null> {
    if (leaseId === "0" || leaseId === "") return null;
    const ttl = await this.call(() => this.client.leaseTimeToLive(leaseId, this.deadline()));
    return new Date(Date.now() + ttl.ttlSec * 1000);
  }

  /**
   * Expirations of many etcd leases, looked up concurrently (at most TTL_LOOKUPS_IN_FLIGHT at a time) and
   * once per distinct lease ID. A failed lookup maps to the error. Every peer has its own etcd lease, so a
   * 1000-lease list needs 1000 TimeToLive calls: one after another they took ~1.8 s here, in flight together
   * ~0.2 s (bench/, control plane cold start).
   */
  private async expirationsOf(leaseIds: Iterable<string>): Promise<Map<string, Date | null | Error>> {
    const out = new Map<string, Date | null | Error>();
    const todo = [...new Set(leaseIds)];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const id = todo[next++] as string;
        try {
          out.set(id, await this.expirationOf(id));
        } catch (err) {
          out.set(id, err instanceof Error ? err : new Error(String(err)));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(TTL_LOOKUPS_IN_FLIGHT, todo.length) }, worker));
    return out;
  }

  /** kv → Lease, or an error text naming the key when the key or value is malformed. */
  private async kvToLease(kv: KeyValue): Promise<Lease | string> {
    const d = decodeKv(kv);
    if (typeof d === "string") return d;
    return keyLease(d.sk, d.attrs, await this.expirationOf(kv.lease), kv.modRevision);
  }

  /**
   * All leases under `<prefix>/subnets/` and the revision of the read (the watch resumes after it).
   * `ttlOf` picks the leases whose expiration is looked up (default: all); the others carry `expiration:
   * null` without a lookup. A TimeToLive call costs ~1 ms of CPU in grpc-js, so listing 10,000 peers only to
   * read their (unused) expirations would cost seconds. Each value is decoded once, before `ttlOf` sees it.
   */
  async getSubnets(
    opts: { ttlOf?: (attrs: LeaseAttrs) => boolean } = {},
  ): Promise<{ leases: Lease[]; revision: number }> {
    const prefix = Buffer.from(`${this.subnetsKey}/`);
    const res = await this.call(() =>
      this.client.range({ key: prefix, rangeEnd: prefixEnd(prefix) }, this.deadline()),
    );
    const decoded: { kv: KeyValue; sk: SubnetKey; attrs: LeaseAttrs }[] = [];
    for (const kv of res.kvs) {
      const d = decodeKv(kv);
      if (typeof d === "string") this.log.warn(`Ignoring bad subnet node: ${d}`);
      else decoded.push({ kv, ...d });
    }
    const ttlOf = opts.ttlOf;
    const selected = ttlOf === undefined ? decoded : decoded.filter((d) => ttlOf(d.attrs));
    const known = await this.expirationsOf(selected.map((d) => d.kv.lease));
    const leases: Lease[] = [];
    for (const d of decoded) {
      const e = known.get(d.kv.lease) ?? null;
      if (e instanceof Error) {
        this.log.warn(`Could not read ttl: ${errorMessage(e)}`);
        continue;
      }
      leases.push(keyLease(d.sk, d.attrs, e, d.kv.modRevision));
    }
    return { leases, revision: res.revision };
  }

  /** One lease (null when absent) and the revision of the read. */
  async getSubnet(
    subnet: IpNet | null,
    ipv6Subnet: IpNet | null,
  ): Promise<{ lease: Lease | null; revision: number }> {
    const key = this.subnetKey(subnet, ipv6Subnet);
    const res = await this.call(() => this.client.range({ key: Buffer.from(key) }, this.deadline()));
    const kv = res.kvs[0];
    const revision = res.revision;
    if (kv === undefined) return { lease: null, revision };
    const l = await this.kvToLease(kv);
    if (typeof l === "string") throw new FlannelError("EBADLEASE", l);
    return { lease: l, revision };
  }

  subnetKey(subnet: IpNet | null, ipv6Subnet: IpNet | null): string {
    return joinKey(this.subnetsKey, makeSubnetKey(subnet, ipv6Subnet));
  }

  private async grant(ttlSec: number): Promise<{ id: string; ttlSec: number }> {
    return this.call(() => this.client.leaseGrant(ttlSec, this.deadline()));
  }

  private async revokeQuietly(id: string): Promise<void> {
    try {
      await this.client.leaseRevoke(id, this.deadline());
    } catch (err) {
      this.log.error(errorMessage(this.clean(err)));
    }
  }

  /**
   * Creates the lease key only if it does not exist (txn `Version(key) == 0`), attached to a new etcd lease
   * of `ttlSec`. Throws SubnetExistsError when someone else holds the key. Returns the expiration, the
   * revision that created the key and the etcd lease it is attached to.
   */
  async createSubnet(
    subnet: IpNet | null,
    ipv6Subnet: IpNet | null,
    attrs: LeaseAttrs,
    ttlSec: number,
  ): Promise<{ expiration: Date; revision: number; etcdLease: string }> {
    const key = Buffer.from(this.subnetKey(subnet, ipv6Subnet));
    const value = Buffer.from(encodeLeaseAttrs(attrs));
    const lease = await this.grant(ttlSec);
    let res: { revision: number; succeeded: boolean };
    try {
      res = await this.call(() =>
        this.client.txn(
          {
            compare: [{ key, versionEquals: 0 }],
            success: [{ key, value, lease: lease.id }],
          },
          this.deadline(),
        ),
      );
    } catch (err) {
      await this.revokeQuietly(lease.id);
      throw err;
    }
    if (!res.succeeded) {
      await this.revokeQuietly(lease.id);
      throw new SubnetExistsError(key.toString());
    }
    return {
      expiration: new Date(Date.now() + lease.ttlSec * 1000),
      revision: res.revision,
      etcdLease: lease.id,
    };
  }

  /**
   * The lease keys created after `revision` (their subnets and the revision that created each), read
   * without their values. Keys that do not parse as lease keys are left out.
   */
  async subnetsCreatedAfter(revision: number): Promise<CreatedSubnetKey[]> {
    const prefix = Buffer.from(`${this.subnetsKey}/`);
    const res = await this.call(() =>
      this.client.range(
        { key: prefix, rangeEnd: prefixEnd(prefix), keysOnly: true, minCreateRevision: revision + 1 },
        this.deadline(),
      ),
    );
    const out: CreatedSubnetKey[] = [];
    for (const kv of res.kvs) {
      const sk = parseSubnetKey(kv.key.toString("utf8"));
      if (sk === null) continue;
      const subnet = isIpv6OnlyKey(sk) ? null : sk.subnet;
      out.push({ subnet, ipv6Subnet: sk.ipv6Subnet, createRevision: kv.createRevision });
    }
    return out;
  }

  /** Revokes an etcd lease, which deletes the keys attached to it (a lease key made by createSubnet). */
  async revokeLease(id: string): Promise<void> {
    await this.call(() => this.client.leaseRevoke(id, this.deadline()));
  }

  /**
   * Puts the lease key with a fresh etcd lease of `ttlSec` (renewal: the previous etcd lease is not revoked,
   * as upstream). `ttlSec` 0 puts it without a lease (a reservation) and returns null.
   */
  async updateSubnet(
    subnet: IpNet | null,
    ipv6Subnet: IpNet | null,
    attrs: LeaseAttrs,
    ttlSec: number,
  ): Promise<Date | null> {
    const key = Buffer.from(this.subnetKey(subnet, ipv6Subnet));
    const value = Buffer.from(encodeLeaseAttrs(attrs));
    if (ttlSec <= 0) {
      await this.call(() => this.client.put({ key, value }, this.deadline()));
      return null;
    }
    const lease = await this.grant(ttlSec);
    try {
      await this.call(() => this.client.put({ key, value, lease: lease.id }, this.deadline()));
    } catch (err) {
      await this.revokeQuietly(lease.id);
      throw err;
    }
    return new Date(Date.now() + lease.ttlSec * 1000);
  }

  /** Deletes the lease key; succeeds when it is already gone. */
  async deleteSubnet(subnet: IpNet | null, ipv6Subnet: IpNet | null): Promise<void> {
    const key = Buffer.from(this.subnetKey(subnet, ipv6Subnet));
    await this.call(() => this.client.deleteRange({ key }, this.deadline()));
  }

  /**
   * All subnet leases: a snapshot first (unless `since` is given: then events from revision `since`), then
   * batches of events until `signal` aborts. Survives disconnects (resumes from the last revision seen) and
   * compaction (re-lists and yields a fresh snapshot).
   */
  watchSubnets(
    signal: AbortSignal,
    since?: number,
    opts: { ttl?: boolean } = {},
  ): AsyncIterable<LeaseWatchResult[]> {
    const prefix = Buffer.from(`${this.subnetsKey}/`);
    return this.watchRange(
      signal,
      { key: prefix, rangeEnd: prefixEnd(prefix), label: this.subnetsKey, ttl: opts.ttl ?? true },
      since,
    );
  }

  /** Like watchSubnets, for one lease key (the snapshot holds that lease, or nothing when absent). */
  watchSubnet(
    signal: AbortSignal,
    subnet: IpNet | null,
    ipv6Subnet: IpNet | null,
    since?: number,
  ): AsyncIterable<LeaseWatchResult[]> {
    const key = this.subnetKey(subnet, ipv6Subnet);
    return this.watchRange(
      signal,
      { key: Buffer.from(key), rangeEnd: undefined, label: key, ttl: true },
      since,
    );
  }

  private async list(range: { key: Buffer; rangeEnd: Buffer | undefined; ttl: boolean }): Promise<{
    leases: Lease[];
    revision: number;
  }> {
    if (range.rangeEnd !== undefined) return this.getSubnets(range.ttl ? {} : { ttlOf: () => false });
    const sk = parseSubnetKey(range.key.toString());
    if (sk === null) throw new Error(`not a subnet key: ${range.key.toString()}`);
    const { lease, revision } = await this.getSubnet(sk.subnet, sk.ipv6Subnet);
    return { leases: lease ? [lease] : [], revision };
  }

  private watchRange(
    signal: AbortSignal,
    range: { key: Buffer; rangeEnd: Buffer | undefined; label: string; ttl: boolean },
    since: number | undefined,
  ): AsyncIterable<LeaseWatchResult[]> {
    const queue = new BatchQueue<LeaseWatchResult>();
    const log = this.log;
    let chain: Promise<void> = Promise.resolve();
    let nextRev = since ?? 0;

    const relist = async (): Promise<void> => {
      let backoff = new DoublingBackoff();
      for (;;) {
        if (signal.aborted) return;
        try {
          const { leases, revision } = await this.list(range);
          queue.replace({ snapshot: leases });
          nextRev = revision + 1;
          return;
        } catch (err) {
          log.error(`failed to re-list subnets: ${errorMessage(this.clean(err))}`);
          try {
            await sleep(backoff.duration, signal);
          } catch {
            return;
          }
          backoff = backoff.next();
        }
      }
    };

    // `attempt` identifies the current stream: callbacks of an older one are ignored.
    let attempt = 0;
    let watch: Watch | undefined;
    let backoff = new DoublingBackoff();
    let retryTimer: NodeJS.Timeout | undefined;

    const stop = (): void => {
      attempt++;
      watch?.cancel();
      watch = undefined;
      clearTimeout(retryTimer);
      retryTimer = undefined;
    };

    const reconnect = (err: unknown): void => {
      stop();
      log.warn(
        `etcd watch channel for ${range.label} closed (${errorMessage(this.clean(err))}), reconnecting from rev ${nextRev}...`,
      );
      const wait = backoff.duration;
      backoff = backoff.next();
      retryTimer = setTimeout(start, wait);
    };

    const cancelled = (res: WatchResponse): void => {
      stop();
      // The watch was cancelled by etcd; it cannot be resumed as it is. Compaction is the common cause
      // (etcd 3.4 sets compact_revision and leaves the reason empty).
      if (res.compactRevision > 0 || /compacted/.test(res.cancelReason)) {
        log.warn(`etcd watch for ${range.label} fell behind compaction, re-listing and resuming`);
      } else {
        log.warn(
          `etcd watch for ${range.label} was cancelled (${res.cancelReason}), re-listing and resuming`,
        );
      }
      chain = chain
        .then(async () => {
          await relist();
          start();
        })
        .catch((e: unknown) => log.error(`error restarting etcd watch: ${errorMessage(this.clean(e))}`));
    };

    const onResponse = (res: WatchResponse): void => {
      backoff = new DoublingBackoff();
      if (res.canceled) {
        cancelled(res);
        return;
      }
      const evs = res.events;
      if (evs.length === 0) {
        // A progress notification says every event up to its revision was sent. The `created` answer does
        // not: events from an earlier start revision may still follow.
        if (!res.created && res.revision > 0) nextRev = Math.max(nextRev, res.revision + 1);
        return;
      }
      nextRev = Math.max(nextRev, (evs[evs.length - 1] as WatchEvent).kv.modRevision + 1);
      // The catch keeps the chain alive: a rejected link would silently drop every later response.
      chain = chain
        .then(async () => pushEvents(queue, await this.toEvents(evs, range.ttl)))
        .catch((err: unknown) =>
          log.error(`error handling etcd watch response: ${errorMessage(this.clean(err))}`),
        );
    };

    const start = (): void => {
      if (signal.aborted) return;
      const mine = ++attempt;
      retryTimer = undefined;
      log.v(4)?.info(`registry: watching ${range.label} starting from rev ${nextRev}`);
      this.client
        .watch(
          { key: range.key, rangeEnd: range.rangeEnd, startRevision: nextRev },
          {
            onResponse: (res) => {
              if (mine === attempt && !signal.aborted) onResponse(res);
            },
            onEnd: (err) => {
              if (mine === attempt && !signal.aborted) reconnect(err ?? new Error("etcd ended the watch"));
            },
          },
          this.deadline(),
        )
        .then(
          (w) => {
            if (mine === attempt && !signal.aborted) watch = w;
            else w.cancel();
          },
          (err: unknown) => {
            if (mine === attempt && !signal.aborted) reconnect(err);
          },
        );
    };

    const onAbort = (): void => {
      stop();
      queue.close();
    };

    async function* run(): AsyncGenerator<LeaseWatchResult[]> {
      if (signal.aborted) return;
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        if (since === undefined) await relist();
        start();
        for await (const batch of queue.drain()) {
          if (signal.aborted) return;
          yield batch;
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
        onAbort();
      }
    }
    return run();
  }

  /**
   * Watch events → lease events; malformed ones are logged and skipped. Added leases get their TTL, unless
   * `ttl` is false (then `expiration` is null: peers' expirations are never used, and not looked up).
   */
  private async toEvents(evs: WatchEvent[], ttl: boolean): Promise<LeaseEvent[]> {
    const out: LeaseEvent[] = [];
    const ttlCache = ttl
      ? await this.expirationsOf(evs.filter((e) => e.type !== "Delete").map((e) => e.kv.lease))
      : new Map<string, Date | null | Error>();
    for (const ev of evs) {
      const key = ev.kv.key.toString("utf8");
      const sk = parseSubnetKey(key);
      if (sk === null) {
        this.log.error(`error parsing etcd event: ${ev.type} ${JSON.stringify(key)}: not a subnet, skipping`);
        continue;
      }
      if (ev.type === "Delete") {
        out.push({
          type: "removed",
          lease: keyLease(
            sk,
            { publicIp: zeroV4(), publicIpv6: null, backendType: "" },
            null,
            ev.kv.modRevision,
          ),
        });
        continue;
      }
      const attrs = decodeLeaseAttrs(ev.kv.value.toString("utf8"));
      if (!attrs.ok) {
        this.log.error(`error parsing etcd event: ${key}: ${attrs.error}`);
        continue;
      }
      let expiration: Date | null = null;
      const known = ttlCache.get(ev.kv.lease);
      if (known instanceof Error) {
        // Keep the event (a peer's lease must not be lost); only its expiration is unknown.
        this.log.warn(`Could not read ttl: ${errorMessage(known)}`);
      } else expiration = known ?? null;
      out.push({ type: "added", lease: keyLease(sk, attrs.value, expiration, ev.kv.modRevision) });
    }
    return out;
  }
}

/**
 * The lease a subnet key names. An IPv6-only lease carries no IPv4 subnet (its key says `0.0.0.0-0`);
 * upstream forces EnableIPv4 on every watched lease, which backends then skip because they have no IPv4
 * device. Built as one literal in the Lease field order, never by spreading: objects made by spread got a
 * hidden class of their own each (~340 bytes per lease in a heap snapshot at 10,000 leases).
 */
export function keyLease(sk: SubnetKey, attrs: LeaseAttrs, expiration: Date | null, asof: number): Lease {
  const v6only = isIpv6OnlyKey(sk);
  return {
    enableIpv4: !v6only,
    enableIpv6: sk.ipv6Subnet !== null,
    subnet: v6only ? null : sk.subnet,
    ipv6Subnet: sk.ipv6Subnet,
    attrs,
    expiration,
    asof,
  };
}

/** `l` with another expiration, built as one literal like keyLease (not by spreading). */
export function withExpiration(l: Lease, expiration: Date | null): Lease {
  return {
    enableIpv4: l.enableIpv4,
    enableIpv6: l.enableIpv6,
    subnet: l.subnet,
    ipv6Subnet: l.ipv6Subnet,
    attrs: l.attrs,
    expiration,
    asof: l.asof,
  };
}

function zeroV4(): IpAddr {
  return IpAddr.zero(4);
}

/** The end of the key range that holds every key starting with `prefix` (etcd's WithPrefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function readTls(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    // The message names the file and the flag, never the file's contents.
    throw new FlannelError("ETLSFILE", `Cannot read ${flag} file ${file}: ${errorMessage(err)}`, {
      hint: `check that ${flag} names a readable PEM file`,
    });
  }
}
