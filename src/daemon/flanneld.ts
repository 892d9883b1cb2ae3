// flanneld's main sequence (upstream main.go, spec §1.4 steps 5–24), over injected adapters.
//
// Design notes:
// - The daemon is a handful of long-lived loops (backend run/reconcile, traffic-rule resync, blackhole route,
//   lease completion, health server), all started with one AbortSignal. Shutdown aborts it and awaits every
//   loop; nothing here exits the process — `runFlanneld` resolves with the exit code.
// - Order matters and follows upstream exactly: the subnet file is written only after the backend registered
//   (lease acquired, devices up), old masquerade rules were recycled and the flannel chains exist (iptables
//   bootstraps the rules themselves in the background, as upstream's goroutine does; nftables installs them
//   first), and readiness flips only after the file is written. The previous subnet/network are read from
//   the old subnet file *before* it is rewritten (for etcd reuse and for recycling masquerade rules of a
//   changed subnet).
// - Where upstream retries, we retry: the network config is fetched every second until it is valid (etcd
//   down, config missing or malformed); connection loss inside the subnet manager is its own business.
// - Kernel state (devices, routes, rules) is left in place at exit, so a restart does not disturb flows.

import type { Backend, BackendDeps, ExternalInterface, Network } from "../backend/backend.ts";
import type { FlanneldOptions } from "../cli/flanneld-options.ts";
import type { NetworkConfig } from "../config/network-config.ts";
import { errorMessage, FlannelError } from "../errors.ts";
import type { IpNet } from "../ip/net.ts";
import type { CommandRunner } from "../kernel/command.ts";
import type { Kernel } from "../kernel/ports.ts";
import type { Logger } from "../log/logger.ts";
import type { SubnetManager } from "../subnet/manager.ts";
import { formatSubnetEnv, readCidrFromSubnetFile, writeSubnetEnv } from "../subnet/subnet-env.ts";
import type { TrafficManager } from "../traffic/manager.ts";
import { isAbort, sleep } from "../util/sleep.ts";

export interface PreviousSubnets {
  network: IpNet | null;
  subnet: IpNet | null;
  ipv6Network: IpNet | null;
  ipv6Subnet: IpNet | null;
}

export interface DaemonDeps {
  logger: Logger;
  kernel: Kernel;
  commands: CommandRunner;
  createSubnetManager(opts: FlanneldOptions, prev: PreviousSubnets): Promise<SubnetManager>;
  selectExternalInterface(kernel: Kernel, opts: SelectOpts, logger: Logger): ExternalInterface;
  getBackend(type: string, deps: BackendDeps): Backend;
  createTrafficManager(kind: "iptables" | "nftables"): TrafficManager;
  startHealthz?(opts: {
    ip: string;
    port: number;
    isReady: () => boolean;
    logger: Logger;
  }): Promise<{ port: number; close(): Promise<void> }>;
  startBlackholeRoutes?(opts: { subnets: IpNet[]; periodMs: number; signal: AbortSignal }): Promise<void>;
  /** Called once when flanneld is ready (subnet.env written); e.g. sd_notify. */
  onReady?(): void;
  /**
   * Called once when start-up is over: after the backend's first pass over the lease snapshot, or
   * STARTUP_FALLBACK_MS after subnet.env for a backend without one. flanneld gives back the pages it
   * touched only to start (startup-pages.ts).
   */
  afterStartup?(): void;
  /** Retry period of the network-config fetch (upstream: 1 s). */
  configRetryMs?: number;
}

/** When a backend never reports its first pass (alloc, extension), start-up counts as over this long after subnet.env. */
export const STARTUP_FALLBACK_MS = 10_000;

export interface SelectOpts {
  iface: string[];
  ifaceRegex: string[];
  ifaceCanReach: string;
  publicIp: string;
  publicIpv6: string;
  enableIpv4: boolean;
  enableIpv6: boolean;
}

