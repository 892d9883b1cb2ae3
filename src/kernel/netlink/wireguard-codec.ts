// Generic netlink and WireGuard messages (linux/genetlink.h, linux/wireguard.h): resolving the "wireguard"
// family with CTRL_CMD_GETFAMILY, then WG_CMD_SET_DEVICE / WG_CMD_GET_DEVICE. Pure functions over Buffers,
// like codec.ts, so the exact bytes are unit-tested without the kernel module (which our CI kernels lack).
//
// Design notes
// - A generic netlink message is nlmsghdr (type = the family id the controller assigned at module load) +
//   genlmsghdr {u8 cmd, u8 version, u16 reserved} + attributes.
// - WireGuard's peer and allowed-IP lists are nested attributes whose children are themselves nests; the
//   child type is an ignored index, sent as 0 as wireguard-tools does. Nests carry NLA_F_NESTED like libmnl.
// - Host byte order except where the UAPI says network order: the endpoint's sockaddr port (and the
//   addresses). WGDEVICE_A_LISTEN_PORT and the keepalive interval are host-order u16.
// - Keys travel as 32 raw bytes; the port and the rest of flannel-ts handle them as standard base64, which
//   is what `wg` prints and what leases carry.

import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import type { WireguardDevice, WireguardDeviceConfig, WireguardPeer } from "../ports.ts";
import * as nl from "./codec.ts";

export const NETLINK_GENERIC = 16;
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

export const WG_GENL_NAME = "wireguard";
export const WG_GENL_VERSION = 1;
export const WG_CMD_GET_DEVICE = 0;
export const WG_CMD_SET_DEVICE = 1;
export const WGDEVICE_F_REPLACE_PEERS = 1;
export const WGDEVICE_A_IFINDEX = 1;
export const WGDEVICE_A_IFNAME = 2;
export const WGDEVICE_A_PRIVATE_KEY = 3;
export const WGDEVICE_A_PUBLIC_KEY = 4;
export const WGDEVICE_A_FLAGS = 5;
export const WGDEVICE_A_LISTEN_PORT = 6;
export const WGDEVICE_A_FWMARK = 7;
export const WGDEVICE_A_PEERS = 8;
export const WGPEER_F_REMOVE_ME = 1;
export const WGPEER_F_REPLACE_ALLOWEDIPS = 2;
export const WGPEER_A_PUBLIC_KEY = 1;
export const WGPEER_A_PRESHARED_KEY = 2;
export const WGPEER_A_FLAGS = 3;
export const WGPEER_A_ENDPOINT = 4;
export const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5;
export const WGPEER_A_ALLOWEDIPS = 9;
export const WGALLOWEDIP_A_FAMILY = 1;
export const WGALLOWEDIP_A_IPADDR = 2;
export const WGALLOWEDIP_A_CIDR_MASK = 3;

const NLA_F_NESTED = 0x8000;
const WG_KEY_LEN = 32;

/** genlmsghdr + attributes. */
export function encodeGenl(cmd: number, version: number, attrs: readonly nl.Attr[]): Buffer {
  return Buffer.concat([Buffer.from([cmd, version, 0, 0]), nl.encodeAttrs(attrs)]);
}

export function decodeGenl(body: Buffer): { cmd: number; version: number; attrs: nl.Attr[] } {
  return { cmd: body.readUInt8(0), version: body.readUInt8(1), attrs: nl.decodeAttrs(body.subarray(4)) };
}

/** CTRL_CMD_GETFAMILY for `name` (sent to GENL_ID_CTRL). */
export function encodeGetFamily(name: string): Buffer {
  return encodeGenl(CTRL_CMD_GETFAMILY, 1, [nl.str(CTRL_ATTR_FAMILY_NAME, name)]);
}

