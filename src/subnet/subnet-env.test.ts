import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  chmodSync,
  mkdirSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IpNet } from "../ip/net.ts";
import { MemoryLogger } from "../log/logger.ts";
import {
  formatSubnetEnv,
  parseDotenv,
  readCidrFromSubnetFile,
  readCidrsFromSubnetFile,
  writeSubnetEnv,
} from "./subnet-env.ts";

const net = (s: string): IpNet => IpNet.parse(s);

function withTempDir(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "fts-a-subnet-env-"));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test("formatSubnetEnv produces upstream's exact bytes", () => {
  const rows: [Parameters<typeof formatSubnetEnv>[0], string][] = [
    [
      // spec §10.2 item 11
      {
        network: net("10.5.0.0/16"),
        subnet: net("10.5.72.0/24"),
        ipv6Network: null,
        ipv6Subnet: null,
        mtu: 1450,
        ipMasq: false,
      },
      "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    ],
    [
      // spec §5 dual-stack example
      {
        network: net("10.42.0.0/16"),
        subnet: net("10.42.0.0/24"),
        ipv6Network: net("2001:cafe:42::/56"),
        ipv6Subnet: net("2001:cafe:42::/64"),
        mtu: 1450,
        ipMasq: true,
      },
      "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.0.1/24\n" +
        "FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n" +
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    ],
    [
      {
        network: null,
        subnet: null,
        ipv6Network: net("fd00::/48"),
        ipv6Subnet: net("fd00:0:0:5::/64"),
        mtu: 1430,
        ipMasq: true,
      },
      "FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
    ],
  ];
  for (const [input, want] of rows) assert.equal(formatSubnetEnv(input), want);
});

test("formatSubnetEnv refuses a family with a network but no subnet, and a bad MTU", () => {
  const base = { network: null, subnet: null, ipv6Network: null, ipv6Subnet: null, mtu: 1500, ipMasq: false };
  assert.throws(() => formatSubnetEnv({ ...base, network: net("10.0.0.0/16") }), {
    message:
      "Cannot write subnet.env: the IPv4 network is 10.0.0.0/16 but the IPv4 subnet is missing; both must be set when IPv4 is enabled",
  });
  assert.throws(() => formatSubnetEnv({ ...base, ipv6Subnet: net("fd00::/64") }), /IPv6 network is missing/);
  assert.throws(() => formatSubnetEnv({ ...base, mtu: 1450.5 }), /MTU 1450.5 is not a non-negative integer/);
});

test(
  "writeSubnetEnv creates the directory and writes mode 0644 whatever the umask",
  withTempDir(async (dir) => {
    const path = join(dir, "run", "flannel", "subnet.env");
    const old = process.umask(0o077);
    try {
      await writeSubnetEnv(path, "FLANNEL_MTU=1450\n");
    } finally {
      process.umask(old);
    }
    assert.equal(readFileSync(path, "utf8"), "FLANNEL_MTU=1450\n");
    assert.equal(statSync(path).mode & 0o777, 0o644);
    assert.ok(statSync(join(dir, "run", "flannel")).isDirectory());
    assert.deepEqual(readdirSync(join(dir, "run", "flannel")), ["subnet.env"]);
  }),
);

test(
  "writeSubnetEnv keeps an existing file's mode and replaces its content",
  withTempDir(async (dir) => {
    const path = join(dir, "subnet.env");
    writeFileSync(path, "old\n");
    chmodSync(path, 0o600);
    await writeSubnetEnv(path, "new\n");
    assert.equal(readFileSync(path, "utf8"), "new\n");
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ["subnet.env"]);
  }),
);

test(
  "writeSubnetEnv removes its temp file when the rename fails",
  withTempDir(async (dir) => {
    const path = join(dir, "subnet.env");
    mkdirSync(join(path, "occupied"), { recursive: true }); // a non-empty directory where the file should go
    await assert.rejects(writeSubnetEnv(path, "x\n"));
    assert.deepEqual(readdirSync(dir), ["subnet.env"]);
    assert.ok(statSync(path).isDirectory());
  }),
);

test(
  "writeSubnetEnv fails cleanly when the directory cannot be created",
  withTempDir(async (dir) => {
    writeFileSync(join(dir, "file"), "");
    await assert.rejects(writeSubnetEnv(join(dir, "file", "subnet.env"), "x\n"), /ENOTDIR|EEXIST/);
    assert.deepEqual(readdirSync(dir), ["file"]);
  }),
);

test(
  "a concurrent reader sees the old file or the new one, never a partial one",
  withTempDir(async (dir) => {
    const path = join(dir, "subnet.env");
    const versions = ["A", "B"].map((c) => `FLANNEL_NETWORK=${c.repeat(64 * 1024)}\n`);
    await writeSubnetEnv(path, versions[0] as string);
    let done = false;
    let reads = 0;
    const reader = (async () => {
      while (!done) {
        const text = await readFile(path, "utf8");
        assert.ok(versions.includes(text), `read ${text.length} bytes that match no version`);
        reads++;
      }
    })();
    for (let i = 0; i < 40; i++) await writeSubnetEnv(path, versions[i % 2] as string);
    done = true;
    await reader;
    assert.ok(reads > 0);
    assert.deepEqual(readdirSync(dir), ["subnet.env"]);
  }),
);

