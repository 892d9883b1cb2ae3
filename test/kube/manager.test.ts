// The Kubernetes subnet manager against the fake API server (test/helpers/fake-kube-api.ts): lease
// acquisition, the annotations and condition it writes, lease events, watch recovery and error texts.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { FlannelError } from "../../src/errors.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import type { LeaseAttrs, LeaseWatchResult } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import { KubeSubnetManager, type KubeSubnetManagerOptions } from "../../src/subnet/kube/manager.ts";
import { FakeKubeApi, type KubeObject } from "../helpers/fake-kube-api.ts";
import { waitFor } from "../helpers/netns.ts";

const P = "flannel.alpha.coreos.com/";
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "fts-kube-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function netConf(json: object): string {
  const path = join(dir, `net-conf-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(json));
  return path;
}

const VXLAN_CONF = { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } };

function options(api: FakeKubeApi, over: Partial<KubeSubnetManagerOptions> = {}): KubeSubnetManagerOptions {
  return {
    kubeApiUrl: api.url,
    kubeconfigFile: "",
    annotationPrefix: "flannel.alpha.coreos.com",
    netConfigPath: netConf(VXLAN_CONF),
    setNodeNetworkUnavailable: true,
    env: { NODE_NAME: "n1" },
    logger: new MemoryLogger(),
    syncTimeoutMs: 20_000,
    acquireTimeoutMs: 5_000,
    ...over,
  };
}

function vxlanAttrs(ip: string, mac: string): LeaseAttrs {
  return {
    publicIp: IpAddr.parse(ip),
    publicIpv6: null,
    backendType: "vxlan",
    backendData: `{"VNI":1,"VtepMAC":"${mac}"}`,
  };
}

function node(
  name: string,
  podCIDR: string | undefined,
  annotations: Record<string, string> = {},
): Partial<KubeObject> & { metadata: { name: string } } {
  return {
    metadata: { name, annotations },
    spec: podCIDR === undefined ? {} : { podCIDR, podCIDRs: [podCIDR] },
    status: {
      conditions: [
        { type: "Ready", status: "True", reason: "KubeletReady", message: "kubelet is posting ready status" },
      ],
    },
  };
}

function peerAnnotations(ip: string, mac: string): Record<string, string> {
  return {
    [`${P}kube-subnet-manager`]: "true",
    [`${P}backend-type`]: "vxlan",
    [`${P}backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
    [`${P}public-ip`]: ip,
  };
}

/** Runs `fn` with a started fake server and a manager, cleaning both up. */
async function withManager(
  setup: (api: FakeKubeApi) => void,
  fn: (api: FakeKubeApi, m: KubeSubnetManager, ac: AbortController) => Promise<void>,
  over: (api: FakeKubeApi) => Partial<KubeSubnetManagerOptions> = () => ({}),
): Promise<void> {
  const api = await FakeKubeApi.start();
  const ac = new AbortController();
  try {
    setup(api);
    const m = await KubeSubnetManager.create(options(api, over(api)), ac.signal);
    try {
      await fn(api, m, ac);
    } finally {
      ac.abort();
      await m.closed();
    }
  } finally {
    ac.abort();
    await api.close();
  }
}

/** Pulls batches from watchLeases into an array the test can poll. */
function collect(m: KubeSubnetManager, signal: AbortSignal): LeaseWatchResult[] {
  const out: LeaseWatchResult[] = [];
  void (async () => {
    for await (const batch of m.watchLeases(signal)) out.push(...batch);
  })();
  return out;
}

test("acquireLease with podCIDR writes the annotations of the spec with a strategic-merge status patch", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24")),
    async (api, m, ac) => {
      assert.equal(m.name(), "Kubernetes Subnet Manager - n1");
      const lease = await m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal);
      assert.equal(lease.subnet?.toString(), "10.244.1.0/24");
      assert.equal(lease.ipv6Subnet, null);
      assert.equal(lease.enableIpv4, true);
      const ann = api.getNode("n1")?.metadata["annotations"];
      assert.deepEqual(ann, {
        "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}',
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": "192.168.10.1",
      });
      const patches = api.requests.filter((r) => r.method === "PATCH");
      assert.equal(patches.length, 1);
      assert.equal(patches[0]?.path, "/api/v1/nodes/n1/status");
      assert.equal(patches[0]?.contentType, "application/strategic-merge-patch+json");
      // A second acquire with the same attributes sends no patch.
      await m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal);
      await waitFor(() => api.getNode("n1") !== undefined, 1000, "node");
      assert.equal(api.requests.filter((r) => r.method === "PATCH").length, 1);
    },
  );
});

