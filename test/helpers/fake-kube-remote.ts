// Test-side handle of a fake Kubernetes API server running as a child process (fake-kube-server.ts),
// usually inside a test's underlay namespace. The API is reached by the node namespaces at `url`; the
// test reaches the control socket (a file in `dir`) to add, change and delete objects and to deny verbs.

import { spawn, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KubeObject, Verb } from "./fake-kube-api.ts";

const SERVER_SCRIPT = fileURLToPath(new URL("./fake-kube-server.ts", import.meta.url));

export interface RemoteFakeKubeOptions {
  /** Network namespace to run in (`ip netns` name); default: this one. */
  ns?: string;
  /** Address to listen on (inside `ns`); default 127.0.0.1. */
  host?: string;
  /** Port; default 0 (a free one). */
  port?: number;
  /** A directory of the test's; the control socket is created in it. */
  dir: string;
  /** How long to wait for the server to listen; default 20 s. */
  startTimeoutMs?: number;
}

export class RemoteFakeKubeApi {
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    /** The API server's URL, e.g. http://192.168.250.1:41234. */
    readonly url: string,
    readonly controlPath: string,
    private readonly exit: Promise<void>,
  ) {
    void exit.then(() => (this.exited = true));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(opts: RemoteFakeKubeOptions): Promise<RemoteFakeKubeApi> {
    const controlPath = join(opts.dir, "fake-kube-control.sock");
    const argv = [
      process.execPath,
      "--import",
      "tsx",
      SERVER_SCRIPT,
      `--host=${opts.host ?? "127.0.0.1"}`,
      `--port=${opts.port ?? 0}`,
      `--control=${controlPath}`,
    ];
    const [file, ...args] = opts.ns === undefined ? argv : ["ip", "netns", "exec", opts.ns, ...argv];
    const child = spawn(file as string, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    const exit = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once("exit", () => resolve());
    });
    const timeoutMs = opts.startTimeoutMs ?? 20_000;
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`The fake API server did not start within ${timeoutMs} ms: ${err}`)),
          timeoutMs,
        );
        child.stdout?.on("data", (d: Buffer) => {
          out += d.toString();
          const line = out.split("\n").find((l) => l.startsWith("{"));
          if (line === undefined || !out.includes("\n")) return;
          clearTimeout(timer);
          try {
            resolve((JSON.parse(line) as { url: string }).url);
          } catch {
            reject(new Error(`The fake API server printed an unexpected line: ${line}`));
          }
        });
        void exit.then(() => {
          clearTimeout(timer);
          reject(new Error(`The fake API server exited before listening (code ${child.exitCode}): ${err}`));
        });
      });
      return new RemoteFakeKubeApi(child, url, controlPath, exit);
    } catch (e) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exit;
      throw e;
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. Safe to call twice. */
  async close(): Promise<void> {
    if (this.exited) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (!this.exited) this.child.kill("SIGKILL");
    }, 5_000);
    await this.exit;
    clearTimeout(timer);
  }

  addNode(node: Partial<KubeObject> & { metadata: { name: string } }): Promise<KubeObject> {
    return this.call("POST", "/nodes", node) as Promise<KubeObject>;
  }

  /** Applies a JSON merge patch (RFC 7386: `null` deletes) to the node, as a controller's update. */
  updateNode(name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    return this.call("PATCH", `/nodes/${encodeURIComponent(name)}`, patch) as Promise<KubeObject>;
  }

  async deleteNode(name: string): Promise<void> {
    await this.call("DELETE", `/nodes/${encodeURIComponent(name)}`);
  }

  /** The node, or undefined when it does not exist. */
  async getNode(name: string): Promise<KubeObject | undefined> {
    try {
      return (await this.call("GET", `/nodes/${encodeURIComponent(name)}`)) as KubeObject;
    } catch (err) {
      if ((err as { status?: number }).status === 404) return undefined;
      throw err;
    }
  }

  addPod(namespace: string, name: string, nodeName: string): Promise<KubeObject> {
    return this.call("POST", "/pods", { namespace, name, nodeName }) as Promise<KubeObject>;
  }

  async forbid(verb: Verb, resource: string): Promise<void> {
    await this.call("POST", "/forbid", { verb, resource });
  }

  async allow(verb: Verb, resource: string): Promise<void> {
    await this.call("POST", "/allow", { verb, resource });
  }

  /** The API requests the server has answered so far. */
  requests(): Promise<{ method: string; path: string; query: string; contentType?: string; body: string }[]> {
    return this.call("GET", "/requests") as Promise<
      { method: string; path: string; query: string; contentType?: string; body: string }[]
    >;
  }

  private call(method: string, path: string, body?: unknown): Promise<unknown> {
    const text = body === undefined ? "" : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.controlPath,
          method,
          path,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
        },
        (res) => {
          let data = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (data += d));
          res.on("end", () => {
            let parsed: unknown;
            try {
              parsed = data === "" ? undefined : JSON.parse(data);
            } catch {
              parsed = data;
            }
            if ((res.statusCode ?? 500) >= 300) {
              const msg = (parsed as { error?: string } | undefined)?.error ?? data;
              reject(
                Object.assign(new Error(`Fake API control ${method} ${path} failed: ${msg}`), {
                  status: res.statusCode,
                }),
              );
            } else {
              resolve(parsed);
            }
          });
        },
      );
      req.on("error", reject);
      req.end(text);
    });
  }
}
