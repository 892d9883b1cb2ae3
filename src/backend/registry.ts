// The backends flanneld can run, by `Backend.Type`: an explicit map instead of upstream's registration by
// import side effect (pkg/backend/manager.go), so what exists is visible in one place.

import type { Backend, BackendDeps, BackendFactory } from "./backend.ts";
import { createAllocBackend } from "./alloc/alloc.ts";
import { createExtensionBackend } from "./extension/extension.ts";
import { createHostGwBackend } from "./hostgw/host-gw.ts";
import { createIpipBackend } from "./ipip/ipip.ts";
import { createUdpBackend } from "./udp/udp.ts";
import { createVxlanBackend } from "./vxlan/vxlan.ts";
import { createWireguardBackend } from "./wireguard/wireguard.ts";

export const backendFactories: Readonly<Record<string, BackendFactory>> = {
  vxlan: (deps) => createVxlanBackend(deps),
  "host-gw": (deps) => createHostGwBackend(deps),
  udp: (deps) => createUdpBackend(deps),
  alloc: (deps) => createAllocBackend(deps),
  extension: (deps) => createExtensionBackend(deps),
  ipip: (deps) => createIpipBackend(deps),
  wireguard: (deps) =>
    createWireguardBackend(
      deps,
      deps.wireguardKeyFile === undefined ? {} : { keyFile: deps.wireguardKeyFile },
    ),
};

/** The backend for `type` (matched lower-cased, as upstream); throws `unknown backend type: <t>`. */
export function getBackend(type: string, deps: BackendDeps): Backend {
  const t = type.toLowerCase();
  const factory = Object.hasOwn(backendFactories, t) ? backendFactories[t] : undefined;
  if (factory === undefined) throw new Error(`unknown backend type: ${t}`);
  return factory(deps);
}
