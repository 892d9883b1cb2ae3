// Process entry of install-conf (bundled to dist/install-conf.js, started by bin/install-conf).
import { installConfMain } from "./install-conf.ts";

process.exitCode = await installConfMain(process.argv.slice(2), (s) => process.stderr.write(s));
