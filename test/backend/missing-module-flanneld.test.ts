// flanneld itself on a kernel without the ipip / wireguard module: etcd and flanneld in one test namespace
// (its own loopback), the backend chosen in net-conf. flanneld must exit 1 at startup with the plain
// missing-module error and its hint, without a stack trace. Skipped where the kernel has the module.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";

import { startEtcd } from "../helpers/etcd.ts";
import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";

// From source (tsx), so that the test does not depend on a fresh `npm run build` of dist/.
const FLANNELD = fileURLToPath(new URL("../../src/cli/flanneld-main.ts", import.meta.url));

function kernelHas(kind: string): boolean {
  const ns = Netns.create("fts-w");
  try {
    return ns.tryRun("ip", ["link", "add", "probe0", "type", kind]).code === 0;
  } finally {
    ns.delete();
  }
}

describe("flanneld on a kernel without the backend's module", () => {
  for (const type of ["ipip", "wireguard"] as const) {
    it(
      `${type}: exits 1 at startup saying the module is missing`,
      { timeout: 120_000 },
      async (t: TestContext) => {
        if (!requireRoot(t)) return;
        if (kernelHas(type)) {
          t.skip(`kernel has the ${type} module: the missing-module error cannot be provoked here`);
          return;
        }
        const dir = mkdtempSync(join(tmpdir(), "fts-w-"));
        const node = Netns.create("fts-w");
        const lan = Netns.create("fts-w");
        const etcd = await (async () => {
          vethPair(node, "eth0", "192.168.78.1/24", lan, "eth0", "192.168.78.2/24");
          return startEtcd({ netns: node, host: "127.0.0.1" });
        })();
        try {
          etcd.etcdctl([
            "put",
            "/coreos.com/network/config",
            JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: type } }),
          ]);
          const child = spawn(
            "ip",
            [
              "netns",
              "exec",
              node.name,
              "env",
              `WIREGUARD_KEY_FILE=${join(dir, "wgkey")}`,
              process.execPath,
              "--import",
              "tsx",
              FLANNELD,
              `--etcd-endpoints=${etcd.endpoint}`,
              "--iface=eth0",
              `--subnet-file=${join(dir, "subnet.env")}`,
            ],
            { stdio: ["ignore", "pipe", "pipe"] },
          );
          let out = "";
          child.stdout.on("data", (d: Buffer) => (out += d.toString()));
          child.stderr.on("data", (d: Buffer) => (out += d.toString()));
          const code = await new Promise<number | null>((resolve) => {
            const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
            child.once("exit", (c) => {
              clearTimeout(timer);
              resolve(c);
            });
          });
          assert.equal(code, 1, out);
          assert.match(
            out,
            new RegExp(
              `Error registering network: the ${type} backend needs the kernel's ${type} module, which this kernel does not have \\(.*\\): load it or choose another backend \\(vxlan\\)`,
            ),
          );
          assert.match(out, new RegExp(`Hint: Run "modprobe ${type}"`));
          assert.doesNotMatch(out, /^\s+at .+:\d+:\d+\)?$/m, out);
          // Nothing written for nothing: the module check comes before the key file.
          assert.deepEqual(readdirSync(dir), []);
        } finally {
          await etcd.stop();
          node.delete();
          lan.delete();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  }
});