test("acquireLease takes both families from podCIDRs (dual stack) and writes v6 annotations", async () => {
  const conf = {
    Network: "10.244.0.0/16",
    EnableIPv6: true,
    IPv6Network: "fd00:10:244::/56",
    Backend: { Type: "host-gw" },
  };
  await withManager(
    (api) =>
      api.addNode({
        metadata: { name: "n1" },
        spec: { podCIDR: "10.244.3.0/24", podCIDRs: ["10.244.3.0/24", "fd00:10:244:3::/64"] },
      }),
    async (api, m, ac) => {
      const lease = await m.acquireLease(
        {
          publicIp: IpAddr.parse("192.168.10.1"),
          publicIpv6: IpAddr.parse("fd00::1"),
          backendType: "host-gw",
        },
        ac.signal,
      );
      assert.equal(lease.subnet?.toString(), "10.244.3.0/24");
      assert.equal(lease.ipv6Subnet?.toString(), "fd00:10:244:3::/64");
      assert.equal(lease.enableIpv6, true);
      assert.deepEqual(api.getNode("n1")?.metadata["annotations"], {
        "flannel.alpha.coreos.com/backend-data": "null",
        "flannel.alpha.coreos.com/backend-v6-data": "null",
        "flannel.alpha.coreos.com/backend-type": "host-gw",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": "192.168.10.1",
        "flannel.alpha.coreos.com/public-ipv6": "fd00::1",
      });
    },
    () => ({ netConfigPath: netConf(conf) }),
  );
});

test("a node without podCIDR fails with upstream's message and a hint naming the fixes", async () => {
  await withManager(
    (api) => api.addNode(node("n1", undefined)),
    async (api, m, ac) => {
      await assert.rejects(
        m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal),
        (err: unknown) => {
          assert.ok(err instanceof FlannelError);
          assert.equal(err.message, 'node "n1" pod cidr not assigned');
          assert.match(err.hint ?? "", /--allocate-node-cidrs/);
          assert.match(err.hint ?? "", /--cluster-cidr/);
          assert.match(err.hint ?? "", /kubeadm init --pod-network-cidr/);
          assert.match(err.hint ?? "", /kubectl patch node n1/);
          return true;
        },
      );
      assert.equal(api.requests.filter((r) => r.method === "PATCH").length, 0);
    },
  );
});

test("a podCIDR outside Network fails with upstream's containment message and annotates nothing", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.245.1.0/24")),
    async (api, m, ac) => {
      await assert.rejects(m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal), {
        message: `subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.245.1.0/24" PodCIDR of the "n1" node`,
      });
      assert.deepEqual(api.getNode("n1")?.metadata["annotations"], {});
    },
  );
});

test("completeLease patches NetworkUnavailable=False in the spec's format, merged by type", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24")),
    async (api, m, ac) => {
      const lease = await m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal);
      const done = m.completeLease(lease, ac.signal);
      const conds = await waitFor(
        () => {
          const c = api.getNode("n1")?.status?.["conditions"] as Record<string, string>[] | undefined;
          return c !== undefined && c.length === 2 ? c : undefined;
        },
        10_000,
        "NetworkUnavailable condition",
      );
      assert.ok(conds !== undefined);
      assert.equal(conds[0]?.["type"], "Ready"); // the kubelet's condition is kept (merge by type)
      const nu = conds[1] ?? {};
      assert.deepEqual(
        { type: nu["type"], status: nu["status"], reason: nu["reason"], message: nu["message"] },
        {
          type: "NetworkUnavailable",
          status: "False",
          reason: "FlannelIsUp",
          message: "Flannel is running on this node",
        },
      );
      assert.match(nu["lastHeartbeatTime"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(nu["lastTransitionTime"], nu["lastHeartbeatTime"]);
      const patch = api.requests.filter((r) => r.method === "PATCH").at(-1);
      assert.equal(patch?.path, "/api/v1/nodes/n1/status");
      assert.equal(patch?.contentType, "application/strategic-merge-patch+json");
      assert.deepEqual(Object.keys(JSON.parse(patch?.body ?? "{}") as object), ["status"]);
      ac.abort();
      assert.equal(await done, "interrupted");
    },
  );
});

test("completeLease does not touch conditions with --set-node-network-unavailable=false", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24")),
    async (api, m, ac) => {
      const lease = await m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal);
      const before = api.requests.length;
      const done = m.completeLease(lease, ac.signal);
      ac.abort();
      assert.equal(await done, "interrupted");
      assert.equal(api.requests.slice(before).filter((r) => r.method === "PATCH").length, 0);
    },
    () => ({ setNodeNetworkUnavailable: false }),
  );
});

