// FakeKernel: an in-memory kernel behind the same ports as the rtnetlink adapter, for tests without root.
//
// Design notes
// - It models the parts of Linux that flannel's logic depends on, with the kernel's errno for each misuse:
//   EEXIST for a taken link name, ENODEV for an unknown link index, ENETDOWN for a route through a down link,
//   ENETUNREACH for a gateway that no connected route reaches (unless onlink), ESRCH/ENOENT are swallowed by
//   the `delete*` calls as the ports require. The contract tests (test/kernel/) run one scenario here and on
//   the real kernel and compare, so every rule below is checked against Linux, not guessed.
// - Connected ("proto kernel") routes follow IPv4 rules: an address with a prefix shorter than the host
//   length adds a prefix route once the link is up. /32 addresses (flannel.1's) add none, which is exactly
//   why flannel's vxlan routes need `onlink`.
// - Deleting a link deletes its addresses, routes, neighbours, FDB entries and per-link sysctls, as the
//   kernel does. Events are delivered asynchronously (setImmediate) like netlink notifications, so code that
//   assumes synchronous delivery fails here too.
// - `dump()` prints the whole state as sorted iproute2 commands, links referred to by name, so a test can
//   compare the full text and a failure shows a readable diff of the "kernel" (tailscale's router tests).
// - `fail(op, errno)` injects failures; `log` records every successful mutation as an iproute2-like line.

import { IpAddr, type Family } from "../ip/addr.ts";
import { IfAddr, IpNet } from "../ip/net.ts";
import { applyWrite } from "./batch.ts";
import {
  IFA_F_PERMANENT,
  KernelError,
  NUD_PERMANENT,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  nexthopIdFor,
  type Addr,
  type Addrs,
  type Fdb,
  type FdbEntry,
  type Kernel,
  type KernelEvent,
  type KernelEvents,
  type KernelWrite,
  type Link,
  type Links,
  type Neighbour,
  type Neighbours,
  type Route,
  type RouteType,
  type Routes,
  type Sysctl,
  type IpipSpec,
  type VxlanSpec,
  type Wireguard,
  type WireguardDevice,
  type WireguardDeviceConfig,
  type WireguardPeer,
} from "./ports.ts";
import { wireguardPublicKey } from "./wireguard-key.ts";

/** Operations that `fail()` can target: `<port>.<method>`. */
export type FakeOp =
  | "links.addVxlan"
  | "links.addBridge"
  | "links.addIpip"
  | "links.addWireguard"
  | "wireguard.configure"
  | "wireguard.get"
  | "links.delete"
  | "links.setUp"
  | "links.setMtu"
  | "links.setMac"
  | "addrs.add"
  | "addrs.delete"
  | "routes.replace"
  | "routes.delete"
  | "routes.get"
  | "neighbours.replace"
  | "neighbours.delete"
  | "fdb.replace"
  | "fdb.delete"
  | "sysctl.set";

const RTPROT_KERNEL = 2;
const RTPROT_BOOT = 3;
const RT_TABLE_LOCAL = 255;

interface StoredRoute {
  family: Family;
  dst: IpNet; // never null here: the default route is 0.0.0.0/0
  gw: IpAddr | undefined;
  linkIndex: number; // 0 for blackhole & co.
  onlink: boolean;
  table: number;
  type: RouteType;
  scope: number;
  protocol: number;
  src: IpAddr | undefined;
  metric: number;
  /** The nexthop object the route goes through (Route.nexthop; the fake keeps no nexthop table). */
  nhId?: number | undefined;
}

/** A wireguard device's configuration, by link index. */
interface WgState {
  privateKey: string;
  listenPort: number;
  /** By public key, in insertion order (the kernel lists peers in the order they were added). */
  peers: Map<string, WireguardPeer>;
}

interface Subscriber {
  onEvent: (ev: KernelEvent) => void;
  signal: AbortSignal;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function normMac(mac: string, op: string): string {
  const m = mac.toLowerCase();
  if (!MAC_RE.test(m)) throw new KernelError("EINVAL", op);
  return m;
}

function defaultMetric(family: Family): number {
  return family === 6 ? 1024 : 0;
}

function hostNet(ip: IpAddr): IpNet {
  return IpNet.of(ip, ip.bits);
}

export class FakeKernel implements Kernel {
  readonly links: Links;
  readonly addrs: Addrs;
  readonly routes: Routes;
  readonly neighbours: Neighbours;
  readonly fdb: Fdb;
  readonly sysctl: Sysctl;
  readonly events: KernelEvents;
  readonly wireguard: Wireguard;
  /** Every successful mutation, as an iproute2-like line, in order. */
  readonly log: string[] = [];
  /** The size of each `batch()` call, in order (tests check that writes were batched). */
  readonly batches: number[] = [];

