// `--ip-blackhole-route` (spec §6.3): keep a `blackhole <own subnet>` route so that packets for addresses of
// this node's subnet that no pod holds are dropped here instead of following the default route out of the
// node. Setups without the bridge plugin (Canal) have no other route for the whole subnet.
//
// Upstream waits one period before the first check; we check at once as well, so the route exists from the
// start, and then every `periodMs` (`--iptables-resync`) until the signal aborts. Errors are logged and retried.

import { errorMessage } from "../errors.ts";
import type { IpNet } from "../ip/net.ts";
import type { Routes } from "../kernel/ports.ts";
import type { Logger } from "../log/logger.ts";
import { isAbort, sleep } from "../util/sleep.ts";

/** Adds `blackhole <subnet>` for each subnet that has no blackhole route yet. Idempotent. */
export function ensureBlackholeRoutes(routes: Routes, subnets: readonly IpNet[]): void {
  for (const subnet of subnets) {
    const present = routes
      .list({ family: subnet.family })
      .some((r) => r.type === "blackhole" && r.dst !== null && r.dst.equals(subnet));
    if (!present) routes.replace({ family: subnet.family, dst: subnet, type: "blackhole" });
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
