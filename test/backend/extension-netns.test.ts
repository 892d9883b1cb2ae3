// The extension backend on a real kernel: two node namespaces joined by a veth, a pod namespace behind
// each, and hooks that are small scripts in a temp dir. SubnetAddCommand installs a host-gw-style route
// (`ip route replace $SUBNET via $PUBLIC_IP`), SubnetRemoveCommand deletes it; pods then ping across.
// The hooks also record what they were given (arguments, env, stdin), and a hook command written in the
// old shell syntax shows that no shell is involved.

import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { Netns, requireRoot, vethPair, waitFor } from "../helpers/netns.ts";

const NODE_SCRIPT = fileURLToPath(new URL("./backend-node.ts", import.meta.url));

interface Node {
  ns: Netns;
  pod: Netns;
  proc: ChildProcess;
  out: string[];
  exited: Promise<number | null>;
}

describe("extension backend on a real kernel", { concurrency: false }, () => {
  const isRoot = process.getuid?.() === 0;
  const all: Netns[] = [];
  const nodes: Node[] = [];
  const dir = mkdtempSync(join(tmpdir(), "fts-ext-"));

  function hook(name: string, body: string): string {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  }

  function startNode(ns: Netns, pod: Netns, i: number, peer: number): Node {
    const backend = {
      PreStartupCommand: `${hook("pre.sh", 'echo "data-of-$1"')} node${i}`,
      PostStartupCommand: `${hook("post.sh", `echo "$NETWORK $SUBNET $PUBLIC_IP" > ${dir}/post-$1`)} ${i}`,
      SubnetAddCommand: `${hook("add.sh", `ip route replace "$1" via "$2"; cat > ${dir}/add-stdin-$3`)} $SUBNET \${PUBLIC_IP} ${i}`,
      SubnetRemoveCommand: `${hook("del.sh", 'ip route del "$1"')} $SUBNET`,
    };
    const setup = {
      type: "extension",
      backend,
      ownSubnet: `10.244.${i}.0/24`,
      publicIp: `192.168.60.${i}`,
      peers: [
        {
          subnet: `10.244.${peer}.0/24`,
          publicIp: `192.168.60.${peer}`,
          backendType: "extension",
          backendData: JSON.stringify(`data-of-node${peer}`),
        },
      ],
    };
    const proc = ns.spawn(process.execPath, ["--import", "tsx", NODE_SCRIPT, JSON.stringify(setup)]);
    const out: string[] = [];
    let partial = "";
    proc.stdout?.setEncoding("utf8").on("data", (d: string) => {
      const lines = (partial + d).split("\n");
      partial = lines.pop() ?? "";
      out.push(...lines);
    });
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => out.push(`stderr: ${d}`));
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    return { ns, pod, proc, out, exited };
  }

  before(async () => {
    if (!isRoot) return;
    const [n1, n2, p1, p2] = [0, 1, 2, 3].map(() => {
      const ns = Netns.create("fts-u");
      all.push(ns);
      return ns;
    }) as [Netns, Netns, Netns, Netns];
    vethPair(n1, "eth0", "192.168.60.1/24", n2, "eth0", "192.168.60.2/24");
    for (const [n, p, i] of [[n1, p1, 1] as const, [n2, p2, 2] as const]) {
      vethPair(n, "pod0", `10.244.${i}.1/24`, p, "eth0", `10.244.${i}.2/24`);
      p.run("ip", ["route", "add", "default", "via", `10.244.${i}.1`]);
      n.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
    }
    nodes.push(startNode(n1, p1, 1, 2), startNode(n2, p2, 2, 1));
    for (const node of nodes) {
      await waitFor(
        () => {
          if (node.out.some((l) => l.startsWith("ERROR"))) throw new Error(node.out.join("\n"));
          return node.out.some((l) => l.startsWith("READY"));
        },
        30_000,
        `node ${node.ns.name} to be ready`,
      );
    }
  });

  after(async () => {
    for (const n of nodes) {
      if (n.proc.exitCode === null && n.proc.signalCode === null) {
        n.proc.kill("SIGKILL");
        await n.exited;
      }
    }
    for (const ns of all) ns.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the startup hooks and the add hook with their arguments, env and stdin", (t) => {
    if (!requireRoot(t)) return;
    const [n1] = nodes;
    assert.ok(n1);
    assert.ok(n1.out.includes("READY 1500 -"), n1.out.join("\n"));
    assert.equal(readFileSync(join(dir, "post-1"), "utf8"), "10.244.0.0/16 10.244.1.0/24 192.168.60.1\n");
    assert.equal(readFileSync(join(dir, "add-stdin-1"), "utf8"), "data-of-node2\n");
    assert.match(n1.ns.run("ip", ["route", "show"]), /^10\.244\.2\.0\/24 via 192\.168\.60\.2 dev eth0 $/m);
  });

  it("gives pod-to-pod connectivity through the routes the hooks made", (t) => {
    if (!requireRoot(t)) return;
    const [n1, n2] = nodes;
    assert.ok(n1 && n2);
    assert.match(n1.pod.run("ping", ["-c", "2", "-i", "0.2", "-W", "5", "10.244.2.2"]), /2 received/);
    assert.match(n2.pod.run("ping", ["-c", "1", "-W", "5", "10.244.1.2"]), /1 received/);
  });

  it("runs the remove hook when a peer's lease goes", async (t) => {
    if (!requireRoot(t)) return;
    const [n1] = nodes;
    assert.ok(n1);
    n1.proc.kill("SIGHUP");
    await waitFor(() => n1.out.includes("REMOVED"), 20_000, "the removal to be handled");
    assert.doesNotMatch(n1.ns.run("ip", ["route", "show"]), /10\.244\.2\.0\/24/);
    assert.notEqual(n1.pod.tryRun("ping", ["-c", "1", "-W", "1", "10.244.2.2"]).code, 0);
  });

  it("exits cleanly on SIGTERM", async (t) => {
    if (!requireRoot(t)) return;
    for (const n of nodes) {
      n.proc.kill("SIGTERM");
      assert.equal(await n.exited, 0, n.out.join("\n"));
    }
  });
});
