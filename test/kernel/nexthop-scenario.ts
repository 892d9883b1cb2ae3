// Routes through nexthop objects (Route.nexthop) on the netlink kernel, in the current namespace, in the
// cases where flannel-ts must not use them as it normally does; prints what the kernel then holds as JSON.
// Run by nexthop.test.ts inside a fresh namespace with eth0 = 10.0.0.1/24 and flannel.1 up (10.244.1.0/32).

import { spawnSync } from "node:child_process";

import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import type { Route } from "../../src/kernel/ports.ts";
import { applyCleanup } from "../../src/ctl/cleanup/cleanup.ts";

const ip = (...args: string[]): string => {
  const res = spawnSync("ip", args, { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`ip ${args.join(" ")}: ${res.stderr}`);
  return res.stdout;
};
/** The nexthop id of a peer route: its destination address (Route.nexthop). */
const idOf = (addr: string): number => Number(IpAddr.parse(addr).value);

const k1 = createNetlinkKernel();
const vx = k1.links.get("flannel.1")?.index ?? 0;
const peer = (n: number, gw = `10.244.${n}.0`): Route => ({
  family: 4,
  dst: IpNet.parse(`10.244.${n}.0/24`),
  gw: IpAddr.parse(gw),
  linkIndex: vx,
  onlink: true,
  nexthop: true,
});
const out: Record<string, unknown> = {};

// 1. Someone else's nexthop holds the id of peer 7 before flannel-ts looks: its route is made plain, and
//    the other nexthop is left alone.
ip("nexthop", "add", "id", String(idOf("10.244.7.0")), "via", "10.0.0.2", "dev", "eth0");
k1.routes.replace(peer(7));
// 2. ... and the id of peer 8 is taken after flannel-ts listed the ids (NLM_F_EXCL refuses it).
ip("nexthop", "add", "id", String(idOf("10.244.8.0")), "via", "10.0.0.3", "dev", "eth0");
k1.routes.replace(peer(8));
// 3. A peer through flannel's own nexthop, whose gateway then changes.
k1.routes.replace(peer(9));
k1.routes.replace(peer(9, "10.244.9.1"));
// 4. A plain route from an earlier flanneld (or upstream) for peer 10.
ip("route", "add", "10.244.10.0/24", "via", "10.244.10.0", "dev", "flannel.1", "onlink");
out.routes = JSON.parse(ip("-json", "route", "show", "dev", "flannel.1")) as unknown;
out.nexthops = JSON.parse(ip("-json", "nexthop", "show")) as unknown;
const listed = k1.routes.list({ family: 4 }).filter((r) => r.linkIndex === vx);
out.listed = listed.map((r) => `${r.dst?.toString()} ${r.gw?.toString()} ${r.nhId ?? "-"}`);
k1.close();

// 5. A new process (a restarted flanneld): with net.ipv4.nexthop_compat_mode 0 the kernel lists routes
//    through nexthops by id only; the listing still gives their gateway and device.
spawnSync("sysctl", ["-qw", "net.ipv4.nexthop_compat_mode=0"]);
const k2 = createNetlinkKernel();
out.listedCompat0 = k2.routes
  .list({ family: 4 })
  .filter((r) => r.linkIndex === vx)
  .map((r) => `${r.dst?.toString()} ${r.gw?.toString()} ${r.nhId ?? "-"} ${r.onlink === true}`);
spawnSync("sysctl", ["-qw", "net.ipv4.nexthop_compat_mode=1"]);
// 6. Deleting: the listed route of peer 9 (flannel's nexthop from the first process goes too), peer 10's
//    plain route as the backend asks for it, and peers 7 and 8 (someone else's nexthops stay).
for (const r of k2.routes.list({ family: 4 })) {
  if (r.dst?.toString() === "10.244.9.0/24") k2.routes.delete(r);
}
k2.routes.delete(peer(10));
k2.routes.delete(peer(7));
k2.routes.delete(peer(8));
out.routesAfter = ip("route", "show", "dev", "flannel.1").trim();
// 7. flannelctl cleanup removes a host-gw peer's route and flannel's nexthop with it.
k2.routes.replace({
  family: 4,
  dst: IpNet.parse("10.244.11.0/24"),
  gw: IpAddr.parse("10.0.0.2"),
  linkIndex: k2.links.get("eth0")?.index ?? 0,
  nexthop: true,
});
out.hostGwRoute = ip("route", "show", "10.244.11.0/24").trim();
const cleaned = await applyCleanup(
  [{ kind: "route", dst: "10.244.11.0/24", gw: "10.0.0.2", dev: "eth0", text: "" }],
  { kernel: k2, commands: { run: () => Promise.reject(new Error("no commands here")) } },
);
out.cleanupErrors = cleaned.map((c) => c.error ?? "").join("");
out.hostGwRouteAfter = ip("route", "show", "10.244.11.0/24").trim();
out.nexthopsAfter = ip("nexthop", "show").trim();
k2.close();
process.stdout.write(JSON.stringify(out) + "\n");
