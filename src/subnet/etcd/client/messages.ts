// The etcd v3 API messages flanneld uses (etcdserverpb/rpc.proto and mvccpb/kv.proto of etcd 3.4, field
// numbers as there), encoded and decoded with ./protobuf.ts. Only the fields flanneld reads or writes.

import { asBuffer, ProtoReader, ProtoWriter } from "./protobuf.ts";

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The etcd lease ID as a decimal string; "0" when the key has no lease. */
  lease: string;
}

export interface RangeResponse {
  revision: number;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface WatchEvent {
  type: "Put" | "Delete";
  kv: KeyValue;
}

export interface WatchResponse {
  revision: number;
  watchId: number;
  created: boolean;
  canceled: boolean;
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
  events: WatchEvent[];
}

export interface CompareVersion {
  key: Uint8Array;
  /** Compare.CompareTarget VERSION with result EQUAL. */
  versionEquals: number;
}

export interface PutOp {
  key: Uint8Array;
  value: Uint8Array;
  lease?: string;
}

/** One key deleted inside a transaction. */
export interface DeleteOp {
  deleteKey: Uint8Array;
}

// ---- requests ----

export interface RangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array | undefined;
  /** Only keys, no values (RangeRequest.keys_only). */
  keysOnly?: boolean;
  /** Only keys created at or after this revision (RangeRequest.min_create_revision); 0 = no limit. */
  minCreateRevision?: number;
}

export function encodeRange(req: RangeRequest): Buffer {
  const w = new ProtoWriter(req.key.length + 24 + (req.rangeEnd?.length ?? 0));
  w.bytes(1, req.key);
  if (req.rangeEnd !== undefined) w.bytes(2, req.rangeEnd);
  if (req.keysOnly === true) w.int(8, true);
  if (req.minCreateRevision !== undefined) w.int(12, req.minCreateRevision);
  return w.finish();
}

function writePut(w: ProtoWriter, req: PutOp): void {
  w.bytes(1, req.key);
  w.bytes(2, req.value);
  if (req.lease !== undefined) w.int64(3, req.lease);
}

export function encodePut(req: PutOp): Buffer {
  const w = new ProtoWriter(req.key.length + req.value.length + 24);
  writePut(w, req);
  return w.finish();
}

export function encodeDeleteRange(req: { key: Uint8Array; rangeEnd?: Uint8Array | undefined }): Buffer {
  return encodeRange(req);
}

/** A TxnRequest: if every compare holds, the puts and deletes run (`success`); otherwise nothing. */
export function encodeTxn(req: {
  compare: readonly CompareVersion[];
  success: readonly (PutOp | DeleteOp)[];
}): Buffer {
  const w = new ProtoWriter();
  for (const c of req.compare) {
    w.message(1, (cw) => {
      cw.int(1, 0); // result EQUAL
      cw.int(2, 0); // target VERSION
      cw.bytes(3, c.key);
      cw.int(4, c.versionEquals);
    });
  }
  for (const p of req.success) {
    // RequestOp: request_put = 2, request_delete_range = 3 (a DeleteRangeRequest with only its key)
    if ("deleteKey" in p) w.message(2, (op) => op.message(3, (dw) => dw.bytes(1, p.deleteKey)));
    else w.message(2, (op) => op.message(2, (pw) => writePut(pw, p)));
  }
  return w.finish();
}

export function encodeLeaseGrant(ttlSec: number): Buffer {
  const w = new ProtoWriter(16);
  w.int(1, ttlSec);
  return w.finish();
}

/** LeaseRevokeRequest and LeaseTimeToLiveRequest both carry the ID as field 1. */
export function encodeLeaseId(id: string): Buffer {
  const w = new ProtoWriter(16);
  w.int64(1, id);
  return w.finish();
}

export function encodeAuthenticate(name: string, password: string): Buffer {
  const w = new ProtoWriter();
  w.bytes(1, name);
  w.bytes(2, password);
  return w.finish();
}

export function encodeWatchCreate(req: {
  key: Uint8Array;
  rangeEnd?: Uint8Array | undefined;
  startRevision: number;
}): Buffer {
  const w = new ProtoWriter();
  w.message(1, (c) => {
    c.bytes(1, req.key);
    if (req.rangeEnd !== undefined) c.bytes(2, req.rangeEnd);
    c.int(3, req.startRevision);
  });
  return w.finish();
}

export function encodeWatchCancel(watchId: number): Buffer {
  const w = new ProtoWriter(16);
  w.message(2, (c) => c.int(1, watchId));
  return w.finish();
}

// ---- responses ----

