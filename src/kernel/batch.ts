// Many kernel writes at once: `applyWrites` uses the kernel's `batch` when it has one (the netlink adapter
// sends up to a few hundred requests per sendmsg) and otherwise calls the port methods one by one, so every
// Kernel implementation supports it and the result is the same either way.

import { KernelError, type Kernel, type KernelWrite } from "./ports.ts";

/** Applies one write through the port method of the same name; throws what the port throws. */
export function applyWrite(kernel: Kernel, w: KernelWrite): void {
  switch (w.op) {
    case "neigh-replace":
      kernel.neighbours.replace(w.neighbour);
      return;
    case "neigh-delete":
      kernel.neighbours.delete(w.neighbour);
      return;
    case "fdb-replace":
      kernel.fdb.replace(w.fdb);
      return;
    case "fdb-delete":
      kernel.fdb.delete(w.fdb);
      return;
    case "route-replace":
      kernel.routes.replace(w.route);
      return;
    case "route-delete":
      kernel.routes.delete(w.route);
      return;
  }
}

/** One write after another through the port methods; a failure does not stop the later writes. */
export function applyWritesOneByOne(kernel: Kernel, writes: readonly KernelWrite[]): (Error | undefined)[] {
  return writes.map((w) => {
    try {
      applyWrite(kernel, w);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new KernelError("EUNKNOWN", String(err));
    }
  });
}

/**
 * Applies `writes` in order, batched when the kernel can; per write undefined (done) or the error.
 * Never throws for a failed write.
 */
export function applyWrites(kernel: Kernel, writes: readonly KernelWrite[]): (Error | undefined)[] {
  if (writes.length === 0) return [];
  if (kernel.batch !== undefined) return kernel.batch(writes);
  return applyWritesOneByOne(kernel, writes);
}
