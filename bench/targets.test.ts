import assert from "node:assert/strict";
import { test } from "node:test";
import type { CniResult } from "./cni.ts";
import { scenarioRun } from "./fixtures.ts";
import { formatVerdicts, targetVerdicts, type TargetVerdict } from "./targets.ts";

const run = scenarioRun;
const stats = (medianMs: number): CniResult["flannelAdd"] => ({ medianMs, p99Ms: medianMs, n: 100 });

test("each target is judged by the median of its runs, with the runs shown", () => {
  const v = targetVerdicts({
    control: [
      run("cold", 1000, 450, { round: 1 }),
      run("cold", 1000, 290, { round: 2 }),
      run("cold", 1000, 280, { round: 3 }),
      run("cold", 10_000, 1600),
      run("streamed", 1000, 900, { afterLastWriteMs: 7 }),
      run("batched", 1000, 200),
      run("batched-removal", 1000, 180),
      // Another backend's runs do not count for the vxlan targets.
      run("batched-removal", 1000, 100, { backend: "host-gw" }),
    ],
    memory: { backend: "vxlan", idleBytes: 52 * 2 ** 20, at1000Bytes: 60.5 * 2 ** 20, bytesPerLease: 1900 },
    cni: {
      pods: 100,
      flannelAdd: stats(90),
      flannelDel: stats(100),
      bridgeAdd: stats(28),
      bridgeDel: stats(36),
      nodeStartup: stats(53),
      addOverheadMs: 62,
    },
    datapath: [
      {
        backend: "vxlan",
        podToPodBps: 9e9,
        nodeToNodeBps: 12e9,
        ratio: 0.75,
        flanneldPaused: { podToPodBps: 8e9, nodeToNodeBps: 12e9, ratio: 2 / 3 },
      },
      { backend: "udp", podToPodBps: 1.5e9, nodeToNodeBps: 13e9, ratio: 0.12 },
    ],
  });
  const get = (prefix: string): TargetVerdict => {
    const x = v.find((t) => t.target.startsWith(prefix));
    assert.ok(x, `no verdict for ${prefix}`);
    return x;
  };
  assert.deepEqual(get("cold start, 1000"), {
    target: "cold start, 1000 leases ≤ 0.3 s",
    figure: "290 ms (runs 450 ms, 290 ms, 280 ms)",
    met: true,
  });
  assert.equal(get("cold start, 10,000").met, true);
  assert.deepEqual([get("streamed add").figure, get("streamed add").met], ["7.0 ms", false]);
  assert.equal(get("batched add").met, true);
  assert.deepEqual([get("batched removal").figure, get("batched removal").met], ["180 ms", false]);
  assert.deepEqual([get("RSS at 1000").figure, get("RSS at 1000").met], ["60.5 MB", false]);
  assert.deepEqual([get("RSS growth").figure, get("RSS growth").met], ["1.86 KB", true]);
  assert.deepEqual([get("CNI ADD").figure, get("CNI ADD").met], ["62.0 ms (node -e 0: 53 ms)", false]);
  // The data path is shown, not judged; the udp backend has no suspended sample.
  const dp = v.filter((x) => x.target.startsWith("pod→pod"));
  assert.deepEqual(dp, [
    {
      target: "pod→pod ratio, vxlan, equal to the kernel's (every flanneld suspended)",
      figure: "0.75 running, 0.67 suspended: 1.13",
    },
  ]);
  const table = formatVerdicts(v);
  assert.match(
    table,
    /\| cold start, 1000 leases ≤ 0\.3 s \| 290 ms \(runs 450 ms, 290 ms, 280 ms\) \| yes \|/,
  );
  assert.match(table, /\| pod→pod ratio, vxlan, .* \| 0\.75 running, 0\.67 suspended: 1\.13 \| — \|/);
});

test("what a run did not measure, or what timed out, is said and not judged", () => {
  const v = targetVerdicts({ control: [run("cold", 1000, 9000, { timedOut: true })] });
  assert.deepEqual(
    v.find((x) => x.target.startsWith("cold start, 1000")),
    {
      target: "cold start, 1000 leases ≤ 0.3 s",
      figure: "timed out",
    },
  );
  assert.ok(
    v.filter((x) => !x.target.startsWith("cold start, 1000")).every((x) => x.figure === "not measured"),
  );
  assert.ok(v.every((x) => x.met === undefined));
});
