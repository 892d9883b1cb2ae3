import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MemoryLogger } from "../log/logger.ts";
import {
  defineFlanneldFlags,
  envKeyFor,
  flanneldUsage,
  formatCliFlagsConfig,
  resolveFlanneldOptions,
  type FlanneldCliOutcome,
  type FlanneldOptions,
} from "./flanneld-options.ts";

interface Run {
  outcome: FlanneldCliOutcome;
  logger: MemoryLogger;
  verbosity: number | undefined;
}

function resolve(args: string[], env: Record<string, string> = {}): Run {
  const logger = new MemoryLogger();
  let verbosity: number | undefined;
  const outcome = resolveFlanneldOptions({
    argv0: "/opt/bin/flanneld",
    args,
    env,
    version: "v0.28.9-ts",
    createLogger: (o) => {
      verbosity = o.verbosity;
      return logger;
    },
  });
  return { outcome, logger, verbosity };
}

function options(args: string[], env: Record<string, string> = {}): FlanneldOptions {
  const { outcome } = resolve(args, env);
  assert.equal(outcome.kind, "run", outcome.kind === "exit" ? outcome.stderr : "");
  return (outcome as Extract<FlanneldCliOutcome, { kind: "run" }>).options;
}

function exit(
  args: string[],
  env: Record<string, string> = {},
): Extract<FlanneldCliOutcome, { kind: "exit" }> & {
  logger: MemoryLogger;
} {
  const { outcome, logger } = resolve(args, env);
  assert.equal(outcome.kind, "exit");
  return { ...(outcome as Extract<FlanneldCliOutcome, { kind: "exit" }>), logger };
}

describe("flanneld flags", () => {
  it("has upstream's defaults (spec §1.1)", () => {
    const o = options([]);
    const { setFlags, ...rest } = o;
    assert.deepEqual(setFlags, []);
    assert.deepEqual(rest, {
      etcdEndpoints: ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
      etcdPrefix: "/coreos.com/network",
      etcdKeyfile: "",
      etcdCertfile: "",
      etcdCafile: "",
      etcdUsername: "",
      etcdPassword: "",
      iface: [],
      ifaceRegex: [],
      ifaceCanReach: "",
      subnetFile: "/run/flannel/subnet.env",
      publicIp: "",
      publicIpv6: "",
      subnetLeaseRenewMargin: 60,
      ipMasq: false,
      ipMasqFullyRandomDisable: false,
      kubeSubnetMgr: false,
      kubeApiUrl: "",
      kubeAnnotationPrefix: "flannel.alpha.coreos.com",
      kubeconfigFile: "",
      healthzIp: "0.0.0.0",
      healthzPort: 0,
      iptablesResyncSeconds: 5,
      iptablesForwardRules: true,
      ipBlackholeRoute: false,
      netConfigPath: "/etc/kube-flannel/net-conf.json",
      setNodeNetworkUnavailable: true,
      verbosity: 0,
      vmodule: "",
      logBacktraceAt: ":0",
    });
  });

  it("defines exactly upstream's flag names", () => {
    assert.deepEqual(
      defineFlanneldFlags()
        .set.all()
        .map((f) => f.name),
      [
        "etcd-cafile",
        "etcd-certfile",
        "etcd-endpoints",
        "etcd-keyfile",
        "etcd-password",
        "etcd-prefix",
        "etcd-username",
        "healthz-ip",
        "healthz-port",
        "iface",
        "iface-can-reach",
        "iface-regex",
        "ip-blackhole-route",
        "ip-masq",
        "ip-masq-fully-random-disable",
        "iptables-forward-rules",
        "iptables-resync",
        "kube-annotation-prefix",
        "kube-api-url",
        "kube-subnet-mgr",
        "kubeconfig-file",
        "log_backtrace_at",
        "net-config-path",
        "public-ip",
        "public-ipv6",
        "set-node-network-unavailable",
        "subnet-file",
        "subnet-lease-renew-margin",
        "v",
        "version",
        "vmodule",
      ],
    );
  });

  it("maps a typical kube-flannel.yml command line", () => {
    const o = options([
      "--ip-masq",
      "--kube-subnet-mgr",
      "--iface=eth1",
      "--iface",
      "10.0.0.5",
      "--iface-regex=^en",
      "--etcd-endpoints=https://a:2379,https://b:2379",
      "--healthz-port=8081",
      "--iptables-forward-rules=false",
      "-v=4",
    ]);
    assert.deepEqual(o.iface, ["eth1", "10.0.0.5"]);
    assert.deepEqual(o.ifaceRegex, ["^en"]);
    assert.deepEqual(o.etcdEndpoints, ["https://a:2379", "https://b:2379"]);
    assert.equal(o.ipMasq, true);
    assert.equal(o.kubeSubnetMgr, true);
    assert.equal(o.healthzPort, 8081);
    assert.equal(o.iptablesForwardRules, false);
    assert.equal(o.verbosity, 4);
    assert.deepEqual(o.setFlags, [
      "etcd-endpoints",
      "healthz-port",
      "iface",
      "iface-regex",
      "ip-masq",
      "iptables-forward-rules",
      "kube-subnet-mgr",
      "v",
    ]);
  });

  it("ignores arguments after the flags, as upstream", () => {
    assert.equal(options(["--ip-masq", "extra", "--healthz-port=1"]).healthzPort, 0);
  });
});

