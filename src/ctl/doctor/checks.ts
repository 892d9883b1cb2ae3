// doctor's checks: pure functions from NodeFacts to findings. Each finding names what it saw (evidence) and,
// when something is wrong, the exact command that fixes it. Nothing here touches the system.
//
// Design notes
// - The checks follow the failures operators actually hit (spec §11): no CNI config (node NotReady), RBAC
//   missing (`error retrieving pod spec`), no podCIDR (`pod cidr not assigned`), the wrong interface on a
//   multi-NIC host (leases with duplicate or unreachable public IPs), overlapping leases, stale devices after
//   `kubeadm reset` (a second address on flannel.1, an old subnet on cni0), MTU larger than the overlay
//   allows, a blocked VXLAN port, br_netfilter missing, ip_forward off, FORWARD dropping pod traffic.
// - A check without the facts it needs says "skip" with the reason (e.g. no etcd/API access given), never
//   "ok": an ok must mean the thing was looked at.
// - Peer programming (route, ARP, FDB per peer) is checked from the leases, the same desired state flanneld
//   computes, so a missing entry is named exactly (`trace` walks one packet through the same entries).

import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import type { LeaseFact, LinkFact, NodeFacts } from "./facts.ts";
import { evaluateChain, parseIptablesSave, type Packet } from "./iptables-eval.ts";

export type Status = "ok" | "warn" | "fail" | "skip";

export interface Finding {
  check: string;
  status: Status;
  /** One sentence: what is right or wrong. */
  summary: string;
  /** What was seen that shows it. */
  evidence: string[];
  /** The exact command(s) that fix it (fail/warn only). */
  fix?: string;
}

export const CNI_CONF_NAME = "10-flannel.conflist";
const VXLAN_DEFAULT_PORT = 8472;
const MANIFEST = "https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml";
const DEFAULT_PREFIX = "flannel.alpha.coreos.com";

function f(check: string, status: Status, summary: string, evidence: string[] = [], fix?: string): Finding {
  return fix === undefined ? { check, status, summary, evidence } : { check, status, summary, evidence, fix };
}

function firstCidr(text: string | undefined): IpNet | undefined {
  if (text === undefined) return undefined;
  for (const part of text.split(",")) {
    const n = IpNet.tryParse(part.trim());
    if (n !== undefined) return n;
  }
  return undefined;
}

/** Facts every check derives the same way. */
export interface Context {
  network?: IpNet;
  /** This node's subnet (masked), from subnet.env. */
  subnet?: IpNet;
  mtu?: number;
  ipMasq?: boolean;
  vxlan?: LinkFact;
  own?: LeaseFact;
  peers: LeaseFact[];
  backend?: string;
}

export function deriveContext(facts: NodeFacts): Context {
  const env = facts.subnetEnv.values ?? {};
  const ctx: Context = { peers: [] };
  const network = firstCidr(env["FLANNEL_NETWORK"]) ?? firstCidr(facts.leases?.network);
  if (network) ctx.network = network;
  const subnet = firstCidr(env["FLANNEL_SUBNET"]);
  if (subnet) ctx.subnet = subnet;
  const mtu = Number(env["FLANNEL_MTU"]);
  if (env["FLANNEL_MTU"] !== undefined && Number.isInteger(mtu)) ctx.mtu = mtu;
  if (env["FLANNEL_IPMASQ"] !== undefined) ctx.ipMasq = env["FLANNEL_IPMASQ"] === "true";
  const vx = facts.links.find((l) => l.kind === "vxlan" && /^flannel\.\d+$/.test(l.name));
  if (vx) ctx.vxlan = vx;
  const leases = facts.leases?.leases ?? [];
  const own =
    (subnet && leases.find((l) => IpNet.tryParse(l.subnet)?.equals(subnet))) ||
    (facts.node !== undefined ? leases.find((l) => l.node === facts.node) : undefined);
  if (own) ctx.own = own;
  ctx.peers = leases.filter((l) => l !== own);
  const backend = own?.backendType || (vx ? "vxlan" : undefined);
  if (backend) ctx.backend = backend;
  return ctx;
}

// ---- CNI config ---------------------------------------------------------------------------------------

