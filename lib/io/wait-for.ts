// Waiting until something the event stream delivers shows up (a D-Bus signal, text on a
// console): the owner keeps a set of waiters and calls each after every event that may change
// the answer; a wait asks its probe now and at each call, until it has an answer or times out.

/** What a probe found: a value to resolve with, an error to reject with, or nothing yet. */
export type ProbeResult<T> = { readonly value: T } | { readonly error: unknown } | undefined;

/**
 * Resolve with the first value `probe` finds, or reject with the error it finds, or with
 * `onTimeout()` after `timeoutMs`. `probe` runs at once and whenever the owner calls the
 * waiters in `waiters`; it leaves the set when the wait settles.
 */
export function waitForProbe<T>(waiters: Set<() => void>, timeoutMs: number, probe: () => ProbeResult<T>, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      waiters.delete(check);
      settle();
    };
    const check = (): void => {
      const found = probe();
      if (found === undefined) return;
      if ('value' in found) finish(() => resolve(found.value));
      else finish(() => reject(found.error));
    };
    const timer = setTimeout(() => finish(() => reject(onTimeout())), timeoutMs);
    waiters.add(check);
    check();
  });
}
