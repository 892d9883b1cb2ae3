// Which lease each peer subnet (or route destination) is programmed for, when two leases claim the same one.
//
// In a dual-stack etcd cluster two nodes that lease at the same moment can pick the same subnet in one family
// under different keys; the later one gives its lease back and picks again (etcd manager, keptAgainstRivals).
// For a moment, every other node sees two leases claiming that subnet. The latest claim is programmed, as
// upstream's route replace does; when it is withdrawn, the claim before it is programmed again. Upstream
// deletes the subnet's entries instead, and the first node stays unreachable in that family.
//
// `current` holds one entry per key, as a plain map would; `earlier` is empty but during such a race.
//
// During such a race the later lease may also share a subnet with the node that reads it: that family of it
// is never programmed there (overlapsOwnSubnet).

import type { Family } from "../ip/addr.ts";
import type { Lease } from "../lease/lease.ts";
import type { Logger } from "../log/logger.ts";

/**
 * Whether `lease`'s subnet of family `f` overlaps this node's own lease's: a route to it would take the node's
 * pods' traffic away from cni0, and its removal would leave the node without a route to them. With `log`, says
 * that it is ignored.
 */
export function overlapsOwnSubnet(lease: Lease, own: Lease, f: Family, log?: Logger): boolean {
  const theirs = f === 4 ? lease.subnet : lease.ipv6Subnet;
  const mine = f === 4 ? own.subnet : own.ipv6Subnet;
  if (theirs === null || mine === null || !theirs.overlaps(mine)) return false;
  log?.warn(
    `ignoring the IPv${f} subnet ${theirs.toString()} of a lease: it overlaps this node's subnet ${mine.toString()}`,
  );
  return true;
}

/** The claims on each key: the programmed one in `current`, the ones it displaced waiting behind it. */
export class Claims<T> {
  /** The entry each key is programmed for. */
  readonly current = new Map<string, T>();
  /** Entries of other leases whose key a later claim took, the latest last. */
  private readonly earlier = new Map<string, T[]>();

  /**
   * `value` claims `key`. An entry there of the same lease (`sameLease`) is replaced; another lease's waits
   * until `value`'s claim is released.
   */
  claim(key: string, value: T, sameLease: (entry: T) => boolean): void {
    this.forget(key, sameLease);
    const prev = this.current.get(key);
    if (prev !== undefined && prev !== value && !sameLease(prev)) {
      const list = this.earlier.get(key);
      if (list === undefined) this.earlier.set(key, [prev]);
      else list.push(prev);
    }
    this.current.set(key, value);
  }

  /**
   * Withdraws the claim on `key` of the lease `sameLease` recognises. Returns true when it was the
   * programmed one: `current` then holds the claim before it, if any, and the key needs programming again.
   */
  release(key: string, sameLease: (entry: T) => boolean): boolean {
    const cur = this.current.get(key);
    if (cur === undefined || !sameLease(cur)) {
      this.forget(key, sameLease);
      return false;
    }
    const list = this.earlier.get(key);
    const back = list?.pop();
    if (list?.length === 0) this.earlier.delete(key);
    if (back === undefined) this.current.delete(key);
    else this.current.set(key, back);
    return true;
  }

  /** Drops the lease's waiting claims on `key`. */
  private forget(key: string, sameLease: (entry: T) => boolean): void {
    const list = this.earlier.get(key);
    if (list === undefined) return;
    const rest = list.filter((e) => !sameLease(e));
    if (rest.length === 0) this.earlier.delete(key);
    else if (rest.length !== list.length) this.earlier.set(key, rest);
  }
}
