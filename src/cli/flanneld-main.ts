// flanneld's entry point: the composition root. It is the only place that reads process.argv/env, installs
// signal handlers and exits; everything else is built from the real adapters here and handed down.

import { basename } from "node:path";
import { selectExternalInterface } from "../backend/ext-iface.ts";
import { getBackend } from "../backend/registry.ts";
import { runFlanneld, type DaemonDeps } from "../daemon/flanneld.ts";
import { releaseStartupPages } from "../daemon/startup-pages.ts";
import { SpawnCommandRunner } from "../kernel/spawn.ts";
import { createNetlinkKernel } from "../kernel/netlink/netlink-kernel.ts";
import { errorMessage } from "../errors.ts";
import { KlogLogger } from "../log/logger.ts";
import { createMetrics, instrumentKernel, instrumentSubnetManager } from "../metrics/metrics.ts";
import { EtcdSubnetManager } from "../subnet/etcd/manager.ts";
import { IptablesManager } from "../traffic/iptables/manager.ts";
import { NftablesManager } from "../traffic/nftables/manager.ts";
import { startBlackholeRoutes } from "../traffic/blackhole.ts";
import { startHealthz } from "./healthz.ts";
import { resolveFlanneldOptions } from "./flanneld-options.ts";
import { VERSION } from "../version.ts";

async function main(): Promise<number> {
  const outcome = resolveFlanneldOptions({
    // The launchers run the start file (dist/flanneld.cjs) as the main module: its name is
    // flanneld's, without the extension.
    argv0: basename(process.argv[1] ?? "flanneld").replace(/\.[cm]?js$/, ""),
    args: process.argv.slice(2),
    env: process.env,
    version: VERSION,
    createLogger: ({ verbosity }) => new KlogLogger({ verbosity, file: "main.ts" }),
  });
  if (outcome.kind === "exit") {
    if (outcome.stderr) process.stderr.write(outcome.stderr);
    return outcome.code;
  }
  const { options, logger } = outcome;

  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      // A second signal kills the process, as upstream (signal.Stop after the first one).
      process.exit(130);
    }
    logger.info(`shutdownHandler sent cancel signal... (${sig})`);
    ac.abort(new Error(`received ${sig}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  // Metrics are served on /metrics of the health server (so only with --healthz-port > 0).
  const metrics = createMetrics();
  const kernel = instrumentKernel(createNetlinkKernel(), metrics);
  const commands = new SpawnCommandRunner();
  const deps: DaemonDeps = {
    logger,
    kernel,
    commands,
    createSubnetManager: async (o, prev) => {
      if (o.kubeSubnetMgr) {
        const { createKubeSubnetManager } = await import("../subnet/kube/create.ts");
        // The root signal lets SIGTERM end the (up to 10 min) wait for the node informer's first list.
        return instrumentSubnetManager(
          await createKubeSubnetManager(o, logger.child("kube.ts"), { signal: ac.signal }),
          metrics,
        );
      }
      return instrumentSubnetManager(
        new EtcdSubnetManager({
          endpoints: o.etcdEndpoints,
          prefix: o.etcdPrefix,
          keyFile: o.etcdKeyfile,
          certFile: o.etcdCertfile,
          caFile: o.etcdCafile,
          username: o.etcdUsername,
          password: o.etcdPassword,
          prevSubnet: prev.subnet,
          prevIpv6Subnet: prev.ipv6Subnet,
          renewMarginMin: o.subnetLeaseRenewMargin,
          logger: logger.child("local_manager.ts"),
        }),
        metrics,
      );
    },
    selectExternalInterface,
    getBackend: (type, d) => {
      // Upstream's wireguard backend reads WIREGUARD_KEY_FILE itself; here only the entry point reads env.
      const wgKey = process.env.WIREGUARD_KEY_FILE;
      return getBackend(type, { ...d, metrics, ...(wgKey ? { wireguardKeyFile: wgKey } : {}) });
    },
    createTrafficManager: (kind) =>
      kind === "iptables"
        ? new IptablesManager({
            commands,
            logger: logger.child("iptables.ts"),
            resyncMs: options.iptablesResyncSeconds * 1000,
            randomFullyDisable: options.ipMasqFullyRandomDisable,
            metrics,
          })
        : new NftablesManager({
            commands,
            logger: logger.child("nftables.ts"),
            randomFullyDisable: options.ipMasqFullyRandomDisable,
          }),
    startHealthz: (o) => startHealthz({ ...o, metrics }),
    startBlackholeRoutes: (o) =>
      startBlackholeRoutes({ ...o, routes: kernel.routes, logger: logger.child("blackhole.ts") }),
    afterStartup: () => {
      try {
        const t0 = process.hrtime.bigint();
        const r = releaseStartupPages();
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        logger.info(
          `Released ${(r.bytes / 2 ** 20).toFixed(1)} MB of file pages used to start (${String(r.ranges)} mappings, ${ms.toFixed(1)} ms)` +
            (r.failed > 0 ? `; ${String(r.failed)} mappings refused` : ""),
        );
      } catch (err) {
        logger.warn(`Could not release the pages used to start: ${errorMessage(err)}`);
      }
    },
  };
  try {
    return await runFlanneld(options, deps, ac.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    kernel.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`flanneld: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
