// A helper process that the benchmark runs *inside* one of its namespaces (`ip netns exec NS node --import
// tsx bench/agent.ts <role>`), because Node cannot enter a namespace itself. It reads one JSON command per
// line on stdin and answers one JSON line per command on stdout.
//
// Roles:
//   writer  an etcd3 client next to etcd: grants etcd leases, writes/deletes lease keys streamed (one put
//           per request, a window in flight) or batched (100 puts per transaction) and reports when the last
//           write was acknowledged.
//   probe   counts the routes flanneld installed in the node namespace. It listens to route notifications
//           (RTMGRP_IPV4_ROUTE) instead of polling so that counting costs flanneld no CPU; every answer is
//           confirmed by a full netlink dump, and a lost notification (ENOBUFS) or a mismatch falls back to
//           dumps every 20 ms.
//
// Times are wall-clock milliseconds with sub-millisecond resolution (`performance.timeOrigin + now()`), so the
// parent can compare them across processes.

import { Etcd3 } from "etcd3";
import { createInterface } from "node:readline";
import { IpAddr } from "../src/ip/addr.ts";
import { IpNet } from "../src/ip/net.ts";
import { encodeLeaseAttrs } from "../src/subnet/etcd/keys.ts";
import * as nl from "../src/kernel/netlink/codec.ts";
import { createNetlinkKernel, parseRoute } from "../src/kernel/netlink/netlink-kernel.ts";
import { NetlinkSocket } from "../src/kernel/netlink/socket.ts";

export const nowMs = (): number => performance.timeOrigin + performance.now();

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

function writer(): void {
  let client: Etcd3 | undefined;
  let prefix = "/coreos.com/network";
  let backend = "vxlan";
  const grants: string[] = [];
  const etcd = (): Etcd3 => {
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
  const txns = async (from: number, to: number, op: (i: number) => unknown): Promise<void> => {
    for (let s = from; s < to; s += 100) {
      const ops = [];
      for (let i = s; i < Math.min(to, s + 100); i++) ops.push(op(i));
      await etcd().kv.txn({ compare: [], success: ops as never });
    }
  };

  serve(async (cmd) => {
    const from = Number(cmd.from ?? 0);
    const to = Number(cmd.to ?? 0);
    switch (cmd.cmd) {
      case "init":
        prefix = String(cmd.prefix ?? prefix);
        backend = String(cmd.backend ?? backend);
        client = new Etcd3({ hosts: [String(cmd.endpoint)] });
        await etcd().kv.range({ key: Buffer.from(`${prefix}/config`) });
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
            Array.from({ length: Math.min(need, 256) }, () => etcd().leaseClient.leaseGrant({ TTL: 86_400 })),
          );
          grants.push(...got.map((g) => g.ID));
        }
        return { ok: true, ms: nowMs() - t0 };
      }
      case "put": {
        const t0 = nowMs();
        if (cmd.mode === "batch") {
          await txns(from, to, (i) => ({
            request_put: { key: keyOf(i), value: valueOf(i), lease: grants[i] ?? "0" },
          }));
        } else {
          await pool(from, to, Number(cmd.window ?? 16), async (i) => {
            await etcd().kv.put({ key: keyOf(i), value: valueOf(i), lease: grants[i] ?? "0" });
          });
        }
        return { t0, tEnd: nowMs() };
      }
      case "delete": {
        const t0 = nowMs();
        if (cmd.mode === "batch") {
          await txns(from, to, (i) => ({ request_delete_range: { key: keyOf(i) } }));
        } else {
          await pool(from, to, Number(cmd.window ?? 16), async (i) => {
            await etcd().kv.deleteRange({ key: keyOf(i) });
          });
        }
        return { t0, tEnd: nowMs() };
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

function probe(): void {
  // Peer routes: /24s inside 10.0.0.0/8 in the main table (vxlan: via flannel.1 onlink; host-gw: via eth0).
  const network = IpNet.parse("10.0.0.0/8");
  const ours = (body: Buffer): string | undefined => {
    const r = parseRoute(body);
    if (r === undefined || r.family !== 4 || r.dst === null || r.dst.prefixLen !== 24) return undefined;
    if ((r.table ?? 254) !== 254 || r.gw === undefined || !network.containsNet(r.dst)) return undefined;
    return r.dst.toString();
  };
  const kernel = createNetlinkKernel();
  const present = new Set<string>();
  const dump = (): void => {
    present.clear();
    for (const r of kernel.routes.list({ family: 4 })) {
      if (r.dst !== null && r.dst.prefixLen === 24 && r.gw !== undefined && network.containsNet(r.dst)) {
        if ((r.table ?? 254) === 254) present.add(r.dst.toString());
      }
    }
  };
  let lastChange = nowMs();
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
  const sock = new NetlinkSocket({ groups: nl.RTMGRP_IPV4_ROUTE, rcvbufBytes: 32 << 20 });
  const ac = new AbortController();
  dump();
  sock.readLoop(
    (msgs) => {
      for (const m of msgs) {
        if (m.type !== nl.RTM_NEWROUTE && m.type !== nl.RTM_DELROUTE) continue;
        const k = ours(m.body);
        if (k === undefined) continue;
        if (m.type === nl.RTM_NEWROUTE) present.add(k);
        else present.delete(k);
        lastChange = nowMs();
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
  // Safety net: notifications can be lost beyond what ENOBUFS reports (socket closed, kernel quirks).
  setInterval(() => {
    if (waiter) {
      const before = present.size;
      dump();
      if (present.size !== before) lastChange = nowMs();
      check();
    }
  }, 20).unref();

  serve(async (cmd) => {
    switch (cmd.cmd) {
      case "count":
        dump();
        return { count: present.size, t: nowMs() };
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
        if (t === undefined) return { timeout: true, count: present.size };
        return { t, count: present.size };
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
