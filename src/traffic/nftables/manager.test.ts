import assert from "node:assert/strict";
import { test } from "node:test";

import { IpNet } from "../../ip/net.ts";
import type { CommandResult, CommandRunner } from "../../kernel/command.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { NftablesManager } from "./manager.ts";
import { deleteTableScript, forwardScript, masqScript } from "./script.ts";

const N = IpNet.parse("10.10.0.0/16");
const P = IpNet.parse("10.10.1.0/24");

/** Records nft invocations; `answer` decides the result of each. */
class RecordingNft implements CommandRunner {
  readonly calls: { file: string; args: string[]; stdin: string }[] = [];
  answer: (args: readonly string[], stdin: string) => CommandResult | "ENOENT" = () => ({
    code: 0,
    stdout: "",
    stderr: "",
  });
  async run(file: string, args: readonly string[], opts: { stdin?: string } = {}): Promise<CommandResult> {
    this.calls.push({ file, args: [...args], stdin: opts.stdin ?? "" });
    const a = this.answer(args, opts.stdin ?? "");
    if (a === "ENOENT") throw Object.assign(new Error("spawn nft ENOENT"), { code: "ENOENT" });
    return a;
  }
}

const masqOpts = (signal: AbortSignal) => ({
  network: N,
  subnet: P,
  prevNetwork: null,
  prevSubnet: null,
  ipv6Network: null,
  ipv6Subnet: null,
  prevIpv6Network: null,
  prevIpv6Subnet: null,
  signal,
});

test("masqScript holds exactly the upstream rules (spec §6.2)", () => {
  assert.equal(
    masqScript({ network: N, subnet: P, fullyRandom: true }),
    'add table ip flannel-ipv4 { comment "rules for flannel-ipv4" ; }\n' +
      "add chain ip flannel-ipv4 postrtg { type nat hook postrouting priority srcnat ; " +
      'comment "chain to manage traffic masquerading by flannel" ; }\n' +
      "flush chain ip flannel-ipv4 postrtg\n" +
      "add rule ip flannel-ipv4 postrtg meta mark 0x4000 return\n" +
      "add rule ip flannel-ipv4 postrtg ip saddr 10.10.1.0/24 ip daddr 10.10.0.0/16 return\n" +
      "add rule ip flannel-ipv4 postrtg ip saddr 10.10.0.0/16 ip daddr 10.10.1.0/24 return\n" +
      "add rule ip flannel-ipv4 postrtg ip saddr != 10.10.1.0/24 ip daddr 10.10.0.0/16 return\n" +
      "add rule ip flannel-ipv4 postrtg ip saddr 10.10.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random\n" +
      "add rule ip flannel-ipv4 postrtg ip saddr != 10.10.0.0/16 ip daddr 10.10.0.0/16 masquerade fully-random\n",
  );
  const v6 = masqScript({
    network: IpNet.parse("fc00::/48"),
    subnet: IpNet.parse("fc00:0:0:1::/64"),
    fullyRandom: false,
  });
  assert.match(v6, /^add table ip6 flannel-ipv6 /);
  assert.match(
    v6,
    /add rule ip6 flannel-ipv6 postrtg ip6 saddr fc00::\/48 ip6 daddr != ff00::\/8 masquerade\n/,
  );
  assert.doesNotMatch(v6, /fully-random/);
});

test("forwardScript accepts the cluster network both ways", () => {
  const s = forwardScript(N);
  assert.match(
    s,
    /add chain ip flannel-ipv4 forward \{ type filter hook forward priority filter ; comment "chain to accept flannel traffic" ; \}\n/,
  );
  assert.match(
    s,
    /flush chain ip flannel-ipv4 forward\nadd rule ip flannel-ipv4 forward ip saddr 10\.10\.0\.0\/16 accept\nadd rule ip flannel-ipv4 forward ip daddr 10\.10\.0\.0\/16 accept\n$/,
  );
});

