// Pure conversions between Kubernetes Node objects and flannel leases (upstream pkg/subnet/kube/kube.go):
// which podCIDR is the node's subnet, which annotations a node must carry for its lease, which node
// updates matter to peers, and how a peer's node becomes a Lease. No I/O here, so all of it is unit-tested.

import { FlannelError } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import type { Lease, LeaseAttrs } from "../../lease/lease.ts";
import type { Annotations } from "./annotations.ts";

/** The part of a v1.Node this module reads. */
export interface NodeLike {
  metadata?: { name?: string; annotations?: Record<string, string>; resourceVersion?: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
}

/** 24 h, informational only: kube leases are never renewed (upstream sets the same). */
export const KUBE_LEASE_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * The node's pod subnets, from `spec.podCIDRs` (1 or 2 entries) or else `spec.podCIDR`.
 * Throws upstream's messages; the "not assigned" case carries a hint with the three usual fixes.
 */
export function nodePodCidrs(node: NodeLike, nodeName: string): { v4: IpNet | null; v6: IpNet | null } {
  const spec = node.spec ?? {};
  if ((spec.podCIDR ?? "") === "") {
    throw new FlannelError("POD_CIDR_NOT_ASSIGNED", `node "${nodeName}" pod cidr not assigned`, {
      hint:
        `the kube subnet manager uses the node's spec.podCIDR as its subnet; let the controller manager assign one ` +
        `(kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16, which ` +
        `kubeadm init --pod-network-cidr=10.244.0.0/16 sets), or set it by hand: ` +
        `kubectl patch node ${nodeName} -p '{"spec":{"podCIDR":"10.244.1.0/24"}}'`,
    });
  }
  const texts =
    spec.podCIDRs !== undefined && spec.podCIDRs.length > 0 ? spec.podCIDRs : [spec.podCIDR ?? ""];
  if (texts.length > 2) {
    throw new FlannelError(
      "POD_CIDRS_INVALID",
      `node "${nodeName}" pod cidrs should be IPv4/IPv6 only or dualstack`,
      {
        hint: `spec.podCIDRs is ${JSON.stringify(texts)}; a node has at most one IPv4 and one IPv6 pod CIDR`,
      },
    );
  }
  let v4: IpNet | null = null;
  let v6: IpNet | null = null;
  for (const t of texts) {
    const n = IpNet.parse(t); // Go's "invalid CIDR address: <t>"
    if (n.family === 4) v4 = n;
    else v6 = n;
  }
  return { v4, v6 };
}

/** Upstream containsCIDR: `inner` lies within `outer` (a shorter or equal mask and the address inside). */
export function containsCidr(outer: IpNet, inner: IpNet): boolean {
  return outer.containsNet(inner);
}

/** Compact JSON text of backend data as Go marshals a json.RawMessage: absent → `null`. */
export function backendDataText(raw: string | undefined): string {
  return raw === undefined || raw === "" ? "null" : raw;
}

/**
 * The annotations this node must carry for `attrs`, or null when it already carries them (so no patch is
 * sent). Mirrors upstream's rules: which backends write v4/v6 data, and `public-ip-overwrite` winning
 * over the detected public IP.
 */
export function planNodeAnnotations(
  current: Record<string, string>,
  attrs: LeaseAttrs,
  a: Annotations,
): { changes: Record<string, string>; overrides: { key: string; value: string }[] } | null {
  const bd = backendDataText(attrs.backendData);
  const v6Bd = backendDataText(attrs.backendV6Data);
  const get = (k: string): string => current[k] ?? "";
  const pub = attrs.publicIp.toString();
  const pub6 = attrs.publicIpv6?.toString();
  const v4Differs =
    get(a.backendData) !== bd ||
    get(a.backendType) !== attrs.backendType ||
    get(a.backendPublicIp) !== pub ||
    get(a.subnetKubeManaged) !== "true" ||
    (get(a.backendPublicIpOverwrite) !== "" && get(a.backendPublicIpOverwrite) !== pub);
  const v6Differs =
    pub6 !== undefined &&
    (get(a.backendV6Data) !== v6Bd ||
      get(a.backendType) !== attrs.backendType ||
      get(a.backendPublicIpv6) !== pub6 ||
      get(a.subnetKubeManaged) !== "true" ||
      (get(a.backendPublicIpv6Overwrite) !== "" && get(a.backendPublicIpv6Overwrite) !== pub6));
  if (!v4Differs && !v6Differs) return null;

  const changes: Record<string, string> = {};
  const overrides: { key: string; value: string }[] = [];
  const type = attrs.backendType;
  changes[a.backendType] = type;
  if ((type === "vxlan" && bd !== "null") || (type === "wireguard" && bd !== "null") || type !== "vxlan") {
    changes[a.backendData] = bd;
    const ow = get(a.backendPublicIpOverwrite);
    if (ow !== "") {
      if (get(a.backendPublicIp) !== ow) {
        overrides.push({ key: a.backendPublicIpOverwrite, value: ow });
        changes[a.backendPublicIp] = ow;
      }
    } else {
      changes[a.backendPublicIp] = pub;
    }
  }
  const v6Writes =
    (type === "vxlan" && v6Bd !== "null") ||
    (type === "wireguard" && v6Bd !== "null" && pub6 !== undefined) ||
    (type === "host-gw" && pub6 !== undefined) ||
    (type === "extension" && pub6 !== undefined);
  if (v6Writes) {
    changes[a.backendV6Data] = v6Bd;
    const ow6 = get(a.backendPublicIpv6Overwrite);
    if (ow6 !== "") {
      if (get(a.backendPublicIpv6) !== ow6) {
        overrides.push({ key: a.backendPublicIpv6Overwrite, value: ow6 });
        changes[a.backendPublicIpv6] = ow6;
      }
    } else if (pub6 !== undefined) {
      changes[a.backendPublicIpv6] = pub6;
    }
  }
  changes[a.subnetKubeManaged] = "true";
  // Only what differs goes into the patch (upstream sends a two-way merge patch of old vs new).
  for (const [k, v] of Object.entries(changes)) if (current[k] === v) delete changes[k];
  return { changes, overrides };
}

/** True when the node is a flannel peer (it carries `kube-subnet-manager: "true"`). */
export function isFlannelNode(node: NodeLike, a: Annotations): boolean {
  return node.metadata?.annotations?.[a.subnetKubeManaged] === "true";
}

/**
 * Whether an update of a peer node changes its lease. Upstream (spec Appendix A10) drops a dual-stack
 * update unless *both* families changed, and ignores podCIDR changes; we report a change of either
 * family's annotations or of the pod CIDRs, so peers never keep a stale route.
 */
export function leaseChanged(
  oldNode: NodeLike,
  newNode: NodeLike,
  a: Annotations,
  families: { v4: boolean; v6: boolean },
): boolean {
  const o = oldNode.metadata?.annotations ?? {};
  const n = newNode.metadata?.annotations ?? {};
  const same = (k: string): boolean => o[k] === n[k];
  const v4 = families.v4 && !(same(a.backendData) && same(a.backendType) && same(a.backendPublicIp));
  const v6 = families.v6 && !(same(a.backendV6Data) && same(a.backendType) && same(a.backendPublicIpv6));
  const cidrs =
    oldNode.spec?.podCIDR !== newNode.spec?.podCIDR ||
    JSON.stringify(oldNode.spec?.podCIDRs ?? []) !== JSON.stringify(newNode.spec?.podCIDRs ?? []);
  return v4 || v6 || cidrs;
}

/** A peer node as a lease (upstream nodeToLease); throws upstream's messages for unusable nodes. */
export function nodeToLease(
  node: NodeLike,
  a: Annotations,
  families: { v4: boolean; v6: boolean },
  now: Date = new Date(),
): Lease {
  const name = node.metadata?.name ?? "";
  const ann = node.metadata?.annotations ?? {};
  const spec = node.spec ?? {};
  const texts =
    spec.podCIDRs !== undefined && spec.podCIDRs.length > 0 ? spec.podCIDRs : [spec.podCIDR ?? ""];
  if (texts.length > 2) throw new Error(`node "${name}" pod cidrs should be IPv4/IPv6 only or dualstack`);
  const nets = texts.map((t) => IpNet.parse(t));
  const lease: Lease = {
    enableIpv4: false,
    enableIpv6: false,
    subnet: null,
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.zero(4), publicIpv6: null, backendType: ann[a.backendType] ?? "" },
    expiration: new Date(now.getTime() + KUBE_LEASE_TTL_MS),
    asof: Number(node.metadata?.resourceVersion ?? 0) || 0,
  };
  if (families.v4) {
    lease.attrs.publicIp = parseFamily(ann[a.backendPublicIp] ?? "", 4);
    const bd = ann[a.backendData];
    if (bd !== undefined) lease.attrs.backendData = bd;
    const v4 = nets.find((n) => n.family === 4);
    if (v4 === undefined) throw new Error("missing IPv4 address on n.Spec.PodCIDRs");
    lease.subnet = v4;
    lease.enableIpv4 = true;
  }
  if (families.v6) {
    lease.attrs.publicIpv6 = parseFamily(ann[a.backendPublicIpv6] ?? "", 6);
    const bd6 = ann[a.backendV6Data];
    if (bd6 !== undefined) lease.attrs.backendV6Data = bd6;
    const v6 = nets.find((n) => n.family === 6);
    if (v6 === undefined) throw new Error("missing IPv6 address on n.Spec.PodCIDRs");
    lease.ipv6Subnet = v6;
    lease.enableIpv6 = true;
  }
  return lease;
}

/** Go's ip.ParseIP4 / ip.ParseIP6 messages. */
function parseFamily(text: string, family: 4 | 6): IpAddr {
  const ip = IpAddr.tryParse(text);
  if (ip === undefined) throw new Error("invalid IP address format");
  if (ip.family !== family)
    throw new Error(family === 4 ? "invalid IPv4 address format" : "invalid IPv6 address format");
  return ip;
}
