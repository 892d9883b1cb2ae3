// The host-gw backend (upstream pkg/backend/hostgw): no encapsulation, no device; every remote subnet is
// routed via the remote node's public IP over the external interface. Requires all nodes on one L2 segment.
//
// Design notes:
// - Scaling: 1 route per remote host and family (`subnet via peerPublicIP dev <ext iface>`).
// - All route keeping (replace if different, recover if deleted, drop stale) is RouteNetwork's, which runs
//   the shared Reconciler: a pass after each lease batch, on route-deleted notifications and at least every
//   10 s (upstream's route check period).
// - A node behind NAT cannot be reached at its advertised address over L2, so upstream refuses to start when
//   the public IP differs from the interface address; so do we, with the same text.
// - Dual-stack: the same route per family; the pod MTU is the external interface's (nothing is added).
// - At exit routes stay (§7.4): a restarted flanneld finds and keeps them.

import { errorMessage } from "../../errors.ts";
import { IpAddr, type Family } from "../../ip/addr.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import type { Route } from "../../kernel/ports.ts";
import type { Lease, LeaseAttrs } from "../../lease/lease.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import { RouteNetwork } from "../route-network.ts";

export interface HostGwBackendOptions {
  /** Route check period (default 10 s). */
  checkMs?: number;
  retryMs?: number;
}

export const HOST_GW_NAT_ERROR =
  "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend";

export function createHostGwBackend(deps: BackendDeps, opts: HostGwBackendOptions = {}): Backend {
  const ext = deps.extIface;
  const sameAddr = (a: IpAddr | null, b: IpAddr | null): boolean => (a === null ? b === null : a.equals(b));
  if (!sameAddr(ext.extAddr, ext.ifaceAddr)) throw new Error(HOST_GW_NAT_ERROR);
  const logger = deps.logger.child("route_network.ts");

  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const attrs: LeaseAttrs = { publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "host-gw" };
      if (config.enableIpv4 && ext.extAddr !== null) attrs.publicIp = ext.extAddr;
      if (config.enableIpv6 && ext.extV6Addr !== null) attrs.publicIpv6 = ext.extV6Addr;

      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }

      const families: Family[] = [];
      if (config.enableIpv4) families.push(4);
      if (config.enableIpv6) families.push(6);
      const linkIndex = ext.iface.index;
      return new RouteNetwork({
        deps,
        logger,
        backendType: "host-gw",
        ownLease: lease,
        families,
        networks: { 4: config.network, 6: config.ipv6Network },
        mtu: ext.iface.mtu,
        routeFor(peer: Lease, family: Family): Route | undefined {
          const dst = family === 4 ? peer.subnet : peer.ipv6Subnet;
          const gw = family === 4 ? peer.attrs.publicIp : peer.attrs.publicIpv6;
          if (dst === null || gw === null || gw.isUnspecified) {
            logger.error(
              `Ignoring host-gw lease ${String(dst ?? peer.subnet)}: it has no IPv${family} ${dst === null ? "subnet" : "public IP"}`,
            );
            return undefined;
          }
          // One route per peer on the external interface: through a nexthop object each (IPv4), see
          // Route.nexthop.
          return { family, dst, gw, linkIndex, nexthop: true };
        },
        ...(opts.checkMs === undefined ? {} : { checkMs: opts.checkMs }),
        ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
      });
    },
  };
}
