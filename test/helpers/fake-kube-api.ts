// A fake Kubernetes API server for tests: just the part of the core/v1 API that flanneld and kubectl use
// for nodes and pods, served over HTTP on 127.0.0.1 (or any address inside a test namespace).
//
// Design notes
// * Storage is one map per resource and one global resourceVersion counter, as in etcd-backed apiservers:
//   every write bumps the counter and appends a watch event to a bounded history. A watch from
//   resourceVersion R replays history after R; if R is older than the history (`compact()` drops it) the
//   watch gets a `410 Gone` ERROR event ("too old resource version"), exactly what informers must survive.
//   A watch without resourceVersion (or "0") starts with synthetic ADDED events for every object.
// * No bookmarks are ever sent, even when `allowWatchBookmarks=true` (the server may ignore it).
// * PATCH supports the three content types of real servers. Strategic merge knows the merge keys of the
//   Node lists that matter (`status.conditions` and `status.addresses` by `type`), deletes with `null`,
//   and ignores `$setElementOrder/*` directives (kubectl sends them). `/status` changes only status and
//   metadata (spec edits are dropped), the main resource changes everything but status — as real nodes.
// * RBAC: `forbid(verb, resource)` makes matching requests fail with the same 403 Status a real server
//   returns ("pods \"x\" is forbidden: User ... cannot get resource ..."), so error texts can be tested.
// * `breakWatches()` destroys open watch connections (a server restart or a load-balancer timeout).

import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [k: string]: unknown;
};

export type Verb = "get" | "list" | "watch" | "patch" | "update" | "create" | "delete";

interface HistoryEntry {
  rv: number;
  resource: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: KubeObject;
}

interface RequestRecord {
  method: string;
  path: string;
  query: string;
  contentType: string | undefined;
  authorization: string | undefined;
  body: string;
}

export interface FakeKubeApiOptions {
  host?: string;
  port?: number;
  /** How many watch events are kept for resuming watches (older resourceVersions get 410). */
  historyLimit?: number;
  /** Answer too-old watches with an HTTP 410 instead of a 200 + ERROR event (both happen in the wild). */
  goneAsHttpStatus?: boolean;
  /** When set, requests must carry `Authorization: Bearer <token>`; `setToken` changes it (rotation). */
  token?: string;
  /** The user named in 403 messages. */
  user?: string;
}

