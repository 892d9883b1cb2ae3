// EtcdSubnetManager: the SubnetManager of etcd mode (upstream pkg/subnet/etcd/local_manager.go). It reads
// the network config from `<prefix>/config`, leases this node's subnet under `<prefix>/subnets/`, keeps the
// lease alive and watches everybody's leases.
//
// Design notes:
// - AcquireLease, in upstream's order: (1) a lease already held by our public IP is reused if it still fits
//   the config (else deleted); (2) the previous subnet from subnet.env is reused if free and compatible;
//   (3) otherwise a subnet is picked uniformly at random among the first 100 free ones (IPv6 independently).
//   Creation is a `Version == 0` transaction; losing the race retries, at most 10 times.
// - IPv6-only (EnableIPv4 false): the key is upstream's `0.0.0.0-0&<v6>-<len>`, the lease has no IPv4
//   subnet, and a node finds its own lease by PublicIPv6 (every IPv6-only lease has PublicIP 0.0.0.0, so
//   matching by PublicIP as upstream does would hand one node's lease to the next). The previous subnet is
//   FLANNEL_IPV6_SUBNET.
// - Difference from upstream: acquireLease does not give up when etcd is unreachable; it logs and retries
//   (1 s, doubling to 10 s) until etcd answers or the signal aborts, so nodes can start before etcd.
//   Errors that retrying cannot fix (bad config, out of subnets, auth) still throw.
// - Difference from upstream, dual stack: a dual-stack key names both subnets, so the transaction cannot stop
//   two nodes taking the same subnet of one family under different keys. After creating its key a node reads
//   the keys created since its listing and gives its lease back when an older one overlaps either subnet
//   (keptAgainstRivals). A previous IPv6 subnet is reused only when no lease holds it.
// - Difference from upstream (quirk A8, issue #1329): a reservation (key without etcd lease) is re-put
//   without a TTL when reused, so reservations survive restarts as the docs promise.
// - completeLease renews at `expiration − margin` by granting a new 24 h lease and re-putting the key, retries
//   every minute on error, and watches the own key: a newer expiration reschedules, deletion = "revoked".
// - The watch starts from the listing acquireLease made (its leases and revision), instead of listing again:
//   the peers were just read, and events since that revision (our own lease among them) follow in order.
//   With 10,000 leases a second list and decode costs ~0.5 s of a cold start. Used once, and only if fresh
//   (an old listing would replay many events; a compacted revision makes the watch re-list anyway).
// - Cost: acquire lists all leases once per attempt (O(leases) plus one TimeToLive call per lease);
//   allocation scans candidates from SubnetMin and stops at 100 free ones, so it is O(100 × leases).

