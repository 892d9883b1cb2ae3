/** Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** True when `err` is the abort of `signal` (so a loop should end quietly, not log an error). */
export function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err instanceof Error && err.name === "AbortError"));
}

/**
 * Pulls from an async iterator until `signal` aborts: `next()` gives "aborted" as soon as the signal aborts,
 * also while a pull is pending.
 * - One abort listener serves every pull, until `close()`: one added and removed per pull cost ~10 µs per
 *   lease event.
 * - Nothing is kept per pull. `Promise.race([it.next(), abortedPromise])` in a loop would add a reaction to
 *   the long-lived aborted promise at every pull, and each reaction keeps its result (a whole batch) alive
 *   until the signal aborts.
 */
export class AbortableIterator<T> {
  private wake: ((r: "aborted") => void) | undefined;
  private readonly onAbort = (): void => {
    const w = this.wake;
    this.wake = undefined;
    w?.("aborted");
  };

  constructor(
    private readonly it: AsyncIterator<T>,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** The iterator's next result, or "aborted". One pull at a time. */
  next(): Promise<IteratorResult<T> | "aborted"> {
    if (this.signal.aborted) return Promise.resolve("aborted");
    return new Promise((resolve, reject) => {
      const wake = (r: "aborted"): void => resolve(r);
      this.wake = wake;
      this.it.next().then(
        (r) => {
          if (this.wake === wake) this.wake = undefined;
          resolve(r);
        },
        (err: unknown) => {
          if (this.wake === wake) this.wake = undefined;
          reject(err);
        },
      );
    });
  }

  /** Removes the abort listener. Ending the iterator itself is the caller's business. */
  close(): void {
    this.signal.removeEventListener("abort", this.onAbort);
    this.wake = undefined;
  }
}
