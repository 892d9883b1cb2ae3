import assert from "node:assert/strict";
import { test } from "node:test";

import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import {
  createExtensionBackend,
  decodeExtensionConfig,
  decodeHookData,
  type ExtensionNetwork,
} from "./extension.ts";
import type { HookResult, HookRunner } from "./hook.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

interface Call {
  command: string;
  env: Record<string, string>;
  stdin: string;
}

/** Records hook calls; answers from a table keyed by command. */
class FakeHooks implements HookRunner {
  calls: Call[] = [];
  constructor(private readonly answers: Record<string, HookResult> = {}) {}
  run(command: string, opts: { env: Record<string, string>; stdin: string }): Promise<HookResult> {
    this.calls.push({ command, env: opts.env, stdin: opts.stdin });
    return Promise.resolve(this.answers[command] ?? { output: "" });
  }
}

function config(backend: Record<string, unknown>): NetworkConfig {
  return fakeNetworkConfig("extension", backend);
}

function lease(subnet: string, publicIp: string, type = "extension", backendData?: string): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: null,
      backendType: type,
      ...(backendData === undefined ? {} : { backendData }),
    },
    expiration: null,
    asof: 0,
  };
}

function setup(hooks: FakeHooks) {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", mtu: 1400 });
  const sm = new FakeSubnetManager({ lease: lease("10.244.1.0/24", "192.168.0.1") });
  const log = new MemoryLogger();
  const backend = createExtensionBackend(
    {
      subnetManager: sm,
      kernel,
      logger: log,
      extIface: {
        iface: eth0,
        ifaceAddr: IpAddr.parse("192.168.0.1"),
        // --public-ip is not what the extension backend advertises (spec A4).
        extAddr: IpAddr.parse("203.0.113.1"),
        ifaceV6Addr: null,
        extV6Addr: null,
      },
    },
    { hooks },
  );
  return { kernel, sm, log, backend };
}

test("the four commands decode case-insensitively; a wrong type gives upstream's message", () => {
  assert.deepEqual(decodeExtensionConfig({ prestartupcommand: "a", SubnetAddCommand: "b" }), {
    preStartupCommand: "a",
    postStartupCommand: "",
    subnetAddCommand: "b",
    subnetRemoveCommand: "",
  });
  assert.throws(() => decodeExtensionConfig({ SubnetAddCommand: 5 }), {
    message:
      "error decoding backend config: json: cannot unmarshal number into Go struct field .SubnetAddCommand of type string",
  });
});

test("PreStartup output becomes the lease's BackendData as a Go JSON string; PostStartup gets the lease", async () => {
  const hooks = new FakeHooks({ "pre.sh": { output: 'aa:bb <&> "q"' } });
  const { sm, log, backend } = setup(hooks);
  const net = await backend.registerNetwork(
    config({ PreStartupCommand: "pre.sh", PostStartupCommand: "post.sh $SUBNET" }),
    new AbortController().signal,
  );
  assert.deepEqual(sm.acquired, [
    {
      publicIp: IpAddr.parse("192.168.0.1"),
      publicIpv6: null,
      backendType: "extension",
      backendData: String.raw`"aa:bb \u003c\u0026\u003e \"q\""`,
    },
  ]);
  assert.deepEqual(hooks.calls, [
    { command: "pre.sh", env: {}, stdin: "" },
    {
      command: "post.sh $SUBNET",
      env: {
        NETWORK: "10.244.0.0/16",
        SUBNET: "10.244.1.0/24",
        IPV6SUBNET: "",
        PUBLIC_IP: "192.168.0.1",
        PUBLIC_IPV6: "",
      },
      stdin: "",
    },
  ]);
  assert.equal(net.mtu(), 1400);
  assert.ok(log.lines.includes('I Ran command: pre.sh\n Output: aa:bb <&> "q"'), log.text());
});

