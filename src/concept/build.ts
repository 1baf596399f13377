import type { ContentRef } from '../atom.js';
import type { Source } from '../source.js';
import { ingest, type IngestOptions, type IngestResult } from '../store/ingest.js';
import type { LocalStore } from '../store/local.js';
import { MAX_INLINE_REFS, renderConcept } from './concept.js';
import { buildManifestTree } from './manifest.js';

export interface BuiltConcept {
  text: string;
  refs: ContentRef[];
  ingest: IngestResult;
}

/** Stores a file's atoms (and manifests) and returns its concept text; records it in the store. */
export function buildConcept(src: Source, store: LocalStore, options: IngestOptions = {}): BuiltConcept {
  const result = ingest(src, store, options);
  const refs = buildManifestTree(result.leaves, store, MAX_INLINE_REFS);
  const text = renderConcept({ oid: result.oid, size: result.size, format: result.format, info: result.info, refs }, countByType(result.leaves));
  store.putConcept(result.oid, text);
  return { text, refs, ingest: result };
}

export function countByType(refs: readonly ContentRef[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of refs) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return counts;
}