import { checkNetworkConfig, parseConfig } from "../../config/config.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { FlannelError, errorMessage } from "../../errors.ts";
import type { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import type { Lease, LeaseAttrs, LeaseWatchResult } from "../../lease/lease.ts";
import type { Logger } from "../../log/logger.ts";
import { sleep } from "../../util/sleep.ts";
import type { SubnetManager } from "../manager.ts";
import { GrpcError, Status } from "./client/client.ts";
import { EtcdRegistry, SubnetExistsError, withExpiration, type CreatedSubnetKey } from "./registry.ts";

/** How old acquireLease's listing may be to seed the lease watch (see the design notes). */
const SEED_MAX_AGE_MS = 30_000;

/** Every lease key is attached to an etcd lease of this TTL (upstream subnetTTL, 24 h). */
export const SUBNET_TTL_SEC = 86_400;
const RACE_RETRIES = 10;
const MAX_CANDIDATES = 100;

export interface EtcdSubnetManagerOptions {
  endpoints: string[];
  prefix: string;
  keyFile?: string | undefined;
  certFile?: string | undefined;
  caFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** FLANNEL_SUBNET from the previous subnet.env, if any. */
  prevSubnet: IpNet | null;
  prevIpv6Subnet: IpNet | null;
  /** --subnet-lease-renew-margin, minutes (1..1439). */
  renewMarginMin: number;
  logger: Logger;
  /** Random source in [0, 1) for picking among free subnets; default Math.random. */
  random?: () => number;
  /** Pause after a failed renewal; default 60 000 (upstream's 1 min). */
  renewRetryMs?: number;
  /** First pause when etcd is unreachable during acquire; default 1000, doubling to 10 000. */
  acquireRetryMs?: number;
  /** Deadline of each etcd call; default 10 000. */
  callTimeoutMs?: number;
}

/** Go's time.Duration.String at millisecond precision: `23h59m59.5s`, `1m0s`, `250ms`. */
export function goDuration(ms: number): string {
  if (ms === 0) return "0s";
  const neg = ms < 0;
  let rest = Math.abs(Math.round(ms));
  if (rest < 1000) return `${neg ? "-" : ""}${rest}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = (rest / 1000).toFixed(3).replace(/\.?0+$/, "");
  const out = h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
  return `${neg ? "-" : ""}${out}`;
}

/** Go's time.Time.String in UTC at millisecond precision: `2026-11-28 03:10:00.123 +0000 UTC`. */
export function goTime(d: Date): string {
  return `${d.toISOString().replace("T", " ").replace("Z", "")} +0000 UTC`;
}

const fmtNet = (n: IpNet | null, family: 4 | 6): string =>
  n?.toString() ?? (family === 4 ? "0.0.0.0/0" : "::/0");

function isSubnetConfigCompat(cfg: NetworkConfig, sn: IpNet | null): boolean {
  if (!cfg.enableIpv4) return sn === null;
  if (sn === null || cfg.subnetMin === null || cfg.subnetMax === null) return false;
  if (sn.ip.compare(cfg.subnetMin) < 0 || sn.ip.compare(cfg.subnetMax) > 0) return false;
  return sn.prefixLen === cfg.subnetLen;
}

function isIpv6SubnetConfigCompat(cfg: NetworkConfig, sn6: IpNet | null): boolean {
  if (!cfg.enableIpv6) return sn6 === null;
  if (sn6 === null || cfg.ipv6SubnetMin === null || cfg.ipv6SubnetMax === null) return false;
  if (sn6.ip.compare(cfg.ipv6SubnetMin) < 0 || sn6.ip.compare(cfg.ipv6SubnetMax) > 0) return false;
  return sn6.prefixLen === cfg.ipv6SubnetLen;
}

/**
 * Free candidates from `min` in steps of the subnet size while `<= max`, skipping any that overlap a
 * taken subnet, at most 100 of them (upstream allocateSubnet). Overlap is tested against the taken subnets
 * as address intervals sorted by start, with the running maximum of their ends, so each candidate costs a
 * binary search instead of a scan of every lease (10,000 leases × 100 candidates took ~0.3 s of a start).
 */
export function freeSubnets(
  min: IpAddr,
  max: IpAddr,
  prefixLen: number,
  taken: readonly (IpNet | null)[],
): IpNet[] {
  const out: IpNet[] = [];
  const used = taken
    .filter((t): t is IpNet => t !== null && t.family === min.family)
    .map((t) => ({ start: t.ip.value, end: t.last.value }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const maxEnd: bigint[] = [];
  for (const u of used)
    maxEnd.push(maxEnd.length === 0 ? u.end : bigMax(maxEnd[maxEnd.length - 1] as bigint, u.end));
  /** True when some taken interval starting at or before `end` reaches `start`. */
  const overlapsTaken = (start: bigint, end: bigint): boolean => {
    let lo = 0;
    let hi = used.length; // first index whose start is > end
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((used[mid] as { start: bigint }).start <= end) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && (maxEnd[lo - 1] as bigint) >= start;
  };
  let sn = IpNet.of(min, prefixLen);
  for (;;) {
    if (sn.ip.compare(max) > 0 || out.length >= MAX_CANDIDATES) break;
    const last = sn.last.value;
    if (!overlapsTaken(sn.ip.value, last)) out.push(sn);
    if (last === (1n << BigInt(sn.ip.bits)) - 1n) break; // the address space ends here
    sn = sn.next();
  }
  return out;
}

function bigMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** True for errors that waiting cannot fix (bad config, full network, auth). */
function isPermanent(err: unknown): boolean {
  // An unreachable etcd is a FlannelError too (it names the endpoints), but waiting is exactly what fixes it.
  if (err instanceof FlannelError) return err.code !== "ESUBNETEXISTS" && err.code !== "EETCDUNREACHABLE";
  // etcd refuses bad credentials with INVALID_ARGUMENT "etcdserver: authentication failed, invalid user ID
  // or password", missing rights with PERMISSION_DENIED, a missing or rejected token with UNAUTHENTICATED.
  return (
    err instanceof GrpcError &&
    (err.code === Status.PERMISSION_DENIED ||
      err.code === Status.UNAUTHENTICATED ||
      /authentication failed/.test(err.message))
  );
}

export class EtcdSubnetManager implements SubnetManager {
  readonly registry: EtcdRegistry;
  private readonly log: Logger;
  private readonly random: () => number;
  /** The last acquisition's listing, for the first watch (see the design notes); taken once. */
  private seed: { leases: Lease[]; revision: number; atMs: number } | undefined;

  constructor(private readonly opts: EtcdSubnetManagerOptions) {
    this.log = opts.logger;
    this.random = opts.random ?? Math.random;
    this.registry = new EtcdRegistry({
      endpoints: opts.endpoints,
      prefix: opts.prefix,
      keyFile: opts.keyFile,
      certFile: opts.certFile,
      caFile: opts.caFile,
      username: opts.username,
      password: opts.password,
      logger: opts.logger,
      ...(opts.callTimeoutMs === undefined ? {} : { callTimeoutMs: opts.callTimeoutMs }),
    });
  }

  name(): string {
    return `Etcd Local Manager with Previous Subnet: ${this.opts.prevSubnet?.toString() ?? "None"}`;
  }

  /** Closes the etcd client. */
  close(): void {
    this.registry.close();
  }

  async getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig> {
    signal.throwIfAborted();
    const text = await this.registry.getNetworkConfig();
    const cfg = parseConfig(text);
    checkNetworkConfig(cfg);
    return cfg;
  }

  async acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    let waitMs = this.opts.acquireRetryMs ?? 1000;
    for (;;) {
      signal.throwIfAborted();
      try {
        const text = await this.registry.getNetworkConfig();
        // A config that does not parse or validate is permanent: no point waiting for etcd.
        let cfg: NetworkConfig;
        try {
          cfg = parseConfig(text);
          checkNetworkConfig(cfg);
        } catch (err) {
          throw new FlannelError("EBADCONFIG", errorMessage(err), { cause: err });
        }
        for (let i = 0; i < RACE_RETRIES; i++) {
          signal.throwIfAborted();
          const l = await this.tryAcquireLease(cfg, attrs);
          if (l !== null) return l;
        }
        throw new FlannelError("EMAXRETRIES", "max retries reached trying to acquire a subnet", {
          hint: "other nodes keep taking the same subnets; check for nodes sharing a public IP",
        });
      } catch (err) {
        if (signal.aborted || isPermanent(err)) throw err;
        this.log.error(`Failed to acquire lease (retrying in ${goDuration(waitMs)}): ${errorMessage(err)}`);
        await sleep(waitMs, signal);
        waitMs = Math.min(waitMs * 2, 10_000);
      }
    }
  }

  /** One attempt; null when another node created the chosen key first (try again). */
  private async tryAcquireLease(cfg: NetworkConfig, attrs: LeaseAttrs): Promise<Lease | null> {
    const extIp = attrs.publicIp;
    const v6only = !cfg.enableIpv4;
    const ownIp = v6only ? attrs.publicIpv6 : extIp;
    if (ownIp === null) {
      throw new FlannelError(
        "ENOPUBLICIP",
        "Cannot lease an IPv6-only subnet without a public IPv6 address",
        {
          hint: "give the node an IPv6 address on its external interface or pass --public-ipv6",
        },
      );
    }
    const isMine = (a: LeaseAttrs): boolean =>
      v6only ? a.publicIpv6 !== null && a.publicIpv6.equals(ownIp) : a.publicIp.equals(ownIp);
    // Only the lease this node may reuse needs its expiration (null = a reservation, re-put without TTL);
    // the others are only checked for overlap, so their TTLs are not looked up (one RPC each).
    const { leases, revision } = await this.registry.getSubnets({
      ttlOf: isMine,
    });
    const seed = { leases, revision, atMs: Date.now() };
    this.seed = seed;
    // A backend that never watches must not keep every lease alive; unref: this timer holds no process.
    setTimeout(() => {
      if (this.seed === seed) this.seed = undefined;
    }, SEED_MAX_AGE_MS).unref();

    const mine = leases.find((l) => isMine(l.attrs) && (l.subnet === null) === v6only);
    if (mine !== undefined) {
      if (isSubnetConfigCompat(cfg, mine.subnet) && isIpv6SubnetConfigCompat(cfg, mine.ipv6Subnet)) {
        this.log.info(
          `Found lease (ip: ${fmtNet(mine.subnet, 4)} ipv6: ${fmtNet(mine.ipv6Subnet, 6)}) for current IP (${ownIp.toString()}), reusing`,
        );
        const ttl = mine.expiration === null ? 0 : SUBNET_TTL_SEC;
        const exp = await this.registry.updateSubnet(mine.subnet, mine.ipv6Subnet, attrs, ttl);
        return { ...mine, attrs, expiration: exp };
      }
      this.log.info(
        `Found lease (subnet: ${fmtNet(mine.subnet, 4)} ipv6: ${fmtNet(mine.ipv6Subnet, 6)}) for current IP (${ownIp.toString()}) but not compatible with current config, deleting`,
      );
      await this.registry.deleteSubnet(mine.subnet, mine.ipv6Subnet);
    }

    let sn: IpNet | null = null;
    let sn6: IpNet | null = null;
    const prev = v6only ? this.opts.prevIpv6Subnet : this.opts.prevSubnet;
    const held = (l: Lease): IpNet | null => (v6only ? l.ipv6Subnet : l.subnet);
    // The previous subnets are reused only when no lease holds either of them: a dual-stack lease key names
    // both, so another node may hold the IPv6 one under a key of its own.
    const prev6 = this.opts.prevIpv6Subnet;
    const holdsPrev = (l: Lease): boolean =>
      (prev !== null && held(l)?.equals(prev) === true) ||
      (!v6only && prev6 !== null && l.ipv6Subnet?.overlaps(prev6) === true);
    if (prev !== null && !leases.some(holdsPrev)) {
      const prev4 = v6only ? null : prev;
      if (isSubnetConfigCompat(cfg, prev4) && isIpv6SubnetConfigCompat(cfg, this.opts.prevIpv6Subnet)) {
        this.log.info(`Found previously leased subnet (${prev.toString()}), reusing`);
        sn = prev4;
        sn6 = this.opts.prevIpv6Subnet;
      } else {
        this.log.error(
          `Found previously leased subnet (${prev.toString()}) that is not compatible with the Etcd network config, ignoring`,
        );
      }
    }

    if (sn === null && sn6 === null) [sn, sn6] = this.allocateSubnet(cfg, leases);

    let created: { expiration: Date; revision: number; etcdLease: string };
    try {
      created = await this.registry.createSubnet(sn, sn6, attrs, SUBNET_TTL_SEC);
    } catch (err) {
      if (err instanceof SubnetExistsError) return null;
      throw err;
    }
    if (sn !== null && sn6 !== null && !(await this.keptAgainstRivals(sn, sn6, revision, created)))
      return null;
    const exp = created.expiration;
    this.log.info(
      `Allocated lease (ip: ${fmtNet(sn, 4)} ipv6: ${fmtNet(sn6, 6)}) to current node (${ownIp.toString()}) `,
    );
    return {
      enableIpv4: sn !== null,
      enableIpv6: sn6 !== null,
      subnet: sn,
      ipv6Subnet: sn6,
      attrs,
      expiration: exp,
      asof: 0,
    };
  }

  /**
   * A dual-stack lease key names both subnets, so the create transaction alone cannot stop two nodes that
   * listed the leases at the same time from taking the same IPv4 subnet with different IPv6 ones, or the
   * other way round (upstream has this race). After creating its key, a node therefore reads the keys created
   * since its listing: when one of them overlaps either subnet and was created first, this node gives its
   * lease back (revoking the etcd lease deletes the key) and picks again. Every node orders the keys by the
   * revision that created them, so the first one keeps its lease.
   */
  private async keptAgainstRivals(
    sn: IpNet,
    sn6: IpNet,
    listedAt: number,
    created: { revision: number; etcdLease: string },
  ): Promise<boolean> {
    let rivals: CreatedSubnetKey[];
    try {
      rivals = await this.registry.subnetsCreatedAfter(listedAt);
    } catch (err) {
      // Unchecked, the lease must not stay: the next attempt would find it by our public IP and keep it.
      await this.registry.revokeLease(created.etcdLease).catch(() => undefined);
      throw err;
    }
    const first = rivals.find(
      (r) =>
        r.createRevision < created.revision &&
        ((r.subnet !== null && r.subnet.overlaps(sn)) ||
          (r.ipv6Subnet !== null && r.ipv6Subnet.overlaps(sn6))),
    );
    if (first === undefined) return true;
    this.log.warn(
      `Lease (ip: ${sn.toString()} ipv6: ${sn6.toString()}) overlaps the lease (ip: ${fmtNet(first.subnet, 4)} ` +
        `ipv6: ${fmtNet(first.ipv6Subnet, 6)}) that another node took at the same time, and first: giving it back`,
    );
    await this.registry.revokeLease(created.etcdLease);
    return false;
  }

  private allocateSubnet(cfg: NetworkConfig, leases: readonly Lease[]): [IpNet | null, IpNet | null] {
    const { subnetMin, subnetMax } = cfg;
    if (!cfg.enableIpv4) return [null, this.allocateIpv6Only(cfg, leases)];
    if (subnetMin === null || subnetMax === null) {
      throw new FlannelError("ENOCONFIG", "Network config has no IPv4 subnet range", {
        hint: "set Network in the flannel config (etcd mode needs an IPv4 network)",
      });
    }
    this.log.info(`Picking subnet in range ${subnetMin.toString()} ... ${subnetMax.toString()}`);
    const v6 = cfg.enableIpv6 && cfg.ipv6SubnetMin !== null && cfg.ipv6SubnetMax !== null;
    if (v6) {
      this.log.info(
        `Picking ipv6 subnet in range ${String(cfg.ipv6SubnetMin)} ... ${String(cfg.ipv6SubnetMax)}`,
      );
    }
    const free4 = freeSubnets(
      subnetMin,
      subnetMax,
      cfg.subnetLen,
      leases.map((l) => l.subnet),
    );
    const free6 =
      v6 && cfg.ipv6SubnetMin !== null && cfg.ipv6SubnetMax !== null
        ? freeSubnets(
            cfg.ipv6SubnetMin,
            cfg.ipv6SubnetMax,
            cfg.ipv6SubnetLen,
            leases.map((l) => l.ipv6Subnet),
          )
        : [];
    if (free4.length === 0 || (v6 && free6.length === 0)) {
      throw new FlannelError("EOUTOFSUBNETS", "out of subnets", {
        hint: "enlarge Network or SubnetMin..SubnetMax, or delete stale leases under <prefix>/subnets",
      });
    }
    const pick = <T>(xs: T[]): T => xs[Math.min(xs.length - 1, Math.floor(this.random() * xs.length))] as T;
    return [pick(free4), v6 ? pick(free6) : null];
  }

  /** IPv6-only allocation: the same first-100-free, uniformly random pick over the IPv6 range. */
  private allocateIpv6Only(cfg: NetworkConfig, leases: readonly Lease[]): IpNet {
    const { ipv6SubnetMin: min, ipv6SubnetMax: max } = cfg;
    if (min === null || max === null) {
      throw new FlannelError("ENOCONFIG", "Network config has no IPv6 subnet range", {
        hint: "set IPv6Network in the flannel config",
      });
    }
    this.log.info(`Picking ipv6 subnet in range ${min.toString()} ... ${max.toString()}`);
    const free6 = freeSubnets(
      min,
      max,
      cfg.ipv6SubnetLen,
      leases.map((l) => l.ipv6Subnet),
    );
    const pick = free6[Math.min(free6.length - 1, Math.floor(this.random() * free6.length))];
    if (pick === undefined) {
      throw new FlannelError("EOUTOFSUBNETS", "out of subnets", {
        hint: "enlarge IPv6Network or IPv6SubnetMin..IPv6SubnetMax, or delete stale leases under <prefix>/subnets",
      });
    }
    return pick;
  }

  /** Re-puts the lease with a new 24 h etcd lease (upstream RenewLease); updates `lease.expiration`. */
  async renewLease(lease: Lease): Promise<void> {
    if (lease.subnet === null && lease.ipv6Subnet === null)
      throw new Error("Cannot renew a lease without a subnet");
    lease.expiration = await this.registry.updateSubnet(
      lease.subnet,
      lease.ipv6Subnet,
      lease.attrs,
      SUBNET_TTL_SEC,
    );
  }

  watchLeases(signal: AbortSignal): AsyncIterable<LeaseWatchResult[]> {
    // Peers' expirations are never used (renewal watches our own key), so they are not looked up.
    const seed = this.seed;
    this.seed = undefined;
    if (seed === undefined || Date.now() - seed.atMs > SEED_MAX_AGE_MS)
      return this.registry.watchSubnets(signal, undefined, { ttl: false });
    const registry = this.registry;
    const revision = seed.revision;
    // Held only until the snapshot is made: the generator lives as long as the watch, and would otherwise
    // keep a second copy of every lease listed at start-up (~1 KB per lease with its texts).
    let listed: Lease[] | undefined = seed.leases;
    return (async function* (): AsyncGenerator<LeaseWatchResult[]> {
      if (signal.aborted) return;
      // Expirations were looked up for our own candidate lease only; a snapshot carries none.
      const snapshot = (listed ?? []).map((l) => (l.expiration === null ? l : withExpiration(l, null)));
      listed = undefined;
      yield [{ snapshot }];
      yield* registry.watchSubnets(signal, revision + 1, { ttl: false });
    })();
  }

  async completeLease(lease: Lease, signal: AbortSignal): Promise<"interrupted" | "revoked"> {
    if (lease.subnet === null && lease.ipv6Subnet === null) {
      throw new Error("Cannot complete a lease without a subnet");
    }
    const marginMs = this.opts.renewMarginMin * 60_000;
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();

    let revoked = false;
    let wake: () => void = () => undefined;
    let changed = new Promise<void>((r) => (wake = r));
    const poke = (): void => {
      const w = wake;
      changed = new Promise<void>((r) => (wake = r));
      w();
    };
    const untilRenewal = (): number =>
      lease.expiration === null ? Infinity : lease.expiration.getTime() - Date.now() - marginMs;

    const watch = (async (): Promise<void> => {
      try {
        for await (const batch of this.registry.watchSubnet(inner.signal, lease.subnet, lease.ipv6Subnet)) {
          for (const r of batch) {
            const events =
              "snapshot" in r
                ? r.snapshot.length === 0
                  ? [{ type: "removed" as const, lease }]
                  : r.snapshot.map((l) => ({ type: "added" as const, lease: l }))
                : r.events;
            for (const e of events) {
              if (e.type === "removed") {
                revoked = true;
              } else if (e.lease.expiration !== null) {
                lease.expiration = e.lease.expiration;
                this.log.info(`Waiting for ${goDuration(untilRenewal())} to renew lease`);
              }
            }
          }
          poke();
          if (revoked) return;
        }
      } catch (err) {
        if (!inner.signal.aborted) this.log.error(`Watch of own lease failed: ${errorMessage(err)}`);
      }
    })();

    const aborted = new Promise<boolean>((r) => {
      if (inner.signal.aborted) r(false);
      inner.signal.addEventListener("abort", () => r(false), { once: true });
    });
    let delayMs = untilRenewal();
    try {
      while (!signal.aborted && !revoked) {
        let timer: NodeJS.Timeout | undefined;
        const fired = await Promise.race([
          changed.then(() => false),
          new Promise<boolean>((r) => {
            if (Number.isFinite(delayMs))
              timer = setTimeout(() => r(true), Math.max(0, Math.min(delayMs, 2 ** 31 - 1)));
          }),
          aborted,
        ]);
        clearTimeout(timer);
        if (signal.aborted || revoked) break;
        if (!fired) {
          delayMs = untilRenewal();
          continue;
        }
        try {
          await this.renewLease(lease);
          this.log.info(
            `Lease renewed, new expiration: ${lease.expiration ? goTime(lease.expiration) : "none"}`,
          );
          delayMs = untilRenewal();
        } catch (err) {
          this.log.error(`Error renewing lease (trying again in 1 min): ${errorMessage(err)}`);
          delayMs = this.opts.renewRetryMs ?? 60_000;
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      inner.abort();
      await watch;
    }
    if (revoked) {
      this.log.error("Lease has been revoked. Shutting down daemon.");
      return "revoked";
    }
    return "interrupted";
  }

  async getStoredMacAddresses(): Promise<{ v4?: string; v6?: string }> {
    return {};
  }

  async getStoredPublicIp(): Promise<{ v4?: IpAddr; v6?: IpAddr }> {
    return {};
  }
}