/** Runs flanneld until `signal` aborts or the lease is revoked; resolves with the process exit code. */
export async function runFlanneld(
  opts: FlanneldOptions,
  deps: DaemonDeps,
  signal: AbortSignal,
): Promise<number> {
  const log = deps.logger;
  const inner = new AbortController();
  const stop = (): void => inner.abort(new Error("shutting down"));
  signal.addEventListener("abort", stop, { once: true });
  if (signal.aborted) stop();
  const loops: Promise<unknown>[] = [];
  let ready = false;
  let healthz: { close(): Promise<void> } | undefined;
  let sm: SubnetManager | undefined;
  let startupTimer: NodeJS.Timeout | undefined;
  let startedUp = false;
  const startupOver = (): void => {
    if (startedUp || inner.signal.aborted) return;
    startedUp = true;
    clearTimeout(startupTimer);
    deps.afterStartup?.();
  };

  try {
    const prev: PreviousSubnets = {
      network: readCidrFromSubnetFile(opts.subnetFile, "FLANNEL_NETWORK", log),
      subnet: readCidrFromSubnetFile(opts.subnetFile, "FLANNEL_SUBNET", log),
      ipv6Network: readCidrFromSubnetFile(opts.subnetFile, "FLANNEL_IPV6_NETWORK", log),
      ipv6Subnet: readCidrFromSubnetFile(opts.subnetFile, "FLANNEL_IPV6_SUBNET", log),
    };

    try {
      sm = await deps.createSubnetManager(opts, prev);
    } catch (err) {
      if (inner.signal.aborted) return 0; // stopped while connecting (e.g. waiting for the node list)
      log.error(`Failed to create SubnetManager: ${errorMessage(err)}`);
      logHint(log, err);
      return 1;
    }
    log.info(`Created subnet manager: ${sm.name()}`);

    if (opts.healthzPort > 0 && deps.startHealthz) {
      healthz = await deps.startHealthz({
        ip: opts.healthzIp,
        port: opts.healthzPort,
        isReady: () => ready,
        logger: log,
      });
    }

    const config = await getConfig(sm, log, inner.signal, deps.configRetryMs ?? 1000);
    if (config === undefined) return 0; // interrupted while waiting for config

    if (!config.enableIpv4 && !config.enableIpv6) {
      log.error("none defined stack");
      return 1;
    }

    if (!config.enableNftables) {
      const missing = brNetfilterMissing(deps.kernel, config);
      if (missing !== undefined) {
        log.error(`Failed to check br_netfilter: stat /proc/sys/${missing}: no such file or directory`);
        log.error(
          "Load the br_netfilter kernel module on this node (modprobe br_netfilter) and restart flanneld",
        );
        return 1;
      }
    }

    const stored = await sm.getStoredPublicIp(inner.signal);
    const publicIp = stored.v4?.toString() ?? opts.publicIp;
    const publicIpv6 = stored.v6?.toString() ?? opts.publicIpv6;

    let extIface: ExternalInterface;
    try {
      extIface = deps.selectExternalInterface(
        deps.kernel,
        {
          iface: opts.iface,
          ifaceRegex: opts.ifaceRegex,
          ifaceCanReach: opts.ifaceCanReach,
          publicIp,
          publicIpv6,
          enableIpv4: config.enableIpv4,
          enableIpv6: config.enableIpv6,
        },
        log,
      );
    } catch (err) {
      log.error(errorMessage(err));
      logHint(log, err);
      return 1;
    }

    let backend: Backend;
    try {
      backend = deps.getBackend(config.backendType, {
        subnetManager: sm,
        extIface,
        kernel: deps.kernel,
        logger: log,
        // On the next turn of the event loop: the reconcile loop goes on with its next batch first.
        onSynced: deps.afterStartup ? () => setImmediate(startupOver) : undefined,
      });
    } catch (err) {
      log.error(`Error fetching backend: ${errorMessage(err)}`);
      return 1;
    }

    // The traffic manager's preparation (this mode's init: tool probes, nft tables) needs neither the lease
    // nor the devices and only runs child processes, so it runs while the backend registers, which mostly
    // waits for etcd or the API server. Upstream runs it after registration; only the order of the log
    // lines differs. The other mode's clean-up (deleting tables and chains this mode never touches) runs in
    // the background: `nft` took 20–80 ms in the bench and held up subnet.env and the first routes.
    log.info("Cleaning-up unused traffic manager rules");
    const mode = config.enableNftables ? "nftables" : "iptables";
    const other = mode === "nftables" ? "iptables" : "nftables";
    loops.push(
      deps
        .createTrafficManager(other)
        .cleanUp()
        .catch((err: unknown) => {
          // Upstream exits here; the other mode's tools may simply be absent, which is not worth dying for.
          log.warn(`Could not clean up ${other} rules: ${errorMessage(err)}`);
        }),
    );
    const traffic = deps.createTrafficManager(mode);
    const trafficReady = traffic.init(inner.signal, { ipv4: config.enableIpv4, ipv6: config.enableIpv6 });
    // Awaited below; until then a failure must not count as unhandled.
    trafficReady.catch(() => undefined);

    let network: Network;
    try {
      network = await backend.registerNetwork(config, inner.signal);
    } catch (err) {
      if (isAbort(err, inner.signal)) return 0;
      log.error(`Error registering network: ${errorMessage(err)}`);
      logHint(log, err);
      return 1;
    }
    const lease = network.lease();

    await trafficReady;

    if (opts.ipMasq) {
      try {
        await traffic.setupAndEnsureMasqRules({
          network: config.enableIpv4 ? config.network : null,
          subnet: config.enableIpv4 ? lease.subnet : null,
          prevNetwork: prev.network,
          prevSubnet: prev.subnet,
          ipv6Network: config.enableIpv6 ? config.ipv6Network : null,
          ipv6Subnet: config.enableIpv6 ? lease.ipv6Subnet : null,
          prevIpv6Network: prev.ipv6Network,
          prevIpv6Subnet: prev.ipv6Subnet,
          signal: inner.signal,
          background: true,
        });
      } catch (err) {
        log.error(`Failed to setup masq rules, ${errorMessage(err)}`);
        return 1;
      }
    }
    if (opts.iptablesForwardRules) {
      await traffic.setupAndEnsureForwardRules({
        network: config.enableIpv4 ? config.network : null,
        ipv6Network: config.enableIpv6 ? config.ipv6Network : null,
        signal: inner.signal,
        background: true,
      });
    }
    // After the setup calls: wait() covers the resync loops (and background bootstraps) started so far.
    loops.push(traffic.wait());
    if (opts.ipBlackholeRoute && deps.startBlackholeRoutes) {
      const subnets = [lease.subnet, lease.ipv6Subnet].filter((s): s is IpNet => s !== null);
      loops.push(
        deps.startBlackholeRoutes({
          subnets,
          periodMs: opts.iptablesResyncSeconds * 1000,
          signal: inner.signal,
        }),
      );
    }

    try {
      const content = formatSubnetEnv({
        network: config.enableIpv4 ? config.network : null,
        subnet: config.enableIpv4 ? lease.subnet : null,
        ipv6Network: config.enableIpv6 ? config.ipv6Network : null,
        ipv6Subnet: config.enableIpv6 ? lease.ipv6Subnet : null,
        mtu: network.mtu(),
        ipMasq: opts.ipMasq,
      });
      await writeSubnetEnv(opts.subnetFile, content);
      log.info(`Wrote subnet file to ${opts.subnetFile}`);
      ready = true;
      log.info("flannel is ready");
      deps.onReady?.();
      if (deps.afterStartup && !startedUp) {
        startupTimer = setTimeout(startupOver, STARTUP_FALLBACK_MS);
        startupTimer.unref();
      }
    } catch (err) {
      log.warn(`Failed to write subnet file: ${errorMessage(err)}`);
    }

    // After subnet.env, as upstream: the backend's first pass runs without yielding (1000 peers: ~150 ms),
    // and the CNI plugin waits for subnet.env, not for the routes.
    log.info("Running backend.");
    loops.push(
      network.run(inner.signal).catch((err: unknown) => {
        if (!isAbort(err, inner.signal)) {
          log.error(`Backend stopped: ${errorMessage(err)}`);
          stop();
        }
      }),
    );

    const outcome = await sm.completeLease(lease, inner.signal).catch((err: unknown) => {
      if (isAbort(err, inner.signal)) return "interrupted" as const;
      throw err;
    });
    if (outcome === "revoked") log.info("Lease has been revoked. Shutting down daemon.");
    stop();
    log.info("Waiting for all goroutines to exit");
    await Promise.allSettled(loops);
    log.info("Exiting cleanly...");
    return 0;
  } catch (err) {
    if (isAbort(err, inner.signal)) {
      await Promise.allSettled(loops);
      log.info("Exiting cleanly...");
      return 0;
    }
    log.error(`flanneld failed: ${errorMessage(err)}`);
    return 1;
  } finally {
    stop();
    clearTimeout(startupTimer);
    signal.removeEventListener("abort", stop);
    await Promise.allSettled(loops);
    await healthz?.close();
    await sm?.close?.();
  }
}