export function checkCniConfig(facts: NodeFacts): Finding {
  const c = facts.cniConf;
  const id = "cni-config";
  const restartFix = `kubectl -n kube-flannel delete pod --field-selector spec.nodeName=${facts.node ?? "<node>"} -l app=flannel   # install-cni re-creates ${c.dir}/${CNI_CONF_NAME}`;
  if (c.state === "missing") {
    return f(
      id,
      "fail",
      `${c.dir} does not exist: kubelet has no CNI config and keeps the node NotReady`,
      [`stat ${c.dir}: no such file or directory`],
      `mkdir -p ${c.dir} && ${restartFix}`,
    );
  }
  if (c.state === "unreadable") {
    return f(id, "fail", `Cannot read ${c.dir}: ${c.error ?? "unknown error"}`, [], `ls -la ${c.dir}`);
  }
  const flannel = c.entries.find((e) => e.name === CNI_CONF_NAME);
  if (flannel?.type === "dir") {
    return f(
      id,
      "fail",
      `${c.dir}/${CNI_CONF_NAME} is a directory, not a file: the CNI config cannot be read`,
      [`${c.dir}/${CNI_CONF_NAME}: directory (a hostPath mount of a missing file creates one)`],
      `rm -rf ${c.dir}/${CNI_CONF_NAME} && ${restartFix}`,
    );
  }
  if (flannel?.type === "file" && (flannel.size === 0 || (flannel.content ?? "").trim() === "")) {
    return f(
      id,
      "fail",
      `${c.dir}/${CNI_CONF_NAME} is empty: install-cni did not finish writing it`,
      [`${c.dir}/${CNI_CONF_NAME}: ${flannel.size} bytes`],
      `rm -f ${c.dir}/${CNI_CONF_NAME} && ${restartFix}`,
    );
  }
  const confs = c.entries
    .filter((e) => e.type === "file" && /\.(conf|conflist|json)$/.test(e.name))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  if (confs.length === 0) {
    return f(
      id,
      "fail",
      `No CNI config in ${c.dir}: kubelet keeps the node NotReady (flannel not running here, or install-cni failed)`,
      [
        c.entries.length === 0
          ? `${c.dir} is empty`
          : `${c.dir} holds only ${c.entries.map((e) => e.name).join(", ")}`,
      ],
      restartFix,
    );
  }
  if (flannel?.type === "file") {
    try {
      const conf = JSON.parse(flannel.content ?? "") as { plugins?: { type?: string }[]; type?: string };
      const types = conf.plugins?.map((p) => p.type) ?? [conf.type];
      if (!types.includes("flannel")) {
        return f(
          id,
          "fail",
          `${c.dir}/${CNI_CONF_NAME} has no plugin of type "flannel"`,
          [`plugins: ${types.join(", ")}`],
          restartFix,
        );
      }
    } catch (err) {
      return f(
        id,
        "fail",
        `${c.dir}/${CNI_CONF_NAME} is not valid JSON: ${(err as Error).message}`,
        [],
        `rm -f ${c.dir}/${CNI_CONF_NAME} && ${restartFix}`,
      );
    }
  }
  const first = confs[0] as { name: string };
  if (first.name !== CNI_CONF_NAME) {
    const isFlannel = /"type"\s*:\s*"flannel"/.test(confs[0]?.content ?? "");
    if (!isFlannel) {
      return f(
        id,
        "warn",
        `kubelet uses the first config in ${c.dir}, ${first.name}, which is not flannel's`,
        [`configs: ${confs.map((e) => e.name).join(", ")}`],
        `mv ${c.dir}/${first.name} /root/${first.name}.disabled   # if it is left over from another CNI`,
      );
    }
  }
  return f(id, "ok", `${c.dir}/${first.name} is a valid flannel CNI config`, [
    `configs: ${confs.map((e) => e.name).join(", ")}`,
  ]);
}

// ---- subnet.env ---------------------------------------------------------------------------------------

export function checkSubnetEnv(facts: NodeFacts, ctx: Context): Finding {
  const s = facts.subnetEnv;
  const id = "subnet-env";
  const logs =
    "kubectl -n kube-flannel logs -l app=flannel --field-selector spec.nodeName=<node>   # or: journalctl -u flanneld";
  if (s.state === "missing") {
    return f(
      id,
      "fail",
      `${s.path} does not exist: flanneld is not running or not ready on this node, so every pod ADD fails (loadFlannelSubnetEnv)`,
      [`open ${s.path}: no such file or directory`],
      `${logs}   # find why flanneld does not start`,
    );
  }
  if (s.state === "unreadable") {
    return f(id, "fail", `Cannot read ${s.path}: ${s.error ?? "unknown error"}`, [], `ls -la ${s.path}`);
  }
  const missing = ["FLANNEL_SUBNET", "FLANNEL_MTU"].filter((k) => s.values?.[k] === undefined);
  if (missing.length > 0 && s.values?.["FLANNEL_IPV6_SUBNET"] === undefined) {
    return f(
      id,
      "fail",
      `${s.path} lacks ${missing.join(", ")}`,
      [JSON.stringify(s.values ?? {})],
      `rm ${s.path} && restart flanneld on this node   # it writes the file once it is ready`,
    );
  }
  return f(
    id,
    "ok",
    `${s.path}: subnet ${s.values?.["FLANNEL_SUBNET"] ?? "-"}, network ${ctx.network?.toString() ?? "-"}, MTU ${ctx.mtu ?? "-"}`,
  );
}

// ---- sysctls ------------------------------------------------------------------------------------------

