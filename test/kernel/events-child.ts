// Child for events.test.ts: subscribes to kernel events in the current namespace, prints "ready" and then
// one JSON line per event; SIGUSR2 aborts the subscription, after which the process must exit by
// itself (nothing may keep the event loop alive).

import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";

const k = createNetlinkKernel();
const ac = new AbortController();
k.events.subscribe((ev) => {
  const line =
    ev.type === "link-deleted"
      ? { type: ev.type, name: ev.name }
      : ev.type === "link-added"
        ? { type: ev.type, name: ev.link.name }
        : ev.type === "route-deleted"
          ? { type: ev.type, dst: ev.route.dst?.toString() ?? "default", table: ev.route.table ?? null }
          : ev;
  process.stdout.write(JSON.stringify(line) + "\n");
}, ac.signal);
k.close();
process.stdout.write("ready\n");
process.once("SIGUSR2", () => ac.abort());
