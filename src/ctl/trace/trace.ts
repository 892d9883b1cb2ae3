// `flannelctl trace <src-pod-ip> <dst-ip>`: the path a packet from a local pod would take, hop by hop, read
// from this node's live state (routes, ARP, FDB, devices) and the cluster's leases, naming the exact entry
// used at each hop and stopping with a diagnosis where one is missing.
//
// Design notes
// - `planTrace` is pure over TraceFacts (the same kernel facts doctor collects, plus the leases), so every
//   branch is unit-tested with hand-written facts; the command only collects and prints.
// - The route lookup is a longest-prefix match over the main table, which is what the kernel does for the
//   routes flannel installs (flannel uses no policy routing). The peer's side (decapsulation, its cni0) is
//   read from its lease — the same data the peer's flanneld acted on — and marked as such, because this
//   node cannot see the peer's kernel.
// - vxlan: pod → cni0 → route `<peer subnet> via <peer subnet>.0 dev flannel.N onlink` → ARP entry for that
//   gateway (the peer's VTEP MAC) → FDB entry for that MAC (the peer's public IP) → UDP to <ip>:<port> over
//   the underlay route → the peer. host-gw: route via the peer's public IP. udp: route to flannel0 and
//   flanneld's proxy.

import { errorMessage } from "../../errors.ts";
import { FlagParseError } from "../../cli/flags.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { ExecCommandRunner } from "../../kernel/command.ts";
import { MemoryLogger } from "../../log/logger.ts";
import type { CommandIo } from "../sandbox.ts";
import type { KernelFacts } from "../doctor/collect.ts";
import type { LeaseFact, RouteFact } from "../doctor/facts.ts";
import { doctorFlags, collectOptionsFrom } from "../doctor/doctor.ts";

export interface TraceFacts extends KernelFacts {
  /** This node's subnet (FLANNEL_SUBNET, masked), when known. */
  subnet?: string;
  network?: string;
  leases?: LeaseFact[];
}

export interface TraceStep {
  hop: string;
  status: "ok" | "missing" | "info";
  /** The exact entry used, as `ip`/`bridge` would print it. */
  entry: string;
  /** Why the trace stops here, and what to do. */
  diagnosis?: string;
  fix?: string;
}

export interface TraceResult {
  src: string;
  dst: string;
  steps: TraceStep[];
  /** True when the packet would reach its destination (as far as this node can tell). */
  complete: boolean;
}

/** Longest-prefix match over IPv4 main-table routes (unicast, blackhole, ...) for `dst`. */
export function lookupRoute(routes: readonly RouteFact[], dst: IpAddr): RouteFact | undefined {
  let best: { r: RouteFact; len: number } | undefined;
  for (const r of routes) {
    const net =
      r.dst === "default" ? IpNet.parse(dst.family === 4 ? "0.0.0.0/0" : "::/0") : IpNet.tryParse(r.dst);
    if (net === undefined || net.family !== dst.family || !net.contains(dst)) continue;
    if (best === undefined || net.prefixLen > best.len) best = { r, len: net.prefixLen };
  }
  return best?.r;
}

export function formatRoute(r: RouteFact): string {
  const parts = [r.type && r.type !== "unicast" ? `${r.type} ${r.dst}` : r.dst];
  if (r.gw) parts.push(`via ${r.gw}`);
  if (r.dev) parts.push(`dev ${r.dev}`);
  if (r.onlink) parts.push("onlink");
  return parts.join(" ");
}

function leaseFor(leases: readonly LeaseFact[] | undefined, ip: IpAddr): LeaseFact | undefined {
  return leases?.find((l) => IpNet.tryParse(l.subnet)?.contains(ip));
}

const RESTART = "restart flanneld on this node (it re-programs every peer)";