/** ResponseHeader.revision. */
function readHeaderRevision(r: ProtoReader): number {
  let revision = 0;
  while (r.next()) {
    if (r.field === 3) revision = r.int();
    else r.skip();
  }
  return revision;
}

export function decodeKeyValue(r: ProtoReader): KeyValue {
  const kv: KeyValue = {
    key: EMPTY,
    value: EMPTY,
    createRevision: 0,
    modRevision: 0,
    version: 0,
    lease: "0",
  };
  while (r.next()) {
    switch (r.field) {
      case 1:
        kv.key = asBuffer(r.bytes());
        break;
      case 2:
        kv.createRevision = r.int();
        break;
      case 3:
        kv.modRevision = r.int();
        break;
      case 4:
        kv.version = r.int();
        break;
      case 5:
        kv.value = asBuffer(r.bytes());
        break;
      case 6:
        kv.lease = r.int64();
        break;
      default:
        r.skip();
    }
  }
  return kv;
}

const EMPTY = Buffer.alloc(0);

export function decodeRangeResponse(b: Uint8Array): RangeResponse {
  const r = new ProtoReader(b);
  const out: RangeResponse = { revision: 0, kvs: [], more: false, count: 0 };
  while (r.next()) {
    switch (r.field) {
      case 1:
        out.revision = readHeaderRevision(r.message());
        break;
      case 2:
        out.kvs.push(decodeKeyValue(r.message()));
        break;
      case 3:
        out.more = r.bool();
        break;
      case 4:
        out.count = r.int();
        break;
      default:
        r.skip();
    }
  }
  return out;
}

/** PutResponse, DeleteRangeResponse, LeaseRevokeResponse: only the header's revision is read. */
export function decodeHeaderOnly(b: Uint8Array): { revision: number } {
  const r = new ProtoReader(b);
  let revision = 0;
  while (r.next()) {
    if (r.field === 1) revision = readHeaderRevision(r.message());
    else r.skip();
  }
  return { revision };
}

export function decodeTxnResponse(b: Uint8Array): { revision: number; succeeded: boolean } {
  const r = new ProtoReader(b);
  const out = { revision: 0, succeeded: false };
  while (r.next()) {
    if (r.field === 1) out.revision = readHeaderRevision(r.message());
    else if (r.field === 2) out.succeeded = r.bool();
    else r.skip();
  }
  return out;
}

/**
 * LeaseGrantResponse (ID, TTL, string error = 4) and LeaseTimeToLiveResponse (ID, TTL, int64 grantedTTL =
 * 4) share fields 2 and 3; field 4 is read as the error only when it is a string.
 */
export function decodeLeaseResponse(b: Uint8Array): { id: string; ttl: number; error: string } {
  const r = new ProtoReader(b);
  const out = { id: "0", ttl: 0, error: "" };
  while (r.next()) {
    switch (r.field) {
      case 2:
        out.id = r.int64();
        break;
      case 3:
        out.ttl = r.int();
        break;
      case 4:
        if (r.wire === 2) out.error = r.string();
        else r.skip();
        break;
      default:
        r.skip();
    }
  }
  return out;
}

export function decodeAuthenticateResponse(b: Uint8Array): { token: string } {
  const r = new ProtoReader(b);
  let token = "";
  while (r.next()) {
    if (r.field === 2) token = r.string();
    else r.skip();
  }
  return { token };
}

export function decodeWatchResponse(b: Uint8Array): WatchResponse {
  const r = new ProtoReader(b);
  const out: WatchResponse = {
    revision: 0,
    watchId: 0,
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: "",
    fragment: false,
    events: [],
  };
  while (r.next()) {
    switch (r.field) {
      case 1:
        out.revision = readHeaderRevision(r.message());
        break;
      case 2:
        out.watchId = r.int();
        break;
      case 3:
        out.created = r.bool();
        break;
      case 4:
        out.canceled = r.bool();
        break;
      case 5:
        out.compactRevision = r.int();
        break;
      case 6:
        out.cancelReason = r.string();
        break;
      case 7:
        out.fragment = r.bool();
        break;
      case 11:
        out.events.push(decodeEvent(r.message()));
        break;
      default:
        r.skip();
    }
  }
  return out;
}

function decodeEvent(r: ProtoReader): WatchEvent {
  let type: WatchEvent["type"] = "Put";
  let kv: KeyValue | undefined;
  while (r.next()) {
    if (r.field === 1) type = r.uint() === 1 ? "Delete" : "Put";
    else if (r.field === 2) kv = decodeKeyValue(r.message());
    else r.skip();
  }
  return { type, kv: kv ?? decodeKeyValue(new ProtoReader(EMPTY)) };
}
