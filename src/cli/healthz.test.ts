import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import { createServer } from "node:net";
import { MemoryLogger } from "../log/logger.ts";
import { startHealthz, type HealthzServer } from "./healthz.ts";

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function call(port: number, path: string, method = "GET", agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, agent: agent ?? false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function withServer(
  isReady: () => boolean,
  fn: (srv: HealthzServer, log: MemoryLogger) => Promise<void>,
): Promise<void> {
  const log = new MemoryLogger();
  const srv = await startHealthz({ ip: "127.0.0.1", port: 0, isReady, logger: log });
  try {
    await fn(srv, log);
  } finally {
    await srv.close();
  }
}

test("/healthz always answers 200, /readyz follows readiness (spec §10.2 item 22)", async () => {
  let ready = false;
  await withServer(
    () => ready,
    async (srv, log) => {
      assert.ok(srv.port > 0);
      assert.deepEqual(log.lines, [`I Start healthz server on 127.0.0.1:${srv.port}`]);
      const h = await call(srv.port, "/healthz");
      assert.deepEqual([h.status, h.body], [200, "flanneld is running"]);
      const r1 = await call(srv.port, "/readyz");
      assert.deepEqual([r1.status, r1.body], [503, "flanneld is not ready yet"]);
      ready = true;
      const r2 = await call(srv.port, "/readyz");
      assert.deepEqual([r2.status, r2.body], [200, "flanneld is ready"]);
      const h2 = await call(srv.port, "/healthz?verbose=1");
      assert.deepEqual([h2.status, h2.body], [200, "flanneld is running"]);
    },
  );
});

test("any method is accepted on the two paths", async () => {
  await withServer(
    () => true,
    async (srv) => {
      for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
        const h = await call(srv.port, "/healthz", method);
        assert.deepEqual([h.status, h.body], [200, "flanneld is running"], method);
        const r = await call(srv.port, "/readyz", method);
        assert.deepEqual([r.status, r.body], [200, "flanneld is ready"], method);
      }
      const head = await call(srv.port, "/readyz", "HEAD");
      assert.deepEqual([head.status, head.body], [200, ""]);
    },
  );
});

test("other paths get Go ServeMux answers", async () => {
  await withServer(
    () => true,
    async (srv) => {
      for (const path of ["/", "/healthz/", "/readyz/x", "/HEALTHZ", "/metrics"]) {
        const r = await call(srv.port, path);
        assert.deepEqual([r.status, r.body], [404, "404 page not found\n"], path);
        assert.equal(r.headers["content-type"], "text/plain; charset=utf-8", path);
        assert.equal(r.headers["x-content-type-options"], "nosniff", path);
      }
      const moved = await call(srv.port, "//healthz?x=1");
      assert.equal(moved.status, 301);
      assert.equal(moved.headers.location, "/healthz?x=1");
      const dots = await call(srv.port, "/a/../readyz");
      assert.deepEqual([dots.status, dots.headers.location], [301, "/readyz"]);
      const star = await call(srv.port, "*", "OPTIONS");
      assert.equal(star.status, 400);
      const encoded = await call(srv.port, "/health%7a");
      assert.deepEqual([encoded.status, encoded.body], [200, "flanneld is running"]);
    },
  );
});

test("close() returns promptly with an idle keep-alive connection open, and stops listening", async () => {
  const log = new MemoryLogger();
  const srv = await startHealthz({ ip: "127.0.0.1", port: 0, isReady: () => true, logger: log });
  const agent = new Agent({ keepAlive: true });
  try {
    const r = await call(srv.port, "/healthz", "GET", agent);
    assert.equal(r.status, 200);
    await srv.close();
    await srv.close(); // idempotent
    await assert.rejects(call(srv.port, "/healthz"), /ECONNREFUSED/);
    assert.ok(!log.text().includes("Shutdown healthz server error"), log.text());
  } finally {
    agent.destroy();
  }
});

test("a port in use gives an error saying what to do", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(
      startHealthz({ ip: "127.0.0.1", port, isReady: () => true, logger: new MemoryLogger() }),
      {
        message: new RegExp(
          `^Cannot start the healthz server on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*; ` +
            `stop the process using that port or choose another --healthz-port$`,
        ),
      },
    );
  } finally {
    await new Promise((resolve) => blocker.close(resolve));
  }
});
