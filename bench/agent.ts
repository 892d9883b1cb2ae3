// A helper process that the benchmark runs *inside* one of its namespaces (`ip netns exec NS node --import
// tsx bench/agent.ts <role>`), because Node cannot enter a namespace itself. It reads one JSON command per
// line on stdin and answers one JSON line per command on stdout.
//
// Roles:
//   writer  flanneld's etcd client, next to etcd: grants etcd leases, writes/deletes lease keys streamed (one put
//           per request, a window in flight) or batched (100 puts per transaction) and reports when the last
//           write was acknowledged.
//   probe   counts the routes flanneld installed in the node namespace. It listens to route notifications
//           (RTMGRP_IPV4_ROUTE) instead of polling, and reads only the few bytes of each that it needs: it
//           shares the two cores with flanneld, etcd and the writer. Every answer is confirmed by a full
//           netlink dump; lost notifications (ENOBUFS) and a count short of its target once the
//           notifications have been quiet for QUIET_MS make it list the routes.
//
// Times are wall-clock milliseconds with sub-millisecond resolution (`performance.timeOrigin + now()`), so the
// parent can compare them across processes.

import { createInterface } from "node:readline";
import { IpAddr } from "../src/ip/addr.ts";
import { EtcdClient } from "../src/subnet/etcd/client/client.ts";
import type { DeleteOp, PutOp } from "../src/subnet/etcd/client/messages.ts";
import { encodeLeaseAttrs } from "../src/subnet/etcd/keys.ts";
import * as nl from "../src/kernel/netlink/codec.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";
import { peerRouteDst } from "./route-filter.ts";

export const nowMs = (): number => performance.timeOrigin + performance.now();

/** This process's utime+stime in milliseconds: what the agent itself took from the machine. */
const cpuNowMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Peer i's subnet, public IP and VTEP MAC. Peers live in 10.100.0.0/14 so they never collide with our own lease. */
export function peer(i: number): { subnet: string; key: string; publicIp: string; mac: string } {
  const a = 100 + (i >> 8);
  const b = i & 255;
  const hi = (i >> 8) & 255;
  const lo = i & 255;
  const hex = (n: number): string => n.toString(16).padStart(2, "0");
  return {
    subnet: `10.${a}.${b}.0/24`,
    key: `10.${a}.${b}.0-24`,
    // The underlay is 172.16.0.0/16: node .0.1, etcd .255.254, peers from 172.16.1.1 on.
    publicIp: `172.16.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`,
    mac: `0e:00:00:${hex((i >> 16) & 255)}:${hex(hi)}:${hex(lo)}`,
  };
}

type Reply = Record<string, unknown>;
type Handler = (cmd: Record<string, unknown>) => Promise<Reply> | Reply;

function serve(handler: Handler): void {
  const rl = createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  rl.on("line", (line) => {
    chain = chain.then(async () => {
      let reply: Reply;
      try {
        reply = await handler(JSON.parse(line) as Record<string, unknown>);
      } catch (err) {
        reply = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
      }
      process.stdout.write(`${JSON.stringify(reply)}\n`);
    });
  });
  rl.on("close", () => {
    void chain.then(() => process.exit(0));
  });
}

// ------------------------------------------------------------------------------------------------ writer

/** A deadline for one etcd call of the writer's. */
const soon = (): number => Date.now() + 30_000;

function writer(): void {
  // flanneld's own etcd client: the writer shares the two cores with what it measures, and this client costs
  // a fraction of the CPU per call of the etcd3 package's gRPC stack (docs/performance.md, ninth round).
  let client: EtcdClient | undefined;
  let prefix = "/coreos.com/network";
  let backend = "vxlan";
  const grants: string[] = [];
  const etcd = (): EtcdClient => {
    if (!client) throw new Error("writer: send init first");
    return client;
  };
  const keyOf = (i: number): Buffer => Buffer.from(`${prefix}/subnets/${peer(i).key}`);
  const valueOf = (i: number): Buffer => {
    const p = peer(i);
    return Buffer.from(
      encodeLeaseAttrs({
        publicIp: IpAddr.parse(p.publicIp),
        publicIpv6: null,
        backendType: backend,
        ...(backend === "vxlan" ? { backendData: `{"VNI":1,"VtepMAC":"${p.mac}"}` } : {}),
      }),
    );
  };
  /** Runs `fn(i)` for i in [from, to) with at most `window` calls in flight. */
  const pool = async (from: number, to: number, window: number, fn: (i: number) => Promise<void>) => {
    let next = from;
    const worker = async (): Promise<void> => {
      while (next < to) await fn(next++);
    };
    await Promise.all(Array.from({ length: Math.min(window, Math.max(1, to - from)) }, worker));
  };
  const txns = async (from: number, to: number, op: (i: number) => PutOp | DeleteOp): Promise<void> => {
    for (let s = from; s < to; s += 100) {
      const ops = [];
      for (let i = s; i < Math.min(to, s + 100); i++) ops.push(op(i));
      await etcd().txn({ compare: [], success: ops }, soon());
    }
  };

  serve(async (cmd) => {
    const from = Number(cmd.from ?? 0);
    const to = Number(cmd.to ?? 0);
    switch (cmd.cmd) {
      case "init":
        prefix = String(cmd.prefix ?? prefix);
        backend = String(cmd.backend ?? backend);
        client = new EtcdClient({ endpoints: [String(cmd.endpoint)] });
        await etcd().range({ key: Buffer.from(`${prefix}/config`) }, soon());
        return { ok: true };
      case "backend":
        backend = String(cmd.backend);
        return { ok: true };
      case "grant": {
        // One etcd lease per peer, as every real node has its own (flanneld then asks each one's TTL).
        const n = Number(cmd.n);
        const t0 = nowMs();
        while (grants.length < n) {
          const need = n - grants.length;
          const got = await Promise.all(
            Array.from({ length: Math.min(need, 256) }, () => etcd().leaseGrant(86_400, soon())),
          );
          grants.push(...got.map((g) => g.id));
        }
        return { ok: true, ms: nowMs() - t0 };
      }
      case "put": {
        const t0 = nowMs();
        const cpu0 = cpuNowMs();
        if (cmd.mode === "batch") {
          await txns(from, to, (i) => ({ key: keyOf(i), value: valueOf(i), lease: grants[i] ?? "0" }));
        } else {
          await pool(from, to, Number(cmd.window ?? 16), async (i) => {
            await etcd().put({ key: keyOf(i), value: valueOf(i), lease: grants[i] ?? "0" }, soon());
          });
        }
        return { t0, tEnd: nowMs(), cpuMs: cpuNowMs() - cpu0 };
      }
      case "delete": {
        const t0 = nowMs();
        const cpu0 = cpuNowMs();
        if (cmd.mode === "batch") {
          await txns(from, to, (i) => ({ deleteKey: keyOf(i) }));
        } else {
          await pool(from, to, Number(cmd.window ?? 16), async (i) => {
            await etcd().deleteRange({ key: keyOf(i) }, soon());
          });
        }
        return { t0, tEnd: nowMs(), cpuMs: cpuNowMs() - cpu0 };
      }
      case "close":
        client?.close();
        client = undefined;
        return { ok: true };
      default:
        throw new Error(`writer: unknown command ${String(cmd.cmd)}`);
    }
  });
}

