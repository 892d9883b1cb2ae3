// The alloc backend (upstream pkg/backend/alloc, experimental): it only leases a subnet for this node and
// forwards nothing, for setups where something else (a router, a cloud route table) carries pod traffic.
//
// Design notes:
// - Scaling: nothing in the kernel at all; the lease is the whole product (read it from subnet.env).
// - Lease attrs: PublicIP = the external address, no BackendType (upstream; spec A11), no IPv6 public IP.
// - `run` only waits for the abort, as upstream's SimpleNetwork. MTU = the external interface's MTU.

import type { NetworkConfig } from "../../config/network-config.ts";
import { errorMessage } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import type { Lease, LeaseAttrs } from "../../lease/lease.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";

/** A network that owns a lease and nothing else (upstream SimpleNetwork). */
export class SimpleNetwork implements Network {
  constructor(
    private readonly ownLease: Lease,
    private readonly mtuBytes: number,
  ) {}

  lease(): Lease {
    return this.ownLease;
  }

  mtu(): number {
    return this.mtuBytes;
  }

  run(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
  }
}

export function createAllocBackend(deps: BackendDeps): Backend {
  return {
    async registerNetwork(_config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const attrs: LeaseAttrs = {
        publicIp: deps.extIface.extAddr ?? IpAddr.zero(4),
        publicIpv6: null,
        backendType: "",
      };
      try {
        const lease = await deps.subnetManager.acquireLease(attrs, signal);
        return new SimpleNetwork(lease, deps.extIface.iface.mtu);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }
    },
  };
}