describe("FLANNELD_* environment", () => {
  it("derives the key from the flag name", () => {
    assert.equal(envKeyFor("iface-regex"), "FLANNELD_IFACE_REGEX");
    assert.equal(envKeyFor("log_backtrace_at"), "FLANNELD_LOG_BACKTRACE_AT");
    assert.equal(envKeyFor("v"), "FLANNELD_V");
  });

  it("fills flags not given on the command line; the command line wins", () => {
    const o = options(["--etcd-prefix=/cli"], {
      FLANNELD_ETCD_PREFIX: "/env",
      FLANNELD_IP_MASQ: "true",
      FLANNELD_HEALTHZ_PORT: "9090",
      FLANNELD_IPTABLES_FORWARD_RULES: "false",
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "30",
      FLANNELD_V: "3",
    });
    assert.equal(o.etcdPrefix, "/cli");
    assert.equal(o.ipMasq, true);
    assert.equal(o.healthzPort, 9090);
    assert.equal(o.iptablesForwardRules, false);
    assert.equal(o.subnetLeaseRenewMargin, 30);
    assert.equal(o.verbosity, 3);
    assert.ok(o.setFlags.includes("healthz-port"));
  });

  it("gives a repeatable flag exactly one entry, without splitting on commas", () => {
    assert.deepEqual(options([], { FLANNELD_IFACE: "eth0,eth1" }).iface, ["eth0,eth1"]);
    assert.deepEqual(options(["--iface=eth9"], { FLANNELD_IFACE: "eth0" }).iface, ["eth9"]);
    assert.deepEqual(options([], { FLANNELD_IFACE_REGEX: "^e" }).ifaceRegex, ["^e"]);
  });

  it("ignores empty values", () => {
    assert.equal(options([], { FLANNELD_ETCD_PREFIX: "" }).etcdPrefix, "/coreos.com/network");
  });

  it("does not read FLANNELD_VERSION (--version is handled before the environment)", () => {
    assert.equal(resolve([], { FLANNELD_VERSION: "true" }).outcome.kind, "run");
  });

  it("creates the logger with the verbosity from the environment", () => {
    assert.equal(resolve([], { FLANNELD_V: "6" }).verbosity, 6);
  });

  it("logs an unparsable value and continues with the other variables", () => {
    const { outcome, logger } = resolve([], {
      FLANNELD_HEALTHZ_PORT: "abc",
      FLANNELD_IP_MASQ: "true",
    });
    assert.equal(outcome.kind, "run");
    assert.ok(outcome.kind === "run" && outcome.options.ipMasq);
    assert.ok(outcome.kind === "run" && outcome.options.healthzPort === 0);
    assert.ok(
      logger.lines.includes(
        'E Failed to set flag FLANNELD from env: invalid value "abc" for FLANNELD_HEALTHZ_PORT: parse error',
      ),
      logger.text(),
    );
  });
});

