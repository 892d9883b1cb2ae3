// The Node.js flags flanneld runs with, wherever it is started: bin/flanneld (its `#!` line), the image's
// /opt/bin/flanneld (deploy/Dockerfile), the lab and the bench. A test keeps the launchers in step.
//
// --max-semi-space-size=2 (MB): V8's young generation otherwise grows to 16 MB semi-spaces after a burst
// of lease events and keeps them; with 2 MB, flanneld's resident memory at 10,000 leases was 79 MB instead of
// 109 MB and grew by 1.8 KB per lease instead of 5.0 KB, at the same CPU time for a cold start of 10,000
// leases (docs/performance.md, "Fifth round").
export const FLANNELD_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2"];
