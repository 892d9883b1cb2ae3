// A small etcd v3 client: the KV, Lease, Watch and Auth calls flanneld makes, over ./grpc.ts. Why not
// the etcd3 package: docs/adr/0004-etcd-client.md.
//
// - Every unary call has a deadline (`grpc-timeout` and a local timer).
// - With a username, a token from Auth/Authenticate goes with every call (`token` metadata, as etcd's Go
//   client sends it); when etcd says the token is invalid (expired, or etcd restarted) it is fetched
//   again and the call retried once.
// - A watch is one HTTP/2 stream with one WatchCreateRequest; its responses and its end are handed to
//   the caller, who decides how to resume (the registry's watch loop).

import { GrpcChannel, GrpcError, Status, type Call, type TlsFiles } from "./grpc.ts";
import {
  decodeAuthenticateResponse,
  decodeHeaderOnly,
  decodeLeaseResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
  encodeAuthenticate,
  encodeDeleteRange,
  encodeLeaseGrant,
  encodeLeaseId,
  encodePut,
  encodeRange,
  encodeTxn,
  encodeWatchCancel,
  encodeWatchCreate,
  type CompareVersion,
  type DeleteOp,
  type PutOp,
  type RangeRequest,
  type RangeResponse,
  type WatchResponse,
} from "./messages.ts";

export { GrpcError, Status } from "./grpc.ts";
export type { KeyValue, RangeResponse, WatchEvent, WatchResponse } from "./messages.ts";

const KV = "/etcdserverpb.KV/";
const LEASE = "/etcdserverpb.Lease/";

export interface EtcdClientOptions {
  endpoints: readonly string[];
  tls?: TlsFiles | undefined;
  auth?: { username: string; password: string } | undefined;
}

export interface WatchHandlers {
  onResponse: (res: WatchResponse) => void;
  /** The stream ended: `err` says why (null: etcd closed it cleanly). Not called after cancel(). */
  onEnd: (err: GrpcError | null) => void;
}

export interface Watch {
  /** Asks etcd to cancel the watch and closes the stream. */
  cancel(): void;
}

/** True for the error etcd gives when a token expired or was never valid. */
function isInvalidToken(err: unknown): boolean {
  return (
    err instanceof GrpcError &&
    err.code === Status.UNAUTHENTICATED &&
    /invalid auth token|user name is empty/.test(err.message)
  );
}

export class EtcdClient {
  private readonly channel: GrpcChannel;
  private token: Promise<string> | undefined;

  constructor(private readonly opts: EtcdClientOptions) {
    this.channel = new GrpcChannel(opts.endpoints, opts.tls);
  }

  get endpoints(): string[] {
    return this.channel.endpointUrls;
  }

  close(): void {
    this.channel.close();
  }

  private async metadata(deadline: number): Promise<Record<string, string> | undefined> {
    const auth = this.opts.auth;
    if (auth === undefined) return undefined;
    if (this.token === undefined) {
      const p = this.channel
        .unary("/etcdserverpb.Auth/Authenticate", encodeAuthenticate(auth.username, auth.password), {
          deadline,
        })
        .then((b) => decodeAuthenticateResponse(b).token);
      this.token = p;
      // A failed authentication is not cached: the next call tries again.
      p.catch(() => {
        if (this.token === p) this.token = undefined;
      });
    }
    return { token: await this.token };
  }

  /** Runs `call` with the auth metadata; when etcd rejects the token, fetches a new one and runs it again once. */
  private async withToken<T>(
    deadline: number,
    call: (md: Record<string, string> | undefined) => Promise<T>,
  ): Promise<T> {
    try {
      return await call(await this.metadata(deadline));
    } catch (err) {
      if (this.opts.auth === undefined || !isInvalidToken(err)) throw err;
      this.token = undefined;
      return call(await this.metadata(deadline));
    }
  }

  private unary(path: string, message: Uint8Array, deadline: number): Promise<Buffer> {
    return this.withToken(deadline, (metadata) => this.channel.unary(path, message, { deadline, metadata }));
  }

