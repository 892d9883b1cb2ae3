#!/usr/bin/env node
// Builds the executables: one esbuild bundle per program in dist/, started by the small launchers in bin/.
// The CNI plugin is bundled with all its code so that it starts fast (it runs once per pod ADD/DEL).
import { build } from "esbuild";
import { existsSync, rmSync } from "node:fs";

const entries = [
  { entry: "src/cli/flanneld-main.ts", out: "dist/flanneld.js", external: true },
  // What the launchers run: sets the V8 flags back to their defaults, then loads dist/flanneld.js.
  {
    entry: "src/cli/flanneld-start.ts",
    out: "dist/flanneld.cjs",
    external: false,
    esbuild: { format: "cjs", banner: {} },
  },
  { entry: "src/cni/main.ts", out: "dist/flannel.js", external: false },
  // bin/flannel runs the plugin as CommonJS, which Node starts faster than an ES module (no ESM loader).
  {
    entry: "src/cni/main.ts",
    out: "dist/flannel.cjs",
    external: false,
    esbuild: { format: "cjs", banner: {} },
  },
  { entry: "src/cli/flannelctl-main.ts", out: "dist/flannelctl.js", external: true },
  { entry: "src/cli/install-conf-main.ts", out: "dist/install-conf.js", external: false },
  // The udp backend's data path runs in a worker thread loaded from beside the flanneld bundle.
  { entry: "src/backend/udp/proxy-worker.ts", out: "dist/proxy-worker.js", external: true },
];

// Chunk names carry a hash of their content: without this, every change would leave the old ones behind.
rmSync("dist/chunks", { recursive: true, force: true });

for (const e of entries) {
  if (!existsSync(e.entry)) {
    console.error(`build: skipping ${e.out} (${e.entry} does not exist yet)`);
    continue;
  }
  // Daemons are split at dynamic import() so that code only one mode needs (the Kubernetes client, ~1.7 s
  // and ~50 MB to load) is loaded only in that mode; the CNI plugin stays one file for start-up speed.
  const split = e.external;
  await build({
    entryPoints: split ? { [e.out.replace(/^dist\/|\.js$/g, "")]: e.entry } : [e.entry],
    ...(split ? { outdir: "dist", splitting: true, chunkNames: "chunks/[name]-[hash]" } : { outfile: e.out }),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    // The native koffi stays in node_modules, and so does the Kubernetes client (a lazily loaded chunk
    // would be large; it is only needed in kube mode).
    external: e.external ? ["koffi", "@kubernetes/client-node"] : ["koffi"],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: "warning",
    ...e.esbuild,
  });
  console.error(`build: ${e.out}`);
}
