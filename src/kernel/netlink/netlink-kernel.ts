// The real kernel behind the ports: rtnetlink requests over one synchronous NETLINK_ROUTE socket, sysctls
// through /proc/sys, notifications over a second socket.
//
// Design notes
// - Each port call is one request (or one dump) and its ACK; nothing is cached, so the answers are always
//   the kernel's current state. Dumps are filtered client-side (the kernel's strict dump filtering is not
//   on every kernel we support).
// - Message shapes follow what iproute2 sends for the equivalent command (named in each method), so the
//   kernel applies the same defaults: e.g. `ip route del` leaves type and protocol unset so that they do
//   not have to match, and sets scope NOWHERE.
// - `delete*` maps the kernel's "not there" errnos (ENODEV for links, EADDRNOTAVAIL for addresses, ESRCH
//   for routes, ENOENT for neighbours/FDB) to success, as the ports promise.

import { IpAddr, type Family } from "../../ip/addr.ts";
import { IfAddr, IpNet } from "../../ip/net.ts";
import {
  KernelError,
  NH_PROTOCOL_FLANNEL,
  NUD_PERMANENT,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
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
  type VxlanAttrs,
  type VxlanSpec,
  type Wireguard,
  type WireguardDevice,
  type WireguardDeviceConfig,
  nexthopIdFor,
} from "../ports.ts";
import { ProcSysctl } from "../proc-sysctl.ts";
import * as nl from "./codec.ts";
import { NetlinkSocket, opText, type DropSpec, type ManyRequest } from "./socket.ts";
import * as wgc from "./wireguard-codec.ts";
import { appendAll } from "../../util/array.ts";

const RTPROT_BOOT = 3;
/** Notifications a subscription never wants: additions (see subscribe). */
const NOTIFY_DROP_TYPES: readonly number[] = [nl.RTM_NEWROUTE, nl.RTM_NEWNEIGH];

/**
 * One rtnetlink write request; `okErrnos` are the errnos that mean "already absent" for a delete. `op` is
 * made only for an error message (formatting addresses costs more than encoding the request).
 */
type WriteReq = ManyRequest;

function afOf(family: Family): number {
  return family === 4 ? nl.AF_INET : nl.AF_INET6;
}

function familyOf(af: number): Family | undefined {
  return af === nl.AF_INET ? 4 : af === nl.AF_INET6 ? 6 : undefined;
}

function ipAttr(type: number, ip: IpAddr): nl.Attr {
  if (ip.family === 4) {
    // The same 4 bytes as ip.toBytes(), without a BigInt step per byte (thousands per batch).
    const v = Number(ip.value);
    const data = Buffer.allocUnsafe(4);
    data[0] = v >>> 24;
    data[1] = (v >>> 16) & 0xff;
    data[2] = (v >>> 8) & 0xff;
    data[3] = v & 0xff;
    return nl.bytes(type, data);
  }
  return nl.bytes(type, ip.toBytes());
}

function readIp(b: Buffer | undefined): IpAddr | undefined {
  return b && (b.length === 4 || b.length === 16) ? IpAddr.fromBytes(b) : undefined;
}

/** Parses an RTM_NEWLINK/RTM_DELLINK body into a Link. */
export function parseLink(body: Buffer): Link {
  const { hdr, attrs } = nl.decodeIfInfo(body);
  const a = nl.attrMap(attrs);
  const link: Link = {
    index: hdr.index,
    name: nl.readStr(a.get(nl.IFLA_IFNAME)),
    kind: "",
    mtu: nl.readU32(a.get(nl.IFLA_MTU)) ?? 0,
    mac: nl.bytesToMac(a.get(nl.IFLA_ADDRESS)),
    up: (hdr.flags & nl.IFF_UP) !== 0,
    operState: nl.OPERSTATES[a.get(nl.IFLA_OPERSTATE)?.[0] ?? 0] ?? "unknown",
    masterIndex: nl.readU32(a.get(nl.IFLA_MASTER)) ?? 0,
  };
  const info = a.get(nl.IFLA_LINKINFO);
  if (info) {
    const ia = nl.attrMap(nl.decodeAttrs(info));
    link.kind = nl.readStr(ia.get(nl.IFLA_INFO_KIND));
    const data = ia.get(nl.IFLA_INFO_DATA);
    if (link.kind === "vxlan" && data) link.vxlan = parseVxlan(nl.attrMap(nl.decodeAttrs(data)));
    if (link.kind === "ipip") {
      const d = nl.attrMap(data ? nl.decodeAttrs(data) : []);
      const any = (ip: IpAddr | undefined): IpAddr | null =>
        ip === undefined || ip.isUnspecified ? null : ip;
      link.ipip = {
        local: any(readIp(d.get(nl.IFLA_IPTUN_LOCAL))),
        remote: any(readIp(d.get(nl.IFLA_IPTUN_REMOTE))),
      };
    }
  }
  return link;
}

function parseVxlan(d: Map<number, Buffer>): VxlanAttrs {
  const port = d.get(nl.IFLA_VXLAN_PORT);
  return {
    vni: nl.readU32(d.get(nl.IFLA_VXLAN_ID)) ?? 0,
    local: readIp(d.get(nl.IFLA_VXLAN_LOCAL) ?? d.get(nl.IFLA_VXLAN_LOCAL6)) ?? null,
    vtepIndex: nl.readU32(d.get(nl.IFLA_VXLAN_LINK)) ?? 0,
    port: port && port.length >= 2 ? port.readUInt16BE(0) : 0,
    learning: (d.get(nl.IFLA_VXLAN_LEARNING)?.[0] ?? 0) !== 0,
    gbp: d.has(nl.IFLA_VXLAN_GBP),
    group: readIp(d.get(nl.IFLA_VXLAN_GROUP) ?? d.get(nl.IFLA_VXLAN_GROUP6)) ?? null,
    l2miss: (d.get(nl.IFLA_VXLAN_L2MISS)?.[0] ?? 0) !== 0,
    l3miss: (d.get(nl.IFLA_VXLAN_L3MISS)?.[0] ?? 0) !== 0,
  };
}