  async range(req: RangeRequest, deadline: number): Promise<RangeResponse> {
    return decodeRangeResponse(await this.unary(`${KV}Range`, encodeRange(req), deadline));
  }

  async put(req: PutOp, deadline: number): Promise<{ revision: number }> {
    return decodeHeaderOnly(await this.unary(`${KV}Put`, encodePut(req), deadline));
  }

  async deleteRange(
    req: { key: Uint8Array; rangeEnd?: Uint8Array | undefined },
    deadline: number,
  ): Promise<{ revision: number }> {
    return decodeHeaderOnly(await this.unary(`${KV}DeleteRange`, encodeDeleteRange(req), deadline));
  }

  async txn(
    req: { compare: readonly CompareVersion[]; success: readonly (PutOp | DeleteOp)[] },
    deadline: number,
  ): Promise<{ revision: number; succeeded: boolean }> {
    return decodeTxnResponse(await this.unary(`${KV}Txn`, encodeTxn(req), deadline));
  }

  async leaseGrant(ttlSec: number, deadline: number): Promise<{ id: string; ttlSec: number }> {
    const res = decodeLeaseResponse(
      await this.unary(`${LEASE}LeaseGrant`, encodeLeaseGrant(ttlSec), deadline),
    );
    if (res.error !== "") throw new GrpcError(Status.UNKNOWN, res.error, this.endpoints.join(","));
    return { id: res.id, ttlSec: res.ttl };
  }

  async leaseRevoke(id: string, deadline: number): Promise<void> {
    await this.unary(`${LEASE}LeaseRevoke`, encodeLeaseId(id), deadline);
  }

  /** Seconds left on the lease (-1 when it has expired or does not exist, as etcd says). */
  async leaseTimeToLive(id: string, deadline: number): Promise<{ ttlSec: number }> {
    const res = decodeLeaseResponse(await this.unary(`${LEASE}LeaseTimeToLive`, encodeLeaseId(id), deadline));
    return { ttlSec: res.ttl };
  }

  /**
   * Opens a watch of `key` (or the range [key, rangeEnd)) from `startRevision` (0: from now). Resolves
   * once the stream is open; rejects when it cannot be opened (no endpoint reachable, auth failed).
   */
  async watch(
    req: { key: Uint8Array; rangeEnd?: Uint8Array | undefined; startRevision: number },
    handlers: WatchHandlers,
    openDeadline: number,
  ): Promise<Watch> {
    const create = encodeWatchCreate(req);
    const call = await this.withToken(openDeadline, (metadata) =>
      this.openStream("/etcdserverpb.Watch/Watch", metadata, create, openDeadline),
    );
    let cancelled = false;
    let watchId: number | undefined;
    call.listen(
      (m) => {
        if (cancelled) return;
        let res: WatchResponse;
        try {
          res = decodeWatchResponse(m);
        } catch (err) {
          call.cancel(new GrpcError(Status.INTERNAL, `bad watch response: ${(err as Error).message}`, ""));
          return;
        }
        if (res.created) watchId = res.watchId;
        handlers.onResponse(res);
      },
      (err) => {
        if (cancelled) return;
        if (err !== null && isInvalidToken(err)) this.token = undefined;
        handlers.onEnd(err);
      },
    );
    return {
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        if (watchId !== undefined) call.write(encodeWatchCancel(watchId));
        call.cancel();
      },
    };
  }

  private async openStream(
    path: string,
    metadata: Record<string, string> | undefined,
    first: Uint8Array,
    deadline: number,
  ): Promise<Call> {
    const remaining = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new GrpcError(Status.DEADLINE_EXCEEDED, "context deadline exceeded", this.endpoints.join(",")),
          ),
        Math.max(0, remaining),
      );
    });
    const opening = this.channel.stream(path, metadata, first);
    try {
      return await Promise.race([opening, timeout]);
    } catch (err) {
      // A stream that opens after the deadline is closed at once.
      void opening.then((c) => c.cancel()).catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