  private nextIndex = 1;
  private readonly linkTable = new Map<number, Link>();
  private readonly addrTable: Addr[] = [];
  private readonly routeTable: StoredRoute[] = [];
  private readonly neighTable: Neighbour[] = [];
  private readonly fdbTable: FdbEntry[] = [];
  private readonly sysctls = new Map<string, string>();
  private readonly failures: { op: FakeOp; errno: string; times: number }[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private readonly wgTable = new Map<number, WgState>();

  constructor() {
    // Every namespace has lo (index 1), up, with its loopback addresses.
    const lo = this.createLink({ name: "lo", kind: "", mtu: 65536, mac: "00:00:00:00:00:00" });
    lo.up = true;
    lo.operState = "unknown";
    this.addrTable.push({
      linkIndex: lo.index,
      addr: IfAddr.parse("127.0.0.1/8"),
      scope: RT_SCOPE_HOST,
      flags: IFA_F_PERMANENT,
    });
    this.sysctls.set("net/ipv4/ip_forward", "0");
    this.sysctls.set("net/ipv6/conf/all/forwarding", "0");
    this.links = this.makeLinks();
    this.addrs = this.makeAddrs();
    this.routes = this.makeRoutes();
    this.neighbours = this.makeNeighbours();
    this.fdb = this.makeFdb();
    this.sysctl = this.makeSysctl();
    this.wireguard = this.makeWireguard();
    this.events = {
      // Tests delete "by hand" through this same fake: it cannot tell whose a deletion is.
      ownDeletesReported: true,
      subscribe: (onEvent, signal) => {
        if (signal.aborted) return;
        const sub = { onEvent, signal };
        this.subscribers.add(sub);
        signal.addEventListener("abort", () => this.subscribers.delete(sub), { once: true });
      },
    };
  }

  /** One write after another through the port methods (what the netlink batch must be equivalent to). */
  batch(writes: readonly KernelWrite[]): (KernelError | undefined)[] {
    this.batches.push(writes.length);
    return writes.map((w) => {
      try {
        applyWrite(this, w);
        return undefined;
      } catch (err) {
        if (err instanceof KernelError) return err;
        throw err;
      }
    });
  }

  // ---------------------------------------------------------------- test helpers

  /**
   * Adds a veth-like device (an ordinary Ethernet link, up by default) with optional addresses,
   * as a test's starting host. Returns the link.
   */
  addVeth(name: string, opts: { mtu?: number; mac?: string; up?: boolean; addrs?: string[] } = {}): Link {
    if (this.findByName(name)) throw new KernelError("EEXIST", `add link ${name}`);
    const link = this.createLink({ name, kind: "veth", mtu: opts.mtu ?? 1500, mac: opts.mac });
    if (opts.up ?? true) this.bringUp(link);
    for (const a of opts.addrs ?? []) this.addrs.add(link.index, IfAddr.parse(a));
    return link;
  }

  /** Adds an address to a link by name (test setup). */
  addAddr(linkName: string, addr: string): void {
    const link = this.findByName(linkName);
    if (!link) throw new KernelError("ENODEV", `add address ${addr} dev ${linkName}`);
    this.addrs.add(link.index, IfAddr.parse(addr));
  }

  /**
   * The usual starting host: `eth0` (up, MTU 1500) with `addr` (e.g. "10.0.0.1/24") and a default route
   * via `gateway` (e.g. "10.0.0.254"). Returns eth0.
   */
  addHost(opts: { iface?: string; addr: string; gateway?: string; mtu?: number; mac?: string }): Link {
    const eth = this.addVeth(opts.iface ?? "eth0", {
      ...(opts.mtu === undefined ? {} : { mtu: opts.mtu }),
      ...(opts.mac === undefined ? {} : { mac: opts.mac }),
      addrs: [opts.addr],
    });
    if (opts.gateway !== undefined) {
      const gw = IpAddr.parse(opts.gateway);
      this.routes.replace({ family: gw.family, dst: null, gw, linkIndex: eth.index });
    }
    return eth;
  }

  /** Makes the next `times` calls of `op` throw KernelError(errno) without changing anything. */
  fail(op: FakeOp, errno: string, times = 1): void {
    this.failures.push({ op, errno, times });
  }

  /** Sets a sysctl that the fake does not create by itself (sysctl.set refuses unknown paths, as /proc does). */
  seedSysctl(path: string, value: string): void {
    this.sysctls.set(path, value);
  }

  /**
   * The whole state as sorted iproute2 commands, one per line: links, addresses, routes (all tables but
   * local), neighbours, FDB entries. `lo` and its loopback address are left out (every namespace has them).
   */
  dump(): string {
    const name = (i: number): string => this.linkTable.get(i)?.name ?? `if${i}`;
    const links: string[] = [];
    for (const l of this.linkTable.values()) {
      if (l.name === "lo") continue;
      let s = `ip link add ${l.name}`;
      if (l.kind !== "") s += ` type ${l.kind}`;
      if (l.vxlan) {
        const v = l.vxlan;
        s += ` id ${v.vni}`;
        if (v.local) s += ` local ${v.local.toString()}`;
        if (v.vtepIndex) s += ` dev ${name(v.vtepIndex)}`;
        s += ` dstport ${v.port || 8472}`;
        s += v.learning ? " learning" : " nolearning";
        if (v.gbp) s += " gbp";
      }
      if (l.ipip) {
        s += ` local ${l.ipip.local?.toString() ?? "any"} remote ${l.ipip.remote?.toString() ?? "any"}`;
      }
      if (l.masterIndex) s += ` master ${name(l.masterIndex)}`;
      s += ` mtu ${l.mtu}`;
      if (l.mac) s += ` address ${l.mac}`;
      s += l.up ? " up" : " down";
      links.push(s);
    }
    const addrs = this.addrTable
      .filter((a) => !(this.linkTable.get(a.linkIndex)?.name === "lo" && a.addr.ip.isLoopback))
      .map((a) => `ip addr add ${a.addr.toString()} dev ${name(a.linkIndex)}${scopeText(a.scope)}`);
    const routes = this.routeTable
      .filter((r) => r.table !== RT_TABLE_LOCAL)
      .map((r) => `ip${r.family === 6 ? " -6" : ""} route add ${routeText(r, name)}`);
    const neighs = this.neighTable.map(
      (n) =>
        `ip neigh add ${n.ip.toString()} lladdr ${n.mac} dev ${name(n.linkIndex)} nud ${nudText(n.state)}`,
    );
    const fdb = this.fdbTable.map(
      (e) =>
        `bridge fdb add ${e.mac} dev ${name(e.linkIndex)}${e.dst ? ` dst ${e.dst.toString()}` : ""} self permanent`,
    );
    const wg: string[] = [];
    for (const [index, st] of this.wgTable) {
      const dev = name(index);
      const pub = st.privateKey === "" ? "(none)" : wireguardPublicKey(st.privateKey);
      wg.push(`wg set ${dev} listen-port ${st.listenPort} public-key ${pub}`);
      for (const p of st.peers.values()) {
        let line = `wg set ${dev} peer ${p.publicKey}`;
        if (p.presharedKey !== undefined) line += " preshared-key (set)";
        if (p.endpoint !== undefined) {
          const ip = p.endpoint.ip.family === 6 ? `[${p.endpoint.ip.toString()}]` : p.endpoint.ip.toString();
          line += ` endpoint ${ip}:${p.endpoint.port}`;
        }
        if (p.persistentKeepaliveSec !== undefined)
          line += ` persistent-keepalive ${p.persistentKeepaliveSec}`;
        line += ` allowed-ips ${p.allowedIps.map((n) => n.toString()).join(",") || "(none)"}`;
        wg.push(line);
      }
    }
    return [links, addrs, routes, neighs, fdb, wg]
      .flatMap((section) => section.sort())
      .map((l) => l + "\n")
      .join("");
  }

  // ---------------------------------------------------------------- internals

  private check(op: FakeOp, what: string): void {
    const f = this.failures.find((x) => x.op === op && x.times > 0);
    if (!f) return;
    f.times -= 1;
    if (f.times === 0) this.failures.splice(this.failures.indexOf(f), 1);
    throw new KernelError(f.errno, what);
  }

  private emit(ev: KernelEvent): void {
    for (const sub of [...this.subscribers]) {
      setImmediate(() => {
        if (!sub.signal.aborted) sub.onEvent(ev);
      });
    }
  }

  private findByName(name: string): Link | undefined {
    for (const l of this.linkTable.values()) if (l.name === name) return l;
    return undefined;
  }

  private mustByName(name: string, op: string): Link {
    const l = this.findByName(name);
    if (!l) throw new KernelError("ENODEV", op);
    return l;
  }

  private mustByIndex(index: number, op: string): Link {
    const l = this.linkTable.get(index);
    if (!l) throw new KernelError("ENODEV", op);
    return l;
  }

  private createLink(p: { name: string; kind: string; mtu: number; mac?: string | undefined }): Link {
    if (p.name.length === 0 || p.name.length > 15 || /[\s/:]/.test(p.name)) {
      throw new KernelError("EINVAL", `add link ${p.name}`);
    }
    const index = this.nextIndex++;
    const mac =
      p.mac ??
      `02:fa:00:00:${((index >> 8) & 0xff).toString(16).padStart(2, "0")}:${(index & 0xff).toString(16).padStart(2, "0")}`;
    const link: Link = {
      index,
      name: p.name,
      kind: p.kind,
      mtu: p.mtu,
      mac: normMac(mac, `add link ${p.name}`),
      up: false,
      operState: "down",
      masterIndex: 0,
    };
    this.linkTable.set(index, link);
    for (const key of ["accept_ra", "forwarding"]) {
      this.sysctls.set(`net/ipv6/conf/${p.name}/${key}`, key === "accept_ra" ? "1" : "0");
    }
    this.sysctls.set(`net/ipv4/conf/${p.name}/forwarding`, "0");
    this.sysctls.set(`net/ipv4/conf/${p.name}/rp_filter`, "0");
    return link;
  }

  private bringUp(link: Link): void {
    if (link.up) return;
    link.up = true;
    // vxlan, ipip and wireguard have no carrier detection and report "unknown", like lo; veth here has a
    // peer and is "up".
    link.operState = ["vxlan", "ipip", "wireguard", ""].includes(link.kind) ? "unknown" : "up";
    for (const a of this.addrTable) if (a.linkIndex === link.index) this.addPrefixRoute(a);
  }

  /** The connected route an IPv4 address adds on an up link (fib_add_ifaddr); IPv6 likewise for non-/128. */
  private addPrefixRoute(a: Addr): void {
    const link = this.linkTable.get(a.linkIndex);
    if (!link?.up || a.addr.prefixLen === a.addr.ip.bits) return;
    const dst = a.addr.network;
    if (
      this.routeTable.some(
        (r) => r.table === RT_TABLE_MAIN && r.dst.equals(dst) && r.linkIndex === a.linkIndex,
      )
    )
      return;
    this.routeTable.push({
      family: a.addr.family,
      dst,
      gw: undefined,
      linkIndex: a.linkIndex,
      onlink: false,
      table: RT_TABLE_MAIN,
      type: "unicast",
      scope: RT_SCOPE_LINK,
      protocol: RTPROT_KERNEL,
      src: a.addr.family === 4 ? a.addr.ip : undefined,
      metric: defaultMetric(a.addr.family) === 1024 ? 256 : 0,
    });
  }

  private removeLinkState(index: number): void {
    const keep = <T extends { linkIndex: number }>(arr: T[]): void => {
      for (let i = arr.length - 1; i >= 0; i--) if (arr[i]!.linkIndex === index) arr.splice(i, 1);
    };
    keep(this.addrTable);
    keep(this.routeTable);
    keep(this.neighTable);
    keep(this.fdbTable);
    this.wgTable.delete(index);
  }

  private makeLinks(): Links {
    return {
      list: () => [...this.linkTable.values()].map(cloneLink),
      get: (name) => {
        const l = this.findByName(name);
        return l && cloneLink(l);
      },
      getByIndex: (index) => {
        const l = this.linkTable.get(index);
        return l && cloneLink(l);
      },
      addVxlan: (spec: VxlanSpec): Link => {
        const op = `add link ${spec.name} type vxlan id ${spec.vni}`;
        this.check("links.addVxlan", op);
        if (this.findByName(spec.name)) throw new KernelError("EEXIST", op);
        if (spec.vtepIndex) this.mustByIndex(spec.vtepIndex, op);
        if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni >= 1 << 24)
          throw new KernelError("ERANGE", op);
        if (spec.mac !== undefined) normMac(spec.mac, op);
        // A vxlan device with the same VNI and port already exists in the same address family (the kernel keeps
        // one UDP socket per family and port; a device without a local address is IPv4): the kernel refuses it.
        const family = spec.local?.family ?? 4;
        for (const l of this.linkTable.values()) {
          if (
            l.vxlan &&
            l.vxlan.vni === spec.vni &&
            (l.vxlan.port || 8472) === (spec.port || 8472) &&
            (l.vxlan.local?.family ?? 4) === family
          ) {
            throw new KernelError("EEXIST", op);
          }
        }
        const link = this.createLink({
          name: spec.name,
          kind: "vxlan",
          mtu: spec.mtu ?? 1450,
          mac: spec.mac,
        });
        link.vxlan = {
          vni: spec.vni,
          local: spec.local,
          vtepIndex: spec.vtepIndex,
          port: spec.port || 8472,
          learning: spec.learning,
          gbp: spec.gbp,
          group: null,
          l2miss: false,
          l3miss: false,
        };
        this.log.push(`ip link add ${op.slice("add link ".length)}`);
        this.emit({ type: "link-added", link: cloneLink(link) });
        return cloneLink(link);
      },
      addIpip: (spec: IpipSpec): Link => {
        const op = `add link ${spec.name} type ipip local ${spec.local?.toString() ?? "any"}`;
        this.check("links.addIpip", op);
        if (this.findByName(spec.name)) throw new KernelError("EEXIST", op);
        if (spec.local !== null && spec.local.family !== 4) throw new KernelError("EINVAL", op);
        // ip_tunnel refuses a second tunnel with the same endpoints (tunl0 is local any, remote any).
        for (const l of this.linkTable.values()) {
          if (l.ipip && l.ipip.remote === null && sameIp(l.ipip.local, spec.local))
            throw new KernelError("EEXIST", op);
        }
        const link = this.createLink({ name: spec.name, kind: "ipip", mtu: spec.mtu ?? 1480 });
        link.mac = ""; // a layer-3 device: no hardware address
        link.ipip = { local: spec.local, remote: null };
        this.log.push(`ip link add ${op.slice("add link ".length)}`);
        this.emit({ type: "link-added", link: cloneLink(link) });
        return cloneLink(link);
      },
      addWireguard: (name: string, mtu?: number): Link => {
        const op = `add link ${name} type wireguard`;
        this.check("links.addWireguard", op);
        if (this.findByName(name)) throw new KernelError("EEXIST", op);
        const link = this.createLink({ name, kind: "wireguard", mtu: mtu ?? 1420 });
        link.mac = "";
        this.wgTable.set(link.index, { privateKey: "", listenPort: 0, peers: new Map() });
        this.log.push(`ip link add ${name} type wireguard`);
        this.emit({ type: "link-added", link: cloneLink(link) });
        return cloneLink(link);
      },
      addBridge: (name: string, mtu?: number): Link => {
        const op = `add link ${name} type bridge`;
        this.check("links.addBridge", op);
        if (this.findByName(name)) throw new KernelError("EEXIST", op);
        const link = this.createLink({ name, kind: "bridge", mtu: mtu ?? 1500 });
        this.log.push(`ip link add ${name} type bridge`);
        this.emit({ type: "link-added", link: cloneLink(link) });
        return cloneLink(link);
      },
      delete: (name: string): void => {
        this.check("links.delete", `delete link ${name}`);
        const l = this.findByName(name);
        if (!l || l.name === "lo") return; // lo cannot be deleted; the kernel answers EOPNOTSUPP, we ignore it
        this.linkTable.delete(l.index);
        this.removeLinkState(l.index);
        for (const other of this.linkTable.values()) if (other.masterIndex === l.index) other.masterIndex = 0;
        for (const key of [...this.sysctls.keys()])
          if (key.includes(`/conf/${name}/`)) this.sysctls.delete(key);
        this.log.push(`ip link del ${name}`);
        this.emit({ type: "link-deleted", index: l.index, name: l.name });
      },
      setUp: (name: string): void => {
        const op = `set link ${name} up`;
        this.check("links.setUp", op);
        this.bringUp(this.mustByName(name, op));
        this.log.push(`ip link set ${name} up`);
      },
      setMtu: (name: string, mtu: number): void => {
        const op = `set link ${name} mtu ${mtu}`;
        this.check("links.setMtu", op);
        const l = this.mustByName(name, op);
        if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new KernelError("EINVAL", op);
        l.mtu = mtu;
        this.log.push(`ip link set ${name} mtu ${mtu}`);
      },
      setMac: (name: string, mac: string): void => {
        const op = `set link ${name} address ${mac}`;
        this.check("links.setMac", op);
        const l = this.mustByName(name, op);
        const m = normMac(mac, op);
        // The kernel refuses multicast addresses (low bit of the first octet) with EADDRNOTAVAIL.
        if (parseInt(m.slice(0, 2), 16) & 1) throw new KernelError("EADDRNOTAVAIL", op);
        l.mac = m;
        this.log.push(`ip link set ${name} address ${m}`);
      },
    };
  }

