// flanneld's start file, built into dist/flanneld.cjs: what the launchers run, with FLANNELD_NODE_FLAGS.
//
// It sets those flags back to V8's defaults (the heap has been made with them by now) and only then loads
// flanneld (dist/flanneld.js, an ES module), so that Node compiles its own modules from the code cache it
// embeds (node-flags.ts says why). It is CommonJS because Node starts a CommonJS main module without its
// ES module loader, which is then loaded after the flags are back at their defaults too.

import { setFlagsFromString } from "node:v8";
import { FLANNELD_NODE_FLAG_DEFAULTS } from "./node-flags.ts";

setFlagsFromString(FLANNELD_NODE_FLAG_DEFAULTS.join(" "));
// Resolved beside the built start file; a variable keeps esbuild from bundling it.
const daemon = "./flanneld.js";
import(daemon).catch((err: unknown) => {
  process.stderr.write(
    `flanneld: cannot load ${daemon}: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
