/** Runs async work on a list with bounded concurrency. */

export interface Failure<T> {
  item: T;
  error: unknown;
}

/**
 * Calls `work` on every item, at most `concurrency` at a time, and returns the failures. After a
 * failure that `isItemFailure` does not accept (say, no credentials: every other item would fail
 * the same way), no new item is started; the ones in flight finish.
 */
export async function forEachConcurrently<T>(
  items: readonly T[], concurrency: number, work: (item: T) => Promise<void>, isItemFailure: (err: unknown) => boolean = () => false,
): Promise<Failure<T>[]> {
  const failures: Failure<T>[] = [];
  let next = 0;
  let stopped = false;
  const worker = async (): Promise<void> => {
    while (!stopped && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failures.push({ item, error });
        if (!isItemFailure(error)) stopped = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return failures;
}
