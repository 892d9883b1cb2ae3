// The extension backend (upstream pkg/backend/extension, "for prototyping"): flannel leases the subnets and
// user commands do the networking. Four hooks, all optional (spec §4.8):
//   PreStartupCommand   before the lease; its output becomes the lease's BackendData (as a JSON string)
//   PostStartupCommand  after the lease; env NETWORK, SUBNET, IPV6SUBNET, PUBLIC_IP, PUBLIC_IPV6
//   SubnetAddCommand    per peer lease of type "extension" added; env SUBNET, PUBLIC_IP; stdin = its data
//   SubnetRemoveCommand per peer lease of type "extension" removed; same env and stdin
//
// Design notes:
// - Exec semantics are upstream's since v0.28.2 (hook.ts): no shell, whitespace split, $VAR expansion.
//   Shell syntax from older docs (`ip route add $SUBNET via $PUBLIC_IP && ...`) no longer works; point the
//   command at a script instead.
// - Scaling: one process per peer event, run one after the other in event order (as upstream), so a
//   removal never overtakes the add it undoes.
// - Pre/PostStartup failures are fatal (the daemon exits); SubnetAdd/Remove failures are only logged, and
//   not retried (upstream). The lease advertises the interface address, not --public-ip (spec A4).

import { goQuote } from "../../cni/go-json.ts";
import { decodeBackendField } from "../../config/config.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { errorMessage } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import type { Lease, LeaseAttrs, LeaseEvent } from "../../lease/lease.ts";
import { watchLeaseBatches } from "../../lease/watcher.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import { ExecHookRunner, type HookRunner } from "./hook.ts";

export interface ExtensionConfig {
  preStartupCommand: string;
  postStartupCommand: string;
  subnetAddCommand: string;
  subnetRemoveCommand: string;
}

/** Decodes the four command strings; a wrong type gives upstream's `error decoding backend config: …`. */
export function decodeExtensionConfig(backend: Record<string, unknown>): ExtensionConfig {
  const str = (name: string): string => {
    try {
      return decodeBackendField(backend, name, "string", "EXTENSION") ?? "";
    } catch (err) {
      throw new Error(
        errorMessage(err).replace("error decoding EXTENSION backend config", "error decoding backend config"),
      );
    }
  };
  return {
    preStartupCommand: str("PreStartupCommand"),
    postStartupCommand: str("PostStartupCommand"),
    subnetAddCommand: str("SubnetAddCommand"),
    subnetRemoveCommand: str("SubnetRemoveCommand"),
  };
}

export interface ExtensionBackendOptions {
  hooks?: HookRunner;
}

export function createExtensionBackend(deps: BackendDeps, opts: ExtensionBackendOptions = {}): Backend {
  const logger = deps.logger.child("extension.ts");
  const hooks = opts.hooks ?? new ExecHookRunner();
  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const cfg = decodeExtensionConfig(config.backend);
      const ext = deps.extIface;

      let backendData: string | undefined;
      if (cfg.preStartupCommand.length > 0) {
        const r = await hooks.run(cfg.preStartupCommand, { env: {}, stdin: "", signal });
        if (r.error !== undefined) {
          throw new Error(
            `failed to run command: ${cfg.preStartupCommand} Err: ${r.error} Output: ${r.output}`,
          );
        }
        logger.info(`Ran command: ${cfg.preStartupCommand}\n Output: ${r.output}`);
        backendData = goQuote(r.output);
      } else {
        logger.info("No pre startup command configured - skipping");
      }

      const attrs: LeaseAttrs = {
        publicIp: (config.enableIpv4 ? ext.ifaceAddr : null) ?? IpAddr.zero(4),
        publicIpv6: config.enableIpv6 ? ext.ifaceV6Addr : null,
        backendType: "extension",
        ...(backendData === undefined ? {} : { backendData }),
      };
      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }

      if (cfg.postStartupCommand.length > 0) {
        const env = {
          NETWORK: config.network?.toString() ?? "",
          SUBNET: lease.subnet?.toString() ?? "",
          IPV6SUBNET: lease.ipv6Subnet?.toString() ?? "",
          PUBLIC_IP: attrs.publicIp.toString(),
          PUBLIC_IPV6: attrs.publicIpv6?.toString() ?? "",
        };
        const r = await hooks.run(cfg.postStartupCommand, { env, stdin: "", signal });
        if (r.error !== undefined) {
          throw new Error(
            `failed to run command: ${cfg.postStartupCommand} Err: ${r.error} Output: ${r.output}`,
          );
        }
        logger.info(`Ran command: ${cfg.postStartupCommand}\n Output: ${r.output}`);
      } else {
        logger.info("No post startup command configured - skipping");
      }
      return new ExtensionNetwork({ deps, logger, lease, cfg, hooks });
    },
  };
}

/** The BackendData of a peer as the string its PreStartup hook produced, or an error text. */
export function decodeHookData(raw: string | undefined): { data: string } | { error: string } {
  if (raw === undefined || raw.length === 0) return { data: "" };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    return { error: errorMessage(err) };
  }
  if (typeof v === "string") return { data: v };
  if (v === null) return { data: "" }; // Go leaves the string unchanged for JSON null
  const type = Array.isArray(v) ? "array" : typeof v === "object" ? "object" : typeof v;
  return { error: `json: cannot unmarshal ${type} into Go value of type string` };
}

export class ExtensionNetwork implements Network {
  constructor(
    private readonly o: {
      deps: BackendDeps;
      logger: Logger;
      lease: Lease;
      cfg: ExtensionConfig;
      hooks: HookRunner;
    },
  ) {}

  lease(): Lease {
    return this.o.lease;
  }

  mtu(): number {
    return this.o.deps.extIface.iface.mtu;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { logger } = this.o;
    logger.info("Watching for new subnet leases");
    try {
      for await (const batch of watchLeaseBatches(this.o.deps.subnetManager, this.o.lease, logger, signal)) {
        await this.handleBatch(batch, signal);
      }
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw new Error(`could not watch leases: ${errorMessage(err)}`, { cause: err });
    }
  }

  async handleBatch(batch: readonly LeaseEvent[], signal?: AbortSignal): Promise<void> {
    const { logger, cfg } = this.o;
    for (const { type, lease } of batch) {
      if (signal?.aborted === true) return;
      const subnet = lease.subnet?.toString() ?? "<nil>";
      if (type === "added") logger.info(`Subnet added: ${subnet} via ${lease.attrs.publicIp.toString()}`);
      else logger.info(`Subnet removed: ${subnet}`);
      if (lease.attrs.backendType !== "extension") {
        logger.warn(`Ignoring non-extension subnet: type=${lease.attrs.backendType}`);
        continue;
      }
      const command = type === "added" ? cfg.subnetAddCommand : cfg.subnetRemoveCommand;
      if (command.length === 0) continue;
      const decoded = decodeHookData(lease.attrs.backendData);
      if ("error" in decoded) {
        logger.error(`failed to unmarshal BackendData: ${decoded.error}`);
        continue;
      }
      const env = { SUBNET: lease.subnet?.toString() ?? "", PUBLIC_IP: lease.attrs.publicIp.toString() };
      const r = await this.o.hooks.run(command, {
        env,
        stdin: decoded.data,
        ...(signal === undefined ? {} : { signal }),
      });
      if (r.error !== undefined) {
        logger.error(`failed to run command: ${command} Err: ${r.error} Output: ${r.output}`);
      } else {
        logger.info(`Ran command: ${command}\n Output: ${r.output}`);
      }
    }
  }
}
