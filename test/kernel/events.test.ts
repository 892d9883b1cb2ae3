// Kernel notifications over netlink, in a fresh namespace: changes made by `ip` arrive as events, and an
// aborted subscription lets the process exit.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Netns, requireRoot, waitFor } from "../helpers/netns.ts";

test("events arrive for ip link del / ip route del; an aborted subscription lets the process exit", async (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create("fts-k");
  const child = ns.spawn(process.execPath, ["--import", "tsx", "test/kernel/events-child.ts"]);
  let exited: number | null | undefined;
  const exitedP = new Promise<void>((resolve) => child.on("exit", (code) => ((exited = code), resolve())));
  try {
    let out = "";
    let err = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
    await waitFor(() => out.includes("ready\n"), 20_000, `the child to subscribe (stderr: ${err})`);
    const events = (): Record<string, unknown>[] =>
      out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);

    ns.run("ip", ["link", "add", "fts-br0", "type", "bridge"]);
    ns.run("ip", ["link", "set", "fts-br0", "up"]);
    ns.run("ip", ["addr", "add", "10.9.0.1/24", "dev", "fts-br0"]);
    ns.run("ip", ["route", "add", "blackhole", "10.77.0.0/16"]);
    ns.run("ip", ["route", "del", "blackhole", "10.77.0.0/16"]);
    await waitFor(
      () => events().some((e) => e.type === "route-deleted" && e.dst === "10.77.0.0/16" && e.table === 254),
      10_000,
      `route-deleted for 10.77.0.0/16 (got ${out})`,
    );
    ns.run("ip", ["link", "del", "fts-br0"]);
    await waitFor(
      () => events().some((e) => e.type === "link-deleted" && e.name === "fts-br0"),
      10_000,
      `link-deleted for fts-br0 (got ${out})`,
    );
    assert.ok(events().some((e) => e.type === "link-added" && e.name === "fts-br0"));
    assert.ok(!events().some((e) => e.type === "overflow"));

    child.kill("SIGUSR2"); // `ip netns exec` execs node, so this PID is the child itself
    await waitFor(() => exited !== undefined, 10_000, "the child to exit after its subscription was aborted");
    assert.equal(exited, 0, err);
  } finally {
    if (exited === undefined && child.pid !== undefined) child.kill("SIGKILL");
    await Promise.race([exitedP, new Promise((r) => setTimeout(r, 5000))]);
    ns.delete();
  }
});
