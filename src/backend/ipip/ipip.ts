// The ipip backend (upstream pkg/backend/ipip, experimental, IPv4 only): one IP-in-IP device
// `flannel.ipip` and per remote host one route `subnet via peerPublicIP dev flannel.ipip onlink`.
//
// Design notes:
// - Scaling: 1 device; 1 route per remote host. No neighbours or FDB: ipip is layer 3, the route's gateway
//   (the peer's public IP) is the outer destination the kernel encapsulates to (remote any device).
// - Route keeping is RouteNetwork's (route-network.ts): a reconcile pass after each lease batch, on
//   route-deleted notifications and every 10 s (upstream's route check), replacing wrong routes and
//   dropping routes of departed peers.
// - DirectRouting: a peer whose public IP is reachable without a gateway (`ip route get`) is routed over
//   the external interface instead (still onlink, as upstream), decided when its lease event arrives.
// - The device's local address is the interface address (not --public-ip, which may be a NAT address):
//   the kernel's fallback device tunl0 (local any, remote any) appears with the module and coexists, since
//   incoming packets match the more specific flannel.ipip. An existing flannel.ipip of another kind is the
//   user's and is never deleted; one with the wrong local/remote is recreated.
// - MTU: interface MTU − 20 (the outer IPv4 header). Upstream compares against the MTU of its request
//   object, which is always 0, so it always sets it; so do we (idempotently).
// - Repair (better than upstream, which never recreates flannel.ipip): a deleted or replaced device is
//   recreated by the reconcile pass that its link-deleted notification triggers, and every peer's route is
//   recomputed for the new ifindex from the leases kept here, then re-added by the same pass.
// - A kernel without the ipip module fails at device creation with EOPNOTSUPP; that becomes a plain
//   FlannelError saying what to do (kernel-module.ts).
// - At exit the device and routes stay (§7.4).

import { errorMessage } from "../../errors.ts";
import { decodeBackendField } from "../../config/config.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IfAddr } from "../../ip/net.ts";
import type { IpNet } from "../../ip/net.ts";
import { KernelError, type Kernel, type KernelEvent, type Link, type Route } from "../../kernel/ports.ts";
import type { Lease, LeaseAttrs, LeaseEvent } from "../../lease/lease.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import { missingModuleError } from "../kernel-module.ts";
import { RouteNetwork, type RouteNetworkOptions } from "../route-network.ts";
import { configureVxlanDevice } from "../vxlan/device.ts";

export const IPIP_DEVICE = "flannel.ipip";
/** The outer IPv4 header. */
export const IPIP_OVERHEAD = 20;

export interface IpipBackendOptions {
  /** Route check period (default 10 s). */
  checkMs?: number;
  retryMs?: number;
}

export interface IpipConfig {
  directRouting: boolean;
}

export function decodeIpipConfig(backend: Record<string, unknown>): IpipConfig {
  return { directRouting: decodeBackendField(backend, "DirectRouting", "bool", "IPIP") ?? false };
}

/**
 * Creates flannel.ipip (local = `local`, remote any) or reuses a compatible existing one; one with another
 * local or a remote is recreated; a device of another type is refused with upstream's text.
 */
export function ensureIpipLink(kernel: Kernel, local: IpAddr, logger: Logger): Link {
  const spec = { name: IPIP_DEVICE, local };
  const add = (what: string): void => {
    try {
      kernel.links.addIpip(spec);
    } catch (err) {
      const missing = missingModuleError("ipip", "ipip", err);
      if (missing !== undefined) throw missing;
      if (what !== "" || !(err instanceof KernelError) || err.errno !== "EEXIST") {
        throw what === "" ? err : new Error(`${what}: ${errorMessage(err)}`, { cause: err });
      }
      const existing = kernel.links.get(IPIP_DEVICE);
      if (existing === undefined) {
        throw new Error(
          `Cannot create ${IPIP_DEVICE}: another ipip device already has local ${local.toString()} and remote any; delete it and try again`,
          { cause: err },
        );
      }
      if (existing.kind !== "ipip") {
        throw new Error(`${IPIP_DEVICE} isn't an ipip mode device, please remove device and try again`);
      }
      const ip = existing.ipip;
      if (ip?.local == null || !ip.local.equals(local) || ip.remote !== null) {
        logger.warn(
          `"${IPIP_DEVICE}" already exists with incompatible attributes: local=${ip?.local?.toString() ?? "<nil>"} remote=${ip?.remote?.toString() ?? "<nil>"}; recreating device`,
        );
        try {
          kernel.links.delete(IPIP_DEVICE);
        } catch (delErr) {
          throw new Error(`failed to delete interface: ${errorMessage(delErr)}`, { cause: delErr });
        }
        add("failed to create ipip interface");
      }
    }
  };
  add("");
  const link = kernel.links.get(IPIP_DEVICE);
  if (link === undefined) throw new Error(`can't locate created ipip device ${IPIP_DEVICE}`);
  return link;
}

/** flannel.ipip as it must be: what ensureDevices (re)creates. */
interface IpipDevice {
  local: IpAddr;
  mtu: number;
  addr: IfAddr;
  network: IpNet | null;
  /** Current ifindex; the peers' routes point at it. */
  index: number;
}

