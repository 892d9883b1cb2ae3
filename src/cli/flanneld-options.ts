// flanneld's command line: every upstream flag (spec §1.1) with its exact name, default and usage text,
// the FLANNELD_* environment fallback (§1.2) and the first startup steps of main.go (§1.4 steps 1–4).
//
// Design notes:
// - Order, as upstream: parse argv → `-h`/bad flag → usage on stderr → `--version` → FLANNELD_* for flags
//   not given on the command line → `CLI flags config: …` → renew-margin range check. `--version` is read
//   before the environment, so FLANNELD_VERSION has no effect.
// - Upstream exits 0 after an unknown flag or a malformed value (its usage() calls os.Exit(0) before
//   flag.ExitOnError can exit 2). We keep that, because supervisors and tests written against upstream rely
//   on it; `docs/compat.md` should mention it.
// - Library code never exits or writes to stderr: `resolveFlanneldOptions` returns an outcome and the entry
//   point acts on it. The logger is created only after -v is known (it may come from FLANNELD_V).
// - An env value that does not parse is logged and startup continues (coreos/pkg flagutil). Upstream glues
//   the message and the cause together without a separator (klog's Error is Sprint); we add `: `.
// - The `CLI flags config` line mirrors Go's `%+v` of upstream's CmdLineOpts, field for field and in its
//   order, so operators can diff it against upstream logs; the etcd password is redacted.

import type { Logger } from "../log/logger.ts";
import { FlagParseError, FlagSet, goQuote, type Flag, type FlagValue } from "./flags.ts";

/** flanneld's settings after command line and environment, with upstream's defaults. */
export interface FlanneldOptions {
  /** --etcd-endpoints split on `,`. */
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  /** --iface, in the order given (IP or name); empty when not given. */
  iface: string[];
  /** --iface-regex, in the order given. */
  ifaceRegex: string[];
  ifaceCanReach: string;
  subnetFile: string;
  publicIp: string;
  publicIpv6: string;
  /** Minutes before lease expiry to renew it (1..1439). */
  subnetLeaseRenewMargin: number;
  ipMasq: boolean;
  ipMasqFullyRandomDisable: boolean;
  kubeSubnetMgr: boolean;
  kubeApiUrl: string;
  kubeAnnotationPrefix: string;
  kubeconfigFile: string;
  healthzIp: string;
  /** 0 disables the health server. */
  healthzPort: number;
  iptablesResyncSeconds: number;
  iptablesForwardRules: boolean;
  ipBlackholeRoute: boolean;
  netConfigPath: string;
  setNodeNetworkUnavailable: boolean;
  /** klog -v. */
  verbosity: number;
  /** klog -vmodule (accepted and validated; per-file levels are not applied by our logger). */
  vmodule: string;
  /** klog -log_backtrace_at (accepted and validated; not acted upon). */
  logBacktraceAt: string;
  /** Flag names given on the command line or through FLANNELD_*, in lexical order. */
  setFlags: string[];
}

export type FlanneldCliOutcome =
  | { kind: "run"; options: FlanneldOptions; logger: Logger }
  /** Exit now with `code` after writing `stderr` (which may be empty). */
  | { kind: "exit"; code: number; stderr: string };

export interface FlanneldCliInput {
  /** Shown in the usage line: `Usage: <argv0> [OPTION]...`. */
  argv0: string;
  /** Command-line arguments without the program name. */
  args: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Printed by --version. */
  version: string;
  /** Creates the daemon's logger once the verbosity is known. */
  createLogger: (opts: { verbosity: number; vmodule: string }) => Logger;
}

const ENV_PREFIX = "FLANNELD";

/** The FLANNELD_* variable consulted for a flag, e.g. `FLANNELD_IFACE_REGEX` for `iface-regex`. */
export function envKeyFor(flagName: string): string {
  return `${ENV_PREFIX}_${flagName.replace(/[-.]/g, "_").toUpperCase()}`;
}

