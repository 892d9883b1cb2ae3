// Randomised tests of the decoders that read what other programs write: etcd's gRPC frames and protobuf
// messages, lease keys and values (written by every other node, upstream's included), a peer's vxlan backend
// data, the network config, the CNI netconf and subnet.env. Each starts from valid inputs and mutates them
// (bytes flipped, inserted, cut, spliced) with a fixed seed, so a failure repeats. The rules they check are the
// ones the callers rely on:
//
// - the lease key and value decoders never throw (a bad lease is skipped, the daemon goes on)
// - the protobuf decoders throw nothing but ProtoError (the watch and the unary calls turn it into a retry)
// - the other parsers throw plain errors with a message, never a TypeError or a RangeError from a missing check
// - the gRPC frame decoder returns the same messages however its input is cut into chunks

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseVxlanBackendData } from "./backend/vxlan/vxlan.ts";
import { parseNetConf } from "./cni/netconf.ts";
import { parseSubnetEnv } from "./cni/subnet-env.ts";
import { parseConfig } from "./config/config.ts";
import { FrameDecoder, frame } from "./subnet/etcd/client/grpc.ts";
import {
  decodeAuthenticateResponse,
  decodeLeaseResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
} from "./subnet/etcd/client/messages.ts";
import { ProtoError, ProtoWriter } from "./subnet/etcd/client/protobuf.ts";
import { decodeLeaseAttrs, parseSubnetKey } from "./subnet/etcd/keys.ts";
import { parseDotenv } from "./subnet/subnet-env.ts";

const ROUNDS = 3000;

/** mulberry32: a small seeded generator, so that every run tries the same inputs. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One to four random edits of `seed`: flip a bit, set a byte, insert or delete bytes, cut, or splice. */
function mutate(rand: () => number, seed: Uint8Array, others: readonly Uint8Array[]): Uint8Array {
  let b = Array.from(seed);
  const at = (): number => Math.floor(rand() * (b.length + 1));
  const edits = 1 + Math.floor(rand() * 4);
  for (let e = 0; e < edits; e++) {
    const kind = Math.floor(rand() * 6);
    if (kind === 0 && b.length > 0) {
      const i = Math.min(at(), b.length - 1);
      b[i] = (b[i] as number) ^ (1 << Math.floor(rand() * 8));
    } else if (kind === 1 && b.length > 0) {
      b[Math.min(at(), b.length - 1)] = Math.floor(rand() * 256);
    } else if (kind === 2) {
      const ins = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Math.floor(rand() * 256));
      b.splice(at(), 0, ...ins);
    } else if (kind === 3) {
      b.splice(at(), 1 + Math.floor(rand() * 8));
    } else if (kind === 4) {
      b = b.slice(0, at());
    } else {
      const other = others[Math.floor(rand() * others.length)] ?? seed;
      const from = Math.floor(rand() * other.length);
      b.splice(at(), 0, ...other.subarray(from, from + 1 + Math.floor(rand() * 16)));
    }
  }
  return Uint8Array.from(b);
}

/** Mutated strings: the edits work on UTF-8 bytes, then decode (invalid sequences become U+FFFD). */
function* mutatedTexts(seed: number, texts: readonly string[]): Generator<string> {
  const rand = rng(seed);
  const bufs = texts.map((t) => Buffer.from(t, "utf8"));
  for (let i = 0; i < ROUNDS; i++) {
    const base = bufs[i % bufs.length] as Buffer;
    yield Buffer.from(mutate(rand, base, bufs)).toString("utf8");
  }
}

function* mutatedBytes(seed: number, bufs: readonly Uint8Array[]): Generator<Uint8Array> {
  const rand = rng(seed);
  for (let i = 0; i < ROUNDS; i++) yield mutate(rand, bufs[i % bufs.length] as Uint8Array, bufs);
}

/** Calls `fn`; an exception must be an Error with a message that is not one of JavaScript's own bug errors. */
function plainErrorOnly(input: unknown, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    const what = `for input ${JSON.stringify(input)}: ${String(err)}`;
    assert.ok(err instanceof Error, `not an Error ${what}`);
    assert.ok(!(err instanceof TypeError) && !(err instanceof RangeError), `a ${err.name} ${what}`);
    assert.ok(!(err instanceof ReferenceError), `a ReferenceError ${what}`);
    assert.notEqual(err.message, "", `an empty message ${what}`);
  }
}

function kv(w: ProtoWriter, key: string, value: string, lease: string, mod: number): void {
  w.bytes(1, key);
  w.int(2, mod);
  w.int(3, mod);
  w.int(4, 1);
  w.bytes(5, value);
  w.int64(6, lease);
}

const LEASE_VALUE =
  '{"PublicIP":"192.168.1.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ce:6a:1b:04:9f:7e"}}';
const LEASE_VALUES = [
  LEASE_VALUE,
  '{"PublicIP":"10.0.0.2","PublicIPv6":"fd00::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ce:6a:1b:04:9f:7e"},"BackendV6Data":{"VNI":1,"VtepMAC":"ce:6a:1b:04:9f:7f"}}',
  '{ "PublicIP" : "10.0.0.3", "BackendType": "host-gw" }',
  '{"PublicIP":"10.0.0.4","BackendType":"udp","BackendData":null}',
];

