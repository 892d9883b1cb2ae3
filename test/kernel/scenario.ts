// The kernel contract scenario: the same steps run on FakeKernel (in-process) and on the netlink kernel
// (as `node --import tsx test/kernel/scenario.ts` inside a fresh namespace), and both print the same JSON.
// Observations name links instead of using indices, so the two runs compare directly.
//
// Precondition (both kernels): eth0 is up with 10.0.0.1/24, 10.0.0.2 is a neighbour on it, and the main
// table has a default route via 10.0.0.254.
// With ORACLE=1 the run also captures `ip -json` / `bridge -json` at the checkpoint (netlink kernel only).
// With BENCH=N it measures N route replaces and reports the cost (not part of the comparison).

import { spawnSync } from "node:child_process";
import { pathToFileURL } from "node:url";

import { IpAddr } from "../../src/ip/addr.ts";
import { IfAddr, IpNet } from "../../src/ip/net.ts";
import { KernelError, type Kernel, type Link, type Route } from "../../src/kernel/ports.ts";

const ip = IpAddr.parse;
const net = IpNet.parse;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function runScenario(
  k: Kernel,
  opts: { oracle?: boolean; bench?: number } = {},
): Record<string, Json> {
  const out: Record<string, Json> = {};
  const name = (i: number | undefined): string | null =>
    i ? (k.links.getByIndex(i)?.name ?? `#${i}`) : null;
  const link = (l: Link | undefined): Json =>
    l === undefined
      ? null
      : {
          name: l.name,
          kind: l.kind,
          mtu: l.mtu,
          // eth0's MAC is random on the real kernel; flannel.1's is set by the scenario.
          mac: l.kind === "vxlan" ? l.mac : "",
          up: l.up,
          vxlan: l.vxlan
            ? {
                vni: l.vxlan.vni,
                local: l.vxlan.local?.toString() ?? null,
                vtep: name(l.vxlan.vtepIndex),
                port: l.vxlan.port,
                learning: l.vxlan.learning,
                gbp: l.vxlan.gbp,
              }
            : null,
        };
  const route = (r: Route): Json => ({
    dst: r.dst?.toString() ?? "default",
    gw: r.gw?.toString() ?? null,
    dev: name(r.linkIndex),
    onlink: r.onlink ?? false,
    type: r.type ?? "unicast",
    scope: r.scope ?? null,
    protocol: r.protocol ?? null,
    src: r.src?.toString() ?? null,
    metric: r.metric ?? null,
    nhId: r.nhId ?? null,
  });
  const got = (r: Route): Json => ({
    gw: r.gw?.toString() ?? null,
    dev: name(r.linkIndex),
    type: r.type ?? "unicast",
    src: r.src?.toString() ?? null,
  });
  const errno = (fn: () => unknown): string => {
    try {
      fn();
      return "ok";
    } catch (err) {
      if (err instanceof KernelError) return err.errno;
      throw err;
    }
  };
  const state = (vx: number | undefined): Json => ({
    links: k.links
      .list()
      .filter((l) => l.name !== "lo")
      .map(link)
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    addrs: k.addrs
      .list({ family: 4 })
      .filter((a) => name(a.linkIndex) !== "lo")
      .map((a) => `${a.addr.toString()} dev ${name(a.linkIndex)} scope ${a.scope} flags ${a.flags}`)
      .sort(),
    routes: k.routes
      .list({ family: 4 })
      .map(route)
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    neigh:
      vx === undefined
        ? []
        : k.neighbours
            .list({ family: 4, linkIndex: vx })
            .map((n) => `${n.ip.toString()} lladdr ${n.mac} state ${n.state}`)
            .sort(),
    fdb:
      vx === undefined
        ? []
        : k.fdb
            .list({ linkIndex: vx })
            .map((e) => `${e.mac} dst ${e.dst?.toString() ?? "-"}`)
            .sort(),
  });

  const eth0 = k.links.get("eth0");
  if (!eth0) throw new Error("Scenario precondition: eth0 must exist");
  const spec = {
    name: "flannel.1",
    vni: 1,
    local: ip("10.0.0.1"),
    vtepIndex: eth0.index,
    port: 0,
    learning: false,
    gbp: false,
    mtu: 1450,
    mac: "0e:2a:00:00:00:01",
  };

  // 1. The device, as vxlan's RegisterNetwork creates it.
  const created = k.links.addVxlan(spec);
  const vx = created.index;
  out.created = link(created);
  out.addDuplicate = errno(() => k.links.addVxlan(spec));
  k.links.setMtu("flannel.1", 1400);
  k.links.setMac("flannel.1", "0e:2a:00:00:00:0a");
  k.links.setUp("flannel.1");
  k.links.setUp("flannel.1"); // idempotent
  out.configured = link(k.links.get("flannel.1"));
  out.accept_ra = k.sysctl.get("net/ipv6/conf/flannel.1/accept_ra") ?? null;
  k.sysctl.set("net/ipv6/conf/flannel.1/accept_ra", "0");
  out.accept_ra_after = k.sysctl.get("net/ipv6/conf/flannel.1/accept_ra") ?? null;
  k.addrs.add(vx, IfAddr.parse("10.244.1.0/32"));
  k.addrs.add(vx, IfAddr.parse("10.244.1.0/32")); // idempotent

  // 2. Two peers: neighbour, FDB, onlink route each; then peer 3 moves to another host and MAC.
  for (const [n, host] of [
    [2, "10.0.0.2"],
    [3, "10.0.0.3"],
  ] as const) {
    const mac = `0e:2a:00:00:00:0${n}`;
    k.neighbours.replace({ linkIndex: vx, ip: ip(`10.244.${n}.0`), mac });
    k.fdb.replace({ linkIndex: vx, mac, dst: ip(host) });
    k.routes.replace({
      family: 4,
      dst: net(`10.244.${n}.0/24`),
      gw: ip(`10.244.${n}.0`),
      linkIndex: vx,
      onlink: true,
      scope: 0,
    });
  }
  k.neighbours.replace({ linkIndex: vx, ip: ip("10.244.3.0"), mac: "0e:2a:00:00:00:33" });
  k.fdb.replace({ linkIndex: vx, mac: "0e:2a:00:00:00:03", dst: ip("10.0.0.4") });
  k.routes.replace({
    family: 4,
    dst: net("10.244.3.0/24"),
    gw: ip("10.244.3.0"),
    linkIndex: vx,
    onlink: true,
  });

  // 3. Routes that the kernel must refuse or resolve.
  out.gwNotOnlink = errno(() =>
    k.routes.replace({ family: 4, dst: net("10.244.4.0/24"), gw: ip("10.244.4.0"), linkIndex: vx }),
  );
  out.gwUnreachable = errno(() =>
    k.routes.replace({ family: 4, dst: net("10.244.4.0/24"), gw: ip("192.168.77.1") }),
  );
  out.unknownDev = errno(() => k.routes.replace({ family: 4, dst: net("10.244.4.0/24"), linkIndex: 99999 }));
  out.addrUnknownDev = errno(() => k.addrs.add(99999, IfAddr.parse("10.9.9.9/32")));
  out.neighUnknownDev = errno(() =>
    k.neighbours.replace({ linkIndex: 99999, ip: ip("10.9.9.9"), mac: "02:00:00:00:00:09" }),
  );
  out.mtuUnknownDev = errno(() => k.links.setMtu("nosuchdev", 1400));
  const br = k.links.addBridge("cni0");
  out.bridge = link(br);
  out.routeViaDownLink = errno(() =>
    k.routes.replace({ family: 4, dst: net("10.244.5.0/24"), linkIndex: br.index }),
  );
  k.links.delete("cni0");
  // host-gw / DirectRouting: a gateway route without a device resolves the device from the gateway.
  k.routes.replace({ family: 4, dst: net("10.245.0.0/24"), gw: ip("10.0.0.2") });
  // --ip-blackhole-route for the own subnet.
  k.routes.replace({ family: 4, dst: net("10.244.1.0/24"), type: "blackhole" });
  // Through nexthop objects (Route.nexthop), as vxlan and host-gw program peers: a vxlan peer whose
  // gateway then changes (the nexthop is replaced), and a host-gw peer on eth0.
  const peer6 = (gw: string): Route => ({
    family: 4,
    dst: net("10.244.6.0/24"),
    gw: ip(gw),
    linkIndex: vx,
    onlink: true,
    nexthop: true,
  });
  k.routes.replace(peer6("10.244.6.0"));
  k.routes.replace(peer6("10.244.6.1"));
  k.routes.replace({
    family: 4,
    dst: net("10.245.1.0/24"),
    gw: ip("10.0.0.3"),
    linkIndex: eth0.index,
    nexthop: true,
  });
  // No nexthop for a route that cannot have one (IPv4 without a device): a plain route.
  k.routes.replace({ family: 4, dst: net("10.245.2.0/24"), gw: ip("10.0.0.3"), nexthop: true });

  // 4. route get.
  out.get = {
    peer: got(k.routes.get(ip("10.244.2.5"))),
    direct: got(k.routes.get(ip("10.0.0.2"))),
    hostgw: got(k.routes.get(ip("10.245.0.9"))),
    dflt: got(k.routes.get(ip("8.8.8.8"))),
    local: got(k.routes.get(ip("10.0.0.1"))),
    blackhole: errno(() => k.routes.get(ip("10.244.1.9"))),
  };

  // 5. The checkpoint: everything listed.
  out.checkpoint = state(vx);
  if (opts.oracle) out.oracle = oracle();

  // 6. Delete each thing (twice: a second delete of an absent thing succeeds).
  for (let i = 0; i < 2; i++) {
    k.neighbours.delete({ linkIndex: vx, ip: ip("10.244.2.0") });
    k.fdb.delete({ linkIndex: vx, mac: "0e:2a:00:00:00:02", dst: ip("10.0.0.2") });
    k.routes.delete({ family: 4, dst: net("10.244.2.0/24"), gw: ip("10.244.2.0"), linkIndex: vx });
    k.routes.delete({ family: 4, dst: net("10.245.0.0/24"), gw: ip("10.0.0.2") });
    k.routes.delete({ family: 4, dst: net("10.244.1.0/24"), type: "blackhole" });
    k.addrs.delete(vx, IfAddr.parse("10.244.1.0/32"));
    // As the reconciler deletes: a peer's route as it asked for it, and a listed route (with its nhId).
    k.routes.delete(peer6("10.244.6.1"));
    const listed = k.routes.list({ family: 4 }).find((r) => r.dst?.toString() === "10.245.1.0/24");
    if (listed) k.routes.delete(listed);
    k.routes.delete({ family: 4, dst: net("10.245.2.0/24"), gw: ip("10.0.0.3"), nexthop: true });
  }
  // An FDB delete with the wrong destination leaves the entry alone.
  k.fdb.delete({ linkIndex: vx, mac: "0e:2a:00:00:00:03", dst: ip("10.0.0.3") });
  out.afterDeletes = state(vx);

  if (opts.bench) out.bench = bench(k, vx, opts.bench);

  // 7. Deleting the device takes its neighbours, FDB and routes with it.
  k.links.delete("flannel.1");
  k.links.delete("flannel.1");
  out.gone = link(k.links.get("flannel.1"));
  out.accept_ra_gone = k.sysctl.get("net/ipv6/conf/flannel.1/accept_ra") ?? null;
  out.final = state(undefined);
  return out;
}

