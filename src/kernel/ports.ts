// The side-effect boundary: everything flannel-ts asks of the kernel goes through these ports.
// Two implementations exist: the rtnetlink adapter over koffi (netlink/) and FakeKernel (fake-kernel.ts) for
// tests without root. Both must behave the same; contract tests run one scenario on each and compare.
//
// Calls are synchronous: a netlink request is answered by the kernel inside send/recv (~30 µs per route),
// which keeps batches simple and ordered. Every call acts on the network namespace of the current process.
//
// Contracts shared by all ports:
// - `replace*` / `ensure*` are idempotent (create or overwrite).
// - `delete*` succeeds when the thing is already absent.
// - Failures throw KernelError with the errno name (`EEXIST`, `ENODEV`, `EPERM`, ...) in `errno`.

import type { Family, IpAddr } from "../ip/addr.ts";
import type { IfAddr, IpNet } from "../ip/net.ts";

export class KernelError extends Error {
  readonly code = "KERNEL";
  constructor(
    /** errno name, e.g. "EEXIST"; "EUNKNOWN" when the kernel gave a number we do not name. */
    readonly errno: string,
    /** What was being done, e.g. "add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1". */
    readonly op: string,
  ) {
    super(`${op}: ${errno}`);
    this.name = "KernelError";
  }
}

export interface VxlanAttrs {
  vni: number;
  /** Local (source) address of the tunnel; null when unset. */
  local: IpAddr | null;
  /** Underlay device index (`dev` in `ip link add ... type vxlan`); 0 when unset. */
  vtepIndex: number;
  /** UDP destination port; 0 means the kernel default (8472 on Linux). */
  port: number;
  learning: boolean;
  gbp: boolean;
  group: IpAddr | null;
  l2miss: boolean;
  l3miss: boolean;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "vxlan", "bridge", "veth", "tun", ...; "" for devices without one (e.g. lo). */
  kind: string;
  mtu: number;
  /** "aa:bb:cc:dd:ee:ff" (lower case); "" for devices without a hardware address. */
  mac: string;
  /** IFF_UP is set (administratively up). */
  up: boolean;
  /** IFLA_OPERSTATE as text: "up", "down", "unknown", ... */
  operState: string;
  /** Index of the bridge this link is enslaved to, 0 when none. */
  masterIndex: number;
  vxlan?: VxlanAttrs;
  ipip?: IpipAttrs;
}

/** IFLA_IPTUN_* of an ipip device. */
export interface IpipAttrs {
  /** Tunnel source; null when any (0.0.0.0). */
  local: IpAddr | null;
  /** Tunnel destination; null when any (0.0.0.0), as flannel.ipip wants it. */
  remote: IpAddr | null;
}

/** `ip link add NAME [mtu M] type ipip local LOCAL` (remote any). */
export interface IpipSpec {
  name: string;
  local: IpAddr | null;
  mtu?: number;
}

export interface VxlanSpec {
  name: string;
  vni: number;
  local: IpAddr | null;
  vtepIndex: number;
  port: number;
  learning: boolean;
  gbp: boolean;
  mtu?: number;
  mac?: string;
}

export interface Links {
  list(): Link[];
  /** The link with that name, or undefined. */
  get(name: string): Link | undefined;
  getByIndex(index: number): Link | undefined;
  /** Creates a vxlan device (down). Throws KernelError EEXIST when the name is taken. */
  addVxlan(spec: VxlanSpec): Link;
  /**
   * Creates an ipip device (down). Throws EEXIST when the name is taken, EOPNOTSUPP when the kernel has no
   * ipip link type (module missing).
   */
  addIpip(spec: IpipSpec): Link;
  /** Creates a wireguard device (down). EEXIST when taken, EOPNOTSUPP when the kernel has no wireguard. */
  addWireguard(name: string, mtu?: number): Link;
  /** Creates a bridge device (down). Throws EEXIST when the name is taken. */
  addBridge(name: string, mtu?: number): Link;
  /** Deletes the link; succeeds when it does not exist. */
  delete(name: string): void;
  setUp(name: string): void;
  setMtu(name: string, mtu: number): void;
  setMac(name: string, mac: string): void;
}