const clone = <T>(v: T): T => structuredClone(v);
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export class FakeKubeApi {
  readonly requests: RequestRecord[] = [];
  private readonly nodes = new Map<string, KubeObject>();
  private readonly pods = new Map<string, KubeObject>(); // "<ns>/<name>"
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<{ resource: string; res: ServerResponse }>();
  private readonly sockets = new Set<Socket>();
  private readonly forbidden = new Set<string>();
  private rv = 100;
  private oldestRv = 100;
  private token: string | undefined;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly opts: FakeKubeApiOptions,
  ) {
    this.token = opts.token;
  }

  static async start(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const server = createServer();
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1");
    await once(server, "listening");
    const addr = server.address() as AddressInfo;
    const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    const api = new FakeKubeApi(server, `http://${host}:${addr.port}`, opts);
    server.on("request", (req, res) => api.handle(req, res));
    server.on("connection", (s) => {
      api.sockets.add(s);
      s.on("close", () => api.sockets.delete(s));
    });
    return api;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- test-side API -------------------------------------------------------------------------------

  /** Creates (or replaces) a node. `podCIDR` etc. go in `spec`; annotations in `metadata.annotations`. */
  addNode(node: Partial<KubeObject> & { metadata: { name: string } }): KubeObject {
    const existed = this.nodes.has(node.metadata.name);
    const obj: KubeObject = {
      apiVersion: "v1",
      kind: "Node",
      ...clone(node),
      metadata: {
        uid: `uid-${node.metadata.name}`,
        creationTimestamp: new Date().toISOString(),
        ...clone(node.metadata),
      },
      spec: clone(node.spec ?? {}),
      status: clone(node.status ?? {}),
    };
    return this.store("nodes", this.nodes, obj.metadata.name, obj, existed ? "MODIFIED" : "ADDED");
  }

  /** Changes a node as a controller would (any field, including spec and status). */
  updateNode(name: string, mutate: (n: KubeObject) => void): KubeObject {
    const cur = this.nodes.get(name);
    if (cur === undefined) throw new Error(`Node ${name} does not exist in the fake API server`);
    const next = clone(cur);
    mutate(next);
    return this.store("nodes", this.nodes, name, next, "MODIFIED");
  }

  deleteNode(name: string): void {
    const cur = this.nodes.get(name);
    if (cur === undefined) return;
    this.nodes.delete(name);
    this.record("nodes", "DELETED", {
      ...clone(cur),
      metadata: { ...clone(cur.metadata), resourceVersion: String(++this.rv) },
    });
  }

  getNode(name: string): KubeObject | undefined {
    const n = this.nodes.get(name);
    return n === undefined ? undefined : clone(n);
  }

  addPod(namespace: string, name: string, nodeName: string): KubeObject {
    const obj: KubeObject = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, uid: `uid-${namespace}-${name}` },
      spec: nodeName === "" ? {} : { nodeName },
      status: {},
    };
    return this.store("pods", this.pods, `${namespace}/${name}`, obj, "ADDED");
  }

  /** Makes `verb` on `resource` ("pods", "nodes", "nodes/status") answer 403 until `allow` is called. */
  forbid(verb: Verb, resource: string): void {
    this.forbidden.add(`${verb} ${resource}`);
  }

  allow(verb: Verb, resource: string): void {
    this.forbidden.delete(`${verb} ${resource}`);
  }

  setToken(token: string | undefined): void {
    this.token = token;
  }

  /** Forgets the watch history: watches resuming from an older resourceVersion then get 410 Gone. */
  compact(): void {
    this.history.length = 0;
    this.oldestRv = this.rv;
  }

  /** Cuts every open watch connection (as a restarting server or an idle timeout would). */
  breakWatches(): void {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  // ---- storage ---------------------------------------------------------------------------------------

  private store(
    resource: string,
    map: Map<string, KubeObject>,
    key: string,
    obj: KubeObject,
    type: "ADDED" | "MODIFIED",
  ): KubeObject {
    obj.metadata.resourceVersion = String(++this.rv);
    map.set(key, obj);
    this.record(resource, type, obj);
    return clone(obj);
  }

  private record(resource: string, type: HistoryEntry["type"], object: KubeObject): void {
    const entry = { rv: this.rv, resource, type, object: clone(object) };
    this.history.push(entry);
    const limit = this.opts.historyLimit ?? 1000;
    while (this.history.length > limit) this.oldestRv = this.history.shift()?.rv ?? this.oldestRv;
    for (const w of this.watchers) {
      if (w.resource === resource) w.res.write(JSON.stringify({ type, object: entry.object }) + "\n");
    }
  }

  // ---- HTTP ------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://fake");
    this.requests.push({
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.search,
      contentType: req.headers["content-type"],
      authorization: req.headers.authorization,
      body,
    });
    try {
      if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
        return status(res, 401, "Unauthorized", "Unauthorized");
      }
      this.route(req.method ?? "GET", url, body, req, res);
    } catch (err) {
      status(res, 500, "InternalError", err instanceof Error ? err.message : String(err));
    }
  }

  private route(method: string, url: URL, body: string, req: IncomingMessage, res: ServerResponse): void {
    const p = url.pathname.replace(/\/+$/, "");
    const q = url.searchParams;
    if (method === "GET" && p === "/api") {
      return json(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
    }
    if (method === "GET" && p === "/apis") return json(res, 200, API_GROUPS);
    const group = /^\/apis\/([^/]+)\/v1$/.exec(p);
    if (method === "GET" && group !== null && GROUP_RESOURCES[group[1] ?? ""] !== undefined) {
      return json(res, 200, GROUP_RESOURCES[group[1] ?? ""]);
    }
    if (method === "GET" && p === "/api/v1") return json(res, 200, API_RESOURCES);
    if (method === "GET" && p === "/version") {
      return json(res, 200, { major: "1", minor: "32", gitVersion: "v1.32.0-fake", platform: "linux/amd64" });
    }

    let m = /^\/api\/v1\/nodes(?:\/([^/]+)(?:\/(status))?)?$/.exec(p);
    if (m !== null) {
      const name = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
      const sub = m[2];
      const resource = sub === undefined ? "nodes" : "nodes/status";
      if (name === undefined) {
        if (method !== "GET")
          return status(
            res,
            405,
            "MethodNotAllowed",
            `the server does not allow this method on the requested resource`,
          );
        const watch = q.get("watch") === "true" || q.get("watch") === "1";
        if (this.deny(res, watch ? "watch" : "list", "nodes", undefined)) return;
        return watch
          ? this.serveWatch("nodes", this.nodes, q, req, res)
          : this.serveList("NodeList", this.nodes, res);
      }
      const verb =
        method === "GET"
          ? "get"
          : method === "PATCH"
            ? "patch"
            : method === "DELETE"
              ? "delete"
              : method === "PUT"
                ? "update"
                : undefined;
      if (verb === undefined)
        return status(
          res,
          405,
          "MethodNotAllowed",
          `the server does not allow this method on the requested resource`,
        );
      if (this.deny(res, verb, resource, name)) return;
      const cur = this.nodes.get(name);
      if (cur === undefined)
        return status(res, 404, "NotFound", `nodes "${name}" not found`, { name, kind: "nodes" });
      if (verb === "get") return json(res, 200, cur);
      if (verb === "delete") {
        this.deleteNode(name);
        return json(res, 200, {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Success",
          details: { name, kind: "nodes", uid: cur.metadata["uid"] },
        });
      }
      let next: KubeObject;
      try {
        next =
          verb === "patch"
            ? applyPatch(cur, body, req.headers["content-type"] ?? "")
            : (JSON.parse(body) as KubeObject);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (msg.startsWith("415:")) return status(res, 415, "UnsupportedMediaType", msg.slice(4));
        return status(res, 422, "Invalid", msg);
      }
      // The status subresource keeps the old spec; the main resource keeps the old status (as for real nodes).
      if (sub === "status") next.spec = clone(cur.spec ?? {});
      else next.status = clone(cur.status ?? {});
      next.metadata = { ...next.metadata, name, uid: cur.metadata["uid"] };
      if (q.get("dryRun") === "All") return json(res, 200, next);
      return json(res, 200, this.store("nodes", this.nodes, name, next, "MODIFIED"));
    }

    m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(p);
    if (m !== null && method === "GET") {
      const ns = decodeURIComponent(m[1] ?? "");
      const name = decodeURIComponent(m[2] ?? "");
      if (this.deny(res, "get", "pods", name, ns)) return;
      const pod = this.pods.get(`${ns}/${name}`);
      if (pod === undefined)
        return status(res, 404, "NotFound", `pods "${name}" not found`, { name, kind: "pods" });
      return json(res, 200, pod);
    }
    return status(res, 404, "NotFound", "the server could not find the requested resource");
  }

  private deny(
    res: ServerResponse,
    verb: Verb,
    resource: string,
    name: string | undefined,
    namespace?: string,
  ): boolean {
    if (!this.forbidden.has(`${verb} ${resource}`)) return false;
    const [group, sub] = resource.split("/");
    const user = this.opts.user ?? "system:serviceaccount:kube-flannel:flannel";
    const what = sub === undefined ? `resource "${group}"` : `resource "${group}/${sub}"`;
    const scope = namespace === undefined ? "at the cluster scope" : `in the namespace "${namespace}"`;
    const subject = name === undefined ? `${group} is forbidden` : `${group} "${name}" is forbidden`;
    status(
      res,
      403,
      "Forbidden",
      `${subject}: User "${user}" cannot ${verb} ${what} in API group "" ${scope}`,
      {
        ...(name === undefined ? {} : { name }),
        kind: group,
      },
    );
    return true;
  }

  private serveList(kind: string, map: Map<string, KubeObject>, res: ServerResponse): void {
    json(res, 200, {
      kind,
      apiVersion: "v1",
      metadata: { resourceVersion: String(this.rv) },
      items: [...map.values()],
    });
  }

  private serveWatch(
    resource: string,
    map: Map<string, KubeObject>,
    q: URLSearchParams,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    const rvText = q.get("resourceVersion") ?? "";
    const from = rvText === "" || rvText === "0" ? undefined : Number(rvText);
    const tooOld = from !== undefined && (Number.isNaN(from) || from < this.oldestRv);
    if (tooOld && this.opts.goneAsHttpStatus === true) {
      return status(res, 410, "Expired", `too old resource version: ${rvText} (${this.oldestRv})`);
    }
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders();
    if (tooOld) {
      res.end(
        JSON.stringify({
          type: "ERROR",
          object: statusBody(410, "Expired", `too old resource version: ${rvText} (${this.oldestRv})`),
        }) + "\n",
      );
      return;
    }
    if (from === undefined) {
      for (const o of map.values()) res.write(JSON.stringify({ type: "ADDED", object: o }) + "\n");
    } else {
      for (const e of this.history) {
        if (e.resource === resource && e.rv > from)
          res.write(JSON.stringify({ type: e.type, object: e.object }) + "\n");
      }
    }
    const w = { resource, res };
    this.watchers.add(w);
    const timeoutS = Number(q.get("timeoutSeconds") ?? "0");
    const timer = timeoutS > 0 ? setTimeout(() => res.end(), timeoutS * 1000) : undefined;
    const drop = (): void => {
      this.watchers.delete(w);
      if (timer !== undefined) clearTimeout(timer);
    };
    req.on("close", drop);
    res.on("close", drop);
  }
}