test("watchLeases sends a snapshot, then added/updated/removed events with the annotation filter", async () => {
  await withManager(
    (api) => {
      api.addNode(node("n1", "10.244.1.0/24"));
      api.addNode(node("n2", "10.244.2.0/24", peerAnnotations("192.168.10.2", "aa:aa:aa:aa:aa:02")));
      api.addNode(node("plain", "10.244.9.0/24")); // not a flannel node: ignored
    },
    async (api, m, ac) => {
      const got = collect(m, ac.signal);
      await waitFor(() => got.length >= 1, 10_000, "snapshot");
      assert.ok("snapshot" in got[0]!);
      const snap = (got[0] as { snapshot: { subnet: unknown; attrs: LeaseAttrs }[] }).snapshot;
      assert.deepEqual(
        snap.map((l) => String(l.subnet)),
        ["10.244.2.0/24"],
      );
      assert.equal(snap[0]?.attrs.backendData, '{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:02"}');
      assert.equal(snap[0]?.attrs.publicIp.toString(), "192.168.10.2");

      const events = (): { type: string; subnet: string }[] =>
        got.flatMap((r) =>
          "events" in r ? r.events.map((e) => ({ type: e.type, subnet: String(e.lease.subnet) })) : [],
        );

      api.addNode(node("n3", "10.244.3.0/24", peerAnnotations("192.168.10.3", "aa:aa:aa:aa:aa:03")));
      await waitFor(() => events().length >= 1, 10_000, "added event");
      // An update that changes nothing relevant (a label) is filtered out ...
      api.updateNode("n3", (n) => {
        n.metadata["labels"] = { x: "y" };
      });
      // ... one that changes the VTEP MAC is an "added" event with the new data.
      api.updateNode("n3", (n) => {
        (n.metadata["annotations"] as Record<string, string>)[`${P}backend-data`] =
          '{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:33"}';
      });
      await waitFor(() => events().length >= 2, 10_000, "update event");
      api.deleteNode("n2");
      await waitFor(() => events().length >= 3, 10_000, "removed event");
      assert.deepEqual(events(), [
        { type: "added", subnet: "10.244.3.0/24" },
        { type: "added", subnet: "10.244.3.0/24" },
        { type: "removed", subnet: "10.244.2.0/24" },
      ]);
      const upd = got.flatMap((r) => ("events" in r ? r.events : []))[1];
      assert.equal(upd?.lease.attrs.backendData, '{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:33"}');
    },
  );
});

test("a watch broken by the server resumes from its resourceVersion without losing events", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24")),
    async (api, m, ac) => {
      const got = collect(m, ac.signal);
      await waitFor(() => got.length >= 1 && api.openWatches === 1, 10_000, "snapshot and watch");
      const listsBefore = api.requests.filter(
        (r) => r.path === "/api/v1/nodes" && !r.query.includes("watch"),
      ).length;
      api.breakWatches();
      api.addNode(node("n4", "10.244.4.0/24", peerAnnotations("192.168.10.4", "aa:aa:aa:aa:aa:04")));
      await waitFor(
        () =>
          got.some((r) => "events" in r && r.events.some((e) => String(e.lease.subnet) === "10.244.4.0/24")),
        20_000,
        "event after reconnect",
      );
      const watches = api.requests.filter((r) => r.query.includes("watch=true"));
      assert.ok(watches.length >= 2);
      assert.match(watches.at(-1)?.query ?? "", /resourceVersion=\d+/);
      const listsAfter = api.requests.filter(
        (r) => r.path === "/api/v1/nodes" && !r.query.includes("watch"),
      ).length;
      assert.equal(listsAfter, listsBefore, "a resumable watch must not re-list");
    },
  );
});