test(
  "readCidrsFromSubnetFile skips invalid entries with upstream's log text (upstream main_test.go)",
  withTempDir((dir) => {
    const path = join(dir, "subnet.env");
    writeFileSync(
      path,
      "FLANNEL_SUBNET=10.244.1.0/24,not-a-cidr,10.244.2.0/24\nFLANNEL_IPV6_SUBNET=fd00::/64,not-a-cidr,fd01::/64\n",
    );
    const log = new MemoryLogger();
    assert.deepEqual(readCidrsFromSubnetFile(path, "FLANNEL_SUBNET", log).map(String), [
      "10.244.1.0/24",
      "10.244.2.0/24",
    ]);
    assert.deepEqual(log.lines, [
      `E Couldn't parse previous FLANNEL_SUBNET from subnet file at ${path}: invalid CIDR address: not-a-cidr`,
    ]);
    assert.deepEqual(readCidrsFromSubnetFile(path, "FLANNEL_IPV6_SUBNET").map(String), [
      "fd00::/64",
      "fd01::/64",
    ]);
    assert.deepEqual(readCidrsFromSubnetFile(path, "FLANNEL_NETWORK"), []);

    writeFileSync(path, "FLANNEL_SUBNET=not-a-cidr\n");
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_SUBNET"), null);
  }),
);

test(
  "readCidrFromSubnetFile returns the one entry, masked, and null with a log line otherwise",
  withTempDir((dir) => {
    const path = join(dir, "subnet.env");
    writeFileSync(
      path,
      "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_IPV6_NETWORK=fd00::/48,fd01::/48\n",
    );
    const log = new MemoryLogger();
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_SUBNET", log)?.toString(), "10.1.17.0/24");
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_IPV6_NETWORK", log), null);
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_IPV6_SUBNET", log), null);
    assert.deepEqual(log.lines, [
      `E error reading subnet: more than 1 entry found for key: FLANNEL_IPV6_NETWORK in file ${path}`,
      `W no subnet found for key: FLANNEL_IPV6_SUBNET in file: ${path}`,
    ]);
  }),
);

test(
  "a missing subnet file reads as empty; an unreadable one is logged",
  withTempDir((dir) => {
    const log = new MemoryLogger();
    assert.deepEqual(readCidrsFromSubnetFile(join(dir, "nope.env"), "FLANNEL_SUBNET", log), []);
    assert.deepEqual(log.lines, []);
    assert.equal(readCidrFromSubnetFile(join(dir, "nope.env"), "FLANNEL_SUBNET", log), null);
    assert.deepEqual(log.lines, [
      `W no subnet found for key: FLANNEL_SUBNET in file: ${join(dir, "nope.env")}`,
    ]);

    const log2 = new MemoryLogger();
    assert.deepEqual(readCidrsFromSubnetFile(dir, "FLANNEL_SUBNET", log2), []);
    assert.match(log2.text(), /^E Couldn't fetch previous FLANNEL_SUBNET from subnet file at .*: EISDIR/);

    const bad = join(dir, "bad.env");
    writeFileSync(bad, "FLANNEL_SUBNET=10.1.0.0/24\nthis is not dotenv\n");
    const log3 = new MemoryLogger();
    assert.deepEqual(readCidrsFromSubnetFile(bad, "FLANNEL_SUBNET", log3), []);
    assert.deepEqual(log3.lines, [
      `E Couldn't fetch previous FLANNEL_SUBNET from subnet file at ${bad}: Unreadable line 2: "this is not dotenv" is not KEY=value`,
    ]);
  }),
);

test("parseDotenv reads the dotenv forms operators write", () => {
  const text = [
    "# written by hand",
    "",
    "export FLANNEL_NETWORK=10.1.0.0/16",
    "FLANNEL_SUBNET='10.1.5.1/24'",
    'FLANNEL_IPV6_NETWORK="fd00::/48" # v6',
    "FLANNEL_MTU = 1450   # comment",
    "FLANNEL_IPMASQ: true",
    "  INDENTED=yes\r",
    'ESCAPED="a\\"b\\nc"',
    'MULTI="x',
    'y"',
    "HASH=a#b",
    "EMPTY=",
    "DUP=1",
    "DUP=2",
  ].join("\n");
  assert.deepEqual(Object.fromEntries(parseDotenv(text)), {
    FLANNEL_NETWORK: "10.1.0.0/16",
    FLANNEL_SUBNET: "10.1.5.1/24",
    FLANNEL_IPV6_NETWORK: "fd00::/48",
    FLANNEL_MTU: "1450",
    FLANNEL_IPMASQ: "true",
    INDENTED: "yes",
    ESCAPED: 'a"b\nc',
    MULTI: "x\ny",
    HASH: "a#b",
    EMPTY: "",
    DUP: "2",
  });
  assert.throws(() => parseDotenv('A="open'), { message: "Unterminated quoted value for A on line 1" });
});

test(
  "what formatSubnetEnv writes, the readers read back",
  withTempDir(async (dir) => {
    const path = join(dir, "subnet.env");
    await writeSubnetEnv(
      path,
      formatSubnetEnv({
        network: net("10.42.0.0/16"),
        subnet: net("10.42.7.0/24"),
        ipv6Network: net("2001:cafe:42::/56"),
        ipv6Subnet: net("2001:cafe:42:7::/64"),
        mtu: 1450,
        ipMasq: true,
      }),
    );
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_NETWORK")?.toString(), "10.42.0.0/16");
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_SUBNET")?.toString(), "10.42.7.0/24");
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_IPV6_NETWORK")?.toString(), "2001:cafe:42::/56");
    assert.equal(readCidrFromSubnetFile(path, "FLANNEL_IPV6_SUBNET")?.toString(), "2001:cafe:42:7::/64");
  }),
);