  private makeAddrs(): Addrs {
    return {
      list: (opts = {}) =>
        this.addrTable
          .filter(
            (a) =>
              (opts.linkIndex === undefined || a.linkIndex === opts.linkIndex) &&
              (opts.family === undefined || a.addr.family === opts.family),
          )
          .map((a) => ({ ...a })),
      add: (linkIndex: number, addr: IfAddr): void => {
        const link = this.linkTable.get(linkIndex);
        const op = `add address ${addr.toString()} dev ${link?.name ?? `if${linkIndex}`}`;
        this.check("addrs.add", op);
        if (!link) throw new KernelError("ENODEV", op);
        if (this.addrTable.some((a) => a.linkIndex === linkIndex && a.addr.ip.equals(addr.ip))) return;
        const scope = addr.ip.isLoopback
          ? RT_SCOPE_HOST
          : addr.ip.isLinkLocalUnicast
            ? RT_SCOPE_LINK
            : RT_SCOPE_UNIVERSE;
        // A second address inside an existing IPv4 prefix on the same link becomes secondary.
        const secondary =
          addr.family === 4 &&
          this.addrTable.some(
            (a) =>
              a.linkIndex === linkIndex &&
              a.addr.family === 4 &&
              a.addr.prefixLen === addr.prefixLen &&
              a.addr.network.contains(addr.ip),
          );
        const entry: Addr = { linkIndex, addr, scope, flags: IFA_F_PERMANENT | (secondary ? 0x01 : 0) };
        this.addrTable.push(entry);
        if (!secondary) this.addPrefixRoute(entry);
        this.log.push(`ip addr add ${addr.toString()} dev ${link.name}`);
      },
      delete: (linkIndex: number, addr: IfAddr): void => {
        const link = this.linkTable.get(linkIndex);
        const op = `delete address ${addr.toString()} dev ${link?.name ?? `if${linkIndex}`}`;
        this.check("addrs.delete", op);
        if (!link) throw new KernelError("ENODEV", op);
        const i = this.addrTable.findIndex(
          (a) =>
            a.linkIndex === linkIndex && a.addr.ip.equals(addr.ip) && a.addr.prefixLen === addr.prefixLen,
        );
        if (i === -1) return;
        const [gone] = this.addrTable.splice(i, 1);
        // promote_secondaries is 0 by default: deleting a primary IPv4 address deletes its secondaries.
        if (addr.family === 4 && (gone!.flags & 0x01) === 0) {
          for (let j = this.addrTable.length - 1; j >= 0; j--) {
            const a = this.addrTable[j]!;
            if (
              a.linkIndex === linkIndex &&
              a.flags & 0x01 &&
              a.addr.prefixLen === addr.prefixLen &&
              addr.network.contains(a.addr.ip)
            ) {
              this.addrTable.splice(j, 1);
            }
          }
        }
        // The prefix route goes with the address (unless another address on the link still covers it).
        const net = addr.network;
        if (!this.addrTable.some((a) => a.linkIndex === linkIndex && a.addr.network.equals(net))) {
          for (let j = this.routeTable.length - 1; j >= 0; j--) {
            const r = this.routeTable[j]!;
            if (r.linkIndex === linkIndex && r.protocol === RTPROT_KERNEL && r.dst.equals(net))
              this.routeTable.splice(j, 1);
          }
        }
        // Routes whose preferred source was this address become invalid; the kernel flushes them (IPv4).
        for (let j = this.routeTable.length - 1; j >= 0; j--) {
          const r = this.routeTable[j]!;
          if (r.src?.equals(addr.ip) && r.protocol !== RTPROT_KERNEL) this.routeTable.splice(j, 1);
        }
        // The last IPv4 address gone disables IPv4 on the link (fib_disable_ip): its IPv4 routes and ARP
        // entries are flushed, FDB entries stay. Seen in the contract test, not just read in the source.
        if (
          addr.family === 4 &&
          !this.addrTable.some((a) => a.linkIndex === linkIndex && a.addr.family === 4)
        ) {
          const v4OnLink = (x: { linkIndex: number; family: Family }): boolean =>
            x.linkIndex === linkIndex && x.family === 4;
          for (let j = this.routeTable.length - 1; j >= 0; j--)
            if (v4OnLink(this.routeTable[j]!)) this.routeTable.splice(j, 1);
          for (let j = this.neighTable.length - 1; j >= 0; j--) {
            const n = this.neighTable[j]!;
            if (v4OnLink({ linkIndex: n.linkIndex, family: n.ip.family })) this.neighTable.splice(j, 1);
          }
        }
        this.log.push(`ip addr del ${addr.toString()} dev ${link.name}`);
      },
    };
  }

