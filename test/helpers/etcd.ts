// A real etcd (Debian etcd-server, /usr/bin/etcd) for tests: one member, a temp data dir, free random ports
// on 127.0.0.1 — or, for cluster tests, inside a namespace the test created, on an address it chose.
// The server is stopped by its PID only, and its data dir removed. etcdctl (v3 API) is wrapped so tests can
// seed keys, compact and enable auth without writing a client of their own.
//
// Ports: on 127.0.0.1 we ask the kernel for a free port (listen on :0, close) and hand it to etcd. That is a
// small race with other processes; startEtcd retries with new ports when etcd fails to bind.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "./netns.ts";

export const ETCD_BIN = "/usr/bin/etcd";
export const ETCDCTL_BIN = "/usr/bin/etcdctl";

export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Require client certificates signed by caFile (etcd --client-cert-auth). */
  clientCertAuth?: boolean;
}

export interface StartEtcdOptions {
  /** Run inside this namespace (the caller created it); default: the test's own namespace on 127.0.0.1. */
  netns?: Netns;
  /** Address to listen on; default 127.0.0.1. Inside a namespace, an address of one of its interfaces. */
  host?: string;
  /** Client port; default a free random port (127.0.0.1) or 2379 (inside a namespace). */
  clientPort?: number;
  peerPort?: number;
  /** Serve clients over TLS with these files (server certificate must name `host`). */
  tls?: EtcdTls;
  /** Member name; default "fts-etcd". */
  name?: string;
  /** More etcd flags, e.g. `["--max-txn-ops", "1000"]`. */
  extraArgs?: readonly string[];
  /** How long to wait for the member to become healthy; default 30 s. */
  startTimeoutMs?: number;
}

export interface EtcdCtlOptions {
  /** `user:password` for etcdctl --user. */
  user?: string;
  /** Client certificate for etcdctl when the server requires one. */
  certFile?: string;
  keyFile?: string;
}

export interface EtcdServer {
  /** Client URL, e.g. `http://127.0.0.1:40123` (https with tls). */
  readonly endpoint: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  /** PID of the running etcd (undefined while stopped). */
  pid(): number | undefined;
  /** Runs etcdctl (v3 API) against this server; returns stdout, throws with stderr on failure. */
  etcdctl(args: readonly string[], opts?: EtcdCtlOptions): string;
  /** The current store revision. */
  revision(opts?: EtcdCtlOptions): number;
  /** Compacts history up to the current revision (watches from older revisions then fail); returns it. */
  compact(opts?: EtcdCtlOptions): Promise<number>;
  /** Stops the process (SIGTERM, SIGKILL after 10 s); the data dir stays so `start()` can resume it. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data dir; waits until healthy. */
  start(): Promise<void>;
  /** Stops the process and removes the data dir. Safe to call twice. */
  stop(): Promise<void>;
  /** The last part of etcd's own output, for failure messages. */
  output(): string;
}

/** A TCP port that was free a moment ago on `host`. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts one etcd member and waits until it answers `endpoint health`. */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const fixedPorts = opts.clientPort !== undefined || opts.netns !== undefined;
  const attempts = fixedPorts ? 1 : 3;
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    const host = opts.host ?? "127.0.0.1";
    const clientPort = opts.clientPort ?? (opts.netns ? 2379 : await freePort(host));
    const peerPort = opts.peerPort ?? (opts.netns ? 2380 : await freePort(host));
    const server = new EtcdProcess(opts, host, clientPort, peerPort);
    try {
      await server.start();
      return server;
    } catch (err) {
      lastErr = err;
      await server.stop();
    }
  }
  throw lastErr;
}

class EtcdProcess implements EtcdServer {
  readonly endpoint: string;
  readonly dataDir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private log = "";
  private removed = false;