// ---- patching (exported for the fake's own unit test) ----------------------------------------------

/** Applies a PATCH body of the given content type to a copy of `obj`. Throws "415:<msg>" for unknown types. */
export function applyPatch(obj: KubeObject, body: string, contentType: string): KubeObject {
  const type = contentType.split(";")[0]?.trim() ?? "";
  const patch: unknown = JSON.parse(body);
  switch (type) {
    case "application/strategic-merge-patch+json":
      return strategicMerge(clone(obj), patch, "") as KubeObject;
    case "application/merge-patch+json":
      return mergePatch(clone(obj), patch) as KubeObject;
    case "application/json-patch+json":
      return jsonPatch(clone(obj), patch);
    default:
      throw new Error(
        `415:the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
      );
  }
}

/** RFC 7386. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const out: Record<string, unknown> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** List fields merged by key (patchStrategy=merge) in core/v1 Node and Pod; other lists are replaced. */
const MERGE_KEYS: Record<string, string> = {
  "status.conditions": "type",
  "status.addresses": "type",
  "spec.containers": "name",
  "metadata.ownerReferences": "uid",
};
const MERGE_PRIMITIVE_LISTS = new Set(["metadata.finalizers"]);

/** Strategic merge patch, the subset Kubernetes applies to nodes: merge keys, `null` deletes, `$patch`. */
export function strategicMerge(target: unknown, patch: unknown, path: string): unknown {
  if (!isObj(patch)) return clone(patch);
  if (patch["$patch"] === "replace") {
    const rest = { ...patch };
    delete rest["$patch"];
    return clone(rest);
  }
  if (patch["$patch"] === "delete") return undefined;
  const out: Record<string, unknown> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (
      k.startsWith("$setElementOrder/") ||
      k.startsWith("$deleteFromPrimitiveList/") ||
      k === "$retainKeys"
    ) {
      continue; // ordering / retain directives do not change content for the lists we model
    }
    const childPath = path === "" ? k : `${path}.${k}`;
    if (v === null) {
      delete out[k];
    } else if (Array.isArray(v) && MERGE_KEYS[childPath] !== undefined) {
      out[k] = mergeListByKey(
        Array.isArray(out[k]) ? (out[k] as unknown[]) : [],
        v,
        MERGE_KEYS[childPath],
        childPath,
      );
    } else if (Array.isArray(v) && MERGE_PRIMITIVE_LISTS.has(childPath)) {
      const cur = Array.isArray(out[k]) ? (out[k] as unknown[]) : [];
      out[k] = [...cur, ...v.filter((x) => !cur.includes(x))];
    } else {
      const merged = strategicMerge(out[k], v, childPath);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
  }
  return out;
}

function mergeListByKey(cur: unknown[], patch: unknown[], key: string, path: string): unknown[] {
  const out = cur.map((x) => clone(x));
  for (const item of patch) {
    if (!isObj(item)) continue;
    const idx = out.findIndex((x) => isObj(x) && x[key] === item[key]);
    if (item["$patch"] === "delete") {
      if (idx !== -1) out.splice(idx, 1);
    } else if (idx === -1) {
      out.push(strategicMerge({}, item, path));
    } else {
      out[idx] = strategicMerge(out[idx], item, path);
    }
  }
  return out;
}

/** RFC 6902 JSON patch. */
export function jsonPatch(doc: KubeObject, ops: unknown): KubeObject {
  if (!Array.isArray(ops)) throw new Error("json patch must be an array of operations");
  let root: unknown = doc;
  for (const op of ops as { op: string; path: string; value?: unknown; from?: string }[]) {
    const v = op.value === undefined ? undefined : clone(op.value);
    switch (op.op) {
      case "add":
        root = pointerSet(root, op.path, v, "add");
        break;
      case "replace":
        pointerGet(root, op.path);
        root = pointerSet(root, op.path, v, "replace");
        break;
      case "remove":
        pointerGet(root, op.path);
        root = pointerSet(root, op.path, undefined, "remove");
        break;
      case "test":
        if (JSON.stringify(pointerGet(root, op.path)) !== JSON.stringify(op.value)) {
          throw new Error(`the json patch test operation failed at ${op.path}`);
        }
        break;
      case "copy":
      case "move": {
        const val = clone(pointerGet(root, op.from ?? ""));
        if (op.op === "move") root = pointerSet(root, op.from ?? "", undefined, "remove");
        root = pointerSet(root, op.path, val, "add");
        break;
      }
      default:
        throw new Error(`unknown json patch operation "${op.op}"`);
    }
  }
  return root as KubeObject;
}

function tokens(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`invalid json pointer "${pointer}"`);
  return pointer
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function pointerGet(root: unknown, pointer: string): unknown {
  let cur = root;
  for (const t of tokens(pointer)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObj(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw new Error(`json patch path ${pointer} does not exist`);
  }
  return cur;
}

function pointerSet(
  root: unknown,
  pointer: string,
  value: unknown,
  mode: "add" | "replace" | "remove",
): unknown {
  const ts = tokens(pointer);
  if (ts.length === 0) return value;
  const last = ts[ts.length - 1] ?? "";
  const parent = pointerGet(
    root,
    "/" +
      ts
        .slice(0, -1)
        .map((t) => t.replace(/~/g, "~0").replace(/\//g, "~1"))
        .join("/")
        .replace(/^\/$/, ""),
  );
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (mode === "add") parent.splice(i, 0, value);
    else if (mode === "replace") parent[i] = value;
    else parent.splice(i, 1);
  } else if (isObj(parent)) {
    if (mode === "remove") delete parent[last];
    else parent[last] = value;
  } else {
    throw new Error(`json patch path ${pointer} has no parent object`);
  }
  return root;
}

// ---- responses ---------------------------------------------------------------------------------------

function json(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function statusBody(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): object {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details === undefined ? {} : { details }),
    code,
  };
}

function status(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): void {
  json(res, code, statusBody(code, reason, message, details));
}

// Discovery for the other kinds of deploy/kube-flannel.yml, so `kubectl apply --dry-run=client` can map
// them (objects of these kinds are not stored: GETs answer 404, as for objects not yet created).
const groupEntry = (name: string): object => ({
  name,
  versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
  preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
});
const API_GROUPS = {
  kind: "APIGroupList",
  apiVersion: "v1",
  groups: [groupEntry("apps"), groupEntry("rbac.authorization.k8s.io")],
};
const resourceEntry = (name: string, kind: string, namespaced: boolean): object => ({
  name,
  singularName: kind.toLowerCase(),
  namespaced,
  kind,
  verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
});
const GROUP_RESOURCES: Record<string, object> = {
  apps: {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: "apps/v1",
    resources: [resourceEntry("daemonsets", "DaemonSet", true)],
  },
  "rbac.authorization.k8s.io": {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: "rbac.authorization.k8s.io/v1",
    resources: [
      resourceEntry("clusterroles", "ClusterRole", false),
      resourceEntry("clusterrolebindings", "ClusterRoleBinding", false),
    ],
  },
};

const API_RESOURCES = {
  kind: "APIResourceList",
  groupVersion: "v1",
  resources: [
    resourceEntry("namespaces", "Namespace", false),
    resourceEntry("configmaps", "ConfigMap", true),
    resourceEntry("serviceaccounts", "ServiceAccount", true),
    {
      name: "nodes",
      singularName: "node",
      namespaced: false,
      kind: "Node",
      verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
      shortNames: ["no"],
    },
    {
      name: "nodes/status",
      singularName: "",
      namespaced: false,
      kind: "Node",
      verbs: ["get", "patch", "update"],
    },
    {
      name: "pods",
      singularName: "pod",
      namespaced: true,
      kind: "Pod",
      verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
      shortNames: ["po"],
      categories: ["all"],
    },
  ],
};