export function checkBrNetfilter(facts: NodeFacts, ctx: Context): Finding {
  const id = "br-netfilter";
  if (
    facts.nft.tables?.some((t) => t === "ip flannel-ipv4") &&
    facts.iptables.filter?.every((l) => !l.includes("FLANNEL-FWD"))
  ) {
    return f(id, "skip", "nftables mode: flanneld does not need br_netfilter");
  }
  const v = facts.sysctls["net/bridge/bridge-nf-call-iptables"];
  const persist = "modprobe br_netfilter && echo br_netfilter > /etc/modules-load.d/br_netfilter.conf";
  if (v === undefined) {
    return f(
      id,
      "fail",
      "The br_netfilter module is not loaded: flanneld exits with `Failed to check br_netfilter` and bridged pod traffic bypasses iptables",
      ["stat /proc/sys/net/bridge/bridge-nf-call-iptables: no such file or directory"],
      persist,
    );
  }
  if (v.trim() !== "1") {
    return f(
      id,
      "warn",
      "net.bridge.bridge-nf-call-iptables is off: traffic between pods on this bridge bypasses iptables (Services, NetworkPolicy)",
      [`net.bridge.bridge-nf-call-iptables = ${v.trim()}`],
      "sysctl -w net.bridge.bridge-nf-call-iptables=1 && echo net.bridge.bridge-nf-call-iptables=1 > /etc/sysctl.d/99-flannel.conf",
    );
  }
  void ctx;
  return f(id, "ok", "br_netfilter is loaded, bridge-nf-call-iptables = 1");
}

export function checkIpForward(facts: NodeFacts): Finding {
  const v = facts.sysctls["net/ipv4/ip_forward"]?.trim();
  if (v !== "1") {
    return f(
      "ip-forward",
      "fail",
      "IPv4 forwarding is off: the node does not route pod traffic to other nodes",
      [`net.ipv4.ip_forward = ${v ?? "unknown"}`],
      "sysctl -w net.ipv4.ip_forward=1 && echo net.ipv4.ip_forward=1 > /etc/sysctl.d/99-flannel.conf",
    );
  }
  return f("ip-forward", "ok", "net.ipv4.ip_forward = 1");
}

// ---- devices ------------------------------------------------------------------------------------------

export function checkVxlanDevice(facts: NodeFacts, ctx: Context): Finding {
  const id = "flannel-device";
  const vx = ctx.vxlan;
  if (!vx) {
    if (ctx.backend === "vxlan") {
      return f(
        id,
        "fail",
        "No flannel.<VNI> vxlan device although this node's lease is vxlan",
        [],
        "restart flanneld on this node   # it creates the device",
      );
    }
    return f(id, "skip", `No flannel vxlan device (backend ${ctx.backend ?? "unknown"})`);
  }
  const v4 = vx.addrs.filter((a) => !a.includes(":"));
  const expected = ctx.subnet ? `${ctx.subnet.ip.toString()}/32` : undefined;
  const restart = `ip link delete ${vx.name} && restart flanneld on this node   # flanneld re-creates it with the right address`;
  const stale = expected === undefined ? [] : v4.filter((a) => a !== expected);
  if (stale.length > 0) {
    const other = stale.filter(
      (a) => ctx.network && !ctx.network.contains(IpAddr.parse(a.split("/")[0] as string)),
    );
    return f(
      id,
      "fail",
      `${vx.name} carries ${stale.length === v4.length ? "an address" : "an extra address"} from ${other.length > 0 ? "another network (stale device from an earlier install)" : "an old subnet"}: ${stale.join(", ")}`,
      [
        `${vx.name} addresses: ${v4.join(", ")}`,
        `expected only ${expected ?? "?"} (FLANNEL_SUBNET ${facts.subnetEnv.values?.["FLANNEL_SUBNET"] ?? "?"})`,
      ],
      stale.map((a) => `ip addr del ${a} dev ${vx.name}`).join(" && ") + `   # or: ${restart}`,
    );
  }
  if (!vx.up) {
    return f(id, "fail", `${vx.name} is down`, [`${vx.name}: state down`], `ip link set ${vx.name} up`);
  }
  if (ctx.own && vx.vxlan?.local && vx.vxlan.local !== ctx.own.publicIp) {
    return f(
      id,
      "fail",
      `${vx.name} sends from ${vx.vxlan.local} but this node's lease advertises ${ctx.own.publicIp}`,
      [`${vx.name} local ${vx.vxlan.local}`],
      restart,
    );
  }
  if (ctx.own?.vtepMac && vx.mac !== "" && ctx.own.vtepMac !== vx.mac) {
    return f(
      id,
      "fail",
      `This node's lease ${ctx.own.subnet} names VTEP MAC ${ctx.own.vtepMac} but ${vx.name} has ${vx.mac}: another node wrote the same lease, so nodes share the public IP ${ctx.own.publicIp} (wrong interface on a multi-NIC host?)`,
      [`lease VtepMAC ${ctx.own.vtepMac}`, `${vx.name} MAC ${vx.mac}`],
      `restart flanneld with --iface=<the interface on the network the nodes share> on every node that advertises ${ctx.own.publicIp}`,
    );
  }
  if (expected !== undefined && v4.length === 0) {
    return f(id, "fail", `${vx.name} has no address; expected ${expected}`, [], restart);
  }
  return f(
    id,
    "ok",
    `${vx.name}: vni ${vx.vxlan?.vni ?? "?"}, local ${vx.vxlan?.local ?? "-"}, address ${v4.join(", ") || "-"}, mtu ${vx.mtu}`,
  );
}

