import type { AtomType, ContentRef } from '../atom.js';
import type { TrackKind } from '../decompose/types.js';
import type { Source } from '../source.js';
import { ingest, type IngestOptions, type IngestResult } from '../store/ingest.js';
import type { LocalStore } from '../store/local.js';
import { BackgroundAtomWriter } from '../store/background-writer.js';
import { MAX_COMPONENTS, MAX_INLINE_REFS, renderConcept, type TrackComponent } from './concept.js';
import { buildManifestTree, buildTrackManifest } from './manifest.js';

export interface BuiltConcept {
  text: string;
  refs: ContentRef[];
  ingest: IngestResult;
}

/** Files at least this large have their atoms written by a worker thread (both cores busy). */
const BACKGROUND_WRITE_MIN = 32 * 1024 * 1024;

/** Stores a file's atoms (and manifests) and returns its concept text; records it in the store. */
export function buildConcept(src: Source, store: LocalStore, options: IngestOptions = {}): BuiltConcept {
  const result = src.size >= BACKGROUND_WRITE_MIN ? ingestInBackground(src, store, options) : ingest(src, store, options);
  const refs = buildManifestTree(result.leaves, store, MAX_INLINE_REFS);
  const components = trackComponents(result, store);
  const text = renderConcept({ oid: result.oid, size: result.size, format: result.format, info: result.info, refs, components }, countByType(result.leaves));
  store.putConcept(result.oid, text);
  return { text, refs, ingest: result };
}

function ingestInBackground(src: Source, store: LocalStore, options: IngestOptions): IngestResult {
  const writer = new BackgroundAtomWriter(store);
  let result: IngestResult;
  try {
    result = ingest(src, writer, options);
  } catch (err) {
    try { writer.finish(); } catch { /* the ingest error is the one to report */ }
    throw err;
  }
  writer.finish();
  return result;
}

/** Manifest type of each kind of track: subtitle and other tracks get a plain Manifest. */
const COMPONENT_TYPES: Record<TrackKind, AtomType> = { video: 'VideoStream', audio: 'AudioStream', subtitle: 'Manifest', other: 'Manifest' };

/** One track manifest tree per media track (the first MAX_COMPONENTS), for partial fetch and extraction. */
function trackComponents(result: IngestResult, store: LocalStore): TrackComponent[] {
  const tracks = (result.tracks ?? []).filter((t) => t.leaves.length > 0).slice(0, MAX_COMPONENTS);
  return tracks.map((t) => {
    const root = buildTrackManifest(t.leaves, store, COMPONENT_TYPES[t.kind]);
    return { hash: root.hash, type: root.type, kind: t.kind, track: t.id, codec: t.codec, samples: t.samples, size: root.size };
  });
}

export function countByType(refs: readonly ContentRef[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of refs) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return counts;
}