  constructor(
    private readonly opts: StartEtcdOptions,
    readonly host: string,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {
    const scheme = opts.tls ? "https" : "http";
    const h = host.includes(":") ? `[${host}]` : host;
    this.endpoint = `${scheme}://${h}:${clientPort}`;
    this.dataDir = mkdtempSync(join(tmpdir(), "fts-etcd-"));
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  output(): string {
    return this.log;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const h = this.host.includes(":") ? `[${this.host}]` : this.host;
    const peerUrl = `http://${h}:${this.peerPort}`;
    const name = this.opts.name ?? "fts-etcd";
    const args = [
      "--name",
      name,
      "--data-dir",
      this.dataDir,
      "--listen-client-urls",
      this.endpoint,
      "--advertise-client-urls",
      this.endpoint,
      "--listen-peer-urls",
      peerUrl,
      "--initial-advertise-peer-urls",
      peerUrl,
      "--initial-cluster",
      `${name}=${peerUrl}`,
      "--initial-cluster-state",
      "new",
      "--logger",
      "zap",
      "--log-level",
      "warn",
    ];
    args.push(...(this.opts.extraArgs ?? []));
    const tls = this.opts.tls;
    if (tls) {
      args.push("--cert-file", tls.certFile, "--key-file", tls.keyFile, "--trusted-ca-file", tls.caFile);
      if (tls.clientCertAuth) args.push("--client-cert-auth");
    }
    const child = this.opts.netns
      ? this.opts.netns.spawn(ETCD_BIN, args)
      : spawn(ETCD_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString("utf8")).slice(-8000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => {
      child.once("exit", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once("error", (err) => {
        this.log += `\nspawn error: ${err.message}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 30_000);
    for (;;) {
      if (!this.child) throw new Error(`etcd exited during start-up:\n${this.log}`);
      const res = this.ctl(["endpoint", "health", "--command-timeout=1s"]);
      if (res.status === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`etcd at ${this.endpoint} not healthy in time:\n${res.stderr}\n${this.log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async kill(): Promise<void> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited || child.pid === undefined) return;
    process.kill(child.pid, "SIGTERM");
    const timer = setTimeout(() => {
      if (this.child === child && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }

  async stop(): Promise<void> {
    await this.kill();
    if (!this.removed) {
      this.removed = true;
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  etcdctl(args: readonly string[], opts: EtcdCtlOptions = {}): string {
    const res = this.ctl(args, opts);
    if (res.status !== 0) {
      throw new Error(`etcdctl ${args.join(" ")} failed (${res.status}): ${res.stderr.trim()}`);
    }
    return res.stdout;
  }

  revision(opts: EtcdCtlOptions = {}): number {
    const out = this.etcdctl(["endpoint", "status", "-w", "json"], opts);
    const parsed = JSON.parse(out) as { Status: { header: { revision: number } } }[];
    const rev = parsed[0]?.Status.header.revision;
    if (rev === undefined) throw new Error(`etcdctl endpoint status gave no revision: ${out}`);
    return rev;
  }

  async compact(opts: EtcdCtlOptions = {}): Promise<number> {
    const rev = this.revision(opts);
    this.etcdctl(["compact", String(rev), "--physical"], opts);
    return rev;
  }

  private ctl(
    args: readonly string[],
    opts: EtcdCtlOptions = {},
  ): { status: number; stdout: string; stderr: string } {
    const full = ["--endpoints", this.endpoint];
    const tls = this.opts.tls;
    if (tls) full.push("--cacert", tls.caFile);
    const cert = opts.certFile ?? (tls?.clientCertAuth ? tls.certFile : undefined);
    const key = opts.keyFile ?? (tls?.clientCertAuth ? tls.keyFile : undefined);
    if (cert && key) full.push("--cert", cert, "--key", key);
    if (opts.user) full.push("--user", opts.user);
    full.push(...args);
    const env = { ...process.env, ETCDCTL_API: "3" };
    const res = this.opts.netns
      ? spawnSync("ip", ["netns", "exec", this.opts.netns.name, ETCDCTL_BIN, ...full], {
          encoding: "utf8",
          env,
        })
      : spawnSync(ETCDCTL_BIN, full, { encoding: "utf8", env });
    return { status: res.status ?? 1, stdout: res.stdout ?? "", stderr: res.stderr ?? "" };
  }
}

export interface TestCerts {
  dir: string;
  caFile: string;
  /** Server certificate valid for `hosts` (also usable as a client certificate). */
  certFile: string;
  keyFile: string;
  /** A separate client certificate signed by the same CA. */
  clientCertFile: string;
  clientKeyFile: string;
  cleanup(): void;
}

/** etcd serving `certs` over TLS and requiring client certificates signed by their CA. */
export function mutualTls(certs: TestCerts): EtcdTls {
  return { caFile: certs.caFile, certFile: certs.certFile, keyFile: certs.keyFile, clientCertAuth: true };
}

/**
 * Generates a CA, a server certificate for `hosts` (IP addresses) and a client certificate with openssl,
 * in a temp dir. Returns undefined when openssl is not installed (callers skip with that reason).
 */
export function generateTestCerts(hosts: readonly string[] = ["127.0.0.1"]): TestCerts | undefined {
  if (spawnSync("openssl", ["version"]).status !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "fts-certs-"));
  const p = (f: string): string => join(dir, f);
  const run = (args: string[]): void => {
    const res = spawnSync("openssl", args, { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${res.stderr}`);
  };
  try {
    run(
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fts-test-ca"].concat([
        "-keyout",
        p("ca.key"),
        "-out",
        p("ca.crt"),
      ]),
    );
    const san = hosts.map((h) => `IP:${h}`).join(",");
    writeFileSync(
      p("ext.cnf"),
      `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n`,
    );
    for (const [name, cn] of [
      ["server", "fts-etcd"],
      ["client", "fts-client"],
    ] as const) {
      run(
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`].concat([
          "-keyout",
          p(`${name}.key`),
          "-out",
          p(`${name}.csr`),
        ]),
      );
      run(
        ["x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.crt"), "-CAkey", p("ca.key")].concat([
          "-CAcreateserial",
          "-days",
          "2",
          "-extfile",
          p("ext.cnf"),
          "-out",
          p(`${name}.crt`),
        ]),
      );
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caFile: p("ca.crt"),
    certFile: p("server.crt"),
    keyFile: p("server.key"),
    clientCertFile: p("client.crt"),
    clientKeyFile: p("client.key"),
    cleanup: () => {
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
