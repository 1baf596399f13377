/**
 * Expiry dates for the GC grace period, written the way Git's gc.pruneExpire is: `now`, `never`,
 * relative (`2.weeks.ago`, `1 hour ago`) or absolute (`2024-05-01`, `2024-05-01T12:00:00Z`).
 * Parsing is strict: Git's approxidate reads a typo as "now", which for a deletion cutoff would
 * mean "delete everything unreachable"; here a typo is an error.
 */
import { PaniniError } from '../errors.js';

/** Git's own default for gc.pruneExpire. */
export const DEFAULT_PRUNE_EXPIRE = '2.weeks.ago';

const UNIT_MS: Record<string, number> = {
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 7 * 86_400_000,
  month: 30 * 86_400_000,
  year: 365 * 86_400_000,
};

const RELATIVE = /^(\d{1,9})[._ ]+(second|minute|hour|day|week|month|year)s?[._ ]+ago$/;
const ABSOLUTE = /^\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * The cutoff in epoch milliseconds: anything last written before it may be deleted. `never` gives
 * -Infinity (nothing is old enough); dates in the future are taken as `now`.
 */
export function parseExpiry(text: string, now = Date.now()): number {
  const value = text.trim().toLowerCase();
  if (value === 'now') return now;
  if (value === 'never' || value === 'false') return -Infinity;
  const relative = RELATIVE.exec(value);
  if (relative) return now - Number(relative[1]) * UNIT_MS[relative[2]!]!;
  if (ABSOLUTE.test(value)) {
    const ms = Date.parse(value.toUpperCase().replace(' ', 'T'));
    if (Number.isFinite(ms)) return Math.min(ms, now);
  }
  throw new PaniniError(
    `cannot read the expiry date ${JSON.stringify(text)}`,
    'write it like Git does: now, never, 2.weeks.ago, 3.days.ago, 1.hour.ago, or a date such as 2024-05-01 or 2024-05-01T12:00:00Z',
  );
}
