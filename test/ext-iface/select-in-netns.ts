// Runs external interface selection against the real kernel of the current network namespace and prints
// the result as JSON on stdout. Started by ext-iface-netns.test.ts inside a test namespace
// (`ip netns exec`), because a Node process cannot move itself into a namespace.
//   argv[2]: JSON of ExtIfaceOptions

import { selectExternalInterface, type ExtIfaceOptions } from "../../src/backend/ext-iface.ts";
import { errorMessage } from "../../src/errors.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import { MemoryLogger } from "../../src/log/logger.ts";

const opts = JSON.parse(process.argv[2] ?? "{}") as ExtIfaceOptions;
const logger = new MemoryLogger();
const kernel = createNetlinkKernel();
try {
  const ext = selectExternalInterface(kernel, opts, logger);
  process.stdout.write(
    JSON.stringify({
      ok: true,
      iface: ext.iface.name,
      mtu: ext.iface.mtu,
      ifaceAddr: ext.ifaceAddr?.toString() ?? null,
      ifaceV6Addr: ext.ifaceV6Addr?.toString() ?? null,
      extAddr: ext.extAddr?.toString() ?? null,
      extV6Addr: ext.extV6Addr?.toString() ?? null,
      log: logger.lines,
    }),
  );
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: errorMessage(err), log: logger.lines }));
} finally {
  kernel.close();
}