  /** Longest-prefix match in the main table (lowest metric on a tie), as `ip route get` would pick. */
  private lookup(dst: IpAddr, pred: (r: StoredRoute) => boolean = () => true): StoredRoute | undefined {
    let best: StoredRoute | undefined;
    for (const r of this.routeTable) {
      if (r.table !== RT_TABLE_MAIN || r.family !== dst.family || !r.dst.contains(dst) || !pred(r)) continue;
      if (
        !best ||
        r.dst.prefixLen > best.dst.prefixLen ||
        (r.dst.prefixLen === best.dst.prefixLen && r.metric < best.metric)
      ) {
        best = r;
      }
    }
    return best;
  }

  private normalizeRoute(route: Route, op: string, forDelete: boolean): StoredRoute {
    const family = route.family;
    const dst = route.dst ?? IpNet.of(IpAddr.zero(family), 0);
    if (dst.family !== family || (route.gw && route.gw.family !== family))
      throw new KernelError("EINVAL", op);
    const type = route.type ?? "unicast";
    let linkIndex = route.linkIndex ?? 0;
    if (linkIndex !== 0) {
      const link = this.mustByIndex(linkIndex, op);
      if (!forDelete && type === "unicast" && !link.up) throw new KernelError("ENETDOWN", op);
    }
    if (!forDelete && type === "unicast") {
      if (route.gw) {
        if (route.onlink) {
          if (linkIndex === 0) throw new KernelError("EINVAL", op);
        } else {
          // The gateway must be reachable through a connected route (no gateway of its own).
          const via = this.lookup(
            route.gw,
            (r) =>
              r.gw === undefined && r.type === "unicast" && (linkIndex === 0 || r.linkIndex === linkIndex),
          );
          if (!via) throw new KernelError("ENETUNREACH", op);
          linkIndex = via.linkIndex;
        }
      } else if (linkIndex === 0) {
        throw new KernelError("ENODEV", op);
      }
    }
    return {
      family,
      dst,
      gw: route.gw,
      linkIndex: type === "unicast" ? linkIndex : 0,
      onlink: route.onlink ?? false,
      table: route.table ?? RT_TABLE_MAIN,
      type,
      scope: route.scope ?? (type === "unicast" && !route.gw ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE),
      protocol: route.protocol ?? RTPROT_BOOT,
      src: route.src,
      metric: route.metric ?? defaultMetric(family),
      ...(!forDelete && route.nexthop === true && { nhId: nexthopIdFor(route) }),
    };
  }

