import type { AtomFetcher } from '../git/filter-process.js';
import type { Context } from './context.js';

/**
 * The hook between checkout and the remote store: null when no remote is configured (missing
 * atoms are then reported), else a function that downloads what concepts need, in one batch. The
 * transfer code is loaded only when something is actually missing.
 */
export function remoteFetcher(ctx: Context): AtomFetcher | null {
  if (!ctx.config.get('panini.url')) return null;
  return async (concepts) => {
    const { fetchConcepts } = await import('../transfer/fetch.js');
    await fetchConcepts(ctx, concepts);
  };
}
