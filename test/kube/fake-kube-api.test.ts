// The fake API server is itself checked: its patch semantics by table, and its wire behaviour with the
// real kubectl (when installed), so the manager tests run against something a real client accepts.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { test } from "node:test";

import { applyPatch, FakeKubeApi, type KubeObject } from "../helpers/fake-kube-api.ts";
import { waitFor } from "../helpers/netns.ts";

const KUBECTL = "/usr/bin/kubectl";

function sampleNode(): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: "n1", annotations: { a: "1", b: "2" } },
    spec: { podCIDR: "10.244.1.0/24" },
    status: { conditions: [{ type: "Ready", status: "True" }] },
  };
}

test("strategic merge: conditions merge by type, null deletes, $setElementOrder is ignored", () => {
  const out = applyPatch(
    sampleNode(),
    JSON.stringify({
      metadata: { annotations: { a: null, c: "3" } },
      status: {
        $setElementOrder: undefined,
        "$setElementOrder/conditions": [{ type: "Ready" }, { type: "NetworkUnavailable" }],
        conditions: [
          { type: "NetworkUnavailable", status: "False" },
          { type: "Ready", status: "False" },
        ],
      },
    }),
    "application/strategic-merge-patch+json",
  );
  assert.deepEqual(out.metadata["annotations"], { b: "2", c: "3" });
  assert.deepEqual(out.status?.["conditions"], [
    { type: "Ready", status: "False" },
    { type: "NetworkUnavailable", status: "False" },
  ]);
});

test("merge patch replaces lists; JSON patch adds, replaces, removes and tests", () => {
  const merged = applyPatch(
    sampleNode(),
    JSON.stringify({ status: { conditions: [{ type: "X", status: "True" }] } }),
    "application/merge-patch+json",
  );
  assert.deepEqual(merged.status?.["conditions"], [{ type: "X", status: "True" }]);
  const patched = applyPatch(
    sampleNode(),
    JSON.stringify([
      { op: "test", path: "/spec/podCIDR", value: "10.244.1.0/24" },
      { op: "add", path: "/metadata/annotations/flannel.alpha.coreos.com~1public-ip", value: "1.2.3.4" },
      { op: "replace", path: "/metadata/annotations/a", value: "9" },
      { op: "remove", path: "/metadata/annotations/b" },
      { op: "add", path: "/status/conditions/-", value: { type: "Y", status: "False" } },
    ]),
    "application/json-patch+json",
  );
  assert.deepEqual(patched.metadata["annotations"], {
    a: "9",
    "flannel.alpha.coreos.com/public-ip": "1.2.3.4",
  });
  assert.equal((patched.status?.["conditions"] as unknown[]).length, 2);
  assert.throws(
    () =>
      applyPatch(
        sampleNode(),
        JSON.stringify([{ op: "test", path: "/spec/podCIDR", value: "x" }]),
        "application/json-patch+json",
      ),
    /test operation failed/,
  );
  assert.throws(() => applyPatch(sampleNode(), "{}", "application/json"), /^Error: 415:/);
});

test("the status subresource keeps spec; the main resource keeps status", async () => {
  const api = await FakeKubeApi.start();
  try {
    api.addNode(sampleNode());
    const patch = async (path: string, body: object): Promise<number> => {
      const res = await fetch(`${api.url}${path}`, {
        method: "PATCH",
        headers: { "content-type": "application/merge-patch+json" },
        body: JSON.stringify(body),
      });
      await res.text();
      return res.status;
    };
    assert.equal(
      await patch("/api/v1/nodes/n1/status", { spec: { podCIDR: "x" }, metadata: { labels: { l: "1" } } }),
      200,
    );
    assert.equal(api.getNode("n1")?.spec?.["podCIDR"], "10.244.1.0/24");
    assert.deepEqual(api.getNode("n1")?.metadata["labels"], { l: "1" });
    assert.equal(
      await patch("/api/v1/nodes/n1", { status: { conditions: [] }, spec: { unschedulable: true } }),
      200,
    );
    assert.equal((api.getNode("n1")?.status?.["conditions"] as unknown[]).length, 1);
    assert.equal(api.getNode("n1")?.spec?.["unschedulable"], true);
    assert.equal(await patch("/api/v1/nodes/nope/status", {}), 404);
    api.forbid("patch", "nodes/status");
    assert.equal(await patch("/api/v1/nodes/n1/status", {}), 403);
  } finally {
    await api.close();
  }
});

// Asynchronous on purpose: the fake server runs in this process, so a blocking spawnSync would starve it.
function kubectl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(KUBECTL, args, { env: { ...process.env, KUBECONFIG: "/dev/null" }, timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("error", (err) => resolve({ code: 1, stdout, stderr: stderr + String(err) }));
    p.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

test("kubectl reads, patches (status subresource) and watches the fake server", async (t) => {
  if (!existsSync(KUBECTL) || (await kubectl(["version", "--client"])).code !== 0) {
    t.skip(`kubectl is not installed at ${KUBECTL}`);
    return;
  }
  const api = await FakeKubeApi.start();
  let watcher: ReturnType<typeof spawn> | undefined;
  try {
    api.addNode(sampleNode());
    const got = await kubectl(["--server", api.url, "get", "nodes", "-o", "json"]);
    assert.equal(got.code, 0, got.stderr);
    const list = JSON.parse(got.stdout) as { items: KubeObject[] };
    assert.deepEqual(
      list.items.map((n) => n.metadata.name),
      ["n1"],
    );
    assert.equal(list.items[0]?.spec?.["podCIDR"], "10.244.1.0/24");

    const patched = await kubectl([
      "--server",
      api.url,
      "patch",
      "node",
      "n1",
      "--subresource=status",
      "--type=strategic",
      "-p",
      '{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","reason":"FlannelIsUp"}]}}',
    ]);
    assert.equal(patched.code, 0, patched.stderr);
    assert.deepEqual(
      (api.getNode("n1")?.status?.["conditions"] as { type: string }[]).map((c) => c.type),
      ["Ready", "NetworkUnavailable"],
    );

    let out = "";
    watcher = spawn(KUBECTL, ["--server", api.url, "get", "nodes", "--watch", "-o", "json"], {
      env: { ...process.env, KUBECONFIG: "/dev/null" },
    });
    watcher.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor(
      () => out.includes('"name": "n1"') && api.openWatches === 1,
      30_000,
      "kubectl watch to start",
    );
    api.updateNode("n1", (n) => {
      n.metadata["labels"] = { "watched-update": "yes" };
    });
    await waitFor(() => out.includes("watched-update"), 30_000, "kubectl to print the update");
  } finally {
    if (watcher?.pid !== undefined && watcher.exitCode === null) process.kill(watcher.pid, "SIGTERM");
    await api.close();
  }
});