export function planTrace(facts: TraceFacts, src: IpAddr, dst: IpAddr): TraceResult {
  const steps: TraceStep[] = [];
  const done = (complete: boolean): TraceResult => ({
    src: src.toString(),
    dst: dst.toString(),
    steps,
    complete,
  });
  const stop = (hop: string, entry: string, diagnosis: string, fix?: string): TraceResult => {
    steps.push(
      fix === undefined
        ? { hop, status: "missing", entry, diagnosis }
        : { hop, status: "missing", entry, diagnosis, fix },
    );
    return done(false);
  };
  const link = (name: string | undefined) => facts.links.find((l) => l.name === name);
  const own = facts.subnet ? IpNet.tryParse(facts.subnet) : undefined;

  // 1. The pod: its default route points at cni0's address (bridge plugin, isDefaultGateway).
  if (own && !own.contains(src)) {
    const owner = leaseFor(facts.leases, src);
    return stop(
      "pod",
      `${src.toString()} is not in this node's subnet ${own.toString()}`,
      `Run trace on the node that owns ${src.toString()}${owner ? `: lease ${owner.subnet}${owner.node ? ` (${owner.node})` : ""}, public IP ${owner.publicIp}` : ""}`,
    );
  }
  const cni0 = link("cni0");
  if (!cni0) {
    return stop(
      "pod → cni0",
      "no cni0 bridge",
      "No pod was attached on this node yet, or the bridge was deleted: pods have nowhere to send",
      "delete and re-create the pod (the flannel CNI plugin creates cni0)",
    );
  }
  const gw = cni0.addrs.find(
    (a) => !a.includes(":") && (own === undefined || own.contains(IpAddr.parse(a.split("/")[0] as string))),
  );
  if (!gw) {
    return stop(
      "pod → cni0",
      `cni0 addresses: ${cni0.addrs.join(", ") || "none"}`,
      `cni0 has no address in this node's subnet ${own?.toString() ?? "?"}: pods' default gateway is unreachable`,
      "ip link set cni0 down && ip link delete cni0   # then re-create this node's pods",
    );
  }
  steps.push({
    hop: "pod → cni0",
    status: "ok",
    entry: `pod ${src.toString()}: default via ${gw.split("/")[0] ?? ""} (cni0 ${gw}${cni0.up ? "" : ", DOWN"})`,
  });

  // 2. The host route.
  const route = lookupRoute(facts.routes, dst);
  const peer = leaseFor(facts.leases, dst);
  if (!route || route.type === "blackhole" || route.type === "unreachable" || route.type === "prohibit") {
    const want = peer
      ? peer.backendType === "host-gw"
        ? `${peer.subnet} via ${peer.publicIp}`
        : `${peer.subnet} via ${IpNet.parse(peer.subnet).ip.toString()} dev flannel.${peer.vni ?? 1} onlink`
      : undefined;
    return stop(
      "host route",
      route ? formatRoute(route) : `no route to ${dst.toString()}`,
      peer
        ? `The lease ${peer.subnet} (public IP ${peer.publicIp}) has no route on this node`
        : `No lease covers ${dst.toString()} and no route leads there`,
      want ? `ip route replace ${want}   # or ${RESTART}` : undefined,
    );
  }
  steps.push({ hop: "host route", status: "ok", entry: formatRoute(route) });
  if (route.dev === "cni0") {
    steps.push({
      hop: "cni0 → pod",
      status: "info",
      entry: `${dst.toString()} is a pod on this node: delivered on cni0`,
    });
    return done(true);
  }

  const dev = link(route.dev);
  if (dev?.kind === "vxlan") {
    // 3. ARP: the inner destination MAC for the gateway (the peer's VTEP).
    const gwIp = route.gw;
    const neigh = facts.neighbours.find((n) => n.dev === dev.name && n.ip === gwIp);
    if (!neigh) {
      return stop(
        `${dev.name} ARP`,
        `no neighbour ${gwIp ?? "?"} on ${dev.name}`,
        `Without the ARP entry the kernel cannot build the inner Ethernet header (flannel disables learning and answers no ARP): the packet is dropped`,
        peer?.vtepMac
          ? `ip neigh replace ${gwIp ?? ""} lladdr ${peer.vtepMac} dev ${dev.name} nud permanent   # or ${RESTART}`
          : RESTART,
      );
    }
    steps.push({
      hop: `${dev.name} ARP`,
      status: "ok",
      entry: `${neigh.ip} lladdr ${neigh.mac} dev ${dev.name}${neigh.permanent ? " PERMANENT" : ""}`,
    });
    // 4. FDB: which VTEP (public IP) owns that MAC.
    const fdb = facts.fdb.find((e) => e.dev === dev.name && e.mac === neigh.mac);
    if (!fdb || fdb.dst === null) {
      return stop(
        `${dev.name} FDB`,
        `no FDB entry for ${neigh.mac} on ${dev.name}`,
        `The kernel does not know which node owns VTEP MAC ${neigh.mac}: the packet is dropped`,
        peer
          ? `bridge fdb replace ${neigh.mac} dev ${dev.name} dst ${peer.publicIp} self permanent   # or ${RESTART}`
          : RESTART,
      );
    }
    steps.push({
      hop: `${dev.name} FDB`,
      status: "ok",
      entry: `${fdb.mac} dev ${dev.name} dst ${fdb.dst} self permanent`,
    });
    // 5. Encapsulation and the underlay route to the peer.
    const port = dev.vxlan?.port || 8472;
    const outer = IpAddr.tryParse(fdb.dst);
    const under = outer ? lookupRoute(facts.routes, outer) : undefined;
    if (!under) {
      return stop(
        "encapsulation",
        `no route to ${fdb.dst}`,
        `The underlay has no route to the peer's public IP ${fdb.dst}`,
        `check the node's underlay routes (ip route get ${fdb.dst})`,
      );
    }
    steps.push({
      hop: "encapsulation",
      status: "ok",
      entry: `UDP ${dev.vxlan?.local ?? "?"} → ${fdb.dst}:${port} VNI ${dev.vxlan?.vni ?? "?"}, outer route ${formatRoute(under)}`,
    });
    // 6. The peer, from its lease.
    if (!peer) {
      steps.push({
        hop: "peer",
        status: "info",
        entry: `no lease read (pass --etcd-endpoints or --kube-api-url to check the peer side)`,
      });
      return done(true);
    }
    if (peer.publicIp !== fdb.dst || (peer.vtepMac !== undefined && peer.vtepMac !== neigh.mac)) {
      return stop(
        "peer",
        `lease ${peer.subnet}: public IP ${peer.publicIp}, VtepMAC ${peer.vtepMac ?? "?"}`,
        `This node's entries are stale: the lease now says public IP ${peer.publicIp} and VtepMAC ${peer.vtepMac ?? "?"}, the kernel has ${fdb.dst} / ${neigh.mac}`,
        RESTART,
      );
    }
    steps.push({
      hop: "peer decapsulation",
      status: "info",
      entry: `${peer.node ?? "peer"} ${peer.publicIp}: flannel.${peer.vni ?? dev.vxlan?.vni ?? 1} (VtepMAC ${peer.vtepMac ?? "?"}) decapsulates (from its lease)`,
    });
    steps.push({
      hop: "peer cni0 → pod",
      status: "info",
      entry: `${peer.subnet} is the peer's cni0 subnet: delivered to ${dst.toString()} (from its lease)`,
    });
    return done(true);
  }

  if (dev?.kind === "tun" || route.dev === "flannel0") {
    steps.push({
      hop: "udp proxy",
      status: "info",
      entry: `flanneld reads ${route.dev ?? "flannel0"} and sends the packet in UDP to ${peer ? `${peer.publicIp}:8285` : "the peer's public IP:8285"}`,
    });
    if (!peer)
      return stop(
        "peer",
        `no lease covers ${dst.toString()}`,
        "flanneld's proxy has no route for it and answers ICMP net-unreachable",
      );
    steps.push({
      hop: "peer",
      status: "info",
      entry: `${peer.node ?? "peer"} ${peer.publicIp}: its flanneld writes the packet to its flannel0, then cni0 (from its lease)`,
    });
    return done(true);
  }

  // host-gw (or any plain route): the gateway is the peer's public IP on a shared L2 network.
  if (route.gw) {
    if (peer && peer.backendType === "host-gw" && peer.publicIp !== route.gw) {
      return stop(
        "next hop",
        formatRoute(route),
        `The route goes via ${route.gw} but the lease ${peer.subnet} says the node is ${peer.publicIp}: stale route`,
        `ip route replace ${peer.subnet} via ${peer.publicIp}   # or ${RESTART}`,
      );
    }
    const neigh = facts.neighbours.find((n) => n.dev === route.dev && n.ip === route.gw);
    steps.push({
      hop: "next hop",
      status: neigh ? "ok" : "info",
      entry: neigh
        ? `${neigh.ip} lladdr ${neigh.mac} dev ${neigh.dev}`
        : `${route.gw} on ${route.dev ?? "?"}: not resolved yet (ARP on first use)`,
    });
    if (peer)
      steps.push({
        hop: "peer cni0 → pod",
        status: "info",
        entry: `${peer.node ?? "peer"} ${peer.publicIp} routes ${peer.subnet} to its cni0 (from its lease)`,
      });
    return done(true);
  }
  steps.push({
    hop: "host route",
    status: "info",
    entry: `${dst.toString()} leaves on ${route.dev ?? "?"} (not a flannel path)`,
  });
  return done(true);
}

