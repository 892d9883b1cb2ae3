// `flannelctl doctor`: checks this node (and, with etcd or API access, the cluster's leases) for the
// failures that cost operators hours, one line per check with the evidence and the exact fix. Exits 1 when
// a check fails, 0 otherwise (warnings included); `--json` prints findings and the facts behind them.

import { errorMessage } from "../../errors.ts";
import { FlagParseError, FlagSet } from "../../cli/flags.ts";
import { ExecCommandRunner, type CommandRunner } from "../../kernel/command.ts";
import type { Kernel } from "../../kernel/ports.ts";
import { MemoryLogger } from "../../log/logger.ts";
import type { CommandIo } from "../sandbox.ts";
import { runChecks, type Finding } from "./checks.ts";
import { collectNodeFacts, type CollectOptions } from "./collect.ts";
import type { NodeFacts } from "./facts.ts";

export const DOCTOR_USAGE = `Usage: flannelctl doctor [options]

Checks this node for the usual flannel failures and prints one line per check (ok / warn / fail / skip)
with the evidence and the exact fix. Give --etcd-endpoints or --kubeconfig-file / --kube-api-url to also
check the cluster's leases (overlapping subnets, duplicate or unreachable public IPs, missing podCIDR,
RBAC). Run it as root in the node's network namespace. Exit status 1 when any check fails.

Options:
`;

export interface DoctorFlags {
  subnetFile: string;
  cniConfDir: string;
  etcdEndpoints: string;
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  kubeconfigFile: string;
  kubeApiUrl: string;
  kubeAnnotationPrefix: string;
  nodeName: string;
  pod: string;
  probe: boolean;
  json: boolean;
}

export function doctorFlags(env: Readonly<Record<string, string | undefined>>): {
  fs: FlagSet;
  read: () => DoctorFlags;
} {
  const fs = new FlagSet("doctor");
  const v = {
    subnetFile: fs.string("subnet-file", "/run/flannel/subnet.env", "flanneld's subnet file"),
    cniConfDir: fs.string("cni-conf-dir", "/etc/cni/net.d", "kubelet's CNI config directory"),
    etcdEndpoints: fs.string(
      "etcd-endpoints",
      "",
      "etcd endpoints (comma-separated) to read the leases from",
    ),
    etcdPrefix: fs.string("etcd-prefix", "/coreos.com/network", "etcd prefix"),
    etcdKeyfile: fs.string("etcd-keyfile", "", "SSL key file for etcd"),
    etcdCertfile: fs.string("etcd-certfile", "", "SSL certificate file for etcd"),
    etcdCafile: fs.string("etcd-cafile", "", "SSL CA file for etcd"),
    etcdUsername: fs.string("etcd-username", "", "etcd username"),
    etcdPassword: fs.string("etcd-password", "", "etcd password"),
    kubeconfigFile: fs.string(
      "kubeconfig-file",
      "",
      "kubeconfig of flannel's service account (checks RBAC, podCIDRs, leases)",
    ),
    kubeApiUrl: fs.string("kube-api-url", "", "Kubernetes API server URL"),
    kubeAnnotationPrefix: fs.string(
      "kube-annotation-prefix",
      "flannel.alpha.coreos.com",
      "annotation prefix",
    ),
    nodeName: fs.string(
      "node-name",
      env["NODE_NAME"] ?? "",
      "this node's Kubernetes name (default $NODE_NAME)",
    ),
    pod: fs.string(
      "pod",
      env["POD_NAMESPACE"] && env["POD_NAME"] ? `${env["POD_NAMESPACE"]}/${env["POD_NAME"]}` : "",
      "flanneld's pod as namespace/name, to check the `get pods` permission (default $POD_NAMESPACE/$POD_NAME)",
    ),
    probe: fs.bool("probe", true, "ping other nodes' public IPs"),
    json: fs.bool("json", false, "print findings and facts as JSON"),
  };
  return {
    fs,
    read: () => ({
      subnetFile: v.subnetFile.value,
      cniConfDir: v.cniConfDir.value,
      etcdEndpoints: v.etcdEndpoints.value,
      etcdPrefix: v.etcdPrefix.value,
      etcdKeyfile: v.etcdKeyfile.value,
      etcdCertfile: v.etcdCertfile.value,
      etcdCafile: v.etcdCafile.value,
      etcdUsername: v.etcdUsername.value,
      etcdPassword: v.etcdPassword.value,
      kubeconfigFile: v.kubeconfigFile.value,
      kubeApiUrl: v.kubeApiUrl.value,
      kubeAnnotationPrefix: v.kubeAnnotationPrefix.value,
      nodeName: v.nodeName.value,
      pod: v.pod.value,
      probe: v.probe.value,
      json: v.json.value,
    }),
  };
}