/** Gives flannel.ipip its MTU, its single /32 address, and brings it up. Idempotent. */
function configureIpipDevice(kernel: Kernel, link: Link, dev: IpipDevice, logger: Logger): void {
  if (link.mtu !== dev.mtu) {
    logger.info(`current MTU of ${IPIP_DEVICE} is ${link.mtu}, setting it to ${dev.mtu}`);
    try {
      kernel.links.setMtu(IPIP_DEVICE, dev.mtu);
    } catch (err) {
      throw new Error(`failed to set ${IPIP_DEVICE} MTU to ${dev.mtu}: ${errorMessage(err)}`, { cause: err });
    }
  }
  // A /32 so that no prefix or broadcast routes appear; it is the source for host → pod traffic.
  configureVxlanDevice(
    kernel,
    link,
    { family: 4, addr: dev.addr, network: dev.network, mac: link.mac, fixMac: false },
    logger,
  );
}

/** RouteNetwork plus the upkeep of flannel.ipip, whose ifindex the routes carry. */
export class IpipNetwork extends RouteNetwork {
  /** The current remote leases, to recompute their routes when the device gets a new ifindex. */
  private readonly leases = new Map<string, Lease>();

  private readonly deps: BackendDeps;
  private readonly log: Logger;

  constructor(
    opts: RouteNetworkOptions,
    private readonly dev: IpipDevice,
  ) {
    super(opts);
    this.deps = opts.deps;
    this.log = opts.logger;
  }

  override handleBatch(batch: readonly LeaseEvent[]): Set<string> {
    for (const ev of batch) {
      const key = String(ev.lease.subnet);
      if (ev.type === "removed") this.leases.delete(key);
      else if (ev.lease.attrs.backendType === "ipip") this.leases.set(key, ev.lease);
    }
    return super.handleBatch(batch);
  }

  override ensureDevices(): void {
    const deps = this.deps;
    let link = deps.kernel.links.get(IPIP_DEVICE);
    const ok =
      link?.kind === "ipip" && link.ipip?.local?.equals(this.dev.local) === true && link.ipip.remote === null;
    if (!ok) {
      this.log.warn(`Interface ${IPIP_DEVICE} ${link === undefined ? "deleted" : "changed"}; recreating it`);
      link = ensureIpipLink(deps.kernel, this.dev.local, this.log);
    }
    configureIpipDevice(deps.kernel, link!, this.dev, this.log);
    if (link!.index !== this.dev.index) {
      this.dev.index = link!.index;
      this.log.info(`Recreated interface ${IPIP_DEVICE}; re-adding the routes of ${this.leases.size} peers`);
      super.handleBatch([...this.leases.values()].map((lease) => ({ type: "added" as const, lease })));
    }
  }

  override concerns(ev: KernelEvent): boolean {
    if (ev.type === "link-deleted" && (ev.name === IPIP_DEVICE || ev.index === this.dev.index)) return true;
    return super.concerns(ev);
  }
}

/** The ipip backend factory (registry.ts). */
export function createIpipBackend(deps: BackendDeps, opts: IpipBackendOptions = {}): Backend {
  const logger = deps.logger.child("ipip.ts");
  const ext = deps.extIface;
  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const cfg = decodeIpipConfig(config.backend);
      logger.info(`IPIP config: DirectRouting=${cfg.directRouting}`);
      if (!config.enableIpv4 || ext.ifaceAddr === null) {
        throw new Error(
          "The ipip backend supports IPv4 only and IPv4 is not enabled or the interface has no IPv4 address: set EnableIPv4 or choose another backend (vxlan, wireguard)",
        );
      }
      if (config.enableIpv6) logger.warn("The ipip backend is IPv4 only; IPv6 peers get no routes");
      const mtu = ext.iface.mtu - IPIP_OVERHEAD;
      if (mtu <= 0)
        throw new Error(`MTU ${ext.iface.mtu} of iface ${ext.iface.name} is too small for ipip mode to work`);

      const attrs: LeaseAttrs = {
        publicIp: ext.extAddr ?? IpAddr.zero(4),
        publicIpv6: null,
        backendType: "ipip",
      };
      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }
      if (lease.subnet === null)
        throw new Error(`failed to configure interface ${IPIP_DEVICE}: the lease has no IPv4 subnet`);

      const link = ensureIpipLink(deps.kernel, ext.ifaceAddr, logger);
      const dev: IpipDevice = {
        local: ext.ifaceAddr,
        mtu,
        addr: new IfAddr(lease.subnet.ip, 32),
        network: config.network,
        index: link.index,
      };
      configureIpipDevice(deps.kernel, link, dev, logger);

      const routeOpts: RouteNetworkOptions = {
        deps,
        logger,
        backendType: "ipip",
        ownLease: lease,
        families: [4],
        networks: { 4: config.network },
        mtu,
        routeFor(peer: Lease): Route | undefined {
          const gw = peer.attrs.publicIp;
          if (peer.subnet === null || gw.isUnspecified) {
            logger.error(
              `Ignoring ipip lease ${String(peer.subnet)}: it has no IPv4 ${peer.subnet === null ? "subnet" : "public IP"}`,
            );
            return undefined;
          }
          let linkIndex = dev.index;
          if (cfg.directRouting) {
            try {
              if (deps.kernel.routes.get(gw).gw === undefined) {
                logger.v(2)?.info(`configure route to ${gw.toString()} via direct routing`);
                linkIndex = ext.iface.index;
              }
            } catch (err) {
              logger.error(errorMessage(err));
            }
          }
          return { family: 4, dst: peer.subnet, gw, linkIndex, onlink: true };
        },
        ...(opts.checkMs === undefined ? {} : { checkMs: opts.checkMs }),
        ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
      };
      return new IpipNetwork(routeOpts, dev);
    },
  };
}