describe("resolveFlanneldOptions outcomes", () => {
  it("--help prints the usage and exits 0", () => {
    for (const args of [["--help"], ["-h"]]) {
      const r = exit(args);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, flanneldUsage("/opt/bin/flanneld"));
      assert.ok(r.stderr.startsWith("Usage: /opt/bin/flanneld [OPTION]...\n  -etcd-cafile string\n"));
      assert.deepEqual(r.logger.lines, []);
    }
  });

  it("--version prints the version to stderr and exits 0 before anything is logged", () => {
    const r = exit(["--version"]);
    assert.deepEqual([r.code, r.stderr], [0, "v0.28.9-ts\n"]);
    assert.deepEqual(r.logger.lines, []);
  });

  it("an unknown flag or bad value prints the error and the usage and exits 0, as upstream", () => {
    const usage = flanneldUsage("/opt/bin/flanneld");
    let r = exit(["--subnet-dir=/x"]);
    assert.deepEqual([r.code, r.stderr], [0, `flag provided but not defined: -subnet-dir\n${usage}`]);
    r = exit(["--healthz-port=abc"]);
    assert.deepEqual(
      [r.code, r.stderr],
      [0, `invalid value "abc" for flag -healthz-port: parse error\n${usage}`],
    );
    r = exit(["-v=high"]);
    assert.equal(
      r.stderr.split("\n")[0],
      'invalid value "high" for flag -v: strconv.ParseInt: parsing "high": invalid syntax',
    );
    r = exit(["-vmodule=x"]);
    assert.equal(
      r.stderr.split("\n")[0],
      'invalid value "x" for flag -vmodule: syntax error: expect comma-separated list of filename=N',
    );
    r = exit(["-log_backtrace_at=nofile"]);
    assert.equal(
      r.stderr.split("\n")[0],
      'invalid value "nofile" for flag -log_backtrace_at: syntax error: expect file.go:234',
    );
  });

  it("accepts valid klog values", () => {
    const o = options(["-vmodule=vxlan=4,main=2", "-log_backtrace_at=main.go:12", "-v", "10"]);
    assert.deepEqual([o.vmodule, o.logBacktraceAt, o.verbosity], ["vxlan=4,main=2", "main.go:12", 10]);
  });

  it("checks the renew margin range 1..1439 and exits 1", () => {
    for (const m of ["1", "1439"])
      assert.equal(resolve([`--subnet-lease-renew-margin=${m}`]).outcome.kind, "run");
    for (const m of ["0", "1440", "-5"]) {
      const r = exit([`--subnet-lease-renew-margin=${m}`]);
      assert.deepEqual([r.code, r.stderr], [1, ""]);
      assert.equal(
        r.logger.lines.at(-1),
        "E Invalid subnet-lease-renew-margin option, out of acceptable range",
      );
    }
  });

  it("logs the CLI flags config line with the password redacted", () => {
    const r = resolve(["--etcd-password=s3cret", "--etcd-username=flannel"]);
    const text = r.logger.text();
    assert.doesNotMatch(text, /s3cret/);
    assert.match(text, /^I CLI flags config: \{etcdEndpoints:/m);
    assert.match(text, / etcdUsername:flannel etcdPassword:<redacted> version:false /);
  });
});

describe("formatCliFlagsConfig", () => {
  it("matches upstream's %+v dump for the kube-flannel.yml defaults", () => {
    const o = options(["--ip-masq", "--kube-subnet-mgr"]);
    // Field for field as upstream v0.28.9 logs it (issue reports quote this line).
    assert.equal(
      formatCliFlagsConfig(o),
      "{etcdEndpoints:http://127.0.0.1:4001,http://127.0.0.1:2379 etcdPrefix:/coreos.com/network etcdKeyfile: " +
        "etcdCertfile: etcdCAFile: etcdUsername: etcdPassword: version:false kubeSubnetMgr:true kubeApiUrl: " +
        "kubeAnnotationPrefix:flannel.alpha.coreos.com kubeConfigFile: iface:[] ifaceRegex:[] ipMasq:true " +
        "ipMasqRandomFullyDisable:false ifaceCanReach: subnetFile:/run/flannel/subnet.env publicIP: publicIPv6: " +
        "subnetLeaseRenewMargin:60 healthzIP:0.0.0.0 healthzPort:0 iptablesResyncSeconds:5 " +
        "iptablesForwardRules:true blackholeRoute:false netConfPath:/etc/kube-flannel/net-conf.json " +
        "setNodeNetworkUnavailable:true}",
    );
  });

  it("prints repeatable flags as Go slices", () => {
    const o = options(["--iface=eth0", "--iface=eth1"]);
    assert.match(formatCliFlagsConfig(o), / iface:\[eth0 eth1\] ifaceRegex:\[\] /);
  });
});

describe("flanneld usage text", () => {
  it("lists each flag in Go's layout with upstream's usage and defaults", () => {
    const usage = flanneldUsage("flanneld");
    for (const chunk of [
      '  -etcd-endpoints string\n    \ta comma-delimited list of etcd endpoints (default "http://127.0.0.1:4001,http://127.0.0.1:2379")\n',
      "  -iface value\n    \tinterface to use (IP or name) for inter-host communication. Can be specified multiple times to check each option in order. Returns the first match found.\n",
      "  -ip-masq\n    \tsetup IP masquerade rule for traffic destined outside of overlay network\n",
      "  -iptables-forward-rules\n    \tadd default accept rules to FORWARD chain in iptables (default true)\n",
      "  -subnet-lease-renew-margin int\n    \tsubnet lease renewal margin, in minutes, ranging from 1 to 1439 (default 60)\n",
      "  -log_backtrace_at value\n    \twhen logging hits line file:N, emit a stack trace\n",
      "  -v value\n    \tnumber for the log level verbosity\n",
      '  -kube-annotation-prefix string\n    \tKubernetes annotation prefix. Can contain single slash "/", otherwise it will be appended at the end. (default "flannel.alpha.coreos.com")\n',
    ]) {
      assert.ok(usage.includes(chunk), `missing:\n${chunk}`);
    }
  });
});
