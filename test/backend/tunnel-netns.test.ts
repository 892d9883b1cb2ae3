// The ipip and wireguard backends on a real kernel. Where the kernel has the module: two node namespaces on
// one veth link run the backend (tunnel-node.ts) and ping each other's flannel address through the tunnel.
// Where it does not (our CI kernels): flanneld's backend must fail with the plain missing-module error.

import assert from "node:assert/strict";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";

import { generateWireguardPrivateKey, wireguardPublicKey } from "../../src/kernel/wireguard-key.ts";
import { Netns, requireRoot, vethPair, waitFor } from "../helpers/netns.ts";

const SCRIPT = fileURLToPath(new URL("./tunnel-node.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "fts-w-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Whether the kernel can create a link of `kind` (tried in a throwaway namespace). */
function kernelHas(kind: "ipip" | "wireguard"): boolean {
  const ns = Netns.create("fts-w");
  try {
    return ns.tryRun("ip", ["link", "add", "probe0", "type", kind]).code === 0;
  } finally {
    ns.delete();
  }
}

interface ProbeResult {
  ok: boolean;
  code?: string;
  message?: string;
  hint?: string;
  wgGet?: string;
}

for (const type of ["ipip", "wireguard"] as const) {
  describe(`${type} on the real kernel`, () => {
    it("says plainly that the kernel lacks the module", (t: TestContext) => {
      if (!requireRoot(t)) return;
      if (kernelHas(type)) {
        t.skip(`kernel has the ${type} module: the missing-module error cannot be provoked here`);
        return;
      }
      const a = Netns.create("fts-w");
      const b = Netns.create("fts-w");
      try {
        vethPair(a, "eth0", "192.168.77.1/24", b, "eth0", "192.168.77.2/24");
        const out = a.runTs(SCRIPT, [
          JSON.stringify({
            mode: "probe",
            type,
            ownSubnet: "10.244.1.0/24",
            publicIp: "192.168.77.1",
            keyFile: join(dir, `probe-${type}`),
          }),
        ]);
        const res = JSON.parse(out.trim().split("\n").pop() ?? "{}") as ProbeResult;
        assert.equal(res.ok, false);
        assert.equal(res.code, "KERNEL_MODULE_MISSING");
        assert.match(
          res.message ?? "",
          new RegExp(
            `^the ${type} backend needs the kernel's ${type} module, which this kernel does not have \\(modprobe ${type} failed / link type not supported: .*EOPNOTSUPP\\): load it or choose another backend \\(vxlan\\)$`,
          ),
        );
        assert.match(res.hint ?? "", new RegExp(`modprobe ${type}`));
        if (type === "wireguard") {
          // The generic netlink controller answered our CTRL_CMD_GETFAMILY with ENOENT (a malformed request
          // would get EINVAL), which the port reports as the missing module.
          assert.equal(
            res.wgGet,
            "get wireguard flannel-wg: no generic netlink family wireguard: EOPNOTSUPP",
          );
        }
        // Nothing left behind by the failed start.
        const links = a.ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname);
        assert.ok(!links.some((l) => l.startsWith("flannel")), links.join(" "));
      } finally {
        a.delete();
        b.delete();
      }
    });

    it("tunnels pod traffic between two nodes", async (t: TestContext) => {
      if (!requireRoot(t)) return;
      if (!kernelHas(type)) {
        t.skip(`kernel has no ${type} module`);
        return;
      }
      const a = Netns.create("fts-w");
      const b = Netns.create("fts-w");
      const children: ReturnType<Netns["spawn"]>[] = [];
      try {
        vethPair(a, "eth0", "192.168.77.1/24", b, "eth0", "192.168.77.2/24");
        const keys = [generateWireguardPrivateKey(), generateWireguardPrivateKey()];
        const files = keys.map((k, i) => {
          const f = join(dir, `${type}-node${i}`);
          writeFileSync(f, k, { mode: 0o400 });
          return f;
        });
        const pubs = keys.map((k) => wireguardPublicKey(k));
        const nodes = [
          { ns: a, subnet: "10.244.1.0/24", ip: "192.168.77.1" },
          { ns: b, subnet: "10.244.2.0/24", ip: "192.168.77.2" },
        ];
        const outputs: string[] = ["", ""];
        for (const [i, node] of nodes.entries()) {
          const peer = nodes[1 - i]!;
          const sc = {
            mode: "run",
            type,
            ownSubnet: node.subnet,
            publicIp: node.ip,
            keyFile: files[i],
            ownPublicKey: pubs[i],
            peer: { subnet: peer.subnet, publicIp: peer.ip, publicKey: pubs[1 - i] },
          };
          const child = node.ns.spawn(process.execPath, ["--import", "tsx", SCRIPT, JSON.stringify(sc)]);
          child.stdout?.on("data", (d: Buffer) => (outputs[i] += d.toString()));
          children.push(child);
        }
        await waitFor(
          () => outputs.every((o) => o.includes('"ready":true')),
          30_000,
          `both ${type} nodes ready`,
        );
        await waitFor(
          () => a.tryRun("ping", ["-c", "1", "-W", "1", "10.244.2.0"]).code === 0,
          30_000,
          "ping from node A to node B's flannel address",
        );
        assert.equal(b.tryRun("ping", ["-c", "1", "-W", "2", "10.244.1.0"]).code, 0);
        for (const c of children) c.kill("SIGTERM");
        await Promise.all(
          children.map((c) => new Promise((r) => (c.exitCode === null ? c.once("exit", r) : r(null)))),
        );
        if (type === "wireguard") {
          const links = a.ipJson<{ ifname: string }[]>(["link", "show"]).map((l) => l.ifname);
          assert.ok(!links.includes("flannel-wg"), "flannel-wg is deleted at exit");
        }
      } finally {
        for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill("SIGKILL");
        a.delete();
        b.delete();
      }
    });
  });
}