test("without hooks nothing runs, BackendData is absent and the skips are logged", async () => {
  const hooks = new FakeHooks();
  const { sm, log, backend } = setup(hooks);
  await backend.registerNetwork(config({}), new AbortController().signal);
  assert.deepEqual(hooks.calls, []);
  assert.equal(sm.acquired[0]?.backendData, undefined);
  assert.ok(log.lines.includes("I No pre startup command configured - skipping"));
  assert.ok(log.lines.includes("I No post startup command configured - skipping"));
});

test("a failing startup hook is fatal with upstream's message", async () => {
  const hooks = new FakeHooks({ "pre.sh x": { output: "nope", error: "exit status 2" } });
  const { sm, backend } = setup(hooks);
  await assert.rejects(
    backend.registerNetwork(config({ PreStartupCommand: "pre.sh x" }), new AbortController().signal),
    { message: "failed to run command: pre.sh x Err: exit status 2 Output: nope" },
  );
  assert.deepEqual(sm.acquired, []);
  const hooks2 = new FakeHooks({ post: { output: "", error: "signal: killed" } });
  await assert.rejects(
    setup(hooks2).backend.registerNetwork(
      config({ PostStartupCommand: "post" }),
      new AbortController().signal,
    ),
    { message: "failed to run command: post Err: signal: killed Output: " },
  );
});

test("peer hooks run per extension lease with SUBNET, PUBLIC_IP and the peer's data on stdin", async () => {
  const hooks = new FakeHooks({ "add $SUBNET": { output: "", error: "exit status 1" } });
  const { sm, log, backend } = setup(hooks);
  const ac = new AbortController();
  const net = (await backend.registerNetwork(
    config({ SubnetAddCommand: "add $SUBNET", SubnetRemoveCommand: "del $SUBNET" }),
    ac.signal,
  )) as ExtensionNetwork;
  const running = net.run(ac.signal);
  try {
    await sm.push({
      snapshot: [
        lease("10.244.1.0/24", "192.168.0.1"),
        lease("10.244.2.0/24", "192.168.0.2", "extension", '"aa:bb"'),
        lease("10.244.3.0/24", "192.168.0.3", "vxlan"),
        lease("10.244.4.0/24", "192.168.0.4", "extension", '{"VNI":1}'),
      ],
    });
    await sm.push({ events: [{ type: "removed", lease: lease("10.244.2.0/24", "0.0.0.0") }] });
    const peerEnv = { SUBNET: "10.244.2.0/24", PUBLIC_IP: "192.168.0.2" };
    assert.deepEqual(hooks.calls, [
      { command: "add $SUBNET", env: peerEnv, stdin: "aa:bb" },
      // The removal carries the stored lease: its type and data are known.
      { command: "del $SUBNET", env: peerEnv, stdin: "aa:bb" },
    ]);
    for (const line of [
      "I Subnet added: 10.244.2.0/24 via 192.168.0.2",
      "E failed to run command: add $SUBNET Err: exit status 1 Output: ",
      "W Ignoring non-extension subnet: type=vxlan",
      "E failed to unmarshal BackendData: json: cannot unmarshal object into Go value of type string",
      "I Subnet removed: 10.244.2.0/24",
      "I Ran command: del $SUBNET\n Output: ",
    ]) {
      assert.ok(log.lines.includes(line), `${line}\n---\n${log.text()}`);
    }
  } finally {
    ac.abort();
    await running;
  }
});

test("peer BackendData decodes like Go's json.Unmarshal into a string", () => {
  assert.deepEqual(decodeHookData(undefined), { data: "" });
  assert.deepEqual(decodeHookData('"x\\u003cy"'), { data: "x<y" });
  assert.deepEqual(decodeHookData("null"), { data: "" });
  assert.deepEqual(decodeHookData("[1]"), {
    error: "json: cannot unmarshal array into Go value of type string",
  });
  assert.ok("error" in decodeHookData("{bad"));
});
