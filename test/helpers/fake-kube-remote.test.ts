// The fake API server as a child process: objects set up through the control socket are what the API
// serves, merge patches delete with null, a missing node is `undefined`, and forbid/allow reach the API.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { RemoteFakeKubeApi } from "./fake-kube-remote.ts";

test("the control socket drives the API the child serves on 127.0.0.1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fts-q-remote-"));
  const api = await RemoteFakeKubeApi.start({ dir });
  try {
    assert.match(api.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    await api.addNode({
      metadata: { name: "n1", annotations: { a: "1", b: "2" } },
      spec: { podCIDR: "10.244.1.0/24" },
    });
    await api.updateNode("n1", { metadata: { annotations: { a: null, c: "3" } } });
    const got = (await (await fetch(`${api.url}/api/v1/nodes/n1`)).json()) as {
      metadata: { annotations: Record<string, string> };
      spec: { podCIDR: string };
    };
    assert.deepEqual(got.metadata.annotations, { b: "2", c: "3" });
    assert.equal(got.spec.podCIDR, "10.244.1.0/24");
    assert.deepEqual((await api.getNode("n1"))?.metadata.annotations, { b: "2", c: "3" });

    await api.addPod("kube-flannel", "p1", "n1");
    const podUrl = `${api.url}/api/v1/namespaces/kube-flannel/pods/p1`;
    assert.equal((await fetch(podUrl)).status, 200);
    await api.forbid("get", "pods");
    assert.equal((await fetch(podUrl)).status, 403);
    await api.allow("get", "pods");
    assert.equal((await fetch(podUrl)).status, 200);

    await api.deleteNode("n1");
    assert.equal(await api.getNode("n1"), undefined);
    assert.equal((await fetch(`${api.url}/api/v1/nodes/n1`)).status, 404);
    await assert.rejects(api.updateNode("n1", {}), /Node n1 does not exist/);
    const paths = (await api.requests()).map((r) => `${r.method} ${r.path}`);
    assert.ok(paths.includes("GET /api/v1/namespaces/kube-flannel/pods/p1"), paths.join("\n"));
  } finally {
    await api.close();
    await api.close(); // twice is fine
    rmSync(dir, { recursive: true, force: true });
  }
});