  private makeRoutes(): Routes {
    const name = (i: number): string => this.linkTable.get(i)?.name ?? `if${i}`;
    return {
      // The fake lists into a new array anyway: nothing is saved by iterating it lazily.
      each: (opts) => this.routes.list(opts),
      list: (opts) =>
        this.routeTable
          .filter((r) => r.family === opts.family && r.table === (opts.table ?? RT_TABLE_MAIN))
          .map(toRoute),
      replace: (route: Route): void => {
        const op = `replace route ${routeText(routeFromPort(route), name)}`;
        this.check("routes.replace", op);
        const r = this.normalizeRoute(route, op, false);
        if (r.src && !this.addrTable.some((a) => a.addr.ip.equals(r.src)))
          throw new KernelError("EINVAL", op);
        // IPv4 replace matches on table, destination, TOS and priority (metric), not on type or gateway.
        const i = this.routeTable.findIndex(
          (x) => x.family === r.family && x.table === r.table && x.dst.equals(r.dst) && x.metric === r.metric,
        );
        if (i === -1) this.routeTable.push(r);
        else this.routeTable[i] = r;
        this.log.push(`ip${r.family === 6 ? " -6" : ""} route replace ${routeText(r, name)}`);
      },
      delete: (route: Route): void => {
        const op = `delete route ${routeText(routeFromPort(route), name)}`;
        this.check("routes.delete", op);
        const r = this.normalizeRoute(route, op, true);
        // Like the kernel: the destination must match; gateway, device, type, metric only when given.
        const i = this.routeTable.findIndex(
          (x) =>
            x.family === r.family &&
            x.table === r.table &&
            x.dst.equals(r.dst) &&
            // A listed route through a nexthop is deleted by its id (as the adapter does).
            (route.nhId === undefined || x.nhId === route.nhId) &&
            (route.gw === undefined || x.gw?.equals(route.gw) === true) &&
            (route.linkIndex === undefined || route.linkIndex === 0 || x.linkIndex === route.linkIndex) &&
            (route.type === undefined || x.type === route.type) &&
            (route.metric === undefined || x.metric === route.metric),
        );
        if (i === -1) return;
        const [gone] = this.routeTable.splice(i, 1);
        this.log.push(`ip${r.family === 6 ? " -6" : ""} route del ${routeText(gone!, name)}`);
        this.emit({ type: "route-deleted", route: toRoute(gone!) });
      },
      get: (dst: IpAddr): Route => {
        const op = `get route ${dst.toString()}`;
        this.check("routes.get", op);
        // Own addresses are answered by the local table, through lo.
        const own = this.addrTable.find((a) => a.addr.ip.equals(dst));
        if (own) {
          return {
            family: dst.family,
            dst: hostNet(dst),
            linkIndex: 1,
            table: RT_TABLE_LOCAL,
            type: "local",
            scope: RT_SCOPE_HOST,
            src: dst,
          };
        }
        const r = this.lookup(dst);
        if (!r) throw new KernelError("ENETUNREACH", op);
        switch (r.type) {
          case "blackhole":
            throw new KernelError("EINVAL", op);
          case "unreachable":
            throw new KernelError("EHOSTUNREACH", op);
          case "prohibit":
            throw new KernelError("EACCES", op);
          default:
            break;
        }
        const out: Route = {
          family: dst.family,
          dst: hostNet(dst),
          linkIndex: r.linkIndex,
          table: RT_TABLE_MAIN,
          type: "unicast",
        };
        if (r.gw) out.gw = r.gw;
        const src = r.src ?? this.selectSource(r.linkIndex, r.gw ?? dst);
        if (src) out.src = src;
        return out;
      },
    };
  }

