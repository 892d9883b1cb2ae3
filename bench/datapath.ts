// Data-path benchmark: pod→pod TCP throughput across two nodes per backend, as a ratio of node→node
// throughput on the underlay measured in the same run. Reuses the namespace lab (src/ctl/lab) for the
// cluster, pods and iperf3; its namespaces get the prefix fts-pd.

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
  error?: string;
}

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
    return {
      backend,
      podToPodBps: t.podToPod.bitsPerSecond,
      nodeToNodeBps: t.nodeToNode.bitsPerSecond,
      ratio: t.ratio,
    };
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