// ------------------------------------------------------------------------------------------------ probe

/**
 * How long the notifications must have been quiet, while a wait is short of its target, before the probe
 * lists the routes to catch one it missed. The kernel removes a nexthop's routes without notifications, for
 * one; ENOBUFS (lost notifications) triggers a listing at once. A listing is a full route dump: done every
 * 20 ms, as it once was, it cost the probe ~100 ms of CPU over a 1000-lease removal.
 */
const QUIET_MS = 100;

function probe(): void {
  const sock = new NetlinkSocket({ groups: nl.RTMGRP_IPV4_ROUTE, rcvbufBytes: 32 << 20 });
  const req = new NetlinkSocket();
  const present = new Set<number>();
  const dumpBody = nl.encodeRtRequest(nl.AF_INET);
  const dump = (): void => {
    present.clear();
    for (const m of req.dump(nl.RTM_GETROUTE, dumpBody, "list routes")) {
      const dst = peerRouteDst(m.body);
      if (dst >= 0) present.add(dst);
    }
  };
  let lastChange = nowMs();
  let lastNotification = nowMs();
  let waiter: { target: number; resolve: (t: number) => void } | undefined;
  const check = (): void => {
    if (waiter && present.size === waiter.target) {
      const t = lastChange;
      // Confirm with the kernel's own answer before reporting.
      dump();
      if (present.size === waiter.target) {
        const w = waiter;
        waiter = undefined;
        w.resolve(t);
      }
    }
  };
  const ac = new AbortController();
  dump();
  sock.readLoop(
    (msgs) => {
      lastNotification = nowMs();
      for (const m of msgs) {
        if (m.type !== nl.RTM_NEWROUTE && m.type !== nl.RTM_DELROUTE) continue;
        const dst = peerRouteDst(m.body);
        if (dst < 0) continue;
        if (m.type === nl.RTM_NEWROUTE) present.add(dst);
        else present.delete(dst);
        lastChange = lastNotification;
      }
      check();
    },
    () => {
      lastChange = nowMs();
      dump();
      check();
    },
    ac.signal,
  );
  // Safety net for notifications that never came: a listing once they have been quiet for QUIET_MS. A
  // change it finds is dated by the listing, so a missed notification can only make a figure longer.
  setInterval(() => {
    if (waiter === undefined || nowMs() - lastNotification < QUIET_MS) return;
    lastNotification = nowMs();
    const before = [...present];
    dump();
    if (present.size !== before.length || before.some((d) => !present.has(d))) lastChange = nowMs();
    check();
  }, QUIET_MS / 2).unref();

  serve(async (cmd) => {
    switch (cmd.cmd) {
      case "count":
        dump();
        return { count: present.size, t: nowMs(), cpuMs: cpuNowMs() };
      case "cpu":
        return { cpuMs: cpuNowMs() };
      case "wait": {
        const target = Number(cmd.target);
        const timeoutMs = Number(cmd.timeoutMs ?? 300_000);
        const t = await new Promise<number | undefined>((resolve) => {
          const timer = setTimeout(() => {
            waiter = undefined;
            resolve(undefined);
          }, timeoutMs);
          waiter = {
            target,
            resolve: (v) => {
              clearTimeout(timer);
              resolve(v);
            },
          };
          check();
        });
        if (t === undefined) return { timeout: true, count: present.size, cpuMs: cpuNowMs() };
        return { t, count: present.size, cpuMs: cpuNowMs() };
      }
      case "close":
        ac.abort();
        return { ok: true };
      default:
        throw new Error(`probe: unknown command ${String(cmd.cmd)}`);
    }
  });
}

const role = process.argv[2];
if (role === "writer") writer();
else if (role === "probe") probe();
else {
  process.stderr.write("usage: agent.ts writer|probe\n");
  process.exit(2);
}
