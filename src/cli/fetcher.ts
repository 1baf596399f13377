import type { AtomFetcher } from '../git/filter-process.js';
import type { Context } from './context.js';

/**
 * The hook between checkout and the remote store: null when no remote is configured (missing
 * atoms are then reported), else a function that downloads what concepts need, in one batch. The
 * transfer code is loaded only when something is actually missing.
 *
 * A checkout rebuilds files from their content refs alone: the track manifests of media components
 * (for extracting one track) are left to `git panini fetch` or get-content, which fetch them when
 * asked (in the benchmark corpus, 40% of the manifest bytes).
 */
export function remoteFetcher(ctx: Context): AtomFetcher | null {
  if (!ctx.config.get('panini.url')) return null;
  return async (concepts) => {
    const { fetchConcepts } = await import('../transfer/fetch.js');
    await fetchConcepts(ctx, concepts.map(({ refs, oid, size }) => ({ refs, oid, size })));
  };
}