export function renderTrace(r: TraceResult): string {
  const lines = [`trace ${r.src} → ${r.dst}`];
  r.steps.forEach((s, i) => {
    const mark = s.status === "missing" ? "✗" : s.status === "ok" ? "✓" : "·";
    lines.push(`  ${i + 1}. ${mark} ${s.hop.padEnd(20)} ${s.entry}`);
    if (s.diagnosis) lines.push(`     STOP: ${s.diagnosis}`);
    if (s.fix) lines.push(`     fix: ${s.fix}`);
  });
  lines.push(r.complete ? "reaches the destination" : "does not reach the destination");
  return `${lines.join("\n")}\n`;
}

export const TRACE_USAGE = `Usage: flannelctl trace [options] <src-pod-ip> <dst-ip>

Shows the path a packet from a pod on this node would take, hop by hop, read from the live state: pod →
cni0 → host route → flannel.N ARP → FDB → encapsulation → the peer (host-gw and udp have their own hops).
Stops with a diagnosis and a fix at the first missing entry. Run as root in the node's network namespace.
Exit status 1 when the packet would not get through.

Options:
`;

/** Runs `flannelctl trace …`; resolves with the exit code. */
export async function traceCommand(
  args: readonly string[],
  io: CommandIo,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<number> {
  const { fs, read } = doctorFlags(env);
  let positional: string[];
  try {
    // Flags may come before or after the two addresses.
    fs.parse(args);
    positional = fs.args();
    const rest: string[] = [];
    while (positional.length > 0) {
      rest.push(positional.shift() as string);
      fs.parse(positional);
      positional = fs.args();
    }
    positional = rest;
  } catch (err) {
    if (err instanceof FlagParseError && err.help) {
      io.out(TRACE_USAGE + fs.printDefaults());
      return 0;
    }
    io.err(`${errorMessage(err)}\n\n${TRACE_USAGE}${fs.printDefaults()}`);
    return 2;
  }
  const src = IpAddr.tryParse(positional[0] ?? "");
  const dst = IpAddr.tryParse(positional[1] ?? "");
  if (positional.length !== 2 || src === undefined || dst === undefined) {
    io.err(
      `Expected two IP addresses, got ${JSON.stringify(positional.join(" "))}: e.g. flannelctl trace 10.244.1.2 10.244.2.3\n`,
    );
    return 2;
  }
  const flags = read();
  const { createNetlinkKernel } = await import("../../kernel/netlink/netlink-kernel.ts");
  const { collectKernelFacts, readSubnetEnvFact, collectEtcdLeases, collectKube } =
    await import("../doctor/collect.ts");
  const kernel = createNetlinkKernel();
  let facts: TraceFacts;
  try {
    facts = collectKernelFacts(kernel);
  } finally {
    kernel.close();
  }
  const env2 = readSubnetEnvFact(flags.subnetFile).values ?? {};
  const sub = IpNet.tryParse((env2["FLANNEL_SUBNET"] ?? "").split(",")[0] ?? "");
  if (sub) facts.subnet = sub.toString();
  if (env2["FLANNEL_NETWORK"]) facts.network = env2["FLANNEL_NETWORK"];
  const o = collectOptionsFrom({ ...flags, probe: false }, { kernel, commands: new ExecCommandRunner() });
  const logger = new MemoryLogger();
  if (o.etcd) {
    const l = await collectEtcdLeases(o.etcd, logger);
    if (l.error) io.err(`warning: cannot read leases from ${l.from}: ${l.error}\n`);
    else facts.leases = l.leases;
  } else if (o.kube) {
    const k = await collectKube(o.kube, logger);
    if (k.leases) facts.leases = k.leases.leases;
    else io.err(`warning: cannot read leases from the Kubernetes API: ${k.kube.error ?? "access denied"}\n`);
  }
  const result = planTrace(facts, src, dst);
  io.out(flags.json ? `${JSON.stringify(result, null, 2)}\n` : renderTrace(result));
  return result.complete ? 0 : 1;
}
