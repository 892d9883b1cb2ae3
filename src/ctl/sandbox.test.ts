import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { LabTopology } from "./lab/topology.ts";
import {
  formatRate,
  renderMatrix,
  renderStep,
  renderThroughput,
  renderTopology,
  sandboxCommand,
  type CommandIo,
} from "./sandbox.ts";

const topo: LabTopology = {
  prefix: "flsb",
  backend: "vxlan",
  network: "10.244.0.0/16",
  underlayCidr: "192.168.250.0/24",
  underlayNs: "flsb-ul",
  bridge: "br0",
  etcdEndpoint: "http://192.168.250.1:2379",
  stateDir: "/s",
  nodes: [
    {
      name: "node1",
      ns: "flsb-n1",
      underlayAddr: "192.168.250.11/24",
      underlayIp: "192.168.250.11",
      subnet: "10.244.7.1/24",
      mtu: 1450,
      subnetFile: "/s/node1/subnet.env",
      pods: [{ name: "node1-pod1", ns: "flsb-n1-p1", node: "node1", ip: "10.244.7.2" }],
    },
    {
      name: "node2",
      ns: "flsb-n2",
      underlayAddr: "192.168.250.12/24",
      underlayIp: "192.168.250.12",
      subnetFile: "/s/node2/subnet.env",
      pods: [{ name: "node2-pod1", ns: "flsb-n2-p1", node: "node2" }],
    },
  ],
};

function captureIo(): CommandIo & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    out: (t: string) => void (io.stdout += t),
    err: (t: string) => void (io.stderr += t),
    onInterrupt: () => () => {},
  };
  return io;
}

describe("sandbox rendering", () => {
  it("draws the topology as a tree", () => {
    assert.equal(
      renderTopology(topo),
      [
        "Cluster: 2 nodes, backend vxlan, pod network 10.244.0.0/16",
        "underlay 192.168.250.0/24  [flsb-ul]  bridge br0, etcd http://192.168.250.1:2379",
        "├── node1  eth0 192.168.250.11  subnet 10.244.7.1/24  mtu 1450  [flsb-n1]",
        "│   └── node1-pod1  10.244.7.2  [flsb-n1-p1]",
        "└── node2  eth0 192.168.250.12  no lease  [flsb-n2]",
        "    └── node2-pod1  no IP  [flsb-n2-p1]",
        "",
      ].join("\n"),
    );
  });

  it("shows the matrix with ✔/✘ and lists every failed pair as FAIL", () => {
    const pods = topo.nodes.flatMap((n) => n.pods);
    const text = renderMatrix({
      pods,
      ok: [
        [true, false],
        [true, true],
      ],
      failures: [{ from: "node1-pod1", to: "node2-pod1", output: "" }],
      allOk: false,
    });
    assert.equal(
      text,
      [
        "Connectivity (row pings column):",
        "               1 2",
        "  1 node1-pod1 ✔ ✘",
        "  2 node2-pod1 ✔ ✔",
        "3/4 pairs ok, 1 FAILED:",
        "  FAIL node1-pod1 -> node2-pod1",
        "",
      ].join("\n"),
    );
  });

  it("prints throughput with units and the ratio", () => {
    assert.equal(formatRate(9.41e9), "9.41 Gbit/s");
    assert.equal(formatRate(512.3e6), "512.3 Mbit/s");
    const text = renderThroughput(
      {
        podToPod: { from: "node1-pod1", to: "node2-pod1", bitsPerSecond: 2e9 },
        nodeToNode: { from: "node1", to: "node2", bitsPerSecond: 8e9 },
        ratio: 0.25,
      },
      "vxlan",
    );
    assert.match(text, /pod to pod +node1-pod1 -> node2-pod1 +2\.00 Gbit\/s {2}\(vxlan\)/);
    assert.match(text, /node to node +node1 -> node2 \(underlay\) +8\.00 Gbit\/s/);
    assert.match(text, /ratio pod\/node 0\.25/);
  });

  it("prints progress lines", () => {
    assert.equal(renderStep({ phase: "start", title: "Starting etcd" }), "==> Starting etcd ...\n");
    assert.equal(
      renderStep({ phase: "done", title: "Starting etcd", elapsedMs: 1234, detail: "http://x" }),
      "    done (1.2 s): http://x\n",
    );
  });
});

describe("sandbox command", () => {
  it("rejects unknown arguments and bad flags with exit code 2", async () => {
    let io = captureIo();
    assert.equal(await sandboxCommand(["up"], io), 2);
    assert.match(io.stderr, /Unknown sandbox argument "up"/);
    io = captureIo();
    assert.equal(await sandboxCommand(["--nodes=x"], io), 2);
    assert.match(io.stderr, /invalid value "x" for flag -nodes/);
    io = captureIo();
    assert.equal(await sandboxCommand(["--help"], io), 0);
    assert.match(io.stdout, /flannelctl sandbox down/);
  });

  it("`down` with nothing recorded says so and succeeds (flags may follow down)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-sb-"));
    try {
      const io = captureIo();
      assert.equal(await sandboxCommand(["down", "--state-dir", dir], io), 0);
      assert.equal(io.stdout, `No sandbox is recorded in ${dir}: nothing to remove\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
