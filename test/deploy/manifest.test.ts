// deploy/kube-flannel.yml: the objects of upstream's manifest (spec §9), and everything it names — flags,
// env variables, commands, paths, ports — exists in our binaries and image.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { test } from "node:test";

import * as k8s from "@kubernetes/client-node";

import { defineFlanneldFlags } from "../../src/cli/flanneld-options.ts";
import { parseConfig } from "../../src/config/config.ts";
import { FakeKubeApi } from "../helpers/fake-kube-api.ts";

const TEXT = readFileSync("deploy/kube-flannel.yml", "utf8");
const DOCKERFILE = readFileSync("deploy/Dockerfile", "utf8");
// client-node's YAML loader (js-yaml), not a second parser of ours.
const OBJECTS = k8s.loadAllYaml(TEXT) as { kind: string; metadata: { name: string; namespace?: string } }[];
const IMAGE = "ghcr.io/flannel-ts/flannel-ts:v0.1.0";

type Container = {
  name: string;
  image: string;
  command: string[];
  args?: string[];
  env?: { name: string }[];
  ports?: { containerPort: number; name: string }[];
  volumeMounts?: { name: string; mountPath: string }[];
  livenessProbe?: { httpGet: { path: string; port: string } };
  readinessProbe?: { httpGet: { path: string; port: string } };
};