  /** inet_select_addr: an address on the link in the same subnet as `near`, else the link's first, else any. */
  private selectSource(linkIndex: number, near: IpAddr): IpAddr | undefined {
    const fam = this.addrTable.filter((a) => a.addr.family === near.family && a.scope !== RT_SCOPE_HOST);
    const onLink = fam.filter((a) => a.linkIndex === linkIndex && (a.flags & 0x01) === 0);
    return (onLink.find((a) => a.addr.network.contains(near)) ?? onLink[0] ?? fam[0])?.addr.ip;
  }

  private makeNeighbours(): Neighbours {
    return {
      // The fake lists into a new array anyway: nothing is saved by iterating it lazily.
      each: (opts) => this.neighbours.list(opts),
      list: (opts) =>
        this.neighTable
          .filter(
            (n) =>
              n.ip.family === opts.family && (opts.linkIndex === undefined || n.linkIndex === opts.linkIndex),
          )
          .map((n) => ({ ...n })),
      replace: (n): void => {
        const op = `replace neighbour ${n.ip.toString()} lladdr ${n.mac} dev ${this.linkTable.get(n.linkIndex)?.name ?? `if${n.linkIndex}`}`;
        this.check("neighbours.replace", op);
        const link = this.mustByIndex(n.linkIndex, op);
        const mac = normMac(n.mac, op);
        const entry: Neighbour = { linkIndex: n.linkIndex, ip: n.ip, mac, state: NUD_PERMANENT };
        const i = this.neighTable.findIndex((x) => x.linkIndex === n.linkIndex && x.ip.equals(n.ip));
        if (i === -1) this.neighTable.push(entry);
        else this.neighTable[i] = entry;
        this.log.push(`ip neigh replace ${n.ip.toString()} lladdr ${mac} dev ${link.name} nud permanent`);
      },
      delete: (n): void => {
        const op = `delete neighbour ${n.ip.toString()} dev ${this.linkTable.get(n.linkIndex)?.name ?? `if${n.linkIndex}`}`;
        this.check("neighbours.delete", op);
        const link = this.mustByIndex(n.linkIndex, op);
        const i = this.neighTable.findIndex((x) => x.linkIndex === n.linkIndex && x.ip.equals(n.ip));
        if (i === -1) return;
        const gone = this.neighTable.splice(i, 1)[0]!;
        this.log.push(`ip neigh del ${n.ip.toString()} dev ${link.name}`);
        this.emit({
          type: "neigh-deleted",
          family: n.ip.family,
          linkIndex: n.linkIndex,
          ip: gone.ip,
          mac: gone.mac,
        });
      },
    };
  }