export function checkCniBridge(facts: NodeFacts, ctx: Context): Finding {
  const id = "cni-bridge";
  const br = facts.links.find((l) => l.name === "cni0");
  if (!br) return f(id, "ok", "No cni0 bridge yet (created with the first pod on this node)");
  if (!ctx.subnet) return f(id, "skip", "cni0 exists but this node's subnet is unknown (no subnet.env)");
  const gw = `${ctx.subnet.ip.add(1).toString()}/${ctx.subnet.prefixLen}`;
  const v4 = br.addrs.filter((a) => !a.includes(":"));
  const wrong = v4.filter((a) => a !== gw);
  if (wrong.length > 0) {
    return f(
      id,
      "fail",
      `cni0 has ${wrong.join(", ")} but this node's subnet gateway is ${gw}: the bridge plugin fails with \`"cni0" already has an IP address different from ${gw}\` (stale bridge from an earlier install)`,
      [
        `cni0 addresses: ${v4.join(", ")}`,
        `FLANNEL_SUBNET=${facts.subnetEnv.values?.["FLANNEL_SUBNET"] ?? "?"}`,
      ],
      "ip link set cni0 down && ip link delete cni0   # the next pod re-creates it; restart the pods of this node",
    );
  }
  return f(id, "ok", `cni0 has ${v4.join(", ") || "no address yet"}`);
}

export function checkMtu(facts: NodeFacts, ctx: Context): Finding {
  const id = "mtu";
  const vx = ctx.vxlan;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (vx) {
    const under = facts.links.find((l) => l.index === vx.vxlan?.vtepIndex);
    if (under && vx.mtu > under.mtu - 50) {
      problems.push(`${vx.name} mtu ${vx.mtu} > ${under.name} mtu ${under.mtu} - 50 (VXLAN overhead)`);
      fixes.push(`ip link set ${vx.name} mtu ${under.mtu - 50}`);
    }
    if (ctx.mtu !== undefined && ctx.mtu > vx.mtu) {
      problems.push(`FLANNEL_MTU ${ctx.mtu} > ${vx.name} mtu ${vx.mtu}`);
      fixes.push(`restart flanneld   # rewrites FLANNEL_MTU`);
    }
    const limit = Math.min(vx.mtu, ctx.mtu ?? vx.mtu);
    const br = facts.links.find((l) => l.name === "cni0");
    if (br && br.mtu > limit) {
      problems.push(`cni0 mtu ${br.mtu} > ${limit}`);
      fixes.push(`ip link set cni0 mtu ${limit}`);
    }
    if (br) {
      const big = facts.links.filter((l) => l.masterIndex === br.index && l.mtu > limit);
      if (big.length > 0) {
        problems.push(`pod veths with mtu > ${limit}: ${big.map((l) => `${l.name} ${l.mtu}`).join(", ")}`);
        fixes.push(`delete and re-create those pods (their MTU comes from FLANNEL_MTU at ADD time)`);
      }
    }
  } else if (ctx.mtu !== undefined) {
    return f(id, "skip", `FLANNEL_MTU ${ctx.mtu}; no vxlan device to compare with`);
  }
  if (problems.length > 0) {
    return f(
      id,
      "fail",
      "Pod MTU is larger than the overlay allows: large packets are dropped (TCP stalls, small pings work)",
      problems,
      fixes.join(" && "),
    );
  }
  if (!vx) return f(id, "skip", "No overlay device and no FLANNEL_MTU");
  return f(id, "ok", `MTU consistent: ${vx.name} ${vx.mtu}, FLANNEL_MTU ${ctx.mtu ?? "-"}`);
}

// ---- iptables -----------------------------------------------------------------------------------------

function nftMode(facts: NodeFacts): boolean {
  return (
    facts.nft.tables?.includes("ip flannel-ipv4") === true &&
    !(facts.iptables.filter ?? []).some((l) => l.includes("FLANNEL-FWD"))
  );
}

export function checkForward(facts: NodeFacts, ctx: Context): Finding {
  const id = "forward-chain";
  if (!facts.iptables.filter)
    return f(id, "skip", `iptables not usable: ${facts.iptables.error ?? "unknown"}`);
  if (!ctx.network || !ctx.subnet) return f(id, "skip", "Pod network unknown (no subnet.env)");
  const t = parseIptablesSave(facts.iptables.filter);
  const local = ctx.subnet.ip.add(2);
  const peerNet = ctx.peers.map((p) => IpNet.tryParse(p.subnet)).find((n) => n !== undefined);
  const remote = peerNet
    ? peerNet.ip.add(2)
    : ctx.network.ip.add(ctx.network.ip.equals(ctx.subnet.ip) ? ctx.subnet.size + 2n : 2);
  const out = evaluateChain(t, "FORWARD", { src: local, dst: remote });
  const back = evaluateChain(t, "FORWARD", { src: remote, dst: local });
  const bad = [out, back].find((v) => v.verdict === "drop");
  const net = ctx.network.toString();
  if (bad) {
    const fix =
      bad.position === 0
        ? `iptables -A FORWARD -s ${net} -j ACCEPT && iptables -A FORWARD -d ${net} -j ACCEPT   # or restart flanneld with --iptables-forward-rules=true`
        : `iptables -D ${bad.rule.replace(/^-A /, "")}`;
    const hasFlannel = t.rules.has("FLANNEL-FWD");
    return f(
      id,
      "fail",
      `The FORWARD chain drops pod traffic ${bad === out ? `${local.toString()} → ${remote.toString()}` : `${remote.toString()} → ${local.toString()}`}${hasFlannel ? " before flannel's FLANNEL-FWD accept rules" : " and flannel's accept rules are missing"}`,
      [bad.position === 0 ? `policy: ${bad.rule}` : `rule ${bad.position} of ${bad.chain}: ${bad.rule}`],
      fix,
    );
  }
  if (nftMode(facts)) return f(id, "ok", "nftables mode; iptables FORWARD lets pod traffic through");
  return f(
    id,
    "ok",
    `FORWARD accepts pod traffic (${out.position === 0 ? out.rule : `${out.chain} rule ${out.position}: ${out.rule}`})`,
  );
}

