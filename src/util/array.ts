// Appending one array to another. `to.push(...from)` passes every element as an argument and throws
// "Maximum call stack size exceeded" from about 120,000 elements on Node 20 — a lease snapshot or a removal
// of a large cluster must never do that.

/** Appends the elements of `from` to `to`, in order. */
export function appendAll<T>(to: T[], from: readonly T[]): void {
  for (const x of from) to.push(x);
}
