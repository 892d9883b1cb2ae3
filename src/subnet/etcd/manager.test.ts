import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { freeSubnets } from "./manager.ts";

/** The definition: scan every taken subnet for each candidate. */
function freeSubnetsByScan(min: IpAddr, max: IpAddr, prefixLen: number, taken: readonly (IpNet | null)[]) {
  const out: IpNet[] = [];
  const used = taken.filter((t): t is IpNet => t !== null && t.family === min.family);
  for (let sn = IpNet.of(min, prefixLen); sn.ip.compare(max) <= 0 && out.length < 100; sn = sn.next()) {
    const cand = sn;
    if (!used.some((t) => cand.overlaps(t))) out.push(cand);
    if (sn.last.value === (1n << BigInt(sn.ip.bits)) - 1n) break;
  }
  return out.map(String);
}

test("freeSubnets equals a scan of every taken subnet, with nested, mixed-size and foreign-family leases", () => {
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  for (let round = 0; round < 300; round++) {
    const taken: (IpNet | null)[] = [null, IpNet.parse("fd00::/64")];
    for (let i = 0, n = rnd(400); i < n; i++) {
      // Mostly /24s near the start, some wider (/20, /16) and narrower (/28) ones that nest or straddle.
      const len = [24, 24, 24, 20, 16, 28][rnd(6)] ?? 24;
      taken.push(IpNet.of(IpAddr.parse(`10.${rnd(3)}.${rnd(256)}.${rnd(256)}`), len));
    }
    const min = IpAddr.parse(`10.0.${rnd(4)}.0`);
    const max = IpAddr.parse(`10.${rnd(3)}.255.0`);
    assert.deepEqual(
      freeSubnets(min, max, 24, taken).map(String),
      freeSubnetsByScan(min, max, 24, taken),
      `round ${round}`,
    );
  }
});