export function checkMasquerade(facts: NodeFacts, ctx: Context): Finding {
  const id = "masquerade";
  if (ctx.ipMasq !== true) return f(id, "skip", "FLANNEL_IPMASQ is not true: flanneld does not masquerade");
  if (nftMode(facts)) return f(id, "ok", "nftables mode: table ip flannel-ipv4 exists");
  const nat = facts.iptables.nat;
  if (!nat) return f(id, "skip", `iptables not usable: ${facts.iptables.error ?? "unknown"}`);
  const jump = nat.some((l) => l.startsWith("-A POSTROUTING") && l.includes("-j FLANNEL-POSTRTG"));
  const rules = nat.filter((l) => l.startsWith("-A FLANNEL-POSTRTG")).length;
  if (!jump || rules === 0) {
    return f(
      id,
      "fail",
      "flanneld's masquerade rules are missing: pods cannot reach destinations outside the cluster",
      [
        `POSTROUTING jump to FLANNEL-POSTRTG: ${jump ? "present" : "missing"}, FLANNEL-POSTRTG rules: ${rules}`,
      ],
      "restart flanneld on this node   # it re-creates them (and re-checks them every --iptables-resync seconds)",
    );
  }
  return f(id, "ok", `POSTROUTING → FLANNEL-POSTRTG with ${rules} rules`);
}

export function checkVxlanPort(facts: NodeFacts, ctx: Context): Finding {
  const id = "vxlan-port";
  const vx = ctx.vxlan;
  if (!vx) return f(id, "skip", "No vxlan device");
  if (!facts.iptables.filter)
    return f(id, "skip", `iptables not usable: ${facts.iptables.error ?? "unknown"}`);
  const port = vx.vxlan?.port || VXLAN_DEFAULT_PORT;
  const t = parseIptablesSave(facts.iptables.filter);
  const dst = vx.vxlan?.local ? IpAddr.tryParse(vx.vxlan.local) : undefined;
  const sources = ctx.peers
    .map((p) => IpAddr.tryParse(p.publicIp))
    .filter((a): a is IpAddr => a !== undefined);
  for (const src of sources.length > 0 ? sources : [undefined]) {
    const pkt: Packet = { proto: "udp", dport: port };
    if (src) pkt.src = src;
    if (dst) pkt.dst = dst;
    const v = evaluateChain(t, "INPUT", pkt);
    if (v.verdict === "drop") {
      return f(
        id,
        "fail",
        `Incoming VXLAN (udp ${port}) is dropped: peers' packets never reach ${vx.name}`,
        [
          v.position === 0 ? `policy: ${v.rule}` : `rule ${v.position} of ${v.chain}: ${v.rule}`,
          ...(src ? [`from peer ${src.toString()}`] : []),
        ],
        `iptables -I INPUT -p udp --dport ${port} -j ACCEPT   # and open udp ${port} between nodes in cloud security groups / host firewalls`,
      );
    }
  }
  return f(id, "ok", `INPUT accepts udp ${port} (VXLAN)`);
}

// ---- leases and peers ---------------------------------------------------------------------------------

function otherIfaces(facts: NodeFacts, notIndex: number | undefined): string[] {
  return facts.links
    .filter(
      (l) =>
        l.index !== notIndex &&
        l.name !== "lo" &&
        l.kind !== "vxlan" &&
        l.kind !== "bridge" &&
        l.masterIndex === 0 &&
        l.up,
    )
    .flatMap((l) => l.addrs.filter((a) => !a.includes(":")).map((a) => `${l.name} ${a}`));
}

