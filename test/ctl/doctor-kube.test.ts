// doctor against the fake Kubernetes API server: RBAC denial (the `error retrieving pod spec` failure), a
// node without podCIDR, and two nodes advertising the same public IP — each named with its fix; a healthy
// cluster is all ok. The kernel side is a FakeKernel, so these run without root.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Finding } from "../../src/ctl/doctor/checks.ts";
import { doctorFlags, runDoctor, type DoctorFlags } from "../../src/ctl/doctor/doctor.ts";
import type { CommandResult, CommandRunner } from "../../src/kernel/command.ts";
import { FakeKernel } from "../../src/kernel/fake-kernel.ts";
import { FakeKubeApi } from "../helpers/fake-kube-api.ts";

const P = "flannel.alpha.coreos.com";

/** iptables and nft as on a healthy node; everything else is "not installed". */
class FakeTools implements CommandRunner {
  run(file: string, args: readonly string[]): Promise<CommandResult> {
    if (file === "iptables" && args.includes("nat"))
      return Promise.resolve({ code: 0, stdout: "-P POSTROUTING ACCEPT\n", stderr: "" });
    if (file === "iptables")
      return Promise.resolve({ code: 0, stdout: "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n", stderr: "" });
    if (file === "nft") return Promise.resolve({ code: 0, stdout: "", stderr: "" });
    return Promise.reject(Object.assign(new Error(`spawn ${file} ENOENT`), { code: "ENOENT" }));
  }
}

function flannelNode(name: string, podCIDR: string | undefined, publicIp: string) {
  return {
    metadata: {
      name,
      annotations: {
        [`${P}/kube-subnet-manager`]: "true",
        [`${P}/backend-type`]: "vxlan",
        [`${P}/backend-data`]: `{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:0${name.slice(-1)}"}`,
        [`${P}/public-ip`]: publicIp,
      },
    },
    spec: podCIDR === undefined ? {} : { podCIDR, podCIDRs: [podCIDR] },
  };
}

describe("doctor with the Kubernetes API", () => {
  let api: FakeKubeApi;
  let dir: string;
  let kernel: FakeKernel;

  before(async () => {
    api = await FakeKubeApi.start();
    dir = mkdtempSync(join(tmpdir(), "fts-d-kube-"));
    writeFileSync(
      join(dir, "subnet.env"),
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    );
    kernel = new FakeKernel();
    kernel.addVeth("eth0", { up: true, addrs: ["192.168.56.11/24"] });
    api.addPod("kube-flannel", "kube-flannel-ds-a", "n1");
  });
  after(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function flags(): DoctorFlags {
    return {
      ...doctorFlags({}).read(),
      subnetFile: join(dir, "subnet.env"),
      cniConfDir: join(dir, "net.d"),
      kubeApiUrl: api.url,
      nodeName: "n1",
      pod: "kube-flannel/kube-flannel-ds-a",
      probe: false,
    };
  }

  async function findings(): Promise<Record<string, Finding>> {
    const { findings } = await runDoctor(flags(), { kernel, commands: new FakeTools() });
    return Object.fromEntries(findings.map((f) => [f.check, f]));
  }

  it("reports RBAC, podCIDRs and public IPs ok on a healthy cluster", async () => {
    api.addNode(flannelNode("n1", "10.244.1.0/24", "192.168.56.11"));
    api.addNode(flannelNode("n2", "10.244.2.0/24", "192.168.56.12"));
    const f = await findings();
    assert.equal(f["kube-api"]?.status, "ok");
    assert.equal(f["rbac"]?.status, "ok", JSON.stringify(f["rbac"]));
    assert.match(
      f["rbac"]?.summary ?? "",
      /get pods \(kube-flannel\/kube-flannel-ds-a\), list nodes, get nodes \(n1\), patch nodes\/status \(n1\)/,
    );
    assert.equal(f["pod-cidr"]?.status, "ok");
    assert.equal(f["public-ip"]?.status, "ok", JSON.stringify(f["public-ip"]));
    assert.equal(f["own-lease"]?.status, "ok");
  });

  it("names an RBAC denial of `get pods` as the cause of `error retrieving pod spec`, with the fix", async () => {
    api.forbid("get", "pods");
    try {
      const f = await findings();
      const rbac = f["rbac"];
      assert.equal(rbac?.status, "fail");
      assert.match(rbac?.summary ?? "", /ClusterRole\/ClusterRoleBinding "flannel" is missing/);
      assert.match(rbac?.summary ?? "", /error retrieving pod spec/);
      assert.match(rbac?.evidence.join() ?? "", /403 pods "kube-flannel-ds-a" is forbidden/);
      assert.match(rbac?.fix ?? "", /^kubectl apply -f \S+kube-flannel\.yml/);
    } finally {
      api.allow("get", "pods");
    }
  });

  it("names a node without podCIDR and how to assign one", async () => {
    api.addNode({ metadata: { name: "n3" }, spec: {} });
    try {
      const f = await findings();
      const c = f["pod-cidr"];
      assert.equal(c?.status, "fail");
      assert.deepEqual(c?.evidence, ['node "n3" pod cidr not assigned']);
      assert.match(c?.fix ?? "", /--allocate-node-cidrs=true --cluster-cidr=10\.244\.0\.0\/16/);
      assert.match(c?.fix ?? "", /kubectl patch node n3 -p '\{"spec":\{"podCIDR":"10\.244\.0\.0\/24"\}\}'/);
    } finally {
      api.deleteNode("n3");
    }
  });

  it("names two nodes advertising the same public IP (flanneld on a NAT interface)", async () => {
    kernel.addVeth("eth1", { up: true, addrs: ["10.0.2.15/24"] });
    api.addNode(flannelNode("n1", "10.244.1.0/24", "10.0.2.15"));
    api.addNode(flannelNode("n2", "10.244.2.0/24", "10.0.2.15"));
    const f = await findings();
    const p = f["public-ip"];
    assert.equal(p?.status, "fail");
    assert.deepEqual(p?.evidence, ["10.0.2.15: n1, n2"]);
    assert.match(p?.fix ?? "", /--iface=eth0/);
  });
});
