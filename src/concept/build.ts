import type { AtomType, ContentRef } from '../atom.js';
import type { TrackKind } from '../decompose/types.js';
import type { Source } from '../source.js';
import type { ReadInto } from '../io.js';
import { ingest, ingestStream, type IngestOptions, type IngestResult } from '../store/ingest.js';
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
  /** Where the atoms of a file under PACK_MIN go (the filter process batches them); else loose. */
  smallFiles?: AtomWriter;
}

/** Stores a file's atoms (and manifests) and returns its concept text; records it in the store. */
export function buildConcept(src: Source, store: LocalStore, options: BuildOptions = {}): BuiltConcept {
  const built = src.size < PACK_MIN
    ? storeAtoms(src, options.smallFiles ?? store, options)
    : inPack(store, src.size >= BACKGROUND_WRITE_MIN, (pack) => storeAtoms(src, pack, options));
  return recorded(built, store, options);
}

/**
 * The same for an input read once, in order, that no decomposer recognizes (ingestStream): chunked
 * as it arrives. Only large inputs come this way, so their atoms go into a pack written by a worker.
 */
export function buildStreamedConcept(read: ReadInto, store: LocalStore, options: BuildOptions = {}): BuiltConcept {
  return recorded(inPack(store, true, (pack) => describe(ingestStream(read, pack), pack)), store, options);
}

function inPack(store: LocalStore, background: boolean, build: (pack: PackWriter) => BuiltConcept): BuiltConcept {
  const pack = new PackWriter(store, { background, hashFile: true });
  try {
    const built = build(pack);
    // Named before the concept is handed out: a concept never names an atom not yet in the store.
    pack.finish();
    return built;
  } finally {
    pack.abort();
  }
}

function recorded(built: BuiltConcept, store: LocalStore, options: BuildOptions): BuiltConcept {
  if (options.record !== false) store.putConcept(built.ingest.oid, built.text);
  return built;
}

function storeAtoms(src: Source, writer: AtomWriter, options: IngestOptions): BuiltConcept {
  return describe(ingest(src, writer, options), writer);
}

/** Stores the manifests of an ingested file and renders its concept. */
function describe(result: IngestResult, writer: AtomWriter): BuiltConcept {
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