export function checkPublicIps(facts: NodeFacts, ctx: Context): Finding[] {
  const id = "public-ip";
  const leases = facts.leases;
  if (!leases)
    return [
      f(id, "skip", "No lease source given (pass --etcd-endpoints or --kubeconfig-file / --kube-api-url)"),
    ];
  if (leases.error)
    return [
      f(
        id,
        "fail",
        `Cannot read the leases from ${leases.from}: ${leases.error}`,
        [],
        "check --etcd-endpoints / --kubeconfig-file and that etcd / the API server is up",
      ),
    ];
  const out: Finding[] = [];
  const byIp = new Map<string, LeaseFact[]>();
  for (const l of leases.leases) byIp.set(l.publicIp, [...(byIp.get(l.publicIp) ?? []), l]);
  const dups = [...byIp.entries()].filter(([, ls]) => ls.length > 1);
  const vtep = ctx.vxlan?.vxlan?.vtepIndex;
  const candidates = otherIfaces(facts, vtep);
  const ifaceFix = `restart flanneld with --iface=<the interface on the network the nodes share>${candidates.length > 0 ? ` (other interfaces here: ${candidates.join("; ")}, e.g. --iface=${(candidates[0] as string).split(" ")[0]})` : ""}, or --iface-can-reach=<another node's IP>`;
  if (dups.length > 0) {
    out.push(
      f(
        id,
        "fail",
        `Several nodes advertise the same public IP: flanneld picked an interface that is not unique per node (a NAT NIC?), so the overlay cannot reach them`,
        dups.map(([ip, ls]) => `${ip}: ${ls.map((l) => l.node ?? l.subnet).join(", ")}`),
        ifaceFix,
      ),
    );
  }
  if (ctx.own) {
    const local = facts.links.some((l) => l.addrs.some((a) => a.split("/")[0] === ctx.own?.publicIp));
    if (!local) {
      out.push(
        f(
          id,
          "warn",
          `This node's lease advertises ${ctx.own.publicIp}, which is not an address of this node (fine only behind NAT with --public-ip)`,
          [`lease ${ctx.own.subnet}`],
          ifaceFix,
        ),
      );
    }
  }
  const unreachable = (facts.probes ?? []).filter((p) => !p.ok);
  if (unreachable.length > 0) {
    out.push(
      f(
        "peer-reachability",
        "fail",
        `Other nodes' public IPs do not answer from this node: the overlay between them is broken`,
        unreachable.map((p) => {
          const l = leases.leases.find((x) => x.publicIp === p.ip);
          return `ping ${p.ip} (${l?.node ?? l?.subnet ?? "?"}): no reply`;
        }),
        `${ifaceFix}   # if ICMP is filtered between nodes, run doctor with --probe=false`,
      ),
    );
  } else if ((facts.probes ?? []).length > 0) {
    out.push(f("peer-reachability", "ok", `All ${facts.probes?.length} peer public IPs answer ping`));
  }
  if (out.length === 0 || out.every((x) => x.check !== id)) {
    out.unshift(
      f(
        id,
        "ok",
        `${leases.leases.length} leases from ${leases.from}, public IPs unique${ctx.own ? `; this node ${ctx.own.publicIp} (${ctx.own.subnet})` : ""}`,
      ),
    );
  }
  return out;
}

/**
 * Two leases whose subnets overlap, in either family: their pods' addresses collide and each node routes the
 * other's traffic to itself. In etcd mode two dual-stack upstream nodes that lease at the same moment can
 * end up so (the lease key names both subnets), and so can hand-written keys; in kube mode, overlapping
 * podCIDRs from the controller manager or edited node specs.
 */
export function checkLeaseOverlaps(facts: NodeFacts): Finding {
  const id = "lease-overlap";
  const leases = facts.leases;
  if (!leases || leases.error) return f(id, "skip", "No lease source");
  const name = (l: LeaseFact): string => l.node ?? `${l.subnet}${l.ipv6Subnet ? ` & ${l.ipv6Subnet}` : ""}`;
  const pairs: string[] = [];
  for (const family of [4, 6] as const) {
    const nets: { net: IpNet; lease: LeaseFact }[] = [];
    for (const l of leases.leases) {
      const net = IpNet.tryParse((family === 4 ? l.subnet : l.ipv6Subnet) ?? "");
      // 0.0.0.0/0 is how an IPv6-only lease's key spells "no IPv4 subnet".
      if (net !== undefined && net.family === family && net.prefixLen > 0) nets.push({ net, lease: l });
    }
    // Sorted by first address, a subnet overlaps an earlier one exactly when it starts before the furthest
    // end so far: one pass, not a comparison of every pair (clusters have thousands of leases).
    nets.sort((a, b) => (a.net.ip.value < b.net.ip.value ? -1 : a.net.ip.value > b.net.ip.value ? 1 : 0));
    let widest: { net: IpNet; lease: LeaseFact } | undefined;
    for (const n of nets) {
      if (widest !== undefined && n.net.ip.value <= widest.net.last.value) {
        pairs.push(
          `${n.net.toString()} (${name(n.lease)}) overlaps ${widest.net.toString()} (${name(widest.lease)})`,
        );
      }
      if (widest === undefined || n.net.last.value > widest.net.last.value) widest = n;
    }
  }
  if (pairs.length === 0) return f(id, "ok", `No two of the ${leases.leases.length} leases overlap`);
  const fix =
    leases.source === "etcd"
      ? "delete one lease of each pair (etcdctl del <prefix>/subnets/<its key>) and restart that node's flanneld: it leases a free subnet"
      : "give the nodes distinct spec.podCIDR(s) (kube-controller-manager --allocate-node-cidrs with --cluster-cidr), then restart their flanneld";
  return f(
    id,
    "fail",
    "Leases overlap: pods of those nodes get the same addresses, and each node routes the other's subnet to itself",
    pairs,
    fix,
  );
}