for (const goneAsHttpStatus of [false, true]) {
  test(`410 Gone (${goneAsHttpStatus ? "HTTP status" : "ERROR event"}) makes the informer re-list and send a snapshot`, async () => {
    const api = await FakeKubeApi.start({ goneAsHttpStatus });
    const ac = new AbortController();
    try {
      api.addNode(node("n1", "10.244.1.0/24"));
      api.addNode(node("n2", "10.244.2.0/24", peerAnnotations("192.168.10.2", "aa:aa:aa:aa:aa:02")));
      const m = await KubeSubnetManager.create(options(api), ac.signal);
      const got = collect(m, ac.signal);
      await waitFor(() => got.length >= 1 && api.openWatches === 1, 10_000, "first snapshot");
      // While the watch is down, n2 goes away and n5 arrives, and the history is compacted.
      api.breakWatches();
      api.deleteNode("n2");
      api.addNode(node("n5", "10.244.5.0/24", peerAnnotations("192.168.10.5", "aa:aa:aa:aa:aa:05")));
      api.compact();
      const snaps = await waitFor(
        () => {
          const s = got.filter((r): r is { snapshot: never[] } => "snapshot" in r);
          return s.length >= 2 ? s : undefined;
        },
        20_000,
        "second snapshot",
      );
      assert.ok(snaps !== undefined);
      const last = snaps.at(-1)?.snapshot as unknown as { subnet: unknown }[];
      assert.deepEqual(
        last.map((l) => String(l.subnet)),
        ["10.244.5.0/24"],
      );
      ac.abort();
      await m.closed();
    } finally {
      ac.abort();
      await api.close();
    }
  });
}

test("without pods: get, the error names the RBAC permission and the manifest", async () => {
  const api = await FakeKubeApi.start();
  try {
    api.addPod("kube-flannel", "kube-flannel-ds-abcde", "n1");
    api.forbid("get", "pods");
    await assert.rejects(
      KubeSubnetManager.create(
        options(api, { env: { POD_NAME: "kube-flannel-ds-abcde", POD_NAMESPACE: "kube-flannel" } }),
      ),
      (err: unknown) => {
        assert.ok(err instanceof FlannelError);
        assert.equal(
          err.message,
          `error retrieving pod spec for 'kube-flannel/kube-flannel-ds-abcde': pods "kube-flannel-ds-abcde" is forbidden: ` +
            `User "system:serviceaccount:kube-flannel:flannel" cannot get resource "pods" in API group "" in the namespace "kube-flannel"`,
        );
        assert.match(err.hint ?? "", /"pods: get"/);
        assert.match(err.hint ?? "", /kubectl apply -f deploy\/kube-flannel\.yml/);
        return true;
      },
    );
    // With the permission, the pod's spec.nodeName is the node name.
    api.allow("get", "pods");
    api.addNode(node("n1", "10.244.1.0/24"));
    const ac = new AbortController();
    const m = await KubeSubnetManager.create(
      options(api, { env: { POD_NAME: "kube-flannel-ds-abcde", POD_NAMESPACE: "kube-flannel" } }),
      ac.signal,
    );
    assert.equal(m.nodeName, "n1");
    ac.abort();
    await m.closed();
  } finally {
    await api.close();
  }
});

test("node name errors: no POD_NAME/POD_NAMESPACE, and a pod without nodeName", async () => {
  const api = await FakeKubeApi.start();
  try {
    await assert.rejects(KubeSubnetManager.create(options(api, { env: {} })), {
      message: "env variables POD_NAME and POD_NAMESPACE must be set",
    });
    api.addPod("kube-flannel", "p1", "");
    await assert.rejects(
      KubeSubnetManager.create(options(api, { env: { POD_NAME: "p1", POD_NAMESPACE: "kube-flannel" } })),
      {
        message: "node name not present in pod spec 'kube-flannel/p1'",
      },
    );
  } finally {
    await api.close();
  }
});

test("without nodes/status: patch, acquireLease fails at once with a hint naming the permission", async () => {
  await withManager(
    (api) => {
      api.addNode(node("n1", "10.244.1.0/24"));
      api.forbid("patch", "nodes/status");
    },
    async (_api, m, ac) => {
      await assert.rejects(
        m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal),
        (err: unknown) => {
          assert.ok(err instanceof FlannelError);
          assert.match(
            err.message,
            /^timeout contacting kube-api, failed to patch node "n1". Error: nodes "n1" is forbidden/,
          );
          assert.match(err.hint ?? "", /"nodes\/status: patch"/);
          return true;
        },
      );
    },
  );
});

test("MAC reuse: the VtepMAC and node-public-ip stored in annotations are read back", async () => {
  await withManager(
    (api) =>
      api.addNode(
        node("n1", "10.244.1.0/24", {
          ...peerAnnotations("192.168.10.1", "12:c6:65:89:b4:e3"),
          [`${P}backend-v6-data`]: '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e4"}',
          [`${P}node-public-ip`]: "192.168.77.1",
          [`${P}node-public-ipv6`]: "not-an-ip",
        }),
      ),
    async (_api, m, ac) => {
      assert.deepEqual(await m.getStoredMacAddresses(ac.signal), {
        v4: "12:c6:65:89:b4:e3",
        v6: "12:c6:65:89:b4:e4",
      });
      const ips = await m.getStoredPublicIp(ac.signal);
      assert.equal(ips.v4?.toString(), "192.168.77.1");
      assert.equal(ips.v6, undefined);
    },
  );
});

