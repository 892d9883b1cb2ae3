// The fake Kubernetes API server as a process of its own, for cluster tests whose flanneld processes live in
// network namespaces: started with `ip netns exec <underlay> node --import tsx fake-kube-server.ts …`, it
// serves the API on an address of that namespace (reachable from every node namespace) and takes orders
// from the test on a unix socket (a file, so the test process in the root namespace reaches it without any
// network of its own — the safety rule forbids giving the root namespace a route into the lab).
//
//   node --import tsx test/helpers/fake-kube-server.ts --host=192.168.250.1 --port=0 --control=/tmp/x/ctl.sock
//
// Once both servers listen it prints one JSON line `{"url":"http://…:port"}` on stdout. SIGTERM closes it.
//
// Control protocol (HTTP over the socket, JSON bodies, JSON answers; errors → 400 `{"error": "…"}`):
//   POST /nodes                       body: a Node (as FakeKubeApi.addNode)     → the stored Node
//   PATCH /nodes/<name>               body: a JSON merge patch (RFC 7386)       → the stored Node
//   DELETE /nodes/<name>                                                         → {}
//   GET /nodes/<name>                                                            → the Node, or 404
//   POST /pods                        body: {namespace, name, nodeName}         → the stored Pod
//   POST /forbid  /allow              body: {verb, resource}                     → {}
//   GET /requests                                                                → the API requests seen
// The client side is `RemoteFakeKubeApi` in fake-kube-remote.ts.

import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { FakeKubeApi, mergePatch, type KubeObject, type Verb } from "./fake-kube-api.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    control: { type: "string" },
  },
});
const controlPath = values.control;
if (controlPath === undefined || controlPath === "") {
  process.stderr.write("fake-kube-server: --control=<unix socket path> is required\n");
  process.exit(2);
}

const api = await FakeKubeApi.start({ host: values.host, port: Number(values.port) });

class ControlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ControlError(400, `Request body is not JSON: ${text.slice(0, 200)}`);
  }
}

async function handle(req: IncomingMessage): Promise<unknown> {
  const method = req.method ?? "GET";
  const path = new URL(req.url ?? "/", "http://control").pathname;
  const body = await readJson(req);
  const nodeMatch = /^\/nodes\/([^/]+)$/.exec(path);
  const name = nodeMatch?.[1] === undefined ? undefined : decodeURIComponent(nodeMatch[1]);
  if (method === "POST" && path === "/nodes") {
    return api.addNode(body as KubeObject);
  }
  if (method === "PATCH" && name !== undefined) {
    if (api.getNode(name) === undefined) throw new ControlError(404, `Node ${name} does not exist`);
    return api.updateNode(name, (n) => {
      const next = mergePatch(n, body) as KubeObject;
      for (const k of Object.keys(n)) delete n[k];
      Object.assign(n, next);
    });
  }
  if (method === "DELETE" && name !== undefined) {
    api.deleteNode(name);
    return {};
  }
  if (method === "GET" && name !== undefined) {
    const node = api.getNode(name);
    if (node === undefined) throw new ControlError(404, `Node ${name} does not exist`);
    return node;
  }
  if (method === "POST" && path === "/pods") {
    const p = body as { namespace: string; name: string; nodeName: string };
    return api.addPod(p.namespace, p.name, p.nodeName);
  }
  if (method === "POST" && (path === "/forbid" || path === "/allow")) {
    const r = body as { verb: Verb; resource: string };
    if (path === "/forbid") api.forbid(r.verb, r.resource);
    else api.allow(r.verb, r.resource);
    return {};
  }
  if (method === "GET" && path === "/requests") return api.requests;
  throw new ControlError(404, `No control endpoint ${method} ${path}`);
}

const control = createServer((req: IncomingMessage, res: ServerResponse) => {
  handle(req).then(
    (out) => reply(res, 200, out),
    (err: unknown) =>
      reply(res, err instanceof ControlError ? err.status : 400, {
        error: err instanceof Error ? err.message : String(err),
      }),
  );
});

function reply(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

rmSync(controlPath, { force: true }); // a stale socket file from a killed run would make listen fail
control.listen(controlPath);
await once(control, "listening");
process.stdout.write(JSON.stringify({ url: api.url }) + "\n");

const shutdown = (): void => {
  control.close();
  rmSync(controlPath, { force: true });
  api.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
