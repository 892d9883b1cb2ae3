// The Kubernetes subnet manager (upstream pkg/subnet/kube/kube.go): with --kube-subnet-mgr a node's subnet
// is its Node's spec.podCIDR(s), its lease attributes live in Node annotations, and peers are found by
// listing and watching Nodes.
//
// Design notes
// * One node informer per process: list all Nodes, then watch from the list's resourceVersion. A dropped
//   watch resumes from the last resourceVersion seen; `410 Gone` (as an HTTP status or an ERROR event)
//   means our version was compacted away, so we re-list and publish a fresh *snapshot* to every lease
//   watcher instead of guessing which events were lost. Reconnects back off 1 s → 30 s.
// * Subscribers (watchLeases) get an unbounded queue that is drained as one batch per pull. If a slow
//   consumer lets it grow past EVENT_QUEUE_DEPTH, the queue is collapsed into one snapshot: memory stays
//   bounded and nothing is lost (upstream blocks or spawns async senders instead).
// * The own node is read from the informer cache (upstream does the same); with the `alloc` backend no
//   informer runs (upstream issue #1617) and the node is fetched directly.
// * All writes are strategic-merge patches of `nodes/<name>/status`, because the RBAC of the manifest
//   grants only `nodes/status: patch`. The patch content type is set explicitly: client-node 1.4.0
//   would otherwise send JSON-patch, which the server rejects for these bodies.
// * Error texts are upstream's (operators search for them); FlannelError.hint says how to fix the cause.

import { readFile } from "node:fs/promises";

import * as k8s from "@kubernetes/client-node";

import { parseConfig } from "../../config/config.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { errorMessage, FlannelError } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import type { Lease, LeaseAttrs, LeaseEvent, LeaseWatchResult } from "../../lease/lease.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort, sleep } from "../../util/sleep.ts";
import type { SubnetManager } from "../manager.ts";
import { type Annotations, macFromBackendData, newAnnotations } from "./annotations.ts";
import {
  containsCidr,
  isFlannelNode,
  KUBE_LEASE_TTL_MS,
  leaseChanged,
  type NodeLike,
  nodePodCidrs,
  nodeToLease,
  planNodeAnnotations,
} from "./node-lease.ts";
import { appendAll } from "../../util/array.ts";

export interface KubeSubnetManagerOptions {
  /** --kube-api-url; overrides the kubeconfig's server. */
  kubeApiUrl: string;
  /** --kubeconfig-file; in-cluster config when both this and kubeApiUrl are empty. */
  kubeconfigFile: string;
  /** --kube-annotation-prefix */
  annotationPrefix: string;
  /** --net-config-path */
  netConfigPath: string;
  /** --set-node-network-unavailable */
  setNodeNetworkUnavailable: boolean;
  /** Overrides the backend type of the net config (only `alloc` changes behaviour: no informer). */
  backendType?: string;
  /** NODE_NAME, POD_NAME, POD_NAMESPACE, EVENT_QUEUE_DEPTH, CONT_WHEN_CACHE_NOT_READY, KUBERNETES_SERVICE_*. */
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
  /** Where the service-account token, ca.crt and namespace are (in-cluster); tests point it elsewhere. */
  serviceAccountDir?: string;
  /** How long startup waits for the first node list (upstream: 10 min). */
  syncTimeoutMs?: number;
  /** How long acquireLease waits for the own node and retries the annotation patch (upstream: 30 s). */
  acquireTimeoutMs?: number;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_EVENT_QUEUE_DEPTH = 5000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
const RBAC_HINT = "apply the RBAC objects of the manifest: kubectl apply -f deploy/kube-flannel.yml";

type NodeObj = NodeLike & {
  metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> };
};

interface Subscriber {
  queue: LeaseWatchResult[];
  wake: (() => void) | undefined;
}

