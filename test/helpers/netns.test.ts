import { test } from "node:test";
import assert from "node:assert/strict";
import { Netns, requireRoot, vethPair } from "./netns.ts";

test("two namespaces joined by a veth pair can ping", (t) => {
  if (!requireRoot(t)) return;
  const a = Netns.create("fts-h");
  const b = Netns.create("fts-h");
  try {
    vethPair(a, "eth0", "192.0.2.1/24", b, "eth0", "192.0.2.2/24");
    a.run("ping", ["-c", "1", "-W", "2", "192.0.2.2"]);
    const links = a.ipJson<{ ifname: string }[]>(["link", "show"]);
    assert.deepEqual(links.map((l) => l.ifname).sort(), ["eth0", "lo"]);
  } finally {
    a.delete();
    b.delete();
  }
});