function messages(): Buffer[] {
  const range = new ProtoWriter();
  range.message(1, (h) => h.int(3, 42));
  range.message(2, (w) =>
    kv(w, "/coreos.com/network/subnets/10.244.1.0-24", LEASE_VALUE, "7587876287018346766", 5),
  );
  range.message(2, (w) => kv(w, "/coreos.com/network/config", '{"Network":"10.244.0.0/16"}', "0", 6));
  range.int(4, 2);
  const watch = new ProtoWriter();
  watch.message(1, (h) => h.int(3, 9));
  watch.int(2, 3);
  watch.int(3, true);
  watch.message(11, (e) =>
    e.message(2, (w) => kv(w, "/coreos.com/network/subnets/10.244.2.0-24", LEASE_VALUE, "0", 8)),
  );
  watch.message(11, (e) => {
    e.int(1, 1);
    e.message(2, (w) => kv(w, "/coreos.com/network/subnets/10.244.3.0-24", "", "0", 9));
  });
  const compacted = new ProtoWriter();
  compacted.message(1, (h) => h.int(3, 12));
  compacted.int(2, 3);
  compacted.int(4, true);
  compacted.int(5, 10);
  compacted.bytes(6, "mvcc: required revision has been compacted");
  const txn = new ProtoWriter();
  txn.message(1, (h) => h.int(3, 43));
  txn.int(2, true);
  const lease = new ProtoWriter();
  lease.int64(2, "12");
  lease.int(3, 86400);
  const auth = new ProtoWriter();
  auth.message(1, (h) => h.int(3, 1));
  auth.bytes(2, "token.1");
  return [range, watch, compacted, txn, lease, auth].map((w) => Buffer.from(w.finish()));
}

describe("decoders of what others write, with randomised input", () => {
  it("lease values: never throws, whatever etcd holds", () => {
    for (const text of mutatedTexts(1, LEASE_VALUES)) {
      const r = decodeLeaseAttrs(text);
      if (!r.ok) assert.notEqual(r.error, "", `no message for ${JSON.stringify(text)}`);
    }
    assert.equal(decodeLeaseAttrs(LEASE_VALUE).ok, true);
  });

  it("lease keys: a lease key or null, never a throw", () => {
    const keys = ["10.244.1.0-24", "10.12.13.0-24&fd00:12:13::-56", "0.0.0.0-0&fd00:12:13::-56"];
    for (const k of mutatedTexts(2, keys)) {
      const sk = parseSubnetKey(k);
      if (sk !== null) assert.ok(sk.subnet.prefixLen <= 32, k);
    }
    assert.notEqual(parseSubnetKey(keys[1] as string), null);
  });

  it("a peer's vxlan backend data: a VNI and MAC, or a plain error", () => {
    const data = ['{"VNI":1,"VtepMAC":"ce:6a:1b:04:9f:7e"}', '{"vni":4096,"vtepmac":"CE-6A-1B-04-9F-7E"}'];
    for (const text of mutatedTexts(3, data)) {
      plainErrorOnly(text, () => {
        const { mac } = parseVxlanBackendData(text);
        assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      });
    }
  });

  it("etcd's protobuf responses: decoded, or a ProtoError", () => {
    const seeds = messages();
    const decoders = [
      decodeRangeResponse,
      decodeWatchResponse,
      decodeTxnResponse,
      decodeLeaseResponse,
      decodeAuthenticateResponse,
    ];
    let decoded = 0;
    for (const b of mutatedBytes(4, seeds)) {
      let any = false;
      for (const decode of decoders) {
        try {
          decode(b);
          any = true;
        } catch (err) {
          assert.ok(
            err instanceof ProtoError,
            `${decode.name}(${Buffer.from(b).toString("hex")}): ${String(err)}`,
          );
        }
      }
      if (any) decoded++;
    }
    // Not every mutation is fatal: many inputs still decode, so the paths past the errors run too.
    assert.ok(decoded > ROUNDS / 10, `only ${decoded} of ${ROUNDS} decoded`);
  });

  it("gRPC frames: the same messages however the stream is cut", () => {
    const rand = rng(5);
    const payloads = messages();
    for (let i = 0; i < 300; i++) {
      const picked = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => {
        return payloads[Math.floor(rand() * payloads.length)] as Buffer;
      });
      const stream = Buffer.concat(picked.map((p) => frame(p)));
      const d = new FrameDecoder();
      const out: Buffer[] = [];
      for (let pos = 0; pos < stream.length;) {
        const n = 1 + Math.floor(rand() * 64);
        out.push(...d.push(stream.subarray(pos, pos + n)));
        pos += n;
      }
      assert.deepEqual(
        out.map((m) => m.toString("hex")),
        picked.map((m) => m.toString("hex")),
      );
      assert.equal(d.buffered, 0);
    }
  });

  it("the network config: a config or a plain error", () => {
    const configs = [
      '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
      '{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.10.0","Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"DirectRouting":true}}',
      '{"EnableIPv6":true,"EnableIPv4":true,"Network":"10.42.0.0/16","IPv6Network":"2001:cafe:42::/56","Backend":{"Type":"host-gw"}}',
      '{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":8285}}',
    ];
    for (const text of mutatedTexts(6, configs)) plainErrorOnly(text, () => parseConfig(text));
  });

  it("the CNI netconf: a netconf or a plain error", () => {
    const confs = [
      '{"name":"cbr0","cniVersion":"0.3.1","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}',
      '{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":"/run/flannel/subnet.env","dataDir":"/var/lib/cni/flannel","runtimeConfig":{"portMappings":[]},"capabilities":{"portMappings":true}}',
    ];
    for (const text of mutatedTexts(7, confs)) plainErrorOnly(text, () => parseNetConf(text));
  });

  it("subnet.env: values or a plain error, for the CNI plugin and for flanneld", () => {
    const envs = [
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
      "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_SUBNET=10.42.0.1/24\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
    ];
    for (const text of mutatedTexts(8, envs)) {
      plainErrorOnly(text, () => parseSubnetEnv(text, "/run/flannel/subnet.env"));
      plainErrorOnly(text, () => parseDotenv(text));
    }
  });
});
