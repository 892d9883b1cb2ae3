// `--ip-blackhole-route` (spec §6.3): keep a `blackhole <own subnet>` route so that packets for addresses of
// this node's subnet that no pod holds are dropped here instead of following the default route out of the
// node. Setups without the bridge plugin (Canal) have no other route for the whole subnet.
//
// The route gets the lowest priority there is (metric 2^32−1). Upstream adds it at metric 0, which for IPv4
// is the metric of the connected route of a bridge (cni0) holding the same subnet: `replace` would then swap
// that route for the blackhole, and a blackhole added first wins over the connected route added later — in
// both cases the node's own pods become unreachable. At the lowest priority the blackhole only catches what
// no other route of the subnet takes (IPv6 connected routes are at 256, so they win as well).
//
// Upstream waits one period before the first check; we check at once as well, so the route exists from the
// start, and then every `periodMs` (`--iptables-resync`) until the signal aborts. Errors are logged and retried.

import { errorMessage } from "../errors.ts";
import type { IpNet } from "../ip/net.ts";
import type { Routes } from "../kernel/ports.ts";
import type { Logger } from "../log/logger.ts";
import { isAbort, sleep } from "../util/sleep.ts";

/** The blackhole route's metric: below every other route of the subnet (see the notes above). */
export const BLACKHOLE_METRIC = 0xffff_ffff;

/** Adds `blackhole <subnet> metric 4294967295` for each subnet without a blackhole route. Idempotent. */
export function ensureBlackholeRoutes(routes: Routes, subnets: readonly IpNet[]): void {
  for (const subnet of subnets) {
    const present = routes
      .list({ family: subnet.family })
      .some((r) => r.type === "blackhole" && r.dst !== null && r.dst.equals(subnet));
    if (!present) {
      routes.replace({ family: subnet.family, dst: subnet, type: "blackhole", metric: BLACKHOLE_METRIC });
    }
  }
}

/** Runs the blackhole-route loop until `signal` aborts; never rejects. */
export async function startBlackholeRoutes(opts: {
  routes: Routes;
  subnets: readonly IpNet[];
  periodMs: number;
  signal: AbortSignal;
  logger: Logger;
}): Promise<void> {
  for (;;) {
    if (opts.signal.aborted) return;
    try {
      ensureBlackholeRoutes(opts.routes, opts.subnets);
    } catch (err) {
      opts.logger.error(`Failed to setup blackhole route, ${errorMessage(err)}`);
    }
    try {
      await sleep(opts.periodMs, opts.signal);
    } catch (err) {
      if (isAbort(err, opts.signal)) return;
      throw err;
    }
  }
}
