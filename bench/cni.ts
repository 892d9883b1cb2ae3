// CNI benchmark: ADD and DEL latency of our `flannel` plugin (bin/flannel) against the `bridge` delegate's
// own latency, over many pods in one node namespace (prefix fts-p).
//
// Design notes
// - The plugin only needs subnet.env, so no flanneld runs: a node namespace, a subnet.env written here and
//   one pod namespace per attachment. FLANNEL_IPMASQ=true (the stock manifest's --ip-masq) so the delegate
//   does not add iptables rules, as on a real node.
// - "bridge alone" runs /usr/lib/cni/bridge with the very delegate conf our plugin saved for its first pod,
//   on pods of its own, interleaved with ours so both see the same machine load. The difference of the
//   medians is what our plugin costs (mostly Node.js start-up).
// - Each exec is timed from spawn to exit, both through `ip netns exec <node>` as a runtime would run it.
// - "Node start-up" is `node -e 0` run the same way, interleaved too: the part of our overhead that is Node's
//   own start and exit. It runs without NODE_EXTRA_CA_CERTS, as bin/flannel starts Node (see there).

import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Netns } from "../test/helpers/netns.ts";
import { median, onInterrupt, quantile, REPO, sleepMs } from "./util.ts";

export interface LatencyStats {
  medianMs: number;
  p99Ms: number;
  n: number;
}

export interface CniResult {
  pods: number;
  flannelAdd: LatencyStats;
  flannelDel: LatencyStats;
  bridgeAdd: LatencyStats;
  bridgeDel: LatencyStats;
  /** `node -e 0` in the node namespace: Node's own start and exit, the floor of a plugin on Node. */
  nodeStartup: LatencyStats;
  /** Median flannel ADD − median bridge ADD. */
  addOverheadMs: number;
}

const stats = (v: number[]): LatencyStats => ({ medianMs: median(v), p99Ms: quantile(v, 0.99), n: v.length });

export async function runCni(pods: number): Promise<CniResult> {
  const dir = mkdtempSync(join(tmpdir(), "fts-p-cni-"));
  const node = Netns.create("fts-p");
  const podNs: Netns[] = [];
  const cleanUp = (): void => {
    for (const ns of podNs) ns.delete();
    node.delete();
    rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onInterrupt(cleanUp);
  try {
    const subnetFile = join(dir, "subnet.env");
    writeFileSync(
      subnetFile,
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    const dataDir = join(dir, "flannel");
    const ipamDir = join(dir, "ipam");
    const flannelConf = JSON.stringify({
      cniVersion: "0.3.1",
      name: "cbr0",
      type: "flannel",
      subnetFile,
      dataDir,
      ipam: { dataDir: ipamDir },
      delegate: { hairpinMode: true, isDefaultGateway: true },
    });
    const cniPath = `${join(REPO, "bin")}:/usr/lib/cni`;
    const exec = (bin: string, cmd: "ADD" | "DEL", ns: Netns, id: string, conf: string): number => {
      const t0 = performance.now();
      const res = spawnSync("ip", ["netns", "exec", node.name, bin], {
        input: conf,
        encoding: "utf8",
        env: {
          ...process.env,
          CNI_COMMAND: cmd,
          CNI_CONTAINERID: id,
          CNI_NETNS: `/run/netns/${ns.name}`,
          CNI_IFNAME: "eth0",
          CNI_PATH: cniPath,
        },
      });
      const ms = performance.now() - t0;
      if (res.status !== 0) throw new Error(`${bin} ${cmd} ${id} failed: ${res.stdout}${res.stderr}`);
      return ms;
    };
    const flannelBin = join(REPO, "bin", "flannel");
    const bridgeBin = "/usr/lib/cni/bridge";
    const fAdd: number[] = [];
    const fDel: number[] = [];
    const bAdd: number[] = [];
    const bDel: number[] = [];
    const nodeStart: number[] = [];
    const { NODE_EXTRA_CA_CERTS: _ca, ...nodeEnv } = process.env;
    const startNode = (): number => {
      const t0 = performance.now();
      const res = spawnSync("ip", ["netns", "exec", node.name, "node", "-e", "0"], { env: nodeEnv });
      const ms = performance.now() - t0;
      if (res.status !== 0) throw new Error(`node -e 0 failed: ${String(res.stderr)}`);
      return ms;
    };
    // Warm-up (page cache, first host-local store): one of each, not counted.
    const warm = Netns.create("fts-p");
    podNs.push(warm);
    exec(flannelBin, "ADD", warm, "warm", flannelConf);
    const saved = readdirSync(dataDir)[0];
    if (saved === undefined) throw new Error(`flannel saved no delegate conf in ${dataDir}`);
    const bridgeConf = readFileSync(join(dataDir, saved), "utf8");
    exec(flannelBin, "DEL", warm, "warm", flannelConf);
    const pairs: { f: Netns; b: Netns; i: number }[] = [];
    for (let i = 0; i < pods; i++) {
      const f = Netns.create("fts-p");
      podNs.push(f);
      const b = Netns.create("fts-p");
      podNs.push(b);
      pairs.push({ f, b, i });
      fAdd.push(exec(flannelBin, "ADD", f, `f${i}`, flannelConf));
      bAdd.push(exec(bridgeBin, "ADD", b, `b${i}`, bridgeConf));
      nodeStart.push(startNode());
      await sleepMs(0); // between pods, not inside a measurement: lets Ctrl-C be handled (the execs are sync)
    }
    for (const { f, b, i } of pairs) {
      fDel.push(exec(flannelBin, "DEL", f, `f${i}`, flannelConf));
      bDel.push(exec(bridgeBin, "DEL", b, `b${i}`, bridgeConf));
      await sleepMs(0);
    }
    const res: CniResult = {
      pods,
      flannelAdd: stats(fAdd),
      flannelDel: stats(fDel),
      bridgeAdd: stats(bAdd),
      bridgeDel: stats(bDel),
      nodeStartup: stats(nodeStart),
      addOverheadMs: median(fAdd) - median(bAdd),
    };
    return res;
  } finally {
    cleanUp();
    unregister();
  }
}
