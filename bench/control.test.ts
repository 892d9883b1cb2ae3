import assert from "node:assert/strict";
import { test } from "node:test";
import { groupScenarios } from "./control.ts";
import { scenarioRun } from "./fixtures.ts";

const run = scenarioRun;

test("repeated runs of a scenario are grouped in first-seen order, each figure its median", () => {
  const groups = groupScenarios([
    run("cold", 1000, 500, { round: 1 }),
    run("batched", 1000, 300, { round: 1, afterLastWriteMs: 90, writerAloneMs: 100, sysMs: 20 }),
    run("cold", 100, 50),
    run("cold", 1000, 400, { round: 2 }),
    run("batched", 1000, 200, { round: 2, afterLastWriteMs: 60, writerAloneMs: 120, sysMs: 10 }),
    run("cold", 1000, 700, { round: 3 }),
    run("batched", 1000, 250, { round: 3, afterLastWriteMs: 70, writerAloneMs: 110, sysMs: 30 }),
  ]);
  assert.deepEqual(
    groups.map((g) => [g.median.name, g.median.leases, g.runs.length]),
    [
      ["cold", 1000, 3],
      ["batched", 1000, 3],
      ["cold", 100, 1],
    ],
  );
  const [cold, batched, small] = groups.map((g) => g.median);
  assert.equal(cold?.totalMs, 500);
  assert.equal(cold?.cpuMs, 250);
  assert.equal(cold?.afterLastWriteMs, undefined);
  assert.equal(cold?.round, undefined);
  assert.deepEqual(
    [batched?.totalMs, batched?.afterLastWriteMs, batched?.writerAloneMs, batched?.sysMs],
    [250, 70, 110, 20],
  );
  assert.equal(small?.totalMs, 50);
  // The runs themselves are kept as measured.
  assert.deepEqual(
    groups[0]?.runs.map((r) => r.totalMs),
    [500, 400, 700],
  );
});

test("a group with a timed-out run is reported as timed out", () => {
  const [g] = groupScenarios([run("streamed", 1000, 900), run("streamed", 1000, 60_000, { timedOut: true })]);
  assert.equal(g?.median.timedOut, true);
  assert.equal(g?.runs[0]?.timedOut, undefined);
});