/** The attribute index of the parsers below (they never nest, so one serves them all). */
const attrs = new nl.AttrIndex();

/** The address in attribute `type` of the indexed message; undefined unless it has 4 or 16 bytes. */
function ipAt(a: nl.AttrIndex, type: number): IpAddr | undefined {
  const v4 = a.be32(type);
  if (v4 >= 0) return IpAddr.fromV4(v4);
  return a.length(type) === 16 ? readIp(a.bytes(type)) : undefined;
}

const ROUTE_TYPES: ReadonlySet<string> = new Set([
  "unicast",
  "blackhole",
  "local",
  "broadcast",
  "unreachable",
  "prohibit",
]);

/**
 * Moves `c` to the next RTM_NEWNEIGH message of address family `af` (on link `linkIndex` when given);
 * false at the end of the dump.
 */
function nextNdMsg(c: nl.MsgCursor, af: number, linkIndex: number | undefined): boolean {
  while (c.next()) {
    // struct ndmsg: family (u8), 3 bytes of padding, ifindex (s32), state (u16), flags, type (u8)
    if (c.type !== nl.RTM_NEWNEIGH || c.end - c.body < 12 || c.buf.readUInt8(c.body) !== af) continue;
    if (linkIndex === undefined || c.buf.readInt32LE(c.body + 4) === linkIndex) return true;
  }
  return false;
}

/** Parses an RTM_NEWROUTE/RTM_DELROUTE body; undefined for families other than IPv4/IPv6. */
export function parseRoute(buf: Buffer, at = 0, end = buf.length): Route | undefined {
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags (u32)
  const flags = buf.readUInt32LE(at + 8);
  const family = familyOf(buf.readUInt8(at));
  if (!family) return undefined;
  const dstLen = buf.readUInt8(at + 1);
  const a = attrs.scan(buf, at + 12, end);
  const name = nl.RTN_NAMES[buf.readUInt8(at + 7)] ?? "other";
  const r: Route = {
    family,
    dst: dstLen === 0 ? null : IpNet.of(ipAt(a, nl.RTA_DST) ?? IpAddr.zero(family), dstLen),
    table: a.u32(nl.RTA_TABLE) ?? buf.readUInt8(at + 4),
    type: (ROUTE_TYPES.has(name) ? name : "other") as RouteType,
    scope: buf.readUInt8(at + 6),
    protocol: buf.readUInt8(at + 5),
    metric: a.u32(nl.RTA_PRIORITY) ?? 0,
  };
  const gw = ipAt(a, nl.RTA_GATEWAY);
  if (gw) r.gw = gw;
  const oif = a.u32(nl.RTA_OIF);
  if (oif) r.linkIndex = oif;
  if (flags & nl.RTNH_F_ONLINK) r.onlink = true;
  const src = ipAt(a, nl.RTA_PREFSRC);
  if (src) r.src = src;
  const nhId = a.u32(nl.RTA_NH_ID);
  if (nhId !== undefined) r.nhId = nhId;
  return r;
}

/** A nexthop object as listed: its id, protocol and where it leads. */
interface ListedNexthop {
  id: number;
  protocol: number;
  gw: IpAddr | undefined;
  linkIndex: number;
  onlink: boolean;
}

function parseNexthop(body: Buffer): ListedNexthop | undefined {
  const { hdr, attrs } = nl.decodeNhMsg(body);
  const a = nl.attrMap(attrs);
  const id = nl.readU32(a.get(nl.NHA_ID));
  if (id === undefined) return undefined;
  return {
    id,
    protocol: hdr.protocol,
    gw: readIp(a.get(nl.NHA_GATEWAY)),
    linkIndex: nl.readU32(a.get(nl.NHA_OIF)) ?? 0,
    onlink: (hdr.flags & nl.RTNH_F_ONLINK) !== 0,
  };
}

/** Errnos of a kernel without nexthop objects (before 5.3) answering RTM_GETNEXTHOP. */
const NO_NEXTHOPS = new Set(["EOPNOTSUPP", "EINVAL", "EPROTONOSUPPORT", "EAFNOSUPPORT"]);

/**
 * flannel's nexthop ids, each with whether this process last made its route through it (a delete then
 * needs no plain form), and the ids someone else's nexthops hold. One map, not two sets: 10,000 peers.
 */
interface Nexthops {
  owned: Map<number, boolean>;
  foreign: Set<number>;
}

/** How one KernelWrite maps onto requests (see writeReqs). */
interface WritePlan {
  reqs: WriteReq[];
  /** A route replace through nexthop `id`: reqs are [nexthop, route]. */
  viaNexthop?: { id: number; route: Route };
  /** The last request deletes flannel's nexthop `id`. */
  deletesNexthop?: number;
}

const RTN_NUM: Record<RouteType, number> = {
  unicast: 1,
  local: 2,
  broadcast: 3,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  other: 0,
};

function routeText(r: Route): string {
  let s = r.type && r.type !== "unicast" ? `${r.type} ` : "";
  s += r.dst ? r.dst.toString() : "default";
  if (r.gw) s += ` via ${r.gw.toString()}`;
  if (r.linkIndex) s += ` dev #${r.linkIndex}`;
  if (r.onlink) s += " onlink";
  if (r.table !== undefined && r.table !== RT_TABLE_MAIN) s += ` table ${r.table}`;
  return s;
}

export class NetlinkKernel implements Kernel {
  readonly links: Links;
  readonly addrs: Addrs;
  readonly routes: Routes;
  readonly neighbours: Neighbours;
  readonly fdb: Fdb;
  readonly sysctl: Sysctl;
  readonly events: KernelEvents;
  readonly wireguard: Wireguard;
  private readonly sock: NetlinkSocket;
  /** The generic netlink socket and the "wireguard" family id, opened on first use. */
  private genl: { sock: NetlinkSocket; wgFamily: number } | undefined;
  /**
   * Open notification sockets and what their filters drop: the echoes of `sock`'s route deletions, and (see
   * `quietly`) neighbour and FDB deletions while this kernel makes its own.
   */
  private readonly subscriptions = new Map<NetlinkSocket, DropSpec>();
  /**
   * Nexthop ids: flannel's own (protocol NH_PROTOCOL_FLANNEL) and everyone else's, as listed once on first
   * need and then kept up to date by our own writes; null when the kernel has no nexthop objects.
   */
  private nh: Nexthops | null | undefined;