test("init creates both tables; masq probes fully-random once with --check", async () => {
  const nft = new RecordingNft();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new NftablesManager({ commands: nft, logger: log });
  await m.init(ac.signal);
  assert.deepEqual(
    nft.calls.map((c) => c.stdin.split(" ").slice(0, 4).join(" ")),
    ["add table ip flannel-ipv4", "add table ip6 flannel-ipv6"],
  );
  await m.setupAndEnsureMasqRules({
    ...masqOpts(ac.signal),
    ipv6Network: IpNet.parse("fc00::/48"),
    ipv6Subnet: IpNet.parse("fc00:0:0:1::/64"),
  });
  const probes = nft.calls.filter((c) => c.args[0] === "--check");
  assert.equal(probes.length, 1);
  assert.match(probes[0]!.stdin, /masqueradeTest .* ip saddr != 127\.0\.0\.1 masquerade fully-random/s);
  assert.ok(nft.calls.some((c) => c.stdin === masqScript({ network: N, subnet: P, fullyRandom: true })));
  assert.ok(log.lines.includes("I nftables: setting up masking rules (ipv4)"));
  assert.ok(log.lines.includes("I nftables: setting up masking rules (ipv6)"));
});

test("fully-random falls back to plain masquerade when the probe fails or it is disabled", async () => {
  for (const disabled of [false, true]) {
    const nft = new RecordingNft();
    nft.answer = (args) =>
      args[0] === "--check"
        ? { code: 1, stdout: "", stderr: "Error: syntax error" }
        : { code: 0, stdout: "", stderr: "" };
    const log = new MemoryLogger();
    const m = new NftablesManager({ commands: nft, logger: log, randomFullyDisable: disabled });
    await m.setupAndEnsureMasqRules(masqOpts(new AbortController().signal));
    const applied = nft.calls.filter((c) => c.args[0] !== "--check").map((c) => c.stdin);
    assert.deepEqual(applied, [masqScript({ network: N, subnet: P, fullyRandom: false })]);
    assert.equal(log.lines.includes("W nftables: random fully unsupported"), !disabled);
  }
});

test("errors carry upstream's texts", async () => {
  const nft = new RecordingNft();
  nft.answer = () => ({
    code: 1,
    stdout: "",
    stderr: "Error: Could not process rule: Operation not permitted\n",
  });
  const log = new MemoryLogger();
  const ac = new AbortController();
  const m = new NftablesManager({ commands: nft, logger: log });
  await assert.rejects(m.init(ac.signal), {
    message:
      "nftables: couldn't initialise table flannel-ipv4: Error: Could not process rule: Operation not permitted",
  });
  await assert.rejects(
    m.setupAndEnsureMasqRules(masqOpts(ac.signal)),
    /^FlannelError: nftables: couldn't setup masq rules: Error: Could not/,
  );
  await m.setupAndEnsureForwardRules({
    network: N,
    ipv6Network: IpNet.parse("fc00::/48"),
    signal: ac.signal,
  });
  assert.match(log.text(), /E nftables: couldn't setup forward rules: Error: Could not process rule/);
  assert.match(
    log.text(),
    /E nftables: couldn't setup forward rules \(ipv6\): Error: Could not process rule/,
  );
  assert.ok(log.lines.includes("I Changing default FORWARD chain policy to ACCEPT (ipv6)"));
  await assert.rejects(m.cleanUp(), {
    message: "nftables: couldn't delete table: Error: Could not process rule: Operation not permitted",
  });

  nft.answer = () => "ENOENT";
  await assert.rejects(m.init(ac.signal), {
    message: 'no nftables support: exec: "nft": executable file not found in $PATH',
  });
});

test("cleanUp deletes both tables and tolerates a missing nft", async () => {
  const nft = new RecordingNft();
  const m = new NftablesManager({ commands: nft, logger: new MemoryLogger() });
  await m.cleanUp();
  assert.deepEqual(
    nft.calls.map((c) => c.stdin),
    [deleteTableScript(4), deleteTableScript(6)],
  );
  nft.answer = () => "ENOENT";
  await m.cleanUp();
});
