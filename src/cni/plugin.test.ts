import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CniError } from "./cni-error.ts";
import { runCni, type DelegateExecutor, type PluginDeps } from "./plugin.ts";

const root = mkdtempSync(join(tmpdir(), "fts-cni-plugin-"));
after(() => rmSync(root, { recursive: true, force: true }));

const V4 =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const EXPECTED =
  '{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],' +
  '"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}';
const RESULT = '{"cniVersion":"1.0.0","ips":[{"address":"10.1.17.2/24"}]}';

class FakeDelegates implements DelegateExecutor {
  calls: string[] = [];
  addError: Error | undefined;
  delError: Error | undefined;
  async add(type: string, conf: string): Promise<string> {
    this.calls.push(`ADD ${type} ${conf}`);
    if (this.addError) throw this.addError;
    return RESULT;
  }
  async del(type: string, conf: string): Promise<void> {
    this.calls.push(`DEL ${type} ${conf}`);
    if (this.delError) throw this.delError;
  }
}

interface Fixture {
  dir: string;
  subnetFile: string;
  dataDir: string;
  delegates: FakeDelegates;
  log: string[];
  deps: PluginDeps;
  netconf: (extra?: object) => string;
  run: (
    cmd: string,
    stdin: string,
    env?: Record<string, string>,
  ) => Promise<{ stdout: string; exitCode: number; err?: Record<string, unknown> }>;
}

function fixture(subnetEnv: string | null = V4): Fixture {
  const dir = mkdtempSync(join(root, "case-"));
  const subnetFile = join(dir, "subnet.env");
  const dataDir = join(dir, "data", "flannel");
  if (subnetEnv !== null) writeFileSync(subnetFile, subnetEnv);
  const delegates = new FakeDelegates();
  const log: string[] = [];
  const deps: PluginDeps = {
    delegate: delegates,
    stderr: (t) => log.push(t),
    isOwnNetns: (p) => p === "/proc/self/ns/net",
  };
  const netconf = (extra: object = {}): string =>
    JSON.stringify({ name: "cni-flannel", type: "flannel", subnetFile, dataDir, ...extra });
  const run: Fixture["run"] = async (cmd, stdin, env = {}) => {
    const res = await runCni(
      {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: "ctr1",
        CNI_NETNS: "/var/run/netns/pod",
        CNI_IFNAME: "eth0",
        CNI_PATH: "/opt/cni/bin",
        ...env,
      },
      async () => stdin,
      deps,
    );
    return res.exitCode === 0 ? res : { ...res, err: JSON.parse(res.stdout) as Record<string, unknown> };
  };
  return { dir, subnetFile, dataDir, delegates, log, deps, netconf, run };
}

const mode = (p: string): number => statSync(p).mode & 0o777;

test("ADD stores the exact delegate conf (0600 in a 0700 dir) before delegating, prints the result", async () => {
  const f = fixture();
  f.delegates.add = async function (type, conf) {
    // the conf is on disk before the delegate runs (a crash now must still be undoable by DEL)
    assert.equal(readFileSync(join(f.dataDir, "ctr1"), "utf8"), conf);
    return FakeDelegates.prototype.add.call(this, type, conf);
  };
  const res = await f.run("ADD", f.netconf());
  assert.equal(res.exitCode, 0);
  assert.equal(res.stdout, RESULT);
  assert.deepEqual(f.delegates.calls, [`ADD bridge ${EXPECTED}`]);
  assert.equal(readFileSync(join(f.dataDir, "ctr1"), "utf8"), EXPECTED);
  assert.equal(mode(join(f.dataDir, "ctr1")), 0o600);
  assert.equal(mode(f.dataDir), 0o700);
  assert.ok(f.log.join("").includes(`delegateAdd: netconf sent to delegate plugin:\n${EXPECTED}`));
});

test("DEL replays the stored bytes, removes the file; a second DEL succeeds without the delegate (§10.2 17)", async () => {
  const f = fixture();
  assert.equal((await f.run("ADD", f.netconf())).exitCode, 0);
  // subnet.env changing (or vanishing) after ADD does not matter to DEL
  rmSync(f.subnetFile);
  const del = await f.run("DEL", f.netconf(), { CNI_NETNS: "" });
  assert.equal(del.exitCode, 0);
  assert.equal(del.stdout, "");
  assert.equal(f.delegates.calls[1], `DEL bridge ${EXPECTED}`);
  assert.equal(existsSync(join(f.dataDir, "ctr1")), false);
  assert.equal((await f.run("DEL", f.netconf())).exitCode, 0);
  assert.equal(f.delegates.calls.length, 2);
});