export interface Addr {
  linkIndex: number;
  addr: IfAddr;
  /** RT_SCOPE_*: 0 universe, 253 link, 254 host. */
  scope: number;
  /** IFA_F_* flags (permanent 0x80, deprecated 0x20, temporary/secondary 0x01, ...). */
  flags: number;
}

export interface Addrs {
  list(opts?: { linkIndex?: number; family?: Family }): Addr[];
  /** Adds the address; succeeds when it is already there. */
  add(linkIndex: number, addr: IfAddr): void;
  /** Deletes the address; succeeds when it is absent. */
  delete(linkIndex: number, addr: IfAddr): void;
}

export type RouteType =
  "unicast" | "blackhole" | "local" | "broadcast" | "unreachable" | "prohibit" | "other";

export interface Route {
  family: Family;
  /** Destination; null is the default route (0.0.0.0/0 or ::/0). */
  dst: IpNet | null;
  gw?: IpAddr;
  linkIndex?: number;
  /** RTNH_F_ONLINK: the gateway is on the link even though no address says so. */
  onlink?: boolean;
  /** Routing table; defaults to main (254). */
  table?: number;
  type?: RouteType;
  /** RT_SCOPE_*; defaults to universe (0) for routes with a gateway, link (253) without. */
  scope?: number;
  /** RTPROT_*; defaults to boot (3), as iproute2. */
  protocol?: number;
  src?: IpAddr;
  metric?: number;
  /**
   * Asks for the route to be programmed through a nexthop object of its own (`ip nexthop add id N via GW
   * dev DEV onlink` + `ip route replace DST nhid N`) where the kernel has them (Linux ≥ 5.3) and the route
   * is an IPv4 unicast route via a gateway on a device in the main table; otherwise, or when the id is
   * taken by someone else's nexthop, a plain route is made. The kernel hashes plain IPv4 routes into one
   * list per device, so that adding the n-th route via a distinct gateway on one device costs O(n):
   * 10,000 peers' routes took 2.4 s, through nexthops 0.4 s (docs/performance.md). The id is the
   * destination's network address (unique among a network's leases); the nexthop is flannel's (protocol
   * NH_PROTOCOL_FLANNEL) and goes with the route. Ignored when listing; what a listed route uses is `nhId`.
   */
  nexthop?: boolean;
  /** RTA_NH_ID of a listed route: the nexthop object it goes through (gateway and device are its). */
  nhId?: number;
}

/** nhmsg protocol of the nexthop objects flannel-ts makes: how it tells its own from anyone else's. */
export const NH_PROTOCOL_FLANNEL = 0x66;

/** The nexthop id a route with `nexthop: true` gets: its IPv4 destination's address; undefined if none. */
export function nexthopIdFor(route: Route): number | undefined {
  if (route.family !== 4 || route.dst === null || route.dst.prefixLen === 0) return undefined;
  if ((route.type ?? "unicast") !== "unicast" || (route.table ?? RT_TABLE_MAIN) !== RT_TABLE_MAIN)
    return undefined;
  if (route.gw === undefined || !route.linkIndex || route.src !== undefined) return undefined;
  if (route.metric !== undefined && route.metric !== 0) return undefined;
  const id = Number(route.dst.ip.value);
  return id > 0 ? id : undefined;
}

export interface Routes {
  /** Routes of one family in one table (default main). */
  list(opts: { family: Family; table?: number }): Route[];
  /**
   * `list`, one route at a time: nothing is kept once the caller moves on, so a pass over tens of thousands
   * of routes makes only short-lived objects. The kernel is read when iteration starts.
   */
  each(opts: { family: Family; table?: number }): Iterable<Route>;
  /** NLM_F_CREATE|NLM_F_REPLACE: `ip route replace`. */
  replace(route: Route): void;
  /** `ip route del`; succeeds when no such route exists. */
  delete(route: Route): void;
  /** `ip route get <dst>`: the route the kernel would use, with `src` and `linkIndex` filled in. */
  get(dst: IpAddr): Route;
}

