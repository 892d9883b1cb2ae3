// Backends whose device needs a kernel module (ipip, wireguard) say so plainly when it is missing, instead
// of surfacing a bare errno. The kernel answers a link type it does not know with EOPNOTSUPP (iproute2:
// "Unknown device type") after its own modprobe attempt failed; a missing generic netlink family (wireguard)
// with ENOENT, which the netlink adapter reports as EOPNOTSUPP too.

import { FlannelError } from "../errors.ts";
import { KernelError } from "../kernel/ports.ts";

export const KERNEL_MODULE_MISSING = "KERNEL_MODULE_MISSING";

/**
 * The FlannelError for `err` when it means that the kernel lacks `module` (used by backend `backend`), or
 * undefined when it is some other failure.
 */
export function missingModuleError(backend: string, module: string, err: unknown): FlannelError | undefined {
  if (!(err instanceof KernelError) || (err.errno !== "EOPNOTSUPP" && err.errno !== "EAFNOSUPPORT"))
    return undefined;
  return new FlannelError(
    KERNEL_MODULE_MISSING,
    `the ${backend} backend needs the kernel's ${module} module, which this kernel does not have ` +
      `(modprobe ${module} failed / link type not supported: ${err.message}): load it or choose another backend (vxlan)`,
    {
      hint: `Run "modprobe ${module}" on the host (in a container the host must load it), or set Backend.Type to "vxlan" in net-conf.json`,
      cause: err,
    },
  );
}