/** Builds the client config as client-go's BuildConfigFromFlags does; throws `fail to create kubernetes config: …`. */
export function buildKubeConfig(opts: {
  kubeApiUrl: string;
  kubeconfigFile: string;
  env: Readonly<Record<string, string | undefined>>;
  serviceAccountDir?: string;
  logger: Logger;
}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if (opts.kubeconfigFile !== "") {
      kc.loadFromFile(opts.kubeconfigFile);
      if (opts.kubeApiUrl !== "") {
        const cluster = kc.getCurrentCluster();
        if (cluster === null) throw new Error(`kubeconfig ${opts.kubeconfigFile} has no current cluster`);
        kc.clusters = kc.clusters.map((c) =>
          c.name === cluster.name ? { ...c, server: opts.kubeApiUrl } : c,
        );
      }
      kc.clusters = kc.clusters.map((c) => (isPlainHttp(c.server) ? { ...c, skipTLSVerify: true } : c));
    } else if (opts.kubeApiUrl !== "") {
      kc.loadFromClusterAndUser(
        { name: "flannel", server: opts.kubeApiUrl, skipTLSVerify: isPlainHttp(opts.kubeApiUrl) },
        { name: "flannel" },
      );
    } else {
      opts.logger.warn(
        "Neither --kubeconfig nor --master was specified.  Using the inClusterConfig.  This might not work.",
      );
      const host = opts.env["KUBERNETES_SERVICE_HOST"] ?? "";
      const port = opts.env["KUBERNETES_SERVICE_PORT"] ?? "";
      if (host === "" || port === "") {
        throw new FlannelError(
          "KUBE_CONFIG",
          "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined",
          { hint: "outside a pod, pass --kubeconfig-file=<file> or --kube-api-url=<url>" },
        );
      }
      const dir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
      const server = host.includes(":") ? `https://[${host}]:${port}` : `https://${host}:${port}`;
      // The tokenFile auth provider re-reads the token every minute, so projected tokens can rotate
      // (client-go does the same).
      kc.loadFromClusterAndUser(
        { name: "inCluster", server, caFile: `${dir}/ca.crt`, skipTLSVerify: false },
        { name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile: `${dir}/token` } } },
      );
    }
  } catch (err) {
    const hint = err instanceof FlannelError ? err.hint : undefined;
    throw new FlannelError("KUBE_CONFIG", `fail to create kubernetes config: ${errorMessage(err)}`, {
      cause: err,
      ...(hint === undefined ? {} : { hint }),
    });
  }
  return kc;
}

/**
 * client-node refuses `http://` servers unless skipTLSVerify is set, although there is no TLS to verify;
 * client-go accepts plain-HTTP API URLs (e.g. a local proxy), so we do too.
 */
function isPlainHttp(url: string): boolean {
  return url.toLowerCase().startsWith("http://");
}

