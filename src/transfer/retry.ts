/**
 * Retries with exponential backoff and jitter for what may succeed if tried again: 5xx answers,
 * timeouts, dropped connections. Bounded by the number of attempts; the longest wait is a few seconds.
 */
import { isTransientNetworkError, RemoteError } from '../store/backend.js';

const BASE_DELAY_MS = 200;
const MAX_DELAY_MS = 4000;

export function isRetryable(err: unknown): boolean {
  if (err instanceof RemoteError) return err.retryable;
  return isTransientNetworkError(err) || (err as Error)?.name === 'TimeoutError';
}

export async function withRetries<T>(attempts: number, op: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op(attempt);
    } catch (err) {
      if (attempt >= attempts || !isRetryable(err)) throw err;
      const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
    }
  }
}
