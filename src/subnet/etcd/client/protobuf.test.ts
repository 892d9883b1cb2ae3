import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameDecoder, frame, normalizeEndpoint } from "./grpc.ts";
import { decodeLeaseResponse, decodeRangeResponse, decodeWatchResponse, encodeTxn } from "./messages.ts";
import { ProtoError, ProtoReader, ProtoWriter } from "./protobuf.ts";

test("varints: small, 2^53-1, 63-bit IDs as strings, negative int64 (ten bytes)", () => {
  const w = new ProtoWriter(1);
  w.int(1, 150);
  w.int(2, Number.MAX_SAFE_INTEGER);
  w.int64(3, "7587876287018346766");
  w.int(4, -1);
  w.int64(5, "-5");
  w.int(6, 0); // proto3: left out
  w.int64(7, "0");
  w.bytes(8, "");
  const buf = w.finish();
  assert.equal(buf.subarray(0, 3).toString("hex"), "089601"); // the protobuf docs' example
  const r = new ProtoReader(buf);
  const got: [number, string][] = [];
  while (r.next()) got.push([r.field, r.field === 3 || r.field === 5 ? r.int64() : String(r.int())]);
  assert.deepEqual(got, [
    [1, "150"],
    [2, String(Number.MAX_SAFE_INTEGER)],
    [3, "7587876287018346766"],
    [4, "-1"],
    [5, "-5"],
  ]);
});

test("unknown fields of every wire type are skipped; truncated input is an error, not a wrong value", () => {
  // field 9 fixed64, field 10 fixed32, field 11 bytes, field 12 varint, then field 2 = 7
  const buf = Buffer.from("4901020304050607085502020202" + "5a03616263" + "60ff01" + "1007", "hex");
  const r = new ProtoReader(buf);
  let two = 0;
  while (r.next()) {
    if (r.field === 2) two = r.int();
    else r.skip();
  }
  assert.equal(two, 7);
  for (const bad of ["0a05616263", "08ff", "0a", "00"]) {
    assert.throws(() => {
      const rr = new ProtoReader(Buffer.from(bad, "hex"));
      while (rr.next()) rr.skip();
    }, ProtoError);
  }
});

test("messages: a Range response, a Watch response with events, a TimeToLive of an expired lease", () => {
  const kv = (w: ProtoWriter, key: string, lease: string, mod: number): void => {
    w.bytes(1, key);
    w.int(2, mod);
    w.int(3, mod);
    w.int(4, 1);
    w.bytes(5, `v-${key}`);
    w.int64(6, lease);
  };
  const range = new ProtoWriter();
  range.message(1, (h) => h.int(3, 42));
  range.message(2, (w) => kv(w, "/a", "7587876287018346766", 5));
  range.message(2, (w) => kv(w, "/b", "0", 6));
  range.int(4, 2);
  const rr = decodeRangeResponse(range.finish());
  assert.equal(rr.revision, 42);
  assert.equal(rr.count, 2);
  assert.deepEqual(
    rr.kvs.map((k) => [k.key.toString(), k.value.toString(), k.lease, k.modRevision]),
    [
      ["/a", "v-/a", "7587876287018346766", 5],
      ["/b", "v-/b", "0", 6],
    ],
  );

  const watch = new ProtoWriter();
  watch.message(1, (h) => h.int(3, 9));
  watch.int(2, 3);
  watch.message(11, (e) => e.message(2, (w) => kv(w, "/x", "0", 8)));
  watch.message(11, (e) => {
    e.int(1, 1);
    e.message(2, (w) => kv(w, "/y", "0", 9));
  });
  const wr = decodeWatchResponse(watch.finish());
  assert.equal(wr.watchId, 3);
  assert.deepEqual(
    wr.events.map((e) => [e.type, e.kv.key.toString()]),
    [
      ["Put", "/x"],
      ["Delete", "/y"],
    ],
  );

  const ttl = new ProtoWriter();
  ttl.int64(2, "12");
  ttl.int(3, -1);
  ttl.int(4, 600); // grantedTTL: an int64, not the LeaseGrant error string
  assert.deepEqual(decodeLeaseResponse(ttl.finish()), { id: "12", ttl: -1, error: "" });
});

test("encodeTxn writes Compare{VERSION EQUAL 0} and RequestOp{request_put}", () => {
  const buf = encodeTxn({
    compare: [{ key: Buffer.from("/k"), versionEquals: 0 }],
    success: [{ key: Buffer.from("/k"), value: Buffer.from("v"), lease: "5" }],
  });
  // compare: field 1 { key=3:"/k" }; success: field 2 { request_put=2 { key, value, lease } }
  assert.equal(buf.toString("hex"), "0a041a022f6b" + "120b1209" + "0a022f6b" + "120176" + "1805");
});

test("encodeTxn writes a delete as RequestOp{request_delete_range}", () => {
  const buf = encodeTxn({
    compare: [],
    success: [{ deleteKey: Buffer.from("/k") }, { key: Buffer.from("/j"), value: Buffer.from("v") }],
  });
  // success: field 2 { request_delete_range=3 { key=1:"/k" } }, then field 2 { request_put=2 { key, value } }
  assert.equal(buf.toString("hex"), "1206" + "1a04" + "0a022f6b" + "1209" + "1207" + "0a022f6a" + "120176");
});

test("FrameDecoder: messages split across chunks and several in one chunk", () => {
  const a = frame(Buffer.from("hello"));
  const b = frame(Buffer.alloc(0));
  const c = frame(Buffer.alloc(70_000, 1));
  const all = Buffer.concat([a, b, c]);
  for (const cut of [1, 3, 5, 9, 11, 500, all.length - 1]) {
    const d = new FrameDecoder();
    const out = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
    assert.deepEqual(
      out.map((m) => m.length),
      [5, 0, 70_000],
      `cut at ${cut}`,
    );
    assert.equal(d.buffered, 0);
  }
  assert.throws(() => new FrameDecoder().push(Buffer.from([1, 0, 0, 0, 0])), /compressed/);
});

test("normalizeEndpoint: schemes kept, bare host:port gets http or https, other schemes refused", () => {
  assert.equal(normalizeEndpoint("http://127.0.0.1:2379", false), "http://127.0.0.1:2379");
  assert.equal(normalizeEndpoint("https://etcd.local:2379/", true), "https://etcd.local:2379");
  assert.equal(normalizeEndpoint("10.0.0.1:2379", false), "http://10.0.0.1:2379");
  assert.equal(normalizeEndpoint("10.0.0.1:2379", true), "https://10.0.0.1:2379");
  assert.throws(() => normalizeEndpoint("unix:///run/etcd.sock", false), /use http:\/\/host:port/);
});