function bench(k: Kernel, vx: number, n: number): Json {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const dst = IpNet.of(IpAddr.of(4, (10n << 24n) | (100n << 16n) | (BigInt(i) << 8n)), 24);
    k.routes.replace({ family: 4, dst, gw: dst.ip, linkIndex: vx, onlink: true });
  }
  const t1 = process.hrtime.bigint();
  const listed = k.routes.list({ family: 4 }).length;
  return { routes: n, usPerReplace: Number(t1 - t0) / 1000 / n, listed };
}

function oracle(): Json {
  const j = (file: string, args: string[]): Json => {
    const res = spawnSync(file, args, { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`${file} ${args.join(" ")}: ${res.stderr}`);
    return res.stdout.trim() === "" ? [] : (JSON.parse(res.stdout) as Json);
  };
  return {
    link: j("ip", ["-json", "-details", "link", "show", "flannel.1"]),
    addr: j("ip", ["-json", "-4", "addr", "show"]),
    route: j("ip", ["-json", "-4", "route", "show", "table", "main"]),
    neigh: j("ip", ["-json", "-4", "neigh", "show", "dev", "flannel.1"]),
    fdb: j("bridge", ["-json", "fdb", "show", "dev", "flannel.1"]),
  };
}

// As a script: run on the netlink kernel of the current namespace, print the JSON.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { createNetlinkKernel } = await import("../../src/kernel/netlink/netlink-kernel.ts");
  const k = createNetlinkKernel();
  try {
    const res = runScenario(k, {
      oracle: process.env.ORACLE === "1",
      ...(process.env.BENCH ? { bench: Number(process.env.BENCH) } : {}),
    });
    process.stdout.write(JSON.stringify(res) + "\n");
  } finally {
    k.close();
  }
}