  constructor() {
    this.sock = new NetlinkSocket({ recvTimeoutMs: 5000, rcvbufBytes: 1 << 20 });
    this.links = this.makeLinks();
    this.addrs = this.makeAddrs();
    this.routes = this.makeRoutes();
    this.neighbours = this.makeNeighbours();
    this.fdb = this.makeFdb();
    this.sysctl = new ProcSysctl();
    this.events = { subscribe: (onEvent, signal) => this.subscribe(onEvent, signal) };
    this.wireguard = {
      configure: (device, cfg) => this.wgConfigure(device, cfg),
      get: (device) => this.wgGet(device),
    };
  }

  /**
   * Closes the request sockets (subscriptions close their own sockets when their signal aborts). Open
   * subscriptions stop dropping the request socket's echoes: its port id is free now, and a socket that
   * gets it next is someone else's, whose deletions must arrive.
   */
  close(): void {
    this.sock.close();
    this.genl?.sock.close();
    for (const sub of this.subscriptions.keys()) {
      const base: DropSpec = { types: NOTIFY_DROP_TYPES };
      this.subscriptions.set(sub, base);
      sub.setDropFilter(base);
    }
  }

  /**
   * The generic netlink socket with the wireguard family resolved (CTRL_CMD_GETFAMILY). Without the module
   * the controller answers ENOENT, reported as EOPNOTSUPP like the missing link type.
   */
  private wg(op: string): { sock: NetlinkSocket; wgFamily: number } {
    if (this.genl !== undefined && !this.genl.sock.closed) return this.genl;
    const sock = new NetlinkSocket({
      protocol: wgc.NETLINK_GENERIC,
      recvTimeoutMs: 5000,
      rcvbufBytes: 1 << 20,
    });
    try {
      let id: number | undefined;
      try {
        id = wgc.decodeFamilyId(
          sock.query(
            wgc.GENL_ID_CTRL,
            wgc.encodeGetFamily(wgc.WG_GENL_NAME),
            `${op}: resolve genl family wireguard`,
          ).body,
        );
      } catch (err) {
        if (err instanceof KernelError && err.errno === "ENOENT")
          throw new KernelError("EOPNOTSUPP", `${op}: no generic netlink family wireguard`);
        throw err;
      }
      if (id === undefined) throw new KernelError("EUNKNOWN", `${op}: no family id for wireguard`);
      this.genl = { sock, wgFamily: id };
      return this.genl;
    } catch (err) {
      sock.close();
      throw err;
    }
  }

  // wg set DEV [private-key K] [listen-port P] peer ... — peers split over messages of at most 64 (a device
  // with thousands of peers does not fit one message); only the first one carries REPLACE_PEERS.
  private wgConfigure(device: string, cfg: WireguardDeviceConfig): void {
    const op = `configure wireguard ${device}`;
    const { sock, wgFamily } = this.wg(op);
    const peers = cfg.peers ?? [];
    const CHUNK = 64;
    for (let i = 0; i === 0 || i < peers.length; i += CHUNK) {
      const part: WireguardDeviceConfig =
        i === 0 ? { ...cfg, peers: peers.slice(0, CHUNK) } : { peers: peers.slice(i, i + CHUNK) };
      sock.request(wgFamily, 0, wgc.encodeSetDevice(device, part), op);
    }
  }

  // wg show DEV dump
  private wgGet(device: string): WireguardDevice | undefined {
    const op = `get wireguard ${device}`;
    const { sock, wgFamily } = this.wg(op);
    try {
      const msgs = sock.dump(wgFamily, wgc.encodeGetDevice(device), op).filter((m) => m.type === wgFamily);
      return wgc.decodeDevice(msgs.map((m) => m.body));
    } catch (err) {
      // ENODEV: no such device (EOPNOTSUPP would be a device of another kind, which is an error).
      if (err instanceof KernelError && err.errno === "ENODEV") return undefined;
      throw err;
    }
  }

  private linkByName(name: string, op: string): Link {
    const l = this.links.get(name);
    if (!l) throw new KernelError("ENODEV", op);
    return l;
  }

  private setLink(name: string, op: string, h: Partial<nl.IfInfoMsg>, attrs: nl.Attr[]): void {
    // RTM_NEWLINK without NLM_F_CREATE on an existing name modifies it (what `ip link set` sends).
    this.sock.request(nl.RTM_NEWLINK, 0, nl.encodeIfInfo(h, [nl.str(nl.IFLA_IFNAME, name), ...attrs]), op);
  }