export function checkOwnLease(facts: NodeFacts, ctx: Context, now: Date): Finding {
  const id = "own-lease";
  const leases = facts.leases;
  if (!leases || leases.error) return f(id, "skip", "No lease source");
  if (!ctx.subnet && facts.node === undefined)
    return f(id, "skip", "This node's subnet is unknown (no subnet.env)");
  if (!ctx.own) {
    return f(
      id,
      "fail",
      `No lease for this node's subnet ${ctx.subnet?.toString() ?? "?"} in ${leases.from}: it expired or was deleted, peers no longer route to this node`,
      [`${leases.leases.length} leases: ${leases.leases.map((l) => l.subnet).join(", ") || "none"}`],
      "restart flanneld on this node   # it acquires the lease again",
    );
  }
  if (ctx.own.expiration) {
    const left = new Date(ctx.own.expiration).getTime() - now.getTime();
    if (left < 60 * 60 * 1000) {
      return f(
        id,
        "warn",
        `This node's lease expires in ${Math.max(0, Math.round(left / 60000))} min (renewal happens an hour before expiry)`,
        [`expiration ${ctx.own.expiration}`],
        "check flanneld's log for `Error renewing lease` and etcd connectivity",
      );
    }
  }
  return f(
    id,
    "ok",
    `Lease ${ctx.own.subnet} (${ctx.own.backendType || "no backend type"}, public IP ${ctx.own.publicIp}${ctx.own.expiration ? `, expires ${ctx.own.expiration}` : ""})`,
  );
}

export function checkPeers(facts: NodeFacts, ctx: Context): Finding {
  const id = "peer-entries";
  if (!facts.leases || facts.leases.error) return f(id, "skip", "No lease source");
  if (ctx.peers.length === 0) return f(id, "ok", "No other nodes");
  const missing: string[] = [];
  const fixes: string[] = [];
  let checked = 0;
  for (const p of ctx.peers) {
    const sn = IpNet.tryParse(p.subnet);
    if (!sn) continue;
    if (p.backendType === "vxlan" && ctx.vxlan) {
      checked++;
      const dev = ctx.vxlan.name;
      const gw = sn.ip.toString();
      const route = facts.routes.find((r) => r.dst === sn.toString());
      if (!route || route.gw !== gw || route.dev !== dev) {
        missing.push(
          `route ${sn.toString()} via ${gw} dev ${dev} onlink${route ? ` (found: via ${route.gw ?? "-"} dev ${route.dev ?? "-"})` : ""}`,
        );
        fixes.push(`ip route replace ${sn.toString()} via ${gw} dev ${dev} onlink`);
      }
      if (p.vtepMac) {
        const n = facts.neighbours.find((x) => x.dev === dev && x.ip === gw);
        if (!n || n.mac !== p.vtepMac) {
          missing.push(`ARP ${gw} lladdr ${p.vtepMac} dev ${dev}${n ? ` (found ${n.mac})` : ""}`);
          fixes.push(`ip neigh replace ${gw} lladdr ${p.vtepMac} dev ${dev} nud permanent`);
        }
        const e = facts.fdb.find((x) => x.dev === dev && x.mac === p.vtepMac);
        if (!e || e.dst !== p.publicIp) {
          missing.push(
            `FDB ${p.vtepMac} dst ${p.publicIp} dev ${dev}${e ? ` (found dst ${e.dst ?? "-"})` : ""}`,
          );
          fixes.push(`bridge fdb replace ${p.vtepMac} dev ${dev} dst ${p.publicIp} self permanent`);
        }
      }
    } else if (p.backendType === "host-gw") {
      checked++;
      const route = facts.routes.find((r) => r.dst === sn.toString());
      if (!route || route.gw !== p.publicIp) {
        missing.push(
          `route ${sn.toString()} via ${p.publicIp}${route ? ` (found via ${route.gw ?? "-"})` : ""}`,
        );
        fixes.push(`ip route replace ${sn.toString()} via ${p.publicIp}`);
      }
    }
  }
  if (missing.length > 0) {
    return f(
      id,
      "fail",
      `${missing.length} kernel entries for other nodes are missing or wrong: traffic to those pods is dropped`,
      missing,
      `restart flanneld on this node (it re-programs every peer), or by hand: ${fixes.join(" && ")}`,
    );
  }
  return f(id, "ok", `Routes, ARP and FDB entries match the leases of ${checked} peers`);
}

// ---- Kubernetes ---------------------------------------------------------------------------------------