/** The message client-go would print for a failed request: the Status message, or the HTTP status. */
export function kubeErrorMessage(err: unknown): string {
  if (err instanceof k8s.ApiException) {
    const body: unknown = typeof err.body === "string" ? tryJson(err.body) : err.body;
    if (
      typeof body === "object" &&
      body !== null &&
      typeof (body as { message?: unknown }).message === "string"
    ) {
      return (body as { message: string }).message;
    }
    if (err.code === 401) return "Unauthorized";
    if (err.code === 403) return "the server does not allow access to the requested resource";
    return `the server responded with HTTP ${err.code}`;
  }
  const e = err as { statusCode?: unknown; code?: unknown; cause?: { code?: unknown } };
  if (typeof e.statusCode === "number") return `the server responded with HTTP ${e.statusCode}`;
  return errorMessage(err);
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function httpCode(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  const code = (err as { statusCode?: unknown }).statusCode;
  return typeof code === "number" ? code : undefined;
}

export class KubeSubnetManager implements SubnetManager {
  private readonly cache = new Map<string, NodeObj>();
  private readonly subscribers = new Set<Subscriber>();
  private readonly cacheWaiters = new Set<() => void>();
  private synced = false;
  private readonly stop = new AbortController();
  private informerDone: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  private readonly families: { v4: boolean; v6: boolean };

  private constructor(
    private readonly core: k8s.CoreV1Api,
    private readonly kc: k8s.KubeConfig,
    readonly nodeName: string,
    private readonly config: NetworkConfig,
    private readonly annotations: Annotations,
    private readonly opts: KubeSubnetManagerOptions,
    private readonly eventQueueDepth: number,
    private readonly disableInformer: boolean,
  ) {
    this.log = opts.logger;
    this.families = { v4: config.enableIpv4, v6: config.enableIpv6 };
  }

  /**
   * Connects, finds the node name, reads the net config and (unless the backend is `alloc`) waits for the
   * first node list. The informer runs until `signal` aborts or `close()` is called.
   */
  static async create(opts: KubeSubnetManagerOptions, signal?: AbortSignal): Promise<KubeSubnetManager> {
    const log = opts.logger;
    const kc = buildKubeConfig(opts);
    let core: k8s.CoreV1Api;
    try {
      core = kc.makeApiClient(k8s.CoreV1Api);
    } catch (err) {
      throw new FlannelError("KUBE_CLIENT", `unable to initialize client: ${errorMessage(err)}`, {
        cause: err,
      });
    }

    const nodeName = await discoverNodeName(core, opts.env);

    let text: string;
    try {
      text = await readFile(opts.netConfigPath, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "no such file or directory" : errorMessage(err);
      throw new FlannelError("NET_CONF_READ", `failed to read net conf: open ${opts.netConfigPath}: ${why}`, {
        cause: err,
        hint: "mount the kube-flannel-cfg ConfigMap at /etc/kube-flannel/ or pass --net-config-path=<file>",
      });
    }
    let config: NetworkConfig;
    try {
      config = parseConfig(text);
    } catch (err) {
      throw new FlannelError("NET_CONF_PARSE", `error parsing subnet config: ${errorMessage(err)}`, {
        cause: err,
        hint: `fix the JSON in ${opts.netConfigPath} (net-conf.json of the kube-flannel-cfg ConfigMap)`,
      });
    }

    let annotations: Annotations;
    let depth = DEFAULT_EVENT_QUEUE_DEPTH;
    try {
      annotations = newAnnotations(opts.annotationPrefix);
      const depthText = opts.env["EVENT_QUEUE_DEPTH"] ?? "";
      if (depthText !== "") {
        if (!/^[+-]?\d+$/.test(depthText)) {
          throw new Error(
            `env EVENT_QUEUE_DEPTH=${depthText} format error: strconv.Atoi: parsing ${JSON.stringify(depthText)}: invalid syntax`,
          );
        }
        const n = Number(depthText);
        if (n > 0) depth = n;
      }
    } catch (err) {
      throw new FlannelError("KUBE_MANAGER", `error creating network manager: ${errorMessage(err)}`, {
        cause: err,
      });
    }

    const backendType = (opts.backendType ?? config.backendType).toLowerCase();
    const m = new KubeSubnetManager(
      core,
      kc,
      nodeName,
      config,
      annotations,
      opts,
      depth,
      backendType === "alloc",
    );
    if (signal !== undefined) {
      if (signal.aborted) m.stop.abort();
      else signal.addEventListener("abort", () => m.stop.abort(), { once: true });
    }
    if (m.disableInformer) {
      log.info("Node controller skips sync");
      return m;
    }
    m.informerDone = m.runInformer(m.stop.signal);
    const timeoutMs = opts.syncTimeoutMs ?? 10 * 60 * 1000;
    log.info(`Waiting ${formatGoDuration(timeoutMs)} for node controller to sync`);
    const ok = await m.waitFor(() => m.synced, timeoutMs, m.stop.signal);
    if (!ok && signal?.aborted === true) {
      // Shut down (SIGTERM) while waiting: not a sync failure, so no "deadline exceeded" error.
      m.close();
      await m.informerDone;
      throw signal.reason;
    }
    if (!ok) {
      if (opts.env["CONT_WHEN_CACHE_NOT_READY"] === "true") {
        log.warn("Timed out waiting for node controller sync. Continuing anyway.");
        return m;
      }
      m.close();
      await m.informerDone;
      throw new FlannelError(
        "KUBE_SYNC",
        "error waiting for nodeController to sync state: context deadline exceeded",
        {
          hint: "check that the API server is reachable and that the flannel ClusterRole grants nodes: list, watch",
        },
      );
    }
    log.info("Node controller sync successful");
    return m;
  }

  name(): string {
    return `Kubernetes Subnet Manager - ${this.nodeName}`;
  }

  /** Stops the informer; watchLeases iterators end. */
  close(): void {
    this.stop.abort();
  }

  /** Resolves when the informer loop has ended (after close() or the create signal). */
  async closed(): Promise<void> {
    await this.informerDone;
  }

  getNetworkConfig(): Promise<NetworkConfig> {
    return Promise.resolve(this.config);
  }

  async acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const timeoutMs = this.opts.acquireTimeoutMs ?? 30_000;
    let node: NodeObj;
    if (this.disableInformer) {
      node = (await this.readNode(signal)) as NodeObj;
    } else {
      const ok = await this.waitFor(() => this.cache.has(this.nodeName), timeoutMs, signal);
      const cached = this.cache.get(this.nodeName);
      if (!ok || cached === undefined) {
        throw new FlannelError("NODE_NOT_FOUND", `node "${this.nodeName}" not found`, {
          hint:
            `no Node object named "${this.nodeName}" exists; the name comes from NODE_NAME or the pod's spec.nodeName ` +
            `(check with: kubectl get node ${this.nodeName})`,
        });
      }
      node = cached;
    }

    const cidrs = nodePodCidrs(node, this.nodeName);
    // Containment is checked before the node is annotated (upstream annotates first), so a node whose
    // podCIDR is outside the flannel network never advertises itself to its peers.
    const lease: Lease = {
      enableIpv4: false,
      enableIpv6: false,
      subnet: null,
      ipv6Subnet: null,
      attrs,
      expiration: new Date(Date.now() + KUBE_LEASE_TTL_MS),
      asof: Number(node.metadata?.resourceVersion ?? 0) || 0,
    };
    if (cidrs.v4 !== null && this.config.enableIpv4) {
      const network = this.config.network;
      if (network === null || !containsCidr(network, cidrs.v4)) {
        throw new FlannelError(
          "POD_CIDR_OUTSIDE_NETWORK",
          `subnet "${network?.toString() ?? "<nil>"}" specified in the flannel net config doesn't contain "${cidrs.v4.toString()}" PodCIDR of the "${this.nodeName}" node`,
          {
            hint: `make "Network" in ${this.opts.netConfigPath} match the cluster CIDR (kube-controller-manager --cluster-cidr), or fix the node's podCIDR`,
          },
        );
      }
      lease.subnet = cidrs.v4;
      lease.enableIpv4 = true;
    }
    if (cidrs.v6 !== null && (this.config.enableIpv6 || this.config.ipv6Network !== null)) {
      const network6 = this.config.ipv6Network;
      if (network6 === null) {
        throw new FlannelError(
          "POD_CIDR_OUTSIDE_NETWORK",
          `subnet "${cidrs.v6.toString()}" specified in the PodCIDR, but doesn't exist in the flannel net config of the "${this.nodeName}" node`,
          { hint: `set "IPv6Network" in ${this.opts.netConfigPath}` },
        );
      }
      if (!containsCidr(network6, cidrs.v6)) {
        throw new FlannelError(
          "POD_CIDR_OUTSIDE_NETWORK",
          `subnet "${network6.toString()}" specified in the flannel net config doesn't contain "${cidrs.v6.toString()}" IPv6 PodCIDR of the "${this.nodeName}" node`,
          {
            hint: `make "IPv6Network" in ${this.opts.netConfigPath} match the cluster's IPv6 CIDR, or fix the node's podCIDRs`,
          },
        );
      }
      lease.ipv6Subnet = cidrs.v6;
      lease.enableIpv6 = true;
    }
    if (!["vxlan", "host-gw", "wireguard"].includes(attrs.backendType)) {
      // Upstream: only these backends are dual-stack; the others get an IPv4-only lease.
      lease.enableIpv4 = true;
      lease.enableIpv6 = false;
      lease.ipv6Subnet = null;
    }

    const plan = planNodeAnnotations(node.metadata?.annotations ?? {}, attrs, this.annotations);
    if (plan !== null) {
      for (const o of plan.overrides) {
        if (o.key === this.annotations.backendPublicIpOverwrite) {
          this.log.info(`Overriding public ip with '${o.value}' from node annotation '${o.key}'`);
        } else {
          this.log.info(`Overriding public ipv6 with '${o.value}' from node annotation '${o.key}'`);
        }
      }
      if (plan.overrides.some((o) => o.key === this.annotations.backendPublicIpOverwrite)) {
        // Peers will reach us on the overwrite address; the lease says the same.
        const ow = IpAddr.tryParse(
          node.metadata?.annotations?.[this.annotations.backendPublicIpOverwrite] ?? "",
        );
        if (ow !== undefined && ow.family === 4) lease.attrs = { ...lease.attrs, publicIp: ow };
      }
      await this.patchStatusWithRetry({ metadata: { annotations: plan.changes } }, timeoutMs, signal);
    }
    return lease;
  }

  async *watchLeases(signal: AbortSignal): AsyncIterable<LeaseWatchResult[]> {
    if (this.disableInformer) {
      // alloc: someone else routes; there are no peers to watch (upstream sends nothing either).
      await new Promise<void>((resolve) => {
        const done = (): void => resolve();
        if (signal.aborted || this.stop.signal.aborted) return resolve();
        signal.addEventListener("abort", done, { once: true });
        this.stop.signal.addEventListener("abort", done, { once: true });
      });
      return;
    }
    await this.waitFor(() => this.synced, Number.MAX_SAFE_INTEGER, signal);
    const sub: Subscriber = { queue: [{ snapshot: this.snapshotLeases() }], wake: undefined };
    this.subscribers.add(sub);
    const onAbort = (): void => sub.wake?.();
    signal.addEventListener("abort", onAbort);
    this.stop.signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted && !this.stop.signal.aborted) {
        if (sub.queue.length === 0) {
          await new Promise<void>((resolve) => (sub.wake = resolve));
          sub.wake = undefined;
          continue;
        }
        const batch = sub.queue.splice(0, sub.queue.length);
        yield batch;
      }
    } finally {
      this.subscribers.delete(sub);
      signal.removeEventListener("abort", onAbort);
      this.stop.signal.removeEventListener("abort", onAbort);
    }
  }

  async completeLease(_lease: Lease, signal: AbortSignal): Promise<"interrupted" | "revoked"> {
    // Without a create() signal the informer lives as long as the daemon's main signal, passed here.
    signal.addEventListener("abort", () => this.stop.abort(), { once: true });
    if (this.opts.setNodeNetworkUnavailable) {
      let delayMs = RETRY_MIN_MS;
      for (;;) {
        const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
        const condition = {
          type: "NetworkUnavailable",
          status: "False",
          lastHeartbeatTime: now,
          lastTransitionTime: now,
          reason: "FlannelIsUp",
          message: "Flannel is running on this node",
        };
        try {
          await this.patchStatus({ status: { conditions: [condition] } }, signal);
          break;
        } catch (err) {
          if (signal.aborted) return "interrupted";
          this.log.error(
            `Failed to set NetworkUnavailable=False on node "${this.nodeName}" (retrying in ${delayMs / 1000}s): ${this.describe(err, "patch", "nodes/status")}`,
          );
          try {
            await sleep(delayMs, signal);
          } catch {
            return "interrupted";
          }
          delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
        }
      }
    }
    if (!signal.aborted)
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    return "interrupted";
  }

  async getStoredMacAddresses(signal: AbortSignal): Promise<{ v4?: string; v6?: string }> {
    let node: NodeObj;
    try {
      node = (await this.readNode(signal)) as NodeObj;
    } catch (err) {
      this.log.warn(
        `Failed to read stored VTEP MAC addresses of node "${this.nodeName}": ${errorMessage(err)}`,
      );
      return {};
    }
    const ann = node.metadata?.annotations ?? {};
    const out: { v4?: string; v6?: string } = {};
    const v4 = macFromBackendData(ann[this.annotations.backendData]);
    const v6 = macFromBackendData(ann[this.annotations.backendV6Data]);
    if (v4 !== undefined) out.v4 = v4;
    if (v6 !== undefined) out.v6 = v6;
    return out;
  }

  async getStoredPublicIp(signal: AbortSignal): Promise<{ v4?: IpAddr; v6?: IpAddr }> {
    let node: NodeObj;
    try {
      node = (await this.readNode(signal)) as NodeObj;
    } catch (err) {
      this.log.warn(
        `Failed to read node-public-ip annotations of node "${this.nodeName}": ${errorMessage(err)}`,
      );
      return {};
    }
    const ann = node.metadata?.annotations ?? {};
    const out: { v4?: IpAddr; v6?: IpAddr } = {};
    for (const [key, family] of [
      [this.annotations.nodePublicIp, 4],
      [this.annotations.nodePublicIpv6, 6],
    ] as const) {
      const text = ann[key] ?? "";
      if (text === "") continue;
      const ip = IpAddr.tryParse(text);
      if (ip === undefined || ip.family !== family) {
        this.log.warn(`Ignoring node annotation ${key}="${text}": not an IPv${family} address`);
        continue;
      }
      if (family === 4) out.v4 = ip;
      else out.v6 = ip;
    }
    return out;
  }

  // ---- API calls ------------------------------------------------------------------------------------

  private async readNode(signal: AbortSignal): Promise<k8s.V1Node> {
    signal.throwIfAborted();
    try {
      return await this.core.readNode({ name: this.nodeName });
    } catch (err) {
      throw new FlannelError("KUBE_API", this.describe(err, "get", "nodes"), {
        cause: err,
        ...this.rbacHint(err, "nodes: get"),
      });
    }
  }

  private async patchStatus(body: object, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    await this.core.patchNodeStatus(
      { name: this.nodeName, body },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch),
    );
  }

  private async patchStatusWithRetry(body: object, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.patchStatus(body, signal);
        return;
      } catch (err) {
        if (signal.aborted) throw err;
        const code = httpCode(err);
        // Client errors other than conflicts and throttling will not heal by themselves: fail now.
        const permanent = code !== undefined && code >= 400 && code < 500 && code !== 409 && code !== 429;
        if (permanent || Date.now() + 3000 > deadline) {
          throw new FlannelError(
            "KUBE_PATCH",
            `timeout contacting kube-api, failed to patch node "${this.nodeName}". Error: ${this.describe(err, "patch", "nodes/status")}`,
            { cause: err, ...this.rbacHint(err, "nodes/status: patch") },
          );
        }
        this.log.warn(`Failed to patch node "${this.nodeName}" (retrying in 3s): ${kubeErrorMessage(err)}`);
        await sleep(3000, signal);
      }
    }
  }

  private describe(err: unknown, _verb: string, _resource: string): string {
    return kubeErrorMessage(err);
  }

  private rbacHint(err: unknown, permission: string): { hint?: string } {
    const code = httpCode(err);
    if (code === 403)
      return { hint: `the flannel service account lacks the RBAC permission "${permission}"; ${RBAC_HINT}` };
    if (code === 401)
      return {
        hint: "the API server rejected the credentials; check the service-account token or kubeconfig",
      };
    return {};
  }

  // ---- informer -------------------------------------------------------------------------------------

  private async runInformer(signal: AbortSignal): Promise<void> {
    let rv: string | undefined;
    let delayMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        if (rv === undefined) {
          const list = await this.core.listNode({});
          rv = list.metadata?.resourceVersion ?? "";
          this.replace(list.items as unknown as NodeObj[]);
        }
        const result = await this.watchOnce(rv, signal);
        if (result.gone) {
          this.log.info(`Node watch expired (resourceVersion ${rv} too old), re-listing`);
          rv = undefined;
        } else {
          rv = result.rv;
        }
        if (result.events > 0) delayMs = RETRY_MIN_MS;
        if (result.error !== undefined && !signal.aborted) {
          this.log.warn(`Node watch failed (retrying in ${delayMs / 1000}s): ${result.error}`);
          await sleep(delayMs, signal);
          delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
        }
      } catch (err) {
        if (isAbort(err, signal) || signal.aborted) break;
        if (httpCode(err) === 410) {
          rv = undefined;
          continue;
        }
        this.log.error(
          `Failed to list nodes (retrying in ${delayMs / 1000}s): ${kubeErrorMessage(err)}${this.rbacHint(err, "nodes: list, watch").hint === undefined ? "" : "; " + (this.rbacHint(err, "nodes: list, watch").hint ?? "")}`,
        );
        try {
          await sleep(delayMs, signal);
        } catch {
          break;
        }
        delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
      }
    }
    for (const s of this.subscribers) s.wake?.();
    for (const w of this.cacheWaiters) w();
  }

  /** One watch connection; resolves when it ends, with the last resourceVersion seen. */
  private watchOnce(
    fromRv: string,
    signal: AbortSignal,
  ): Promise<{ rv: string; gone: boolean; events: number; error?: string }> {
    return new Promise((resolve) => {
      let rv = fromRv;
      let gone = false;
      let events = 0;
      let controller: AbortController | undefined;
      let settled = false;
      const finish = (error?: string): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        controller?.abort();
        resolve({ rv, gone, events, ...(error === undefined ? {} : { error }) });
      };
      const onAbort = (): void => finish();
      signal.addEventListener("abort", onAbort, { once: true });
      const watch = new k8s.Watch(this.kc);
      watch
        .watch(
          "/api/v1/nodes",
          {
            resourceVersion: fromRv,
            allowWatchBookmarks: true,
            timeoutSeconds: 300 + Math.floor(Math.random() * 300),
          },
          (type: string, obj: unknown) => {
            if (settled) return;
            if (type === "ERROR") {
              const status = obj as { code?: number; message?: string };
              if (status.code === 410) gone = true;
              finish(
                status.code === 410 ? undefined : `watch error: ${status.message ?? JSON.stringify(obj)}`,
              );
              return;
            }
            const node = obj as NodeObj;
            const objRv = node.metadata?.resourceVersion;
            if (objRv !== undefined && objRv !== "") rv = objRv;
            if (type === "BOOKMARK") return;
            events += 1;
            this.apply(type, node);
          },
          (err: unknown) => {
            if (err !== null && err !== undefined && !signal.aborted) {
              if (httpCode(err) === 410) {
                gone = true;
                finish();
              } else {
                finish(kubeErrorMessage(err));
              }
            } else {
              // A server-side close: resume from where we are, without a delay when it delivered events.
              finish(events === 0 ? "watch closed by the server" : undefined);
            }
          },
        )
        .then(
          (c) => {
            controller = c;
            if (settled) c.abort();
          },
          (err: unknown) => finish(kubeErrorMessage(err)),
        );
    });
  }

  private apply(type: string, node: NodeObj): void {
    const name = node.metadata?.name;
    if (name === undefined) return;
    const old = this.cache.get(name);
    if (type === "DELETED") {
      this.cache.delete(name);
      this.onDelete(old ?? node);
    } else if (type === "ADDED" || type === "MODIFIED") {
      this.cache.set(name, node);
      if (old === undefined) this.onAdd(node);
      else this.onUpdate(old, node);
    }
    for (const w of this.cacheWaiters) w();
  }

  /** A fresh list: the cache is replaced and every subscriber gets a snapshot. */
  private replace(items: NodeObj[]): void {
    this.cache.clear();
    for (const n of items) if (n.metadata?.name !== undefined) this.cache.set(n.metadata.name, n);
    this.synced = true;
    const snap = this.snapshotLeases();
    for (const s of this.subscribers) {
      s.queue.splice(0, s.queue.length, { snapshot: snap });
      s.wake?.();
    }
    for (const w of this.cacheWaiters) w();
  }

  private snapshotLeases(): Lease[] {
    const out: Lease[] = [];
    for (const n of this.cache.values()) {
      const l = this.toLease(n);
      if (l !== undefined) out.push(l);
    }
    return out;
  }

  private toLease(n: NodeObj): Lease | undefined {
    if (!isFlannelNode(n, this.annotations)) return undefined;
    try {
      return nodeToLease(n, this.annotations, this.families);
    } catch (err) {
      this.log.info(`Error turning node "${n.metadata?.name ?? ""}" to lease: ${errorMessage(err)}`);
      return undefined;
    }
  }

  private onAdd(n: NodeObj): void {
    const l = this.toLease(n);
    if (l !== undefined) this.publish([{ type: "added", lease: l }]);
  }

  private onUpdate(o: NodeObj, n: NodeObj): void {
    if (!isFlannelNode(n, this.annotations)) return;
    if (!leaseChanged(o, n, this.annotations, this.families)) return;
    const events: LeaseEvent[] = [];
    const oldLease = isFlannelNode(o, this.annotations) ? this.toLease(o) : undefined;
    const newLease = this.toLease(n);
    // A changed podCIDR moves the lease: withdraw the old subnet so peers drop its route.
    if (
      oldLease !== undefined &&
      newLease !== undefined &&
      (!sameNet(oldLease.subnet, newLease.subnet) || !sameNet(oldLease.ipv6Subnet, newLease.ipv6Subnet))
    ) {
      events.push({ type: "removed", lease: oldLease });
    }
    if (newLease !== undefined) events.push({ type: "added", lease: newLease });
    if (events.length > 0) this.publish(events);
  }

  private onDelete(n: NodeObj): void {
    const l = this.toLease(n);
    if (l !== undefined) this.publish([{ type: "removed", lease: l }]);
  }

  private publish(events: LeaseEvent[]): void {
    for (const s of this.subscribers) {
      const last = s.queue[s.queue.length - 1];
      if (last !== undefined && "events" in last) appendAll(last.events, events);
      else s.queue.push({ events: [...events] });
      const queued = s.queue.reduce((acc, r) => acc + ("events" in r ? r.events.length : 1), 0);
      if (queued > this.eventQueueDepth) {
        // A consumer that fell this far behind gets the current state instead of the backlog.
        this.log.warn(
          `Lease event queue over EVENT_QUEUE_DEPTH=${this.eventQueueDepth}; sending a snapshot instead`,
        );
        s.queue.splice(0, s.queue.length, { snapshot: this.snapshotLeases() });
      }
      s.wake?.();
    }
  }

  /** Waits until `cond()` holds (re-checked on every cache change); false on timeout or abort. */
  private async waitFor(cond: () => boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (cond()) return true;
    return new Promise<boolean>((resolve) => {
      const finish = (v: boolean): void => {
        this.cacheWaiters.delete(check);
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const check = (): void => {
        if (cond()) finish(true);
        else if (this.stop.signal.aborted) finish(false);
      };
      const onAbort = (): void => finish(false);
      const timer = setTimeout(() => finish(cond()), Math.min(timeoutMs, 2 ** 31 - 1));
      this.cacheWaiters.add(check);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}

function sameNet(a: { equals(o: never): boolean } | null, b: unknown): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b as never);
}

/** Finds the node name: NODE_NAME, else the own pod's spec.nodeName (upstream's errors, with a hint). */
export async function discoverNodeName(
  core: k8s.CoreV1Api,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string> {
  const nodeName = env["NODE_NAME"] ?? "";
  if (nodeName !== "") return nodeName;
  const podName = env["POD_NAME"] ?? "";
  const podNamespace = env["POD_NAMESPACE"] ?? "";
  if (podName === "" || podNamespace === "") {
    throw new FlannelError("NODE_NAME", "env variables POD_NAME and POD_NAMESPACE must be set", {
      hint: "set NODE_NAME, or POD_NAME and POD_NAMESPACE from the downward API (fieldRef metadata.name / metadata.namespace) as deploy/kube-flannel.yml does",
    });
  }
  let pod: k8s.V1Pod;
  try {
    pod = await core.readNamespacedPod({ name: podName, namespace: podNamespace });
  } catch (err) {
    const code = httpCode(err);
    const hint =
      code === 403
        ? `the service account lacks the RBAC permission "pods: get" needed to find this pod's node; ${RBAC_HINT} (or set NODE_NAME)`
        : code === 401
          ? "the API server rejected the credentials; check the service-account token or kubeconfig"
          : undefined;
    throw new FlannelError(
      "POD_GET",
      `error retrieving pod spec for '${podNamespace}/${podName}': ${kubeErrorMessage(err)}`,
      { cause: err, ...(hint === undefined ? {} : { hint }) },
    );
  }
  const name = pod.spec?.nodeName ?? "";
  if (name === "") {
    throw new FlannelError("NODE_NAME", `node name not present in pod spec '${podNamespace}/${podName}'`, {
      hint: "the pod is not scheduled yet; set NODE_NAME from fieldRef spec.nodeName instead",
    });
  }
  return name;
}

/** Go's time.Duration String for whole seconds/minutes ("10m0s", "30s"). */
export function formatGoDuration(ms: number): string {
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}