export interface Neighbour {
  linkIndex: number;
  ip: IpAddr;
  mac: string;
  /** NUD_* state, e.g. 0x80 permanent. */
  state: number;
}

export interface Neighbours {
  list(opts: { linkIndex?: number; family: Family }): Neighbour[];
  /** `list`, one at a time (as `Routes.each`). */
  each(opts: { linkIndex?: number; family: Family }): Iterable<Neighbour>;
  /** `ip neigh replace <ip> lladdr <mac> dev <link> nud permanent`. */
  replace(n: { linkIndex: number; ip: IpAddr; mac: string }): void;
  /** Succeeds when absent. */
  delete(n: { linkIndex: number; ip: IpAddr }): void;
}

export interface FdbEntry {
  linkIndex: number;
  mac: string;
  /** Remote VTEP address (NDA_DST); null for entries without one. */
  dst: IpAddr | null;
}

export interface Fdb {
  list(opts: { linkIndex?: number }): FdbEntry[];
  /** `list`, one at a time (as `Routes.each`). */
  each(opts: { linkIndex?: number }): Iterable<FdbEntry>;
  /** `bridge fdb replace <mac> dev <link> dst <dst> self permanent`. */
  replace(e: { linkIndex: number; mac: string; dst: IpAddr }): void;
  /** Succeeds when absent. */
  delete(e: { linkIndex: number; mac: string; dst: IpAddr }): void;
}

export interface Sysctl {
  /** Reads e.g. "net/ipv4/ip_forward"; undefined when the file does not exist. */
  get(path: string): string | undefined;
  set(path: string, value: string): void;
}

export type KernelEvent =
  | { type: "link-deleted"; index: number; name: string }
  | { type: "link-added"; link: Link }
  | { type: "route-deleted"; route: Route }
  /**
   * A neighbour (family 4/6: `ip` is its address, `mac` its lladdr) or an FDB entry (family "bridge": `mac`
   * is the entry's MAC, `ip` its remote NDA_DST) was deleted. `ip`/`mac` are absent when the kernel did not
   * say; a listener must then assume any entry on the link may be gone.
   */
  | { type: "neigh-deleted"; family: Family | "bridge"; linkIndex: number; ip?: IpAddr; mac?: string }
  /** The notification socket overflowed (ENOBUFS): state may have changed unseen; re-read and reconcile. */
  | { type: "overflow" };

export interface KernelEvents {
  /**
   * Delivers link, route and neighbour/FDB change notifications until `signal` aborts.
   * Never blocks the event loop. An overflow is reported as an event, never thrown.
   * Route deletions made through this same Kernel may be left out (the netlink kernel drops the echoes of
   * its own requests; the fake reports every deletion): a listener must not wait for its own deletes.
   */
  subscribe(onEvent: (ev: KernelEvent) => void, signal: AbortSignal): void;
  /**
   * True when deletions made through this Kernel are reported like anyone else's (the fake). The netlink
   * kernel drops those echoes, so a listener that would recognise its own deletes need not remember them.
   */
  readonly ownDeletesReported?: boolean;
}

/** A TUN device held open by this process: the device exists exactly as long as `fd` is open. */
export interface TunDevice {
  /** The name the kernel gave it, e.g. "flannel0". */
  readonly name: string;
  /** The non-blocking file descriptor (IFF_TUN | IFF_NO_PI: one raw IP packet per read/write). */
  readonly fd: number;
  /** Every read and write starts with a struct virtio_net_hdr (opened with `vnetHdr`). */
  readonly vnetHdr: boolean;
  /** Closes the fd, which removes the device with its addresses and routes. Idempotent. */
  close(): void;
}

