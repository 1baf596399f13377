import type { AtomType, ContentRef } from '../atom.js';
import type { TrackKind } from '../decompose/types.js';
import type { Source } from '../source.js';
import { ingest, type IngestOptions, type IngestResult } from '../store/ingest.js';
import type { LocalStore } from '../store/local.js';
import { PackWriter } from '../store/pack-writer.js';
import type { AtomWriter } from '../store/local.js';
import { MAX_COMPONENTS, MAX_INLINE_REFS, renderConcept, type TrackComponent } from './concept.js';
import { buildManifestTree, buildTrackManifest } from './manifest.js';

export interface BuiltConcept {
  text: string;
  refs: ContentRef[];
  ingest: IngestResult;
}

/**
 * Files at least this large have their new atoms written into one pack (one sequential write, not
 * a file and shard directories per atom), by a worker thread when larger still (both cores busy).
 */
const PACK_MIN = 8 * 1024 * 1024;
const BACKGROUND_WRITE_MIN = 32 * 1024 * 1024;

export interface BuildOptions extends IngestOptions {
  /** False: the caller records the concept in the store's registry itself (store.putConcept). */
  record?: boolean;
}

/** Stores a file's atoms (and manifests) and returns its concept text; records it in the store. */
export function buildConcept(src: Source, store: LocalStore, options: BuildOptions = {}): BuiltConcept {
  let built: BuiltConcept;
  if (src.size < PACK_MIN) built = storeAtoms(src, store, options);
  else {
    const pack = new PackWriter(store, { background: src.size >= BACKGROUND_WRITE_MIN, hashFile: true });
    try {
      built = storeAtoms(src, pack, options);
      // Named before the concept is handed out: a concept never names an atom not yet in the store.
      pack.finish();
    } finally {
      pack.abort();
    }
  }
  if (options.record !== false) store.putConcept(built.ingest.oid, built.text);
  return built;
}

function storeAtoms(src: Source, writer: AtomWriter, options: IngestOptions): BuiltConcept {
  const result = ingest(src, writer, options);
  const refs = buildManifestTree(result.leaves, writer, MAX_INLINE_REFS);
  const components = trackComponents(result, writer);
  const text = renderConcept({ oid: result.oid, size: result.size, format: result.format, info: result.info, refs, components }, countByType(result.leaves));
  return { text, refs, ingest: result };
}

/** Manifest type of each kind of track: subtitle and other tracks get a plain Manifest. */
const COMPONENT_TYPES: Record<TrackKind, AtomType> = { video: 'VideoStream', audio: 'AudioStream', subtitle: 'Manifest', other: 'Manifest' };

/** One track manifest tree per media track (the first MAX_COMPONENTS), for partial fetch and extraction. */
function trackComponents(result: IngestResult, store: AtomWriter): TrackComponent[] {
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