/** The family id in a CTRL_CMD_NEWFAMILY answer; undefined when absent. */
export function decodeFamilyId(body: Buffer): number | undefined {
  const id = nl.attrMap(decodeGenl(body).attrs).get(CTRL_ATTR_FAMILY_ID);
  return id && id.length >= 2 ? id.readUInt16LE(0) : undefined;
}

/** 32 key bytes from standard base64; throws naming `what` when it is not a 32-byte key. */
export function keyBytes(b64: string, what: string): Buffer {
  const b = Buffer.from(b64, "base64");
  if (b.length !== WG_KEY_LEN || b.toString("base64") !== b64) {
    throw new Error(
      `Invalid WireGuard ${what} ${JSON.stringify(b64)}: expected 32 bytes in base64 (wg genkey)`,
    );
  }
  return b;
}

const u16 = (type: number, v: number): nl.Attr => {
  const data = Buffer.alloc(2);
  data.writeUInt16LE(v, 0);
  return { type, data };
};

const nest = (type: number, children: readonly nl.Attr[]): nl.Attr =>
  nl.nested(type | NLA_F_NESTED, children);

/** struct sockaddr_in (16 bytes) / sockaddr_in6 (28 bytes), port and address in network order. */
export function encodeSockaddr(ip: IpAddr, port: number): Buffer {
  const v4 = ip.family === 4;
  const b = Buffer.alloc(v4 ? 16 : 28);
  b.writeUInt16LE(v4 ? nl.AF_INET : nl.AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  ip.toBytes().copy(b, v4 ? 4 : 8);
  return b;
}

export function decodeSockaddr(b: Buffer): { ip: IpAddr; port: number } | undefined {
  if (b.length < 4) return undefined;
  const fam = b.readUInt16LE(0);
  if (fam === nl.AF_INET && b.length >= 8)
    return { ip: IpAddr.fromBytes(b.subarray(4, 8)), port: b.readUInt16BE(2) };
  if (fam === nl.AF_INET6 && b.length >= 24)
    return { ip: IpAddr.fromBytes(b.subarray(8, 24)), port: b.readUInt16BE(2) };
  return undefined;
}

/** WG_CMD_SET_DEVICE's genl body for `device` (by name). */
export function encodeSetDevice(device: string, cfg: WireguardDeviceConfig): Buffer {
  const attrs: nl.Attr[] = [nl.str(WGDEVICE_A_IFNAME, device)];
  if (cfg.privateKey !== undefined)
    attrs.push(nl.bytes(WGDEVICE_A_PRIVATE_KEY, keyBytes(cfg.privateKey, "private key")));
  if (cfg.listenPort !== undefined) attrs.push(u16(WGDEVICE_A_LISTEN_PORT, cfg.listenPort));
  if (cfg.replacePeers === true) attrs.push(nl.u32(WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS));
  if (cfg.peers !== undefined && cfg.peers.length > 0) {
    attrs.push(
      nest(
        WGDEVICE_A_PEERS,
        cfg.peers.map((p) => {
          const pa: nl.Attr[] = [nl.bytes(WGPEER_A_PUBLIC_KEY, keyBytes(p.publicKey, "public key"))];
          if (p.remove === true) {
            pa.push(nl.u32(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME));
            return nest(0, pa);
          }
          if (p.replaceAllowedIps === true) pa.push(nl.u32(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS));
          if (p.presharedKey !== undefined)
            pa.push(nl.bytes(WGPEER_A_PRESHARED_KEY, keyBytes(p.presharedKey, "preshared key")));
          if (p.endpoint !== undefined)
            pa.push(nl.bytes(WGPEER_A_ENDPOINT, encodeSockaddr(p.endpoint.ip, p.endpoint.port)));
          if (p.persistentKeepaliveSec !== undefined)
            pa.push(u16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p.persistentKeepaliveSec));
          if (p.allowedIps.length > 0) {
            pa.push(
              nest(
                WGPEER_A_ALLOWEDIPS,
                p.allowedIps.map((n) =>
                  nest(0, [
                    u16(WGALLOWEDIP_A_FAMILY, n.family === 4 ? nl.AF_INET : nl.AF_INET6),
                    nl.bytes(WGALLOWEDIP_A_IPADDR, n.ip.toBytes()),
                    nl.u8(WGALLOWEDIP_A_CIDR_MASK, n.prefixLen),
                  ]),
                ),
              ),
            );
          }
          return nest(0, pa);
        }),
      ),
    );
  }
  return encodeGenl(WG_CMD_SET_DEVICE, WG_GENL_VERSION, attrs);
}