export function checkKube(facts: NodeFacts, ctx: Context): Finding[] {
  const k = facts.kube;
  if (!k) return [f("kube-api", "skip", "No Kubernetes access given (--kubeconfig-file / --kube-api-url)")];
  if (k.error) {
    return [
      f(
        "kube-api",
        "fail",
        `Cannot reach the Kubernetes API at ${k.server}: ${k.error}`,
        [],
        "check the kubeconfig, the API server address and that kube-proxy/the service network works on this node",
      ),
    ];
  }
  const out: Finding[] = [f("kube-api", "ok", `API server ${k.server} reachable`)];
  const denied = k.access.filter((a) => !a.ok);
  if (denied.length > 0) {
    const first = denied[0] as { action: string; message?: string };
    const podGet = denied.find((d) => d.action.startsWith("get pods"));
    out.push(
      f(
        "rbac",
        "fail",
        `flannel's service account may not ${denied.map((d) => d.action).join(", ")}: the ClusterRole/ClusterRoleBinding "flannel" is missing or incomplete${podGet ? " (flanneld fails with `Failed to create SubnetManager: error retrieving pod spec …`)" : ""}`,
        denied.map((d) => `${d.action}: ${d.status ?? ""} ${d.message ?? ""}`.trim()),
        `kubectl apply -f ${MANIFEST}   # ClusterRole flannel: pods get; nodes get,list,watch; nodes/status patch — bound to ServiceAccount kube-flannel/flannel`,
      ),
    );
    void first;
  } else if (k.access.length > 0) {
    out.push(f("rbac", "ok", `Allowed: ${k.access.map((a) => a.action).join(", ")}`));
  }
  const noCidr = k.nodes.filter((n) => (n.podCidr ?? "") === "" && n.podCidrs.length === 0);
  if (noCidr.length > 0) {
    const used = k.nodes
      .flatMap((n) => [n.podCidr ?? "", ...n.podCidrs])
      .map((c) => IpNet.tryParse(c))
      .filter((c): c is IpNet => c !== undefined);
    const net = ctx.network ?? IpNet.parse("10.244.0.0/16");
    const suggestions: string[] = [];
    let cand = IpNet.of(net.ip, Math.max(24, net.prefixLen));
    for (const n of noCidr) {
      while (
        net.contains(cand.ip) &&
        (used.some((u) => u.overlaps(cand)) || suggestions.some((s) => s.includes(` ${cand.toString()}"`)))
      )
        cand = cand.next();
      suggestions.push(`kubectl patch node ${n.name} -p '{"spec":{"podCIDR":"${cand.toString()}"}}'`);
      used.push(cand);
    }
    out.push(
      f(
        "pod-cidr",
        "fail",
        `${noCidr.length} node(s) have no podCIDR: flanneld there fails with \`node "${(noCidr[0] as { name: string }).name}" pod cidr not assigned\``,
        noCidr.map((n) => `node "${n.name}" pod cidr not assigned`),
        `run kube-controller-manager with --allocate-node-cidrs=true --cluster-cidr=${net.toString()} (kubeadm: --pod-network-cidr=${net.toString()}), or by hand: ${suggestions.join(" && ")}`,
      ),
    );
  } else if (k.nodes.length > 0) {
    out.push(f("pod-cidr", "ok", `All ${k.nodes.length} nodes have a podCIDR`));
  }
  const unavailable = k.nodes.filter((n) => n.networkUnavailable === "True");
  if (unavailable.length > 0) {
    out.push(
      f(
        "node-network",
        "warn",
        `NetworkUnavailable=True on ${unavailable.map((n) => n.name).join(", ")}: flanneld has not come up there`,
        [],
        "kubectl -n kube-flannel get pods -o wide   # and read the logs of the pods on those nodes",
      ),
    );
  }
  return out;
}

/** Leases as the kube subnet manager would see them (nodes with the flannel annotations). */
export function kubeNodesToLeases(
  nodes: readonly {
    name: string;
    podCidr?: string;
    podCidrs: string[];
    annotations: Record<string, string>;
  }[],
  prefix = DEFAULT_PREFIX,
): LeaseFact[] {
  const out: LeaseFact[] = [];
  for (const n of nodes) {
    const a = n.annotations;
    if (a[`${prefix}/kube-subnet-manager`] !== "true") continue;
    const subnet = n.podCidrs.find((c) => !c.includes(":")) ?? n.podCidr;
    const ip = a[`${prefix}/public-ip`];
    if (!subnet || !ip) continue;
    const l: LeaseFact = {
      subnet: IpNet.tryParse(subnet)?.toString() ?? subnet,
      publicIp: ip,
      backendType: a[`${prefix}/backend-type`] ?? "",
      node: n.name,
    };
    const data = a[`${prefix}/backend-data`];
    if (data) {
      try {
        const d = JSON.parse(data) as { VtepMAC?: string; VNI?: number } | null;
        if (d?.VtepMAC) l.vtepMac = d.VtepMAC;
        if (typeof d?.VNI === "number") l.vni = d.VNI;
      } catch {
        // not vxlan data
      }
    }
    out.push(l);
  }
  return out;
}

/** Every check, in the order they are printed. */
export function runChecks(facts: NodeFacts, now = new Date()): Finding[] {
  const ctx = deriveContext(facts);
  return [
    checkCniConfig(facts),
    checkSubnetEnv(facts, ctx),
    checkBrNetfilter(facts, ctx),
    checkIpForward(facts),
    checkVxlanDevice(facts, ctx),
    checkCniBridge(facts, ctx),
    checkMtu(facts, ctx),
    checkForward(facts, ctx),
    checkMasquerade(facts, ctx),
    checkVxlanPort(facts, ctx),
    ...checkKube(facts, ctx),
    checkOwnLease(facts, ctx, now),
    checkLeaseOverlaps(facts),
    ...checkPublicIps(facts, ctx),
    checkPeers(facts, ctx),
  ];
}
