// Data-path benchmark: pod→pod TCP throughput across two nodes per backend, as a ratio of node→node
// throughput on the underlay measured in the same run. Reuses the namespace lab (src/ctl/lab) for the
// cluster, pods and iperf3; its namespaces get the prefix fts-pd.
//
// For backends whose data path is the kernel's (vxlan, host-gw), the same sample is taken again with every
// flanneld suspended (SIGSTOP): what the kernel gives with what flanneld programmed and no flanneld running.
// The two ratios side by side show flanneld's cost on the data path. The udp backend's data path is
// flanneld itself, so it has no such sample.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../src/ctl/lab/lab.ts";
import { onInterrupt } from "./util.ts";

export interface DatapathResult {
  backend: string;
  podToPodBps: number;
  nodeToNodeBps: number;
  ratio: number;
  /** The same sample with every flanneld suspended (vxlan and host-gw only). */
  flanneldPaused?: { podToPodBps: number; nodeToNodeBps: number; ratio: number };
  error?: string;
}

/** Backends whose data path is the kernel's: flanneld only programs it. */
const KERNEL_DATA_PATH = new Set(["vxlan", "host-gw"]);

export async function runDatapath(backend: string, seconds: number): Promise<DatapathResult> {
  const stateDir = join(mkdtempSync(join(tmpdir(), "fts-p-dp-")), "lab");
  const lab = Lab.create(stateDir);
  const cleanUp = async (): Promise<void> => {
    await lab.down();
    rmSync(join(stateDir, ".."), { recursive: true, force: true });
  };
  const unregister = onInterrupt(cleanUp);
  try {
    await lab.up({ prefix: "fts-pd", nodes: 2, podsPerNode: 1, backend, stateDir });
    const t = await lab.throughput({ seconds });
    const out: DatapathResult = {
      backend,
      podToPodBps: t.podToPod.bitsPerSecond,
      nodeToNodeBps: t.nodeToNode.bitsPerSecond,
      ratio: t.ratio,
    };
    if (KERNEL_DATA_PATH.has(backend)) {
      const resume = lab.pauseFlanneld();
      try {
        const p = await lab.throughput({ seconds });
        out.flanneldPaused = {
          podToPodBps: p.podToPod.bitsPerSecond,
          nodeToNodeBps: p.nodeToNode.bitsPerSecond,
          ratio: p.ratio,
        };
      } finally {
        resume();
      }
    }
    return out;
  } catch (err) {
    return {
      backend,
      podToPodBps: NaN,
      nodeToNodeBps: NaN,
      ratio: NaN,
      error: err instanceof Error ? err.message : String(err),
    };
  } finally {
    await cleanUp();
    unregister();
  }
}