/** WG_CMD_GET_DEVICE's genl body (sent as a dump) for `device`. */
export function encodeGetDevice(device: string): Buffer {
  return encodeGenl(WG_CMD_GET_DEVICE, WG_GENL_VERSION, [nl.str(WGDEVICE_A_IFNAME, device)]);
}

function decodePeer(buf: Buffer): WireguardPeer | undefined {
  const a = nl.attrMap(nl.decodeAttrs(buf));
  const pub = a.get(WGPEER_A_PUBLIC_KEY);
  if (pub?.length !== WG_KEY_LEN) return undefined;
  const peer: WireguardPeer = { publicKey: pub.toString("base64"), allowedIps: [] };
  const psk = a.get(WGPEER_A_PRESHARED_KEY);
  if (psk?.length === WG_KEY_LEN && psk.some((x) => x !== 0)) peer.presharedKey = psk.toString("base64");
  const ep = a.get(WGPEER_A_ENDPOINT);
  const endpoint = ep && decodeSockaddr(ep);
  if (endpoint !== undefined && !endpoint.ip.isUnspecified) peer.endpoint = endpoint;
  const ka = a.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL);
  if (ka && ka.length >= 2 && ka.readUInt16LE(0) > 0) peer.persistentKeepaliveSec = ka.readUInt16LE(0);
  const ips = a.get(WGPEER_A_ALLOWEDIPS);
  for (const child of ips ? nl.decodeAttrs(ips) : []) {
    const c = nl.attrMap(nl.decodeAttrs(child.data));
    const ip = c.get(WGALLOWEDIP_A_IPADDR);
    const mask = c.get(WGALLOWEDIP_A_CIDR_MASK);
    if (!ip || (ip.length !== 4 && ip.length !== 16) || !mask || mask.length < 1) continue;
    peer.allowedIps.push(IpNet.of(IpAddr.fromBytes(ip), mask[0] ?? 0));
  }
  return peer;
}

/**
 * The device from the genl bodies of a WG_CMD_GET_DEVICE dump. A large device spans several messages and
 * one peer may continue in the next message (same public key first), so peers are merged.
 */
export function decodeDevice(bodies: readonly Buffer[]): WireguardDevice {
  const dev: WireguardDevice = { name: "", publicKey: "", listenPort: 0, peers: [] };
  for (const body of bodies) {
    const a = nl.attrMap(decodeGenl(body).attrs);
    const name = a.get(WGDEVICE_A_IFNAME);
    if (name) dev.name = nl.readStr(name);
    const pub = a.get(WGDEVICE_A_PUBLIC_KEY);
    if (pub?.length === WG_KEY_LEN && pub.some((x) => x !== 0)) dev.publicKey = pub.toString("base64");
    const port = a.get(WGDEVICE_A_LISTEN_PORT);
    if (port && port.length >= 2) dev.listenPort = port.readUInt16LE(0);
    const peers = a.get(WGDEVICE_A_PEERS);
    for (const child of peers ? nl.decodeAttrs(peers) : []) {
      const p = decodePeer(child.data);
      if (p === undefined) continue;
      const last = dev.peers[dev.peers.length - 1];
      if (last?.publicKey === p.publicKey) last.allowedIps.push(...p.allowedIps);
      else dev.peers.push(p);
    }
  }
  return dev;
}
