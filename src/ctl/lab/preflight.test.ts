import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlannelError } from "../../errors.ts";
import { assertPreflight, findProgram, preflightProblems } from "./preflight.ts";

describe("preflight", () => {
  it("passes when root and everything is installed", () => {
    assert.deepEqual(preflightProblems({ isRoot: true, find: (n) => `/x/${n}` }), []);
  });

  it("names every missing tool with its Debian package, and the one command to install them", () => {
    const missing = new Set(["etcdctl", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "iperf3"]);
    const problems = preflightProblems({ isRoot: false, find: (n) => (missing.has(n) ? undefined : n) });
    assert.deepEqual(problems, [
      "The sandbox needs root to create network namespaces: run it with sudo or as root",
      "etcdctl is not installed (needed for writing the network config to etcd): install the Debian package etcd-client",
      "/usr/lib/cni/bridge is not installed (needed for attaching pods (bridge + host-local)): install the Debian package containernetworking-plugins",
      "/usr/lib/cni/host-local is not installed (needed for pod IP allocation): install the Debian package containernetworking-plugins",
      "iperf3 is not installed (needed for the throughput sample): install the Debian package iperf3",
      "To install everything missing: apt-get install -y etcd-client containernetworking-plugins iperf3",
    ]);
    assert.throws(
      () => assertPreflight({ isRoot: true, find: (n) => (n === "ip" ? undefined : n) }),
      (e: unknown) =>
        e instanceof FlannelError &&
        e.code === "LAB_PREFLIGHT" &&
        /ip is not installed .*iproute2/.test(e.message) &&
        e.hint === "To install everything missing: apt-get install -y iproute2",
    );
  });

  it("finds programs in PATH and by absolute path", () => {
    assert.equal(findProgram("sh", "/bin"), "/bin/sh");
    assert.equal(findProgram("/bin/sh"), "/bin/sh");
    assert.equal(findProgram("no-such-program-fts", "/bin"), undefined);
  });
});