interface FlanneldFlags {
  set: FlagSet;
  etcdEndpoints: Flag<string>;
  etcdPrefix: Flag<string>;
  etcdKeyfile: Flag<string>;
  etcdCertfile: Flag<string>;
  etcdCafile: Flag<string>;
  etcdUsername: Flag<string>;
  etcdPassword: Flag<string>;
  iface: Flag<string[]>;
  ifaceRegex: Flag<string[]>;
  ifaceCanReach: Flag<string>;
  subnetFile: Flag<string>;
  publicIp: Flag<string>;
  publicIpv6: Flag<string>;
  subnetLeaseRenewMargin: Flag<number>;
  ipMasq: Flag<boolean>;
  ipMasqFullyRandomDisable: Flag<boolean>;
  kubeSubnetMgr: Flag<boolean>;
  kubeApiUrl: Flag<string>;
  kubeAnnotationPrefix: Flag<string>;
  kubeconfigFile: Flag<string>;
  version: Flag<boolean>;
  healthzIp: Flag<string>;
  healthzPort: Flag<number>;
  iptablesResync: Flag<number>;
  iptablesForwardRules: Flag<boolean>;
  ipBlackholeRoute: Flag<boolean>;
  netConfigPath: Flag<string>;
  setNodeNetworkUnavailable: Flag<boolean>;
  v: Flag<number>;
  vmodule: Flag<string>;
  logBacktraceAt: Flag<string>;
}

/** Defines every flanneld flag on a fresh FlagSet (usage strings are upstream's, typos included). */
export function defineFlanneldFlags(): FlanneldFlags {
  const fs = new FlagSet("flannel");
  return {
    set: fs,
    etcdEndpoints: fs.string(
      "etcd-endpoints",
      "http://127.0.0.1:4001,http://127.0.0.1:2379",
      "a comma-delimited list of etcd endpoints",
    ),
    etcdPrefix: fs.string("etcd-prefix", "/coreos.com/network", "etcd prefix"),
    etcdKeyfile: fs.string("etcd-keyfile", "", "SSL key file used to secure etcd communication"),
    etcdCertfile: fs.string("etcd-certfile", "", "SSL certification file used to secure etcd communication"),
    etcdCafile: fs.string(
      "etcd-cafile",
      "",
      "SSL Certificate Authority file used to secure etcd communication",
    ),
    etcdUsername: fs.string("etcd-username", "", "username for BasicAuth to etcd"),
    etcdPassword: fs.string("etcd-password", "", "password for BasicAuth to etcd"),
    iface: fs.strings(
      "iface",
      "interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each option in order. Returns the first match found.",
    ),
    ifaceRegex: fs.strings(
      "iface-regex",
      "regex expression to match the first interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each regex in order. Returns the first match found. Regexes are checked after specific interfaces specified by the iface option have already been checked.",
    ),
    ifaceCanReach: fs.string(
      "iface-can-reach",
      "",
      "detect interface to use (IP or name) for inter-host communication based on which will be used for provided IP. This is exactly the interface to use of command 'ip route get <ip-address>'",
    ),
    subnetFile: fs.string(
      "subnet-file",
      "/run/flannel/subnet.env",
      "filename where env variables (subnet, MTU, ... ) will be written to",
    ),
    publicIp: fs.string("public-ip", "", "IP accessible by other nodes for inter-host communication"),
    publicIpv6: fs.string("public-ipv6", "", "IPv6 accessible by other nodes for inter-host communication"),
    subnetLeaseRenewMargin: fs.int(
      "subnet-lease-renew-margin",
      60,
      "subnet lease renewal margin, in minutes, ranging from 1 to 1439",
    ),
    ipMasq: fs.bool(
      "ip-masq",
      false,
      "setup IP masquerade rule for traffic destined outside of overlay network",
    ),
    ipMasqFullyRandomDisable: fs.bool(
      "ip-masq-fully-random-disable",
      false,
      "disable fully-random mode for MASQUERADE",
    ),
    kubeSubnetMgr: fs.bool(
      "kube-subnet-mgr",
      false,
      "contact the Kubernetes API for subnet assignment instead of etcd.",
    ),
    kubeApiUrl: fs.string(
      "kube-api-url",
      "",
      "Kubernetes API server URL. Does not need to be specified if flannel is running in a pod.",
    ),
    kubeAnnotationPrefix: fs.string(
      "kube-annotation-prefix",
      "flannel.alpha.coreos.com",
      'Kubernetes annotation prefix. Can contain single slash "/", otherwise it will be appended at the end.',
    ),
    kubeconfigFile: fs.string(
      "kubeconfig-file",
      "",
      "kubeconfig file location. Does not need to be specified if flannel is running in a pod.",
    ),
    version: fs.bool("version", false, "print version and exit"),
    healthzIp: fs.string("healthz-ip", "0.0.0.0", "the IP address for healthz server to listen"),
    healthzPort: fs.int("healthz-port", 0, "the port for healthz server to listen(0 to disable)"),
    iptablesResync: fs.int("iptables-resync", 5, "resync period for iptables rules, in seconds"),
    iptablesForwardRules: fs.bool(
      "iptables-forward-rules",
      true,
      "add default accept rules to FORWARD chain in iptables",
    ),
    ipBlackholeRoute: fs.bool(
      "ip-blackhole-route",
      false,
      "add blackroute route ont the node for the local podCIDR",
    ),
    netConfigPath: fs.string(
      "net-config-path",
      "/etc/kube-flannel/net-conf.json",
      "path to the network configuration file",
    ),
    setNodeNetworkUnavailable: fs.bool(
      "set-node-network-unavailable",
      true,
      "set NodeNetworkUnavailable after ready",
    ),
    // The three klog flags upstream copies onto its own FlagSet (the rest of klog's flags are not exposed).
    v: fs.define("v", 0, "number for the log level verbosity", KLOG_LEVEL),
    vmodule: fs.define(
      "vmodule",
      "",
      "comma-separated list of pattern=N settings for file-filtered logging",
      KLOG_VMODULE,
    ),
    logBacktraceAt: fs.define(
      "log_backtrace_at",
      ":0",
      "when logging hits line file:N, emit a stack trace",
      KLOG_TRACE_LOCATION,
    ),
  };
}

