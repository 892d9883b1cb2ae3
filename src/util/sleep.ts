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
 * The iterator's next result, or "aborted" as soon as `signal` aborts. Unlike
 * `Promise.race([it.next(), abortedPromise])` in a loop, it leaves nothing behind per call: each race adds
 * a reaction to the long-lived aborted promise, and every reaction keeps its result (a whole batch) alive
 * until the signal aborts.
 */
export function nextOrAbort<T>(
  it: AsyncIterator<T>,
  signal: AbortSignal,
): Promise<IteratorResult<T> | "aborted"> {
  if (signal.aborted) return Promise.resolve("aborted");
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
    it.next().then(
      (r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}
