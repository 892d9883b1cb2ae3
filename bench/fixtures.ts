// Test data for the benchmark's own unit tests (*.test.ts beside it).

import type { Scenario } from "./control.ts";

/** One run of a vxlan scenario; CPU is half the time and RSS 1000 bytes unless `extra` says otherwise. */
export function scenarioRun(
  name: Scenario["name"],
  leases: number,
  totalMs: number,
  extra: Partial<Scenario> = {},
): Scenario {
  return { name, leases, backend: "vxlan", totalMs, cpuMs: totalMs / 2, rssBytes: 1000, ...extra };
}