export function collectOptionsFrom(
  flags: DoctorFlags,
  deps: { kernel: Kernel; commands: CommandRunner },
): CollectOptions {
  const o: CollectOptions = {
    kernel: deps.kernel,
    commands: deps.commands,
    logger: new MemoryLogger(),
    subnetFile: flags.subnetFile,
    cniConfDir: flags.cniConfDir,
    probe: flags.probe,
  };
  if (flags.nodeName !== "") o.node = flags.nodeName;
  if (flags.etcdEndpoints !== "") {
    o.etcd = {
      endpoints: flags.etcdEndpoints.split(",").filter((e) => e !== ""),
      prefix: flags.etcdPrefix,
      ...(flags.etcdKeyfile ? { keyFile: flags.etcdKeyfile } : {}),
      ...(flags.etcdCertfile ? { certFile: flags.etcdCertfile } : {}),
      ...(flags.etcdCafile ? { caFile: flags.etcdCafile } : {}),
      ...(flags.etcdUsername ? { username: flags.etcdUsername } : {}),
      ...(flags.etcdPassword ? { password: flags.etcdPassword } : {}),
    };
  }
  if (flags.kubeconfigFile !== "" || flags.kubeApiUrl !== "") {
    o.kube = {
      kubeApiUrl: flags.kubeApiUrl,
      kubeconfigFile: flags.kubeconfigFile,
      annotationPrefix: flags.kubeAnnotationPrefix,
      ...(flags.nodeName !== "" ? { nodeName: flags.nodeName } : {}),
    };
    const [ns, name] = flags.pod.split("/");
    if (ns && name) o.kube.pod = { namespace: ns, name };
  }
  return o;
}

const LABEL: Record<Finding["status"], string> = { ok: "ok  ", warn: "WARN", fail: "FAIL", skip: "skip" };

/** One line per finding: status, check, summary, then evidence and fix for warnings and failures. */
export function renderFindings(findings: readonly Finding[]): string {
  const w = Math.max(...findings.map((x) => x.check.length));
  const out = findings.map((x) => {
    let line = `${LABEL[x.status]}  ${x.check.padEnd(w)}  ${x.summary}`;
    if (x.status === "fail" || x.status === "warn") {
      if (x.evidence.length > 0) line += ` | evidence: ${x.evidence.join("; ")}`;
      if (x.fix) line += ` | fix: ${x.fix}`;
    }
    return `${line}\n`;
  });
  return out.join("") + `${summarize(findings)}\n`;
}

export function summarize(findings: readonly Finding[]): string {
  const n = (s: Finding["status"]): number => findings.filter((x) => x.status === s).length;
  return `${n("fail")} failed, ${n("warn")} warnings, ${n("ok")} ok, ${n("skip")} skipped`;
}

/** Collects the facts with `deps` and runs every check. */
export async function runDoctor(
  flags: DoctorFlags,
  deps: { kernel: Kernel; commands: CommandRunner },
  now = new Date(),
): Promise<{ findings: Finding[]; facts: NodeFacts }> {
  const facts = await collectNodeFacts(collectOptionsFrom(flags, deps));
  return { findings: runChecks(facts, now), facts };
}

/** Runs `flannelctl doctor …`; resolves with the exit code. */
export async function doctorCommand(
  args: readonly string[],
  io: CommandIo,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<number> {
  const { fs, read } = doctorFlags(env);
  try {
    fs.parse(args);
  } catch (err) {
    if (err instanceof FlagParseError && err.help) {
      io.out(DOCTOR_USAGE + fs.printDefaults());
      return 0;
    }
    io.err(`${errorMessage(err)}\n\n${DOCTOR_USAGE}${fs.printDefaults()}`);
    return 2;
  }
  if (fs.args().length > 0) {
    io.err(`Unexpected argument ${JSON.stringify(fs.args()[0])}: doctor takes only options\n`);
    return 2;
  }
  const flags = read();
  const { createNetlinkKernel } = await import("../../kernel/netlink/netlink-kernel.ts");
  const kernel = createNetlinkKernel();
  let result: { findings: Finding[]; facts: NodeFacts };
  try {
    result = await runDoctor(flags, { kernel, commands: new ExecCommandRunner() });
  } finally {
    kernel.close();
  }
  const { findings, facts } = result;
  if (flags.json) {
    io.out(`${JSON.stringify({ summary: summarize(findings), findings, facts }, null, 2)}\n`);
  } else {
    io.out(renderFindings(findings));
  }
  return findings.some((x) => x.status === "fail") ? 1 : 0;
}
