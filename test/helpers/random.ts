// A seeded random number source for tests that compare an implementation with a reference on many random inputs.

/** mulberry32: small, deterministic, and its low bits are as random as its high ones. `rnd(n)` is in [0, n). */
export function seededRandom(seed: number): (n: number) => number {
  let s = seed | 0;
  return (n: number): number => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
}