test("a restarted manager reuses the MAC its node advertises (vxlan restart keeps the VTEP MAC)", async () => {
  const api = await FakeKubeApi.start();
  try {
    api.addNode(node("n1", "10.244.1.0/24"));
    for (let round = 0; round < 2; round++) {
      const ac = new AbortController();
      const m = await KubeSubnetManager.create(options(api), ac.signal);
      const stored = await m.getStoredMacAddresses(ac.signal);
      // What a vxlan backend does: reuse the stored MAC, else pick one (here a fixed one).
      const mac = stored.v4 ?? "0e:11:22:33:44:55";
      await m.acquireLease(vxlanAttrs("192.168.10.1", mac), ac.signal);
      assert.equal(mac, "0e:11:22:33:44:55", `round ${round}`);
      ac.abort();
      await m.closed();
    }
    // The second round found the annotation and sent no new patch.
    assert.equal(api.requests.filter((r) => r.method === "PATCH").length, 1);
  } finally {
    await api.close();
  }
});

test("public-ip-overwrite is advertised instead of the detected address", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24", { [`${P}public-ip-overwrite`]: "203.0.113.7" })),
    async (api, m, ac) => {
      const lease = await m.acquireLease(vxlanAttrs("192.168.10.1", "12:c6:65:89:b4:e3"), ac.signal);
      assert.equal(
        (api.getNode("n1")?.metadata["annotations"] as Record<string, string> | undefined)?.[`${P}public-ip`],
        "203.0.113.7",
      );
      assert.equal(lease.attrs.publicIp.toString(), "203.0.113.7");
    },
  );
});

test("the alloc backend runs no informer and reads the node directly", async () => {
  await withManager(
    (api) => api.addNode(node("n1", "10.244.1.0/24")),
    async (api, m, ac) => {
      const lease = await m.acquireLease(
        { publicIp: IpAddr.parse("192.168.10.1"), publicIpv6: null, backendType: "" },
        ac.signal,
      );
      assert.equal(lease.subnet?.toString(), "10.244.1.0/24");
      assert.equal(api.requests.filter((r) => r.query.includes("watch")).length, 0);
      assert.equal(api.requests.filter((r) => r.method === "GET" && r.path === "/api/v1/nodes").length, 0);
    },
    () => ({ netConfigPath: netConf({ Network: "10.244.0.0/16", Backend: { Type: "alloc" } }) }),
  );
});

test("config errors keep upstream's texts", async () => {
  const api = await FakeKubeApi.start();
  try {
    await assert.rejects(
      KubeSubnetManager.create(options(api, { netConfigPath: join(dir, "missing.json") })),
      {
        message: `failed to read net conf: open ${join(dir, "missing.json")}: no such file or directory`,
      },
    );
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{");
    await assert.rejects(
      KubeSubnetManager.create(options(api, { netConfigPath: bad })),
      /^FlannelError: error parsing subnet config: /,
    );
    await assert.rejects(KubeSubnetManager.create(options(api, { annotationPrefix: "org.COM" })), {
      message: "error creating network manager: subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*",
    });
    await assert.rejects(
      KubeSubnetManager.create(options(api, { env: { NODE_NAME: "n1", EVENT_QUEUE_DEPTH: "x" } })),
      {
        message:
          'error creating network manager: env EVENT_QUEUE_DEPTH=x format error: strconv.Atoi: parsing "x": invalid syntax',
      },
    );
  } finally {
    await api.close();
  }
});

test("aborting create() while it waits for the node list rejects with the abort, not a sync error", async () => {
  const api = await FakeKubeApi.start();
  try {
    api.forbid("list", "nodes"); // the first list never succeeds, so create() keeps waiting
    const ac = new AbortController();
    const reason = new Error("received SIGTERM");
    const creating = KubeSubnetManager.create(options(api, { syncTimeoutMs: 60_000 }), ac.signal);
    await waitFor(
      () => api.requests.some((r) => r.method === "GET" && r.path === "/api/v1/nodes"),
      10_000,
      "the first node list",
    );
    ac.abort(reason);
    await assert.rejects(creating, (err: unknown) => err === reason);
  } finally {
    await api.close();
  }
});