  private makeFdb(): Fdb {
    return {
      // The fake lists into a new array anyway: nothing is saved by iterating it lazily.
      each: (opts) => this.fdb.list(opts),
      list: (opts) =>
        this.fdbTable
          .filter((e) => opts.linkIndex === undefined || e.linkIndex === opts.linkIndex)
          .map((e) => ({ ...e })),
      replace: (e): void => {
        const op = `replace fdb ${e.mac} dev ${this.linkTable.get(e.linkIndex)?.name ?? `if${e.linkIndex}`} dst ${e.dst.toString()}`;
        this.check("fdb.replace", op);
        const link = this.mustByIndex(e.linkIndex, op);
        // Only vxlan devices keep remote destinations (NTF_SELF with NDA_DST); elsewhere the kernel refuses.
        if (link.kind !== "vxlan") throw new KernelError("EINVAL", op);
        const mac = normMac(e.mac, op);
        // For vxlan, NLM_F_REPLACE overwrites the (first) remote of that MAC.
        const entry: FdbEntry = { linkIndex: e.linkIndex, mac, dst: e.dst };
        const i = this.fdbTable.findIndex((x) => x.linkIndex === e.linkIndex && x.mac === mac);
        if (i === -1) this.fdbTable.push(entry);
        else this.fdbTable[i] = entry;
        this.log.push(`bridge fdb replace ${mac} dev ${link.name} dst ${e.dst.toString()} self permanent`);
      },
      delete: (e): void => {
        const op = `delete fdb ${e.mac} dev ${this.linkTable.get(e.linkIndex)?.name ?? `if${e.linkIndex}`} dst ${e.dst.toString()}`;
        this.check("fdb.delete", op);
        const link = this.mustByIndex(e.linkIndex, op);
        const mac = e.mac.toLowerCase();
        const i = this.fdbTable.findIndex(
          (x) => x.linkIndex === e.linkIndex && x.mac === mac && x.dst?.equals(e.dst) === true,
        );
        if (i === -1) return;
        this.fdbTable.splice(i, 1);
        this.log.push(`bridge fdb del ${mac} dev ${link.name} dst ${e.dst.toString()} self`);
        this.emit({ type: "neigh-deleted", family: "bridge", linkIndex: e.linkIndex, ip: e.dst, mac });
      },
    };
  }

  private wgDevice(device: string, op: string): WgState {
    const link = this.mustByName(device, op);
    const st = this.wgTable.get(link.index);
    if (st === undefined) throw new KernelError("EOPNOTSUPP", op); // not a wireguard device
    return st;
  }