test("DEL of an unparseable stored conf succeeds and keeps the file, as upstream", async () => {
  const f = fixture();
  assert.equal((await f.run("ADD", f.netconf())).exitCode, 0);
  writeFileSync(join(f.dataDir, "ctr1"), "{not json");
  assert.equal((await f.run("DEL", f.netconf())).exitCode, 0);
  assert.ok(existsSync(join(f.dataDir, "ctr1")));
  assert.match(f.log.join(""), /failed to parse netconf: invalid JSON at line 1, column 2/);
  assert.equal(f.delegates.calls.length, 1);
});

test("DEL whose delegate fails reports the delegate's error and still removes the file (upstream A14)", async () => {
  const f = fixture();
  await f.run("ADD", f.netconf());
  f.delegates.delError = new CniError(11, "busy", "try again");
  const res = await f.run("DEL", f.netconf());
  assert.deepEqual(res.err, { cniVersion: "1.1.0", code: 11, msg: "busy", details: "try again" });
  assert.equal(existsSync(join(f.dataDir, "ctr1")), false);
});

test("ADD whose delegate fails: its CNI error passes through, a delegated DEL undoes it, the file is removed", async () => {
  const f = fixture();
  f.delegates.addError = new CniError(7, "no IP addresses available in range set");
  const res = await f.run("ADD", f.netconf({ cniVersion: "1.0.0" }));
  assert.equal(res.exitCode, 1);
  assert.deepEqual(res.err, { cniVersion: "1.0.0", code: 7, msg: "no IP addresses available in range set" });
  assert.equal(f.delegates.calls.length, 2);
  assert.match(f.delegates.calls[1] ?? "", /^DEL bridge \{"cniVersion":"1\.0\.0",/);
  assert.deepEqual(readdirSync(f.dataDir), []);
});

test("ADD whose delegate cannot be run: failed to delegate add, nothing left behind", async () => {
  const f = fixture();
  f.delegates.addError = new Error('failed to find plugin "bridge" in path [/opt/cni/bin]');
  const res = await f.run("ADD", f.netconf());
  assert.equal(res.err?.["code"], 999);
  assert.equal(
    res.err?.["msg"],
    'failed to delegate add: failed to find plugin "bridge" in path [/opt/cni/bin]',
  );
  assert.equal(f.delegates.calls.length, 1);
  assert.deepEqual(readdirSync(f.dataDir), []);
});

test("ADD without subnet.env: try again later, says flanneld is not running and where the file should be", async () => {
  const f = fixture(null);
  const res = await f.run("ADD", f.netconf());
  assert.equal(res.err?.["code"], 11);
  const msg = String(res.err?.["msg"]);
  assert.ok(
    msg.startsWith(
      `failed to load flannel 'subnet.env' file: open ${f.subnetFile}: no such file or directory`,
    ),
    msg,
  );
  assert.match(msg, /flanneld is not running on this node/);
  assert.ok(msg.endsWith(". Check the flannel pod log for this node."));
  assert.equal(existsSync(f.dataDir), false);
  assert.equal(f.delegates.calls.length, 0);
});

test("ADD with a half-written subnet.env: upstream's missing-keys message, nothing stored", async () => {
  const f = fixture("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANN");
  const res = await f.run("ADD", f.netconf());
  assert.equal(res.err?.["code"], 999);
  assert.equal(
    res.err?.["msg"],
    `failed to load flannel 'subnet.env' file: ${f.subnetFile} is missing FLANNEL_MTU, FLANNEL_IPMASQ. Check the flannel pod log for this node.`,
  );
  assert.equal(existsSync(f.dataDir), false);
});

test("ADD with a bad delegate: upstream's message, nothing stored", async () => {
  const f = fixture();
  const res = await f.run("ADD", f.netconf({ delegate: { name: "x" } }));
  assert.equal(res.err?.["msg"], "'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  assert.equal(existsSync(f.dataDir), false);
});

test("malformed netconf: decoding failure (6) that says where; wrong field type is a netconf load error", async () => {
  const f = fixture();
  const res = await f.run("ADD", '{"name": "x",, }');
  assert.equal(res.err?.["code"], 6);
  assert.match(
    String(res.err?.["msg"]),
    /^error unmarshall network config: invalid JSON at line 1, column 14 \(offset 13\)/,
  );
  const typed = await f.run("ADD", f.netconf({ dataDir: 7 }));
  assert.equal(typed.err?.["code"], 999);
  assert.equal(
    typed.err?.["msg"],
    'failed to load flannel netconf file: failed to load netconf: "dataDir" must be a string, not the number 7',
  );
  assert.equal(
    (await f.run("DEL", f.netconf({ dataDir: 7 }))).err?.["msg"],
    'failed to load netconf: "dataDir" must be a string, not the number 7',
  );
});

test("network name: missing (7) and invalid (7)", async () => {
  const f = fixture();
  assert.deepEqual((await f.run("ADD", "{}")).err, {
    cniVersion: "1.1.0",
    code: 7,
    msg: "missing network name",
  });
  assert.deepEqual((await f.run("ADD", '{"name":"a b"}')).err, {
    cniVersion: "1.1.0",
    code: 7,
    msg: "invalid characters found in network name",
    details: "a b",
  });
});

test("environment: unknown command (4), missing variables (4), bad container ID and ifname (4)", async () => {
  const f = fixture();
  const unknown = await f.run("ADDD", f.netconf());
  assert.equal(unknown.err?.["code"], 4);
  assert.equal(unknown.err?.["msg"], "unknown CNI_COMMAND: ADDD");
  const missing = await f.run("ADD", f.netconf(), { CNI_NETNS: "", CNI_PATH: "" });
  assert.equal(missing.err?.["msg"], "required env variables [CNI_NETNS,CNI_PATH] missing");
  assert.equal(missing.err?.["code"], 4);
  const badId = await f.run("ADD", f.netconf(), { CNI_CONTAINERID: "../../etc/passwd" });
  assert.deepEqual(badId.err, {
    cniVersion: "1.1.0",
    code: 4,
    msg: "invalid characters in containerID",
    details: "../../etc/passwd",
  });
  const badIf = await f.run("DEL", f.netconf(), { CNI_IFNAME: "eth0:1" });
  assert.equal(badIf.err?.["msg"], "interface name contains / or : or whitespace characters");
  assert.equal(f.delegates.calls.length, 0);
});

test("no CNI_COMMAND: prints what the binary is on stderr and exits 0", async () => {
  const f = fixture();
  const res = await runCni({}, async () => assert.fail("stdin must not be read"), f.deps);
  assert.deepEqual(res, { stdout: "", exitCode: 0 });
  assert.match(
    f.log.join(""),
    /CNI protocol versions supported: 0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/,
  );
});

test("VERSION lists 0.1.0 … 1.1.0 without reading stdin", async () => {
  const f = fixture();
  const res = await runCni({ CNI_COMMAND: "VERSION" }, async () => assert.fail("stdin read"), f.deps);
  assert.deepEqual(res, {
    exitCode: 0,
    stdout:
      '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n',
  });
});

test("version checks: incompatible version (1), CHECK needs 0.4.0+, STATUS needs 1.1.0+", async () => {
  const f = fixture();
  assert.deepEqual((await f.run("ADD", f.netconf({ cniVersion: "2.0.0" }))).err, {
    cniVersion: "2.0.0",
    code: 1,
    msg: "incompatible CNI versions",
    details: 'config is "2.0.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]',
  });
  assert.equal(
    (await f.run("CHECK", f.netconf({ cniVersion: "0.3.1" }))).err?.["msg"],
    "config version does not allow CHECK",
  );
  assert.equal((await f.run("CHECK", f.netconf({ cniVersion: "1.0.0" }))).exitCode, 0);
  assert.equal(
    (await f.run("STATUS", f.netconf({ cniVersion: "1.0.0" }))).err?.["msg"],
    "config version does not allow STATUS",
  );
  assert.deepEqual(await f.run("STATUS", f.netconf({ cniVersion: "1.1.0" }), { CNI_CONTAINERID: "" }), {
    stdout: "",
    exitCode: 0,
  });
  assert.equal(f.delegates.calls.length, 0);
});

test("ADD into the plugin's own netns is refused (8) before anything is done", async () => {
  const f = fixture();
  const res = await f.run("ADD", f.netconf(), { CNI_NETNS: "/proc/self/ns/net" });
  assert.equal(res.err?.["code"], 8);
  assert.equal(existsSync(f.dataDir), false);
});

test("error JSON escapes HTML characters as Go does", async () => {
  const f = fixture();
  f.delegates.addError = new CniError(999, "bad <b>");
  const res = await f.run("ADD", f.netconf());
  assert.match(res.stdout, /\\u003cb\\u003e/);
  assert.match(res.stdout, /^\{\n {4}"cniVersion": "1\.1\.0",\n {4}"code": 999,/);
});