export interface Tun {
  /**
   * Opens /dev/net/tun non-blocking and attaches a TUN device (IFF_TUN | IFF_NO_PI) named `name`, which may
   * hold `%d` for the kernel to number (upstream's "flannel%d" gives flannel0). The device starts down.
   * `txQueueLen` sets the packets the kernel queues for the reader before dropping (default 500);
   * `vnetHdr` adds IFF_VNET_HDR (a virtio_net_hdr before each packet, which lets the reader write GSO
   * packets).
   */
  open(name: string, opts?: { txQueueLen?: number; vnetHdr?: boolean }): TunDevice;
}

/** One write for `Kernel.batch`: the same request the port method of the same name sends. */
export type KernelWrite =
  | { op: "neigh-replace"; neighbour: { linkIndex: number; ip: IpAddr; mac: string } }
  | { op: "neigh-delete"; neighbour: { linkIndex: number; ip: IpAddr } }
  | { op: "fdb-replace"; fdb: { linkIndex: number; mac: string; dst: IpAddr } }
  | { op: "fdb-delete"; fdb: { linkIndex: number; mac: string; dst: IpAddr } }
  | { op: "route-replace"; route: Route }
  | { op: "route-delete"; route: Route };

/** A WireGuard peer as configured on a device. Keys are 32 bytes in standard base64 (what `wg` prints). */
export interface WireguardPeer {
  publicKey: string;
  /** Preshared key (base64); undefined when none (all zero in the kernel). */
  presharedKey?: string;
  /** Where the peer is reached; undefined when unknown. */
  endpoint?: { ip: IpAddr; port: number };
  allowedIps: IpNet[];
  /** Seconds; 0 or undefined is off. */
  persistentKeepaliveSec?: number;
}

/** One peer change in `Wireguard.configure` (WG_CMD_SET_DEVICE's WGPEER_A_* with its flags). */
export interface WireguardPeerConfig extends WireguardPeer {
  /** WGPEER_F_REMOVE_ME: remove the peer with this public key (the other fields are ignored). */
  remove?: boolean;
  /** WGPEER_F_REPLACE_ALLOWEDIPS: the peer's allowed IPs become exactly `allowedIps`. */
  replaceAllowedIps?: boolean;
}

export interface WireguardDeviceConfig {
  /** Base64 private key; undefined leaves it as it is. */
  privateKey?: string;
  /** UDP port; undefined leaves it as it is. */
  listenPort?: number;
  /** WGDEVICE_F_REPLACE_PEERS: peers not in `peers` are removed. */
  replacePeers?: boolean;
  peers?: readonly WireguardPeerConfig[];
}

export interface WireguardDevice {
  name: string;
  /** Base64 public key of the device's private key; "" when no key is set. */
  publicKey: string;
  listenPort: number;
  peers: WireguardPeer[];
}

/** WireGuard device configuration (generic netlink family "wireguard"). */
export interface Wireguard {
  /** Applies `cfg` to the device (WG_CMD_SET_DEVICE). ENODEV when the device does not exist. */
  configure(device: string, cfg: WireguardDeviceConfig): void;
  /** The device's configuration (WG_CMD_GET_DEVICE), or undefined when there is no such device. */
  get(device: string): WireguardDevice | undefined;
}

/** All kernel ports together, as the composition root hands them out. */
export interface Kernel {
  links: Links;
  addrs: Addrs;
  routes: Routes;
  neighbours: Neighbours;
  fdb: Fdb;
  sysctl: Sysctl;
  events: KernelEvents;
  /** WireGuard configuration; absent in adapters that cannot do it (the wireguard backend says so). */
  wireguard?: Wireguard;
  /**
   * Applies `writes` in order with the same effect and contracts as calling the port methods one by one
   * (replaces idempotent, deletes succeed on absence), but lets the adapter send many at once (netlink: many
   * messages per sendmsg, acks read together). A failed write does not stop the later ones. Returns, per
   * write, undefined when it succeeded or its KernelError. Optional: callers use `applyWrites()`
   * (kernel/batch.ts), which falls back to one call per write.
   */
  batch?(writes: readonly KernelWrite[]): (KernelError | undefined)[];
}

export const NUD_PERMANENT = 0x80;
export const RT_TABLE_MAIN = 254;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const IFA_F_SECONDARY = 0x01;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_PERMANENT = 0x80;