/** The usage text upstream prints for -h and after a bad command line. */
export function flanneldUsage(argv0: string, flags: FlanneldFlags = defineFlanneldFlags()): string {
  return `Usage: ${argv0} [OPTION]...\n${flags.set.printDefaults()}`;
}

/**
 * Applies FLANNELD_* to every flag not set on the command line (coreos/pkg flagutil.SetFlagsFromEnv):
 * empty values are ignored, a repeatable flag gets exactly one entry (no comma splitting). Returns the
 * last error, as flagutil does, after trying every flag.
 */
export function applyFlanneldEnv(
  fs: FlagSet,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const fromCli = new Set(fs.setNames());
  let error: string | undefined;
  for (const flag of fs.all()) {
    if (fromCli.has(flag.name)) continue;
    const key = envKeyFor(flag.name);
    const text = env[key];
    if (text === undefined || text === "") continue;
    try {
      fs.set(flag.name, text);
    } catch (err) {
      error = `invalid value ${goQuote(text)} for ${key}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return error;
}

function toOptions(f: FlanneldFlags): FlanneldOptions {
  return {
    etcdEndpoints: f.etcdEndpoints.value.split(","),
    etcdPrefix: f.etcdPrefix.value,
    etcdKeyfile: f.etcdKeyfile.value,
    etcdCertfile: f.etcdCertfile.value,
    etcdCafile: f.etcdCafile.value,
    etcdUsername: f.etcdUsername.value,
    etcdPassword: f.etcdPassword.value,
    iface: [...f.iface.value],
    ifaceRegex: [...f.ifaceRegex.value],
    ifaceCanReach: f.ifaceCanReach.value,
    subnetFile: f.subnetFile.value,
    publicIp: f.publicIp.value,
    publicIpv6: f.publicIpv6.value,
    subnetLeaseRenewMargin: f.subnetLeaseRenewMargin.value,
    ipMasq: f.ipMasq.value,
    ipMasqFullyRandomDisable: f.ipMasqFullyRandomDisable.value,
    kubeSubnetMgr: f.kubeSubnetMgr.value,
    kubeApiUrl: f.kubeApiUrl.value,
    kubeAnnotationPrefix: f.kubeAnnotationPrefix.value,
    kubeconfigFile: f.kubeconfigFile.value,
    healthzIp: f.healthzIp.value,
    healthzPort: f.healthzPort.value,
    iptablesResyncSeconds: f.iptablesResync.value,
    iptablesForwardRules: f.iptablesForwardRules.value,
    ipBlackholeRoute: f.ipBlackholeRoute.value,
    netConfigPath: f.netConfigPath.value,
    setNodeNetworkUnavailable: f.setNodeNetworkUnavailable.value,
    verbosity: f.v.value,
    vmodule: f.vmodule.value,
    logBacktraceAt: f.logBacktraceAt.value,
    setFlags: f.set.setNames(),
  };
}

/**
 * Upstream's `CLI flags config: %+v` payload: Go's struct dump of CmdLineOpts (field names, order and
 * formatting as upstream v0.28.9 prints them), with a non-empty etcd password replaced by `<redacted>`.
 */
export function formatCliFlagsConfig(o: FlanneldOptions, version = false): string {
  const list = (v: readonly string[]): string => `[${v.join(" ")}]`;
  const fields: [string, string | number | boolean][] = [
    ["etcdEndpoints", o.etcdEndpoints.join(",")],
    ["etcdPrefix", o.etcdPrefix],
    ["etcdKeyfile", o.etcdKeyfile],
    ["etcdCertfile", o.etcdCertfile],
    ["etcdCAFile", o.etcdCafile],
    ["etcdUsername", o.etcdUsername],
    ["etcdPassword", o.etcdPassword === "" ? "" : "<redacted>"],
    ["version", version],
    ["kubeSubnetMgr", o.kubeSubnetMgr],
    ["kubeApiUrl", o.kubeApiUrl],
    ["kubeAnnotationPrefix", o.kubeAnnotationPrefix],
    ["kubeConfigFile", o.kubeconfigFile],
    ["iface", list(o.iface)],
    ["ifaceRegex", list(o.ifaceRegex)],
    ["ipMasq", o.ipMasq],
    ["ipMasqRandomFullyDisable", o.ipMasqFullyRandomDisable],
    ["ifaceCanReach", o.ifaceCanReach],
    ["subnetFile", o.subnetFile],
    ["publicIP", o.publicIp],
    ["publicIPv6", o.publicIpv6],
    ["subnetLeaseRenewMargin", o.subnetLeaseRenewMargin],
    ["healthzIP", o.healthzIp],
    ["healthzPort", o.healthzPort],
    ["iptablesResyncSeconds", o.iptablesResyncSeconds],
    ["iptablesForwardRules", o.iptablesForwardRules],
    ["blackholeRoute", o.ipBlackholeRoute],
    ["netConfPath", o.netConfigPath],
    ["setNodeNetworkUnavailable", o.setNodeNetworkUnavailable],
  ];
  return `{${fields.map(([k, v]) => `${k}:${String(v)}`).join(" ")}}`;
}

/** Smallest and largest accepted --subnet-lease-renew-margin, in minutes (less than one day). */
export const RENEW_MARGIN_MIN = 1;
export const RENEW_MARGIN_MAX = 24 * 60 - 1;

/**
 * flanneld startup steps 1–4 (spec §1.4): parse, --help/--version, environment, config dump, margin check.
 * Returns what the entry point must do; never exits and never writes to stderr itself.
 */
export function resolveFlanneldOptions(input: FlanneldCliInput): FlanneldCliOutcome {
  const flags = defineFlanneldFlags();
  try {
    flags.set.parse(input.args);
  } catch (err) {
    if (!(err instanceof FlagParseError)) throw err;
    // Go prints the error line (not for -h), then the usage; upstream's usage() exits 0 either way.
    const head = err.help ? "" : `${err.message}\n`;
    return { kind: "exit", code: 0, stderr: head + flanneldUsage(input.argv0, flags) };
  }
  // Arguments after the flags are ignored, as upstream does.

  if (flags.version.value) return { kind: "exit", code: 0, stderr: `${input.version}\n` };

  const envError = applyFlanneldEnv(flags.set, input.env);
  const options = toOptions(flags);
  const logger = input.createLogger({ verbosity: options.verbosity, vmodule: options.vmodule });
  if (envError !== undefined) logger.error(`Failed to set flag FLANNELD from env: ${envError}`);

  logger.info(`CLI flags config: ${formatCliFlagsConfig(options, flags.version.value)}`);

  const m = options.subnetLeaseRenewMargin;
  if (m < RENEW_MARGIN_MIN || m > RENEW_MARGIN_MAX) {
    logger.error("Invalid subnet-lease-renew-margin option, out of acceptable range");
    return { kind: "exit", code: 1, stderr: "" };
  }
  return { kind: "run", options, logger };
}

// --- klog's flag values -----------------------------------------------------------------------------

/** strconv.ParseInt(text, 10, 32) with Go's full error text (klog returns it unchanged). */
function parseInt32Strict(text: string): number {
  if (!/^[+-]?\d+$/.test(text)) throw new Error(`strconv.ParseInt: parsing ${goQuote(text)}: invalid syntax`);
  const v = BigInt(text);
  if (v < -(1n << 31n) || v > (1n << 31n) - 1n) {
    throw new Error(`strconv.ParseInt: parsing ${goQuote(text)}: value out of range`);
  }
  return Number(v);
}

/** klog.Level: `-v=N`. */
const KLOG_LEVEL: FlagValue<number> = {
  parse: (text) => parseInt32Strict(text),
  format: (v) => String(v),
  typeName: "value",
  isBool: false,
  zeroText: "0",
  quoteDefault: false,
};

const VMODULE_SYNTAX = "syntax error: expect comma-separated list of filename=N";

/** klog's moduleSpec: `pattern=N,...`; N must be a non-negative integer. */
const KLOG_VMODULE: FlagValue<string> = {
  parse: (text) => {
    for (const pat of text.split(",")) {
      if (pat.length === 0) continue;
      const parts = pat.split("=");
      if (parts.length !== 2 || parts[0] === "" || parts[1] === "") throw new Error(VMODULE_SYNTAX);
      let level: number;
      try {
        level = parseInt32Strict(parts[1] as string);
      } catch {
        throw new Error(VMODULE_SYNTAX);
      }
      if (level < 0) throw new Error("negative value for vmodule level");
    }
    return text;
  },
  format: (v) => v,
  typeName: "value",
  isBool: false,
  zeroText: "",
  quoteDefault: false,
};

const TRACE_SYNTAX = "syntax error: expect file.go:234";

/** klog's traceLocation: `file.go:N`, or empty to switch it off; shows as `:0` when unset. */
const KLOG_TRACE_LOCATION: FlagValue<string> = {
  parse: (text) => {
    if (text === "") return ":0";
    const fields = text.split(":");
    if (fields.length !== 2 || !(fields[0] as string).includes(".")) throw new Error(TRACE_SYNTAX);
    if (!/^[+-]?\d+$/.test(fields[1] as string)) throw new Error(TRACE_SYNTAX);
    if (Number(fields[1]) <= 0) throw new Error("negative or zero value for level");
    return text;
  },
  format: (v) => v,
  typeName: "value",
  isBool: false,
  zeroText: ":0",
  quoteDefault: false,
};
