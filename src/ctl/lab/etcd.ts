// The lab's etcd: one member (Debian etcd-server) inside the underlay namespace, listening on the bridge's
// address so every node reaches it over its eth0, exactly where a real cluster's etcd would sit. Started
// detached (it outlives the CLI with --keep) and stopped by its recorded PID + start time.

import { mkdirSync } from "node:fs";
import { FlannelError } from "../../errors.ts";
import { sleep } from "../../util/sleep.ts";
import { tryExec } from "./exec.ts";
import { isAlive, startDetached, tailFile, type ProcessRecord } from "./processes.ts";

export interface LabEtcdOptions {
  ns: string;
  host: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logFile: string;
  etcdBin?: string;
  startTimeoutMs?: number;
  signal?: AbortSignal;
}

/** Starts etcd and waits until `endpoint health` succeeds; returns its process record. */
export async function startLabEtcd(opts: LabEtcdOptions): Promise<ProcessRecord> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const client = `http://${opts.host}:${opts.clientPort}`;
  const peer = `http://${opts.host}:${opts.peerPort}`;
  const rec = startDetached(
    [
      opts.etcdBin ?? "etcd",
      "--name=lab",
      `--data-dir=${opts.dataDir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=lab=${peer}`,
      "--initial-cluster-state=new",
      "--log-level=warn",
      "--logger=zap",
    ],
    { role: "etcd", ns: opts.ns, logFile: opts.logFile },
  );
  try {
    await waitEtcdHealthy(rec, opts, client);
  } catch (err) {
    // Returned with the error so the caller can still record and stop it.
    throw Object.assign(err as Error, { process: rec });
  }
  return rec;
}

async function waitEtcdHealthy(rec: ProcessRecord, opts: LabEtcdOptions, endpoint: string): Promise<void> {
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    opts.signal?.throwIfAborted();
    if (!isAlive(rec)) {
      throw new FlannelError(
        "LAB_ETCD",
        `etcd exited during start-up; the end of ${opts.logFile}:\n${tailFile(opts.logFile)}`,
      );
    }
    const res = etcdctl(opts.ns, endpoint, ["endpoint", "health", "--command-timeout=1s"]);
    if (res.code === 0) return;
    if (Date.now() > deadline) {
      throw new FlannelError("LAB_ETCD", `etcd at ${endpoint} did not become healthy: ${res.stderr.trim()}`);
    }
    await sleep(100);
  }
}

/** Runs etcdctl (v3 API) against `endpoint` inside `ns`. */
export function etcdctl(ns: string, endpoint: string, args: readonly string[], input?: string) {
  const opts = { ns, env: { ETCDCTL_API: "3" }, timeoutMs: 15_000 };
  return tryExec(
    "etcdctl",
    [`--endpoints=${endpoint}`, ...args],
    input === undefined ? opts : { ...opts, input },
  );
}

/** Puts one key; throws with etcdctl's message when it fails. */
export function etcdPut(ns: string, endpoint: string, key: string, value: string): void {
  // The value goes through stdin: `etcdctl put KEY` reads it from there when it is not an argument, which
  // avoids values starting with '-' being parsed as flags.
  const res = etcdctl(ns, endpoint, ["put", key], value);
  if (res.code !== 0) {
    throw new FlannelError("LAB_ETCD", `Cannot put ${key} into etcd at ${endpoint}: ${res.stderr.trim()}`);
  }
}