/** Step 8: fetch the network config every `retryMs` until it is valid; undefined when aborted. */
async function getConfig(
  sm: SubnetManager,
  log: Logger,
  signal: AbortSignal,
  retryMs: number,
): Promise<NetworkConfig | undefined> {
  let lastHint: string | undefined;
  for (;;) {
    try {
      const config = await sm.getNetworkConfig(signal);
      log.info(`Found network config - Backend type: ${config.backendType}`);
      return config;
    } catch (err) {
      if (isAbort(err, signal)) return undefined;
      log.error(`Couldn't fetch network config: ${errorMessage(err)}`);
      // The hint once per kind of failure, not every second.
      const hint = err instanceof FlannelError ? err.hint : undefined;
      if (hint !== undefined && hint !== lastHint) log.error(`Hint: ${hint}`);
      lastHint = hint;
    }
    try {
      await sleep(retryMs, signal);
    } catch {
      return undefined;
    }
  }
}

/** Step 10: the br_netfilter sysctls exist for every enabled family; returns the missing path if not. */
function brNetfilterMissing(kernel: Kernel, config: NetworkConfig): string | undefined {
  const paths: string[] = [];
  if (config.enableIpv4) paths.push("net/bridge/bridge-nf-call-iptables");
  if (config.enableIpv6) paths.push("net/bridge/bridge-nf-call-ip6tables");
  return paths.find((p) => kernel.sysctl.get(p) === undefined);
}

/** Logs the operator hint of `err` or of the first error in its cause chain that has one. */
function logHint(log: Logger, err: unknown): void {
  // Backends wrap the subnet manager's errors ("failed to acquire lease: …") in plain Errors; the hint
  // (e.g. how to assign a podCIDR) lives on the cause.
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if (e instanceof FlannelError && e.hint) {
      log.error(`Hint: ${e.hint}`);
      return;
    }
  }
}
