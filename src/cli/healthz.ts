// The health server of --healthz-ip/--healthz-port (spec §7.3; upstream main.go mustRunHealthz):
//   /healthz  200 "flanneld is running"                     (liveness: always, while the process runs)
//   /readyz   503 "flanneld is not ready yet" → 200 "flanneld is ready"   (after subnet.env was written)
// Any method on those exact paths; everything else answers like Go's default ServeMux (404 page not found,
// 301 to the cleaned path for unclean paths such as `//healthz`), so probes written for upstream behave
// the same. Shutdown is graceful with upstream's 3 s limit, after which open connections are cut.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export interface HealthzOptions {
  /** Address to listen on (`--healthz-ip`, default 0.0.0.0). */
  ip: string;
  /** Port to listen on; 0 picks a free port (tests). */
  port: number;
  /** Readiness: true once subnet.env was written. */
  isReady: () => boolean;
  logger: Logger;
  /** When given, `/metrics` serves them in the Prometheus text format (flannel-ts addition). */
  metrics?: { render(): string };
}

export interface HealthzServer {
  /** The port actually listened on. */
  port: number;
  /** Stops accepting, waits up to 3 s for requests in flight, then closes what is left. Idempotent. */
  close(): Promise<void>;
}

const SHUTDOWN_TIMEOUT_MS = 3000;

/** net.JoinHostPort: IPv6 literals in brackets. */
function joinHostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Go's ServeMux cleanPath: path.Clean, keeping a trailing slash. */
function cleanPath(p: string): string {
  if (p === "") return "/";
  const abs = p.startsWith("/") ? p : `/${p}`;
  const out: string[] = [];
  for (const seg of abs.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  let cleaned = `/${out.join("/")}`;
  if (abs.endsWith("/") && cleaned !== "/") cleaned += "/";
  return cleaned;
}

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}

function handle(
  req: IncomingMessage,
  res: ServerResponse,
  isReady: () => boolean,
  metrics: { render(): string } | undefined,
): void {
  const target = req.url ?? "/";
  if (target === "*") {
    // `OPTIONS *`: Go's ServeMux answers 400 and closes the connection.
    res.shouldKeepAlive = false;
    res.writeHead(400);
    res.end();
    return;
  }
  let rawPath = target;
  let query = "";
  if (/^https?:\/\//i.test(target)) {
    const u = new URL(target);
    rawPath = u.pathname;
    query = u.search;
  } else {
    const q = target.indexOf("?");
    if (q !== -1) {
      rawPath = target.slice(0, q);
      query = target.slice(q);
    }
  }
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    reply(res, 400, "400 Bad Request");
    return;
  }
  const cleaned = cleanPath(path);
  if (cleaned !== path && req.method !== "CONNECT") {
    const location = cleaned + query;
    const body = req.method === "GET" ? `<a href="${location}">Moved Permanently</a>.\n\n` : "";
    res.writeHead(301, { Location: location, "Content-Type": "text/html; charset=utf-8" });
    res.end(body);
    return;
  }
  if (path === "/healthz") {
    reply(res, 200, "flanneld is running");
  } else if (path === "/readyz") {
    if (isReady()) reply(res, 200, "flanneld is ready");
    else reply(res, 503, "flanneld is not ready yet");
  } else if (path === "/metrics" && metrics !== undefined) {
    res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
    res.end(metrics.render());
  } else {
    reply(res, 404, "404 page not found\n", { "X-Content-Type-Options": "nosniff" });
  }
}

/**
 * Starts the health server and resolves once it listens. Rejects with an operator-readable error when the
 * address cannot be bound (upstream panics there).
 */
export async function startHealthz(opts: HealthzOptions): Promise<HealthzServer> {
  const log = opts.logger;
  const server = createServer((req, res) => handle(req, res, opts.isReady, opts.metrics));
  const address = joinHostPort(opts.ip, opts.port);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const fix =
        err.code === "EADDRINUSE"
          ? "stop the process using that port or choose another --healthz-port"
          : err.code === "EADDRNOTAVAIL"
            ? "set --healthz-ip to an address of this host"
            : "check --healthz-ip and --healthz-port";
      reject(
        new Error(`Cannot start the healthz server on ${address}: ${errorMessage(err)}; ${fix}`, {
          cause: err,
        }),
      );
    };
    server.once("error", onError);
    server.listen(opts.port, opts.ip, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => log.error(`Healthz server error. ${errorMessage(err)}`));
  const port = (server.address() as AddressInfo).port;
  // The bound port, not the configured one, so that `--healthz-port=0` logs something usable.
  log.info(`Start healthz server on ${joinHostPort(opts.ip, port)}`);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.error(`Shutdown healthz server error. context deadline exceeded`);
        server.closeAllConnections();
      }, SHUTDOWN_TIMEOUT_MS);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      // Idle keep-alive connections would otherwise hold close() open until the timeout.
      server.closeIdleConnections();
    });
    return closing;
  };
  return { port, close };
}
