// The Node.js flags flanneld runs with, wherever it is started: bin/flanneld, the image's /opt/bin/flanneld
// (deploy/Dockerfile), the lab and the bench. A test keeps the launchers in step.
//
// --max-semi-space-size=2 (MB): V8's young generation otherwise grows to 16 MB semi-spaces after a burst
// of lease events and keeps them (still 114–116 MB at 10,000 leases after 40 s of rest); with 2 MB,
// flanneld's resident memory at 10,000 leases is ~79 MB instead of ~109 MB and grows by 1.8 KB per lease
// instead of 5.2 KB (docs/performance.md, "Fifth round").
//
// A flag that is not at its default has a price: V8 hashes its flags into every code cache, and so refuses
// the cache Node embeds for its own modules; `node:http2` and the rest are then compiled from source at
// every start (~40 ms; docs/performance.md, "Sixth round"). V8 reads --max-semi-space-size only when it
// makes the heap, so flanneld's start file (flanneld-start.ts, dist/flanneld.cjs) sets it back to its
// default before anything else is loaded: the heap keeps its 2 MB semi-spaces, and Node's cache is used
// again (docs/performance.md, "Seventh round"; docs/adr/0006-v8-flags-set-back-after-heap.md).
//
// --v8-pool-size=1: one thread for V8's background work (optimising compiles, concurrent GC) instead of
// Node's four. On a node flanneld shares its cores with everything else, and a burst of lease events made
// four threads of compiles compete with etcd and the main thread: with one, a batched add of 1000 leases
// took 40–80 ms less CPU and 1.9 MB less memory, with no loss at 10,000 leases (docs/performance.md, "Eighth
// round"). It is Node's own option, not a V8 flag: it is not in V8's flag hash and needs no setting back.

import { join } from "node:path";

export const FLANNELD_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2", "--v8-pool-size=1"];

/** FLANNELD_NODE_FLAGS' V8 flags at V8's defaults, set once the heap is made (0: V8 chooses the size). */
export const FLANNELD_NODE_FLAG_DEFAULTS: readonly string[] = ["--max-semi-space-size=0"];

/**
 * The command that runs flanneld from the repository at `root` as its launchers do: Node with
 * FLANNELD_NODE_FLAGS (then `nodeFlags`) and the start file dist/flanneld.cjs. flanneld's own flags follow.
 */
export function flanneldCommand(root: string, nodeFlags: readonly string[] = []): string[] {
  return [process.execPath, ...FLANNELD_NODE_FLAGS, ...nodeFlags, join(root, "dist", "flanneld.cjs")];
}
