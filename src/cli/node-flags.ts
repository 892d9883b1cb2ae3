// The Node.js flags flanneld runs with, wherever it is started: bin/flanneld (its `#!` line), the image's
// /opt/bin/flanneld (deploy/Dockerfile), the lab and the bench. A test keeps the launchers in step.
//
// --max-semi-space-size=2 (MB): V8's young generation otherwise grows to 16 MB semi-spaces after a burst
// of lease events and keeps them (still 114–116 MB at 10,000 leases after 40 s of rest); with 2 MB,
// flanneld's resident memory at 10,000 leases is ~79 MB instead of ~109 MB and grows by 1.8 KB per lease
// instead of 5.2 KB (docs/performance.md, "Fifth round").
//
// The price: any V8 flag that is not at its default makes V8 refuse the code cache Node embeds for its own
// modules (the flags are hashed into it), so `node:http2` and the rest are compiled from source at every
// start: ~40 ms, and a cold start of 1000 leases took a median of 519 instead of 425 ms in five alternated
// turns (docs/performance.md, "Sixth round"). Memory on every node was judged worth more than that.
export const FLANNELD_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2"];
