// Experiment: what one neighbour / FDB / route write costs in a fresh namespace, as flanneld's vxlan backend
// makes them (ARP entry, FDB entry, onlink route per peer), with our netlink kernel and with `ip -batch`.
// Prints ms per 1000 writes for each successive block of 1000, so growth with the table size shows. Routes
// are written and deleted twice: plain, then each through a nexthop object (Route.nexthop).
//
//   node --import tsx bench/netlink-writes.ts [N] [--listen] [--ip]
//
// --listen: a second socket subscribed to link/neigh/route notifications (as flanneld's events) that is
// never read, plus one that is drained. Needs root; the namespace (fts-p-nlw-…) is deleted at the end.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Route } from "../src/kernel/ports.ts";
import { Netns } from "../test/helpers/netns.ts";
import { runInside } from "./util.ts";

const argv = process.argv.slice(2);
const n = Number(argv.find((a) => /^\d+$/.test(a)) ?? 10_000);

function peer(i: number): { net: string; gw: string; mac: string; pub: string } {
  const b = 1 + (i >> 8);
  const c = i & 255;
  const h = (x: number): string => x.toString(16).padStart(2, "0");
  return {
    net: `10.${b}.${c}.0/24`,
    gw: `10.${b}.${c}.0`,
    mac: `02:42:00:${h(b)}:${h(c)}:01`,
    pub: `172.${16 + (i >> 15)}.${(i >> 7) & 255}.${(i & 127) + 1}`,
  };
}

async function inner(): Promise<void> {
  const { createNetlinkKernel } = await import("../src/kernel/netlink/netlink-kernel.ts");
  const { IpAddr } = await import("../src/ip/addr.ts");
  const { IpNet } = await import("../src/ip/net.ts");
  const k = createNetlinkKernel();
  const ac = new AbortController();
  if (argv.includes("--listen")) k.events.subscribe(() => undefined, ac.signal);
  const link = k.links.get("flannel.1");
  if (!link) throw new Error("no flannel.1");
  const idx = link.index;
  const time = (
    label: string,
    mk: (i: number) => Parameters<NonNullable<typeof k.batch>>[0][number],
  ): void => {
    const per: string[] = [];
    const t0 = performance.now();
    for (let s = 0; s < n; s += 1000) {
      const ws = [];
      for (let i = s; i < Math.min(n, s + 1000); i++) ws.push(mk(i));
      const t = performance.now();
      const errs = k.batch(ws);
      const bad = errs.find((e) => e !== undefined);
      if (bad) throw bad;
      per.push((performance.now() - t).toFixed(0));
    }
    console.log(`${label}: total ${(performance.now() - t0).toFixed(0)} ms; per 1000: ${per.join(" ")}`);
  };
  time("neigh", (i) => ({
    op: "neigh-replace",
    neighbour: { linkIndex: idx, ip: IpAddr.parse(peer(i).gw), mac: peer(i).mac },
  }));
  time("fdb", (i) => ({
    op: "fdb-replace",
    fdb: { linkIndex: idx, mac: peer(i).mac, dst: IpAddr.parse(peer(i).pub) },
  }));
  const route = (i: number, nexthop: boolean): Route => ({
    family: 4,
    dst: IpNet.parse(peer(i).net),
    gw: IpAddr.parse(peer(i).gw),
    linkIndex: idx,
    onlink: true,
    ...(nexthop && { nexthop: true }),
  });
  time("route", (i) => ({ op: "route-replace", route: route(i, false) }));
  time("route delete", (i) => ({ op: "route-delete", route: route(i, false) }));
  // The same routes again, each through a nexthop object of its own (what the backends ask for).
  time("route via nexthop", (i) => ({ op: "route-replace", route: route(i, true) }));
  time("route via nexthop delete", (i) => ({ op: "route-delete", route: route(i, true) }));
  ac.abort();
  k.close();
}

function outer(): void {
  const ns = Netns.create("fts-p-nlw");
  const dir = mkdtempSync(join(tmpdir(), "fts-p-nlw-"));
  try {
    ns.run("ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    ns.run("ip", ["link", "set", "eth0p", "up"]);
    ns.run("ip", ["addr", "add", "172.16.255.1/16", "dev", "eth0"]);
    ns.run("ip", ["link", "set", "eth0", "up"]);
    ns.run("ip", [
      "link",
      "add",
      "flannel.1",
      "type",
      "vxlan",
      "id",
      "1",
      "local",
      "172.16.255.1",
      "dev",
      "eth0",
      "dstport",
      "8472",
      "nolearning",
    ]);
    ns.run("ip", ["addr", "add", "10.0.0.0/32", "dev", "flannel.1"]);
    ns.run("ip", ["link", "set", "flannel.1", "up"]);
    if (argv.includes("--ip")) {
      const files = {
        neigh: Array.from(
          { length: n },
          (_, i) => `neigh replace ${peer(i).gw} lladdr ${peer(i).mac} dev flannel.1 nud permanent`,
        ),
        fdb: Array.from(
          { length: n },
          (_, i) => `fdb replace ${peer(i).mac} dev flannel.1 dst ${peer(i).pub} self permanent`,
        ),
        route: Array.from(
          { length: n },
          (_, i) => `route replace ${peer(i).net} via ${peer(i).gw} dev flannel.1 onlink`,
        ),
      };
      for (const [label, lines] of Object.entries(files)) {
        const f = join(dir, label);
        writeFileSync(f, `${lines.join("\n")}\n`);
        const t = performance.now();
        execFileSync("ip", ["netns", "exec", ns.name, label === "fdb" ? "bridge" : "ip", "-batch", f]);
        console.log(`ip -batch ${label}: ${(performance.now() - t).toFixed(0)} ms`);
      }
    } else {
      runInside(ns.name, import.meta.filename, argv);
    }
  } finally {
    ns.delete();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (argv.includes("--inner")) await inner();
else outer();