  /** Like the kernel module: keys validated, one UDP port per device, an allowed IP owned by one peer. */
  private makeWireguard(): Wireguard {
    return {
      configure: (device: string, cfg: WireguardDeviceConfig): void => {
        const op = `configure wireguard ${device}`;
        this.check("wireguard.configure", op);
        const st = this.wgDevice(device, op);
        const key = (b64: string): string => {
          if (Buffer.from(b64, "base64").length !== 32) throw new KernelError("EINVAL", op);
          return b64;
        };
        if (cfg.privateKey !== undefined) key(cfg.privateKey);
        for (const p of cfg.peers ?? []) {
          key(p.publicKey);
          if (p.presharedKey !== undefined) key(p.presharedKey);
        }
        if (cfg.listenPort !== undefined && cfg.listenPort !== 0) {
          for (const [i, other] of this.wgTable) {
            if (other !== st && other.listenPort === cfg.listenPort && this.linkTable.get(i)?.up === true)
              throw new KernelError("EADDRINUSE", op);
          }
        }
        if (cfg.privateKey !== undefined) st.privateKey = cfg.privateKey;
        if (cfg.listenPort !== undefined) st.listenPort = cfg.listenPort;
        if (cfg.replacePeers === true) st.peers.clear();
        for (const p of cfg.peers ?? []) {
          if (p.remove === true) {
            st.peers.delete(p.publicKey);
            continue;
          }
          const cur: WireguardPeer = st.peers.get(p.publicKey) ?? { publicKey: p.publicKey, allowedIps: [] };
          if (p.presharedKey !== undefined) cur.presharedKey = p.presharedKey;
          if (p.endpoint !== undefined) cur.endpoint = p.endpoint;
          if (p.persistentKeepaliveSec !== undefined) {
            if (p.persistentKeepaliveSec === 0) delete cur.persistentKeepaliveSec;
            else cur.persistentKeepaliveSec = p.persistentKeepaliveSec;
          }
          const nets = p.replaceAllowedIps === true ? [] : cur.allowedIps;
          for (const n of p.allowedIps) if (!nets.some((x) => x.equals(n))) nets.push(n);
          cur.allowedIps = nets;
          // An allowed IP routes to exactly one peer: giving it to this one takes it from any other.
          for (const other of st.peers.values()) {
            if (other.publicKey !== p.publicKey)
              other.allowedIps = other.allowedIps.filter((x) => !nets.some((n) => n.equals(x)));
          }
          st.peers.set(p.publicKey, cur);
        }
        this.log.push(`wg set ${device}${cfg.replacePeers === true ? " (replace peers)" : ""}`);
      },
      get: (device: string): WireguardDevice | undefined => {
        const op = `get wireguard ${device}`;
        this.check("wireguard.get", op);
        if (this.findByName(device) === undefined) return undefined;
        const st = this.wgDevice(device, op);
        return {
          name: device,
          publicKey: st.privateKey === "" ? "" : wireguardPublicKey(st.privateKey),
          listenPort: st.listenPort,
          peers: [...st.peers.values()].map((p) => ({ ...p, allowedIps: [...p.allowedIps] })),
        };
      },
    };
  }

  private makeSysctl(): Sysctl {
    return {
      get: (path) => this.sysctls.get(path),
      set: (path: string, value: string): void => {
        const op = `write /proc/sys/${path}`;
        this.check("sysctl.set", op);
        if (!this.sysctls.has(path)) throw new KernelError("ENOENT", op);
        this.sysctls.set(path, value.trim());
        this.log.push(`sysctl -w ${path.replaceAll("/", ".")}=${value.trim()}`);
      },
    };
  }
}

function cloneLink(l: Link): Link {
  const c: Link = { ...l };
  if (l.vxlan) c.vxlan = { ...l.vxlan };
  if (l.ipip) c.ipip = { ...l.ipip };
  return c;
}

function sameIp(a: IpAddr | null, b: IpAddr | null): boolean {
  return a === null || b === null ? a === b : a.equals(b);
}

function toRoute(r: StoredRoute): Route {
  const out: Route = {
    family: r.family,
    dst: r.dst.prefixLen === 0 ? null : r.dst,
    table: r.table,
    type: r.type,
    scope: r.scope,
    protocol: r.protocol,
    metric: r.metric,
  };
  if (r.gw) out.gw = r.gw;
  if (r.linkIndex) out.linkIndex = r.linkIndex;
  if (r.onlink) out.onlink = true;
  if (r.src) out.src = r.src;
  if (r.nhId !== undefined) out.nhId = r.nhId;
  return out;
}

/** A port Route in the stored shape, without validation (only for messages). */
function routeFromPort(route: Route): StoredRoute {
  return {
    family: route.family,
    dst: route.dst ?? IpNet.of(IpAddr.zero(route.family), 0),
    gw: route.gw,
    linkIndex: route.linkIndex ?? 0,
    onlink: route.onlink ?? false,
    table: route.table ?? RT_TABLE_MAIN,
    type: route.type ?? "unicast",
    scope: route.scope ?? -1,
    protocol: route.protocol ?? -1,
    src: route.src,
    metric: route.metric ?? -1,
  };
}

function routeText(r: StoredRoute, name: (i: number) => string): string {
  let s = r.type === "unicast" ? "" : `${r.type} `;
  s += r.dst.prefixLen === 0 ? "default" : r.dst.toString();
  if (r.gw) s += ` via ${r.gw.toString()}`;
  if (r.linkIndex) s += ` dev ${name(r.linkIndex)}`;
  if (r.table !== RT_TABLE_MAIN) s += ` table ${r.table}`;
  if (r.protocol === RTPROT_KERNEL) s += " proto kernel";
  if (r.scope === RT_SCOPE_LINK && r.gw === undefined && r.type === "unicast") s += " scope link";
  else if (r.scope === RT_SCOPE_HOST) s += " scope host";
  if (r.src) s += ` src ${r.src.toString()}`;
  if (r.metric > 0) s += ` metric ${r.metric}`;
  if (r.onlink) s += " onlink";
  return s;
}

function scopeText(scope: number): string {
  return scope === RT_SCOPE_HOST ? " scope host" : scope === RT_SCOPE_LINK ? " scope link" : "";
}

function nudText(state: number): string {
  return state === NUD_PERMANENT ? "permanent" : `0x${state.toString(16)}`;
}