  private makeLinks(): Links {
    return {
      list: () =>
        this.sock
          .dump(nl.RTM_GETLINK, nl.encodeIfInfo({}), "list links")
          .filter((m) => m.type === nl.RTM_NEWLINK)
          .map((m) => parseLink(m.body)),
      get: (name) => {
        try {
          const m = this.sock.query(
            nl.RTM_GETLINK,
            nl.encodeIfInfo({}, [nl.str(nl.IFLA_IFNAME, name)]),
            `get link ${name}`,
          );
          return parseLink(m.body);
        } catch (err) {
          if (err instanceof KernelError && (err.errno === "ENODEV" || err.errno === "EINVAL"))
            return undefined;
          throw err;
        }
      },
      getByIndex: (index) => {
        try {
          const m = this.sock.query(nl.RTM_GETLINK, nl.encodeIfInfo({ index }), `get link #${index}`);
          return parseLink(m.body);
        } catch (err) {
          if (err instanceof KernelError && err.errno === "ENODEV") return undefined;
          throw err;
        }
      },
      // ip link add NAME [mtu M] [address MAC] type vxlan id VNI [dev IDX] [local IP] [dstport P] [no]learning [gbp]
      addVxlan: (spec: VxlanSpec): Link => {
        const op = `add link ${spec.name} type vxlan id ${spec.vni}`;
        const data: nl.Attr[] = [nl.u32(nl.IFLA_VXLAN_ID, spec.vni)];
        if (spec.vtepIndex) data.push(nl.u32(nl.IFLA_VXLAN_LINK, spec.vtepIndex));
        if (spec.local) {
          data.push(ipAttr(spec.local.family === 4 ? nl.IFLA_VXLAN_LOCAL : nl.IFLA_VXLAN_LOCAL6, spec.local));
        }
        if (spec.port) data.push(nl.u16be(nl.IFLA_VXLAN_PORT, spec.port));
        data.push(nl.u8(nl.IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0));
        if (spec.gbp) data.push(nl.flag(nl.IFLA_VXLAN_GBP));
        const attrs: nl.Attr[] = [nl.str(nl.IFLA_IFNAME, spec.name)];
        if (spec.mtu !== undefined) attrs.push(nl.u32(nl.IFLA_MTU, spec.mtu));
        if (spec.mac !== undefined) attrs.push(nl.bytes(nl.IFLA_ADDRESS, nl.macToBytes(spec.mac)));
        attrs.push(
          nl.nested(nl.IFLA_LINKINFO, [
            nl.str(nl.IFLA_INFO_KIND, "vxlan"),
            nl.nested(nl.IFLA_INFO_DATA, data),
          ]),
        );
        this.sock.request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, nl.encodeIfInfo({}, attrs), op);
        return this.linkByName(spec.name, op);
      },
      // ip link add NAME [mtu M] type ipip local LOCAL (remote any, ttl inherit, pmtudisc)
      addIpip: (spec: IpipSpec): Link => {
        const op = `add link ${spec.name} type ipip local ${spec.local?.toString() ?? "any"}`;
        const body = nl.encodeIpipLinkBody(spec.name, spec.local?.toBytes() ?? null, spec.mtu);
        this.sock.request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, op);
        return this.linkByName(spec.name, op);
      },
      // ip link add NAME [mtu M] type wireguard
      addWireguard: (name: string, mtu?: number): Link => {
        const op = `add link ${name} type wireguard`;
        const attrs: nl.Attr[] = [nl.str(nl.IFLA_IFNAME, name)];
        if (mtu !== undefined) attrs.push(nl.u32(nl.IFLA_MTU, mtu));
        attrs.push(nl.nested(nl.IFLA_LINKINFO, [nl.str(nl.IFLA_INFO_KIND, "wireguard")]));
        this.sock.request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, nl.encodeIfInfo({}, attrs), op);
        return this.linkByName(name, op);
      },
      // ip link add NAME [mtu M] type bridge
      addBridge: (name: string, mtu?: number): Link => {
        const op = `add link ${name} type bridge`;
        const attrs: nl.Attr[] = [nl.str(nl.IFLA_IFNAME, name)];
        if (mtu !== undefined) attrs.push(nl.u32(nl.IFLA_MTU, mtu));
        attrs.push(nl.nested(nl.IFLA_LINKINFO, [nl.str(nl.IFLA_INFO_KIND, "bridge")]));
        this.sock.request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, nl.encodeIfInfo({}, attrs), op);
        return this.linkByName(name, op);
      },
      delete: (name: string): void => {
        try {
          this.sock.request(
            nl.RTM_DELLINK,
            0,
            nl.encodeIfInfo({}, [nl.str(nl.IFLA_IFNAME, name)]),
            `delete link ${name}`,
          );
        } catch (err) {
          if (err instanceof KernelError && err.errno === "ENODEV") return;
          throw err;
        }
      },
      setUp: (name) => this.setLink(name, `set link ${name} up`, { flags: nl.IFF_UP, change: nl.IFF_UP }, []),
      setMtu: (name, mtu) =>
        this.setLink(name, `set link ${name} mtu ${mtu}`, {}, [nl.u32(nl.IFLA_MTU, mtu)]),
      setMac: (name, mac) =>
        this.setLink(name, `set link ${name} address ${mac}`, {}, [
          nl.bytes(nl.IFLA_ADDRESS, nl.macToBytes(mac)),
        ]),
    };
  }

  private makeAddrs(): Addrs {
    const msg = (linkIndex: number, addr: IfAddr): Buffer => {
      // iproute2's default_scope(): host for loopback, link for link-local, else universe.
      const scope = addr.ip.isLoopback
        ? RT_SCOPE_HOST
        : addr.ip.isLinkLocalUnicast
          ? RT_SCOPE_LINK
          : RT_SCOPE_UNIVERSE;
      return nl.encodeIfAddr(
        { family: afOf(addr.family), prefixLen: addr.prefixLen, flags: 0, scope, index: linkIndex },
        [ipAttr(nl.IFA_LOCAL, addr.ip), ipAttr(nl.IFA_ADDRESS, addr.ip)],
      );
    };
    return {
      list: (opts = {}) => {
        const out: Addr[] = [];
        const af = opts.family === undefined ? nl.AF_UNSPEC : afOf(opts.family);
        for (const m of this.sock.dump(
          nl.RTM_GETADDR,
          nl.encodeIfAddr({ family: af, prefixLen: 0, flags: 0, scope: 0, index: 0 }),
          "list addresses",
        )) {
          if (m.type !== nl.RTM_NEWADDR) continue;
          const { hdr, attrs } = nl.decodeIfAddr(m.body);
          const family = familyOf(hdr.family);
          if (!family || (opts.family !== undefined && family !== opts.family)) continue;
          if (opts.linkIndex !== undefined && hdr.index !== opts.linkIndex) continue;
          const a = nl.attrMap(attrs);
          const ip = readIp(a.get(nl.IFA_LOCAL) ?? a.get(nl.IFA_ADDRESS));
          if (!ip) continue;
          out.push({
            linkIndex: hdr.index,
            addr: new IfAddr(ip, hdr.prefixLen),
            scope: hdr.scope,
            flags: nl.readU32(a.get(nl.IFA_FLAGS)) ?? hdr.flags,
          });
        }
        return out;
      },
      // ip addr replace ADDR dev IDX
      add: (linkIndex, addr) =>
        this.sock.request(
          nl.RTM_NEWADDR,
          nl.NLM_F_CREATE | nl.NLM_F_REPLACE,
          msg(linkIndex, addr),
          `add address ${addr.toString()} dev #${linkIndex}`,
        ),
      delete: (linkIndex, addr) => {
        try {
          this.sock.request(
            nl.RTM_DELADDR,
            0,
            msg(linkIndex, addr),
            `delete address ${addr.toString()} dev #${linkIndex}`,
          );
        } catch (err) {
          if (err instanceof KernelError && err.errno === "EADDRNOTAVAIL") return;
          throw err;
        }
      },
    };
  }

  private routeMsg(r: Route, forDelete: boolean): Buffer {
    const table = r.table ?? RT_TABLE_MAIN;
    const type = r.type ?? "unicast";
    const attrs: nl.Attr[] = [];
    if (r.dst && r.dst.prefixLen > 0) attrs.push(ipAttr(nl.RTA_DST, r.dst.ip));
    if (r.gw) attrs.push(ipAttr(nl.RTA_GATEWAY, r.gw));
    if (r.linkIndex) attrs.push(nl.u32(nl.RTA_OIF, r.linkIndex));
    if (r.src) attrs.push(ipAttr(nl.RTA_PREFSRC, r.src));
    if (r.metric !== undefined) attrs.push(nl.u32(nl.RTA_PRIORITY, r.metric));
    if (table > 255) attrs.push(nl.u32(nl.RTA_TABLE, table));
    return nl.encodeRtMsg(
      {
        family: afOf(r.family),
        dstLen: r.dst ? r.dst.prefixLen : 0,
        srcLen: 0,
        tos: 0,
        table: table > 255 ? 0 : table,
        // `ip route del` leaves protocol and type unset (0) so that they need not match, scope NOWHERE.
        protocol: forDelete ? (r.protocol ?? 0) : (r.protocol ?? RTPROT_BOOT),
        scope: forDelete
          ? (r.scope ?? nl.RT_SCOPE_NOWHERE)
          : (r.scope ?? (type === "unicast" && !r.gw ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE)),
        type: forDelete && r.type === undefined ? 0 : RTN_NUM[type],
        flags: r.onlink ? nl.RTNH_F_ONLINK : 0,
      },
      attrs,
    );
  }

  private makeRoutes(): Routes {
    return {
      list: (opts) => [...this.eachRoute(opts)],
      each: (opts) => this.eachRoute(opts),
      replace: (r) => this.writeOne({ op: "route-replace", route: r }),
      delete: (r) => this.writeOne({ op: "route-delete", route: r }),
      // ip route get DST
      get: (dst) => {
        const body = nl.encodeRtRequest(afOf(dst.family), dst.bits, [ipAttr(nl.RTA_DST, dst)]);
        const m = this.sock.query(nl.RTM_GETROUTE, body, `get route ${dst.toString()}`);
        const r = parseRoute(m.body);
        if (!r) throw new KernelError("EUNKNOWN", `get route ${dst.toString()}`);
        return r;
      },
    };
  }

  /**
   * The request for one write, as iproute2 sends it:
   * `ip route replace|del ...`, `ip neigh replace IP lladdr MAC dev IDX nud permanent` / `ip neigh del`,
   * `bridge fdb replace MAC dev IDX dst IP self permanent` / `bridge fdb del`. Deletes list the errno that
   * means "already absent" (ESRCH for routes, ENOENT for neighbours and FDB entries) as success.
   */
  private writeReq(w: KernelWrite): WriteReq {
    const REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE;
    switch (w.op) {
      case "route-replace":
        return {
          type: nl.RTM_NEWROUTE,
          flags: REPLACE,
          body: this.routeMsg(w.route, false),
          op: () => `replace route ${routeText(w.route)}`,
        };
      case "route-delete":
        return {
          type: nl.RTM_DELROUTE,
          flags: 0,
          body: this.routeMsg(w.route, true),
          op: () => `delete route ${routeText(w.route)}`,
          okErrnos: ["ESRCH"],
        };
      case "neigh-replace": {
        const n = w.neighbour;
        return {
          type: nl.RTM_NEWNEIGH,
          flags: REPLACE,
          body: this.neighMsg(afOf(n.ip.family), n.linkIndex, 0, [
            ipAttr(nl.NDA_DST, n.ip),
            nl.bytes(nl.NDA_LLADDR, nl.macToBytes(n.mac)),
          ]),
          op: () => `replace neighbour ${n.ip.toString()} lladdr ${n.mac} dev #${n.linkIndex}`,
        };
      }
      case "neigh-delete": {
        const n = w.neighbour;
        return {
          type: nl.RTM_DELNEIGH,
          flags: 0,
          body: this.neighMsg(afOf(n.ip.family), n.linkIndex, 0, [ipAttr(nl.NDA_DST, n.ip)]),
          op: () => `delete neighbour ${n.ip.toString()} dev #${n.linkIndex}`,
          okErrnos: ["ENOENT"],
        };
      }
      case "fdb-replace":
      case "fdb-delete": {
        const e = w.fdb;
        const del = w.op === "fdb-delete";
        return {
          type: del ? nl.RTM_DELNEIGH : nl.RTM_NEWNEIGH,
          flags: del ? 0 : REPLACE,
          body: this.neighMsg(nl.AF_BRIDGE, e.linkIndex, nl.NTF_SELF, [
            nl.bytes(nl.NDA_LLADDR, nl.macToBytes(e.mac)),
            ipAttr(nl.NDA_DST, e.dst),
          ]),
          op: () => `${del ? "delete" : "replace"} fdb ${e.mac} dev #${e.linkIndex} dst ${e.dst.toString()}`,
          ...(del ? { okErrnos: ["ENOENT"] } : {}),
        };
      }
    }
  }

  /** One request and its ack; a listed "already absent" errno is success. */
  private send(r: WriteReq): void {
    try {
      this.sock.request(r.type, r.flags, r.body, opText(r.op));
    } catch (err) {
      if (err instanceof KernelError && r.okErrnos?.includes(err.errno) === true) return;
      throw err;
    }
  }

  /** Many writes, up to 128 per sendmsg, acks read together (NetlinkSocket.requestMany). */
  batch(writes: readonly KernelWrite[]): (KernelError | undefined)[] {
    const plans = writes.map((w) => this.writeReqs(w));
    const reqs: WriteReq[] = [];
    for (const p of plans) appendAll(reqs, p.reqs);
    const quiet = writes.some((w) => w.op === "neigh-delete" || w.op === "fdb-delete");
    const res = quiet ? this.quietly(() => this.sock.requestMany(reqs)) : this.sock.requestMany(reqs);
    let at = 0;
    return plans.map((p) => {
      const err = this.settle(p, res, at);
      at += p.reqs.length;
      return err;
    });
  }

  /**
   * Runs `fn` (requests on `sock`) with the subscriptions out of the neighbour group, so that the
   * notifications of our neighbour and FDB deletions are never delivered to them. The kernel sends those
   * without the requester's port id, so no filter can tell ours apart: removing 1000 vxlan peers sent ~3400
   * notifications back, ~17% of flanneld's main thread (docs/performance.md, seventh round). rtnetlink
   * handles a request in the sender's `sendmsg`, so every notification of ours is sent, and not delivered,
   * before `fn` returns. The group carries nothing else a subscription keeps (additions are filtered out).
   * Someone else's deletion in that window (microseconds to milliseconds) is missed as an event; the
   * reconciler's periodic pass still repairs it. Leaving and joining again costs ~6–13 µs (two setsockopt
   * calls per subscription), less than reading back one notification, so every batch with a neighbour or
   * FDB deletion is made this way. (Swapping socket filters, as before, cost ~0.1 ms per batch:
   * docs/performance.md, ninth round.)
   */
  private quietly<T>(fn: () => T): T {
    if (this.subscriptions.size === 0) return fn();
    for (const sub of this.subscriptions.keys()) sub.setGroup(nl.RTNLGRP_NEIGH, false);
    try {
      return fn();
    } finally {
      for (const sub of this.subscriptions.keys()) sub.setGroup(nl.RTNLGRP_NEIGH, true);
    }
  }

  /** One write as a batch of one; throws its error. */
  private writeOne(w: KernelWrite): void {
    const [err] = this.batch([w]);
    if (err !== undefined) throw err;
  }

  /**
   * The requests of one write. Routes that ask for a nexthop object get one (see Route.nexthop); deleting a
   * route that goes through a nexthop names it (the kernel does not match such a route by gateway and
   * device), and flannel's own nexthop goes with the route.
   */
  private writeReqs(w: KernelWrite): WritePlan {
    if (w.op === "route-replace" && w.route.nexthop === true) {
      const id = nexthopIdFor(w.route);
      const nh = id === undefined ? null : this.nexthops();
      if (id !== undefined && nh !== null && !nh.foreign.has(id)) {
        return {
          reqs: [this.nexthopReq(id, w.route, nh.owned.has(id)), this.routeViaNexthopReq(id, w.route)],
          viaNexthop: { id, route: w.route },
        };
      }
    }
    if (w.op === "route-delete") {
      const r = w.route;
      if (r.nhId !== undefined) {
        const own = this.nexthops()?.owned.has(r.nhId) === true;
        const reqs = [this.routeDeleteViaNexthopReq(r.nhId, r)];
        if (!own) return { reqs };
        reqs.push(this.nexthopDeleteReq(r.nhId));
        return { reqs, deletesNexthop: r.nhId };
      }
      const id = r.nexthop === true ? nexthopIdFor(r) : undefined;
      if (id !== undefined && this.nh?.owned.get(id) === true) {
        return {
          reqs: [this.routeDeleteViaNexthopReq(id, r), this.nexthopDeleteReq(id)],
          deletesNexthop: id,
        };
      }
      if (id !== undefined && this.nexthops()?.owned.has(id) === true) {
        // Made through the nexthop (by an earlier process) or plain (an older flanneld): whichever is there
        // goes. The route is deleted before its nexthop: deleting a nexthop removes its routes silently,
        // without the RTM_DELROUTE notification that others watching routes rely on.
        return {
          reqs: [this.routeDeleteViaNexthopReq(id, r), this.writeReq(w), this.nexthopDeleteReq(id)],
          deletesNexthop: id,
        };
      }
    }
    return { reqs: [this.writeReq(w)] };
  }

  /**
   * The result of one write from its requests' results (`res` from index `at`), and what they tell about
   * nexthop ids.
   */
  private settle(
    p: WritePlan,
    res: readonly (KernelError | undefined)[],
    at: number,
  ): KernelError | undefined {
    const nh = this.nh;
    if (p.viaNexthop !== undefined && nh) {
      const { id, route } = p.viaNexthop;
      const nhErr = res[at];
      if (nhErr === undefined) {
        nh.owned.set(id, res[at + 1] === undefined);
        return res[at + 1];
      }
      if (nh.owned.has(id)) nh.owned.set(id, false);
      // EEXIST: someone else's nexthop took the id since the listing (the route may now lead there). Any
      // other failure: the plain route says best whether the route itself is possible.
      if (nhErr.errno === "EEXIST") {
        nh.foreign.add(id);
        nh.owned.delete(id);
      }
      const [err] = this.sock.requestMany([this.writeReq({ op: "route-replace", route })]);
      return err;
    }
    const end = at + p.reqs.length;
    if (p.deletesNexthop !== undefined && nh && res[end - 1] === undefined) {
      nh.owned.delete(p.deletesNexthop);
    }
    for (let i = at; i < end; i++) if (res[i] !== undefined) return res[i];
    return undefined;
  }

  /** The nexthop ids (one RTM_GETNEXTHOP dump on first use); null when the kernel has no nexthop objects. */
  private nexthops(): Nexthops | null {
    if (this.nh !== undefined) return this.nh;
    const owned = new Map<number, boolean>();
    const foreign = new Set<number>();
    try {
      for (const n of this.listNexthops()) {
        if (n.protocol === NH_PROTOCOL_FLANNEL) owned.set(n.id, false);
        else foreign.add(n.id);
      }
    } catch (err) {
      // Without nexthop objects for good; any other failure: plain routes this time, and the next write asks
      // again (a write batch never throws).
      if (err instanceof KernelError && NO_NEXTHOPS.has(err.errno)) this.nh = null;
      return null;
    }
    this.nh = { owned, foreign };
    return this.nh;
  }

  /** `ip nexthop show` */
  private listNexthops(): ListedNexthop[] {
    const out: ListedNexthop[] = [];
    const body = nl.encodeNhMsg({ family: 0, scope: 0, protocol: 0, flags: 0 });
    for (const m of this.sock.dump(nl.RTM_GETNEXTHOP, body, "list nexthops")) {
      if (m.type !== nl.RTM_NEWNEXTHOP) continue;
      const n = parseNexthop(m.body);
      if (n) out.push(n);
    }
    return out;
  }

  /**
   * The routes of one family and table, as the dump gives them. With net.ipv4.nexthop_compat_mode 0 the
   * kernel lists a route through a nexthop object by its id only; its gateway, device and onlink flag are
   * then the nexthop's (the nexthops are listed once, at the first such route).
   */
  private *eachRoute(opts: { family: Family; table?: number }): Generator<Route, void, undefined> {
    const table = opts.table ?? RT_TABLE_MAIN;
    const body = nl.encodeRtRequest(afOf(opts.family));
    let byId: Map<number, ListedNexthop> | undefined;
    // In place: a listing of 10,000 routes makes no message object or Buffer view per route.
    const c = this.sock.dumpCursor(nl.RTM_GETROUTE, body, "list routes");
    while (c.next()) {
      if (c.type !== nl.RTM_NEWROUTE || c.end - c.body < 12) continue;
      if (c.buf.readUInt32LE(c.body + 8) & nl.RTM_F_CLONED) continue; // cache entries
      const r = parseRoute(c.buf, c.body, c.end);
      if (!r || r.family !== opts.family || r.table !== table) continue;
      if (r.nhId !== undefined && r.gw === undefined && r.linkIndex === undefined) {
        byId ??= new Map(this.listNexthops().map((n) => [n.id, n]));
        const n = byId.get(r.nhId);
        if (n?.gw) r.gw = n.gw;
        if (n?.linkIndex) r.linkIndex = n.linkIndex;
        if (n?.onlink) r.onlink = true;
      }
      yield r;
    }
  }

  // ip nexthop replace id ID via GW dev DEV [onlink] proto 0x66 (add: NLM_F_EXCL, never someone else's)
  private nexthopReq(id: number, r: Route, own: boolean): WriteReq {
    const gw = r.gw as IpAddr;
    return {
      type: nl.RTM_NEWNEXTHOP,
      flags: nl.NLM_F_CREATE | (own ? nl.NLM_F_REPLACE : nl.NLM_F_EXCL),
      body: nl.encodeNhMsg(
        {
          family: afOf(r.family),
          scope: 0,
          protocol: NH_PROTOCOL_FLANNEL,
          flags: r.onlink ? nl.RTNH_F_ONLINK : 0,
        },
        [nl.u32(nl.NHA_ID, id), nl.u32(nl.NHA_OIF, r.linkIndex ?? 0), ipAttr(nl.NHA_GATEWAY, gw)],
      ),
      op: () => `${own ? "replace" : "add"} nexthop id ${id} for route ${routeText(r)}`,
    };
  }

  // ip nexthop del id ID
  private nexthopDeleteReq(id: number): WriteReq {
    return {
      type: nl.RTM_DELNEXTHOP,
      flags: 0,
      body: nl.encodeNhMsg({ family: 0, scope: 0, protocol: 0, flags: 0 }, [nl.u32(nl.NHA_ID, id)]),
      op: () => `delete nexthop id ${id}`,
      okErrnos: ["ENOENT"],
    };
  }

  // ip route replace DST nhid ID
  private routeViaNexthopReq(id: number, r: Route): WriteReq {
    return {
      type: nl.RTM_NEWROUTE,
      flags: nl.NLM_F_CREATE | nl.NLM_F_REPLACE,
      body: this.routeNhMsg(id, r, false),
      op: () => `replace route ${routeText(r)} nhid ${id}`,
    };
  }

  // ip route del DST nhid ID
  private routeDeleteViaNexthopReq(id: number, r: Route): WriteReq {
    return {
      type: nl.RTM_DELROUTE,
      flags: 0,
      body: this.routeNhMsg(id, r, true),
      op: () => `delete route ${routeText(r)} nhid ${id}`,
      okErrnos: ["ESRCH"],
    };
  }

  private routeNhMsg(id: number, r: Route, forDelete: boolean): Buffer {
    const dst = r.dst as IpNet;
    return nl.encodeRtMsg(
      {
        family: afOf(r.family),
        dstLen: dst.prefixLen,
        srcLen: 0,
        tos: 0,
        table: RT_TABLE_MAIN,
        protocol: forDelete ? 0 : (r.protocol ?? RTPROT_BOOT),
        scope: forDelete ? nl.RT_SCOPE_NOWHERE : RT_SCOPE_UNIVERSE,
        type: forDelete ? 0 : RTN_NUM.unicast,
        flags: 0,
      },
      [ipAttr(nl.RTA_DST, dst.ip), nl.u32(nl.RTA_NH_ID, id)],
    );
  }

  private neighMsg(family: number, linkIndex: number, flags: number, attrs: nl.Attr[]): Buffer {
    return nl.encodeNdMsg({ family, index: linkIndex, state: NUD_PERMANENT, flags, type: 0 }, attrs);
  }

  /** A cursor over an RTM_GETNEIGH dump of address family `af`: neighbours, or FDB entries with AF_BRIDGE. */
  private ndDump(af: number, op: string): nl.MsgCursor {
    return this.sock.dumpCursor(
      nl.RTM_GETNEIGH,
      nl.encodeNdMsg({ family: af, index: 0, state: 0, flags: 0, type: 0 }),
      op,
    );
  }

  private *eachNeighbour(opts: {
    linkIndex?: number;
    family: Family;
  }): Generator<Neighbour, void, undefined> {
    const af = afOf(opts.family);
    const c = this.ndDump(af, "list neighbours");
    while (nextNdMsg(c, af, opts.linkIndex)) {
      const a = attrs.scan(c.buf, c.body + 12, c.end);
      const ip = ipAt(a, nl.NDA_DST);
      if (!ip) continue;
      yield {
        linkIndex: c.buf.readInt32LE(c.body + 4),
        ip,
        mac: a.mac(nl.NDA_LLADDR),
        state: c.buf.readUInt16LE(c.body + 8),
      };
    }
  }

  private *eachFdb(opts: { linkIndex?: number }): Generator<FdbEntry, void, undefined> {
    const c = this.ndDump(nl.AF_BRIDGE, "list fdb");
    while (nextNdMsg(c, nl.AF_BRIDGE, opts.linkIndex)) {
      const a = attrs.scan(c.buf, c.body + 12, c.end);
      yield {
        linkIndex: c.buf.readInt32LE(c.body + 4),
        mac: a.mac(nl.NDA_LLADDR),
        dst: ipAt(a, nl.NDA_DST) ?? null,
      };
    }
  }

  private makeNeighbours(): Neighbours {
    return {
      list: (opts) => [...this.eachNeighbour(opts)],
      each: (opts) => this.eachNeighbour(opts),
      replace: (n) => this.send(this.writeReq({ op: "neigh-replace", neighbour: n })),
      delete: (n) => this.quietly(() => this.send(this.writeReq({ op: "neigh-delete", neighbour: n }))),
    };
  }

  private makeFdb(): Fdb {
    return {
      list: (opts) => [...this.eachFdb(opts)],
      each: (opts) => this.eachFdb(opts),
      replace: (e) => this.send(this.writeReq({ op: "fdb-replace", fdb: e })),
      delete: (e) => this.quietly(() => this.send(this.writeReq({ op: "fdb-delete", fdb: e }))),
    };
  }

  private subscribe(onEvent: (ev: KernelEvent) => void, signal: AbortSignal): void {
    if (signal.aborted) return;
    // Only deletions of routes and neighbours are events; additions (our own writes, mostly) are dropped by
    // the kernel before they can fill the buffer and overflow it, and so are the echoes of the route
    // deletions made through this kernel's request socket (see socket.ts). Neighbour and FDB deletions
    // cannot be told apart by sender: ours are dropped while we make them (`quietly`).
    const drop: DropSpec = {
      types: NOTIFY_DROP_TYPES,
      ...(this.sock.closed ? {} : { echoes: { types: [nl.RTM_DELROUTE], portIds: [this.sock.portId] } }),
    };
    const sock = new NetlinkSocket({
      groups: nl.RTMGRP_LINK | nl.RTMGRP_NEIGH | nl.RTMGRP_IPV4_ROUTE | nl.RTMGRP_IPV6_ROUTE,
      // Deletions made by others can come in bursts (a deleted device takes its neighbours and routes with
      // it; ~1 KB of buffer each); an overflow costs a full pass (10,000 peers: ~0.5 s of CPU).
      rcvbufBytes: 8 << 20,
      drop,
    });
    this.subscriptions.set(sock, drop);
    signal.addEventListener("abort", () => this.subscriptions.delete(sock), { once: true });
    // Known links, so that RTM_NEWLINK (sent for every change) becomes `link-added` only for new ones.
    // Read after joining the groups so that no link can slip between the dump and the first notification.
    const known = new Set(this.links.list().map((l) => l.index));
    const deliver = (ev: KernelEvent): void => {
      try {
        onEvent(ev);
      } catch {
        // A subscriber's bug must not end the subscription for everyone; the subscriber logs its own errors.
      }
    };
    sock.readLoop(
      (msgs) => {
        for (const m of msgs) {
          switch (m.type) {
            case nl.RTM_NEWLINK: {
              const link = parseLink(m.body);
              if (!known.has(link.index)) {
                known.add(link.index);
                deliver({ type: "link-added", link });
              }
              break;
            }
            case nl.RTM_DELLINK: {
              const link = parseLink(m.body);
              known.delete(link.index);
              deliver({ type: "link-deleted", index: link.index, name: link.name });
              break;
            }
            case nl.RTM_DELROUTE: {
              const route = parseRoute(m.body);
              if (route) deliver({ type: "route-deleted", route });
              break;
            }
            case nl.RTM_DELNEIGH: {
              // Our own neighbour and FDB deletes come back as these (see subscribe's filter): two per
              // departed vxlan peer. Only the two attributes needed are looked at.
              const b = m.body;
              if (b.length < 12) break;
              const af = b.readUInt8(0);
              const family = af === nl.AF_BRIDGE ? "bridge" : familyOf(af);
              if (!family) break;
              const dst = nl.findAttr(b, 12, nl.NDA_DST);
              const ll = nl.findAttr(b, 12, nl.NDA_LLADDR);
              const ip = dst && readIp(b.subarray(dst.off, dst.off + dst.len));
              const ev: KernelEvent = { type: "neigh-deleted", family, linkIndex: b.readInt32LE(4) };
              if (ip !== undefined) ev.ip = ip;
              if (ll?.len === 6) ev.mac = nl.bytesToMac(b.subarray(ll.off, ll.off + 6));
              deliver(ev);
              break;
            }
            default:
              break;
          }
        }
      },
      () => deliver({ type: "overflow" }),
      signal,
    );
  }
}

/** The kernel of the current process's network namespace, over rtnetlink. */
export function createNetlinkKernel(): NetlinkKernel {
  return new NetlinkKernel();
}