function find<T>(kind: string, name: string): T {
  const o = OBJECTS.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is in the manifest`);
  return o as T;
}

const ds = find<{
  spec: {
    template: {
      spec: {
        initContainers: Container[];
        containers: Container[];
        volumes: { name: string; hostPath?: { path: string } }[];
        serviceAccountName: string;
      };
    };
  };
}>("DaemonSet", "kube-flannel-ds");
const pod = ds.spec.template.spec;
const all = [...pod.initContainers, ...pod.containers];

test("the manifest holds upstream's objects", () => {
  assert.deepEqual(
    OBJECTS.map((o) => `${o.kind}/${o.metadata.name}`),
    [
      "Namespace/kube-flannel",
      "ClusterRole/flannel",
      "ClusterRoleBinding/flannel",
      "ServiceAccount/flannel",
      "ConfigMap/kube-flannel-cfg",
      "DaemonSet/kube-flannel-ds",
    ],
  );
  const role = find<{ rules: { resources: string[]; verbs: string[] }[] }>("ClusterRole", "flannel");
  assert.deepEqual(
    role.rules.map((r) => `${r.resources.join(",")}: ${r.verbs.join(",")}`),
    ["pods: get", "nodes: get,list,watch", "nodes/status: patch"],
  );
  assert.equal(pod.serviceAccountName, "flannel");
  assert.deepEqual(
    all.map((c) => c.name),
    ["install-cni-plugin", "install-cni", "kube-flannel"],
  );
  for (const c of all) assert.equal(c.image, IMAGE);
});

test("every flanneld flag, env variable, port and path in the manifest exists in flanneld", () => {
  const flags = defineFlanneldFlags();
  const main = pod.containers[0]!;
  assert.deepEqual(main.command, ["/opt/bin/flanneld"]);
  for (const a of main.args ?? []) {
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(a);
    assert.ok(m, `argument ${a} is a flag`);
    assert.ok(flags.set.lookup(m[1] ?? ""), `flanneld defines --${m[1]}`);
  }
  const port = /--healthz-port=(\d+)/.exec((main.args ?? []).join(" "))?.[1];
  assert.equal(main.ports?.[0]?.containerPort, Number(port));
  assert.equal(main.livenessProbe?.httpGet.path, "/healthz");
  assert.equal(main.readinessProbe?.httpGet.path, "/readyz");
  const known = new Set([
    "POD_NAME",
    "POD_NAMESPACE",
    "NODE_NAME",
    "EVENT_QUEUE_DEPTH",
    "CONT_WHEN_CACHE_NOT_READY",
  ]);
  for (const e of main.env ?? []) {
    assert.ok(known.has(e.name) || e.name.startsWith("FLANNELD_"), `flanneld reads ${e.name}`);
    assert.ok(
      readFileSync("src/subnet/kube/manager.ts", "utf8").includes(`"${e.name}"`),
      `${e.name} is read by the kube manager`,
    );
  }
  const mounts = new Map((main.volumeMounts ?? []).map((v) => [v.mountPath.replace(/\/$/, ""), v.name]));
  assert.equal(mounts.get(dirname(flags.subnetFile.defValue)), "run", "subnet.env directory is mounted");
  assert.equal(
    mounts.get(dirname(flags.netConfigPath.defValue)),
    "flannel-cfg",
    "net-conf.json directory is mounted",
  );
});

test("init containers name commands the image provides and paths they mount", () => {
  for (const c of all) {
    const cmd = c.command[0] ?? "";
    assert.ok(DOCKERFILE.includes(`> ${cmd}`), `the Dockerfile creates ${cmd}`);
  }
  const conf = pod.initContainers.find((c) => c.name === "install-cni")!;
  assert.deepEqual(conf.args, ["/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"]);
  for (const path of conf.args ?? []) {
    assert.ok(
      (conf.volumeMounts ?? []).some((v) => path.startsWith(v.mountPath)),
      `${path} is on a mount`,
    );
  }
  const plugin = pod.initContainers.find((c) => c.name === "install-cni-plugin")!;
  assert.equal(plugin.volumeMounts?.[0]?.mountPath, plugin.args?.[0]);
  assert.ok(existsSync("bin/install-conf"));
  assert.ok(readFileSync("scripts/build.mjs", "utf8").includes("dist/install-conf.js"));
  const hostPaths = new Map(pod.volumes.map((v) => [v.name, v.hostPath?.path]));
  assert.equal(hostPaths.get("cni-plugin"), "/opt/cni/bin");
  assert.equal(hostPaths.get("cni"), "/etc/cni/net.d");
});

test("the ConfigMap's net-conf.json and cni-conf.json are what upstream ships", () => {
  const cm = find<{ data: Record<string, string> }>("ConfigMap", "kube-flannel-cfg");
  const net = parseConfig(cm.data["net-conf.json"] ?? "");
  assert.equal(net.network?.toString(), "10.244.0.0/16");
  assert.equal(net.backendType, "vxlan");
  assert.equal(net.enableNftables, false);
  const cni = JSON.parse(cm.data["cni-conf.json"] ?? "") as {
    name: string;
    cniVersion: string;
    plugins: { type: string }[];
  };
  assert.deepEqual(
    [cni.name, cni.cniVersion, cni.plugins.map((p) => p.type)],
    ["cbr0", "0.3.1", ["flannel", "portmap"]],
  );
});

function kubectl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn("/usr/bin/kubectl", args, {
      env: { ...process.env, KUBECONFIG: "/dev/null" },
      timeout: 60_000,
    });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (out += d.toString()));
    p.on("error", (err) => resolve({ code: 1, out: out + String(err) }));
    p.on("close", (code) => resolve({ code: code ?? 1, out }));
  });
}

test("kubectl apply --dry-run=client accepts the manifest", async (t) => {
  if (!existsSync("/usr/bin/kubectl")) {
    t.skip("kubectl is not installed at /usr/bin/kubectl");
    return;
  }
  // kubectl needs discovery to map kinds; the fake server provides it. Schema validation needs the
  // server's OpenAPI document, which the fake does not serve, hence --validate=false.
  const api = await FakeKubeApi.start();
  try {
    const r = await kubectl([
      "--server",
      api.url,
      "apply",
      "--dry-run=client",
      "--validate=false",
      "-f",
      "deploy/kube-flannel.yml",
    ]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.match(/created \(dry run\)/g)?.length, 6, r.out);
  } finally {
    await api.close();
  }
});
