/**
 * Storage statistics in the spirit of the seed's StorageStats, computed from what is on disk: the
 * atoms, and the concepts of every file cleaned into this store or checked out from it (which say
 * what each file needs). A clone cleans nothing: its files are known from the index.
 */
import { MANIFEST_TYPES, type AtomType, type ContentRef } from '../atom.js';
import { parseConcept, type Concept } from '../concept/concept.js';
import { decodeTrackManifest, readManifest } from '../concept/manifest.js';
import type { LocalStore } from './local.js';

export interface TypeStats {
  atoms: number;
  storedBytes: number;
  logicalBytes: number;
}

export interface StorageStats {
  files: number;
  /** Atom files in the store (referenced or not). */
  totalAtoms: number;
  storedBytes: number;
  /** Sum of the sizes of all files cleaned into the store: what storing them whole would take. */
  logicalBytes: number;
  /** Atoms used by more than one file, or more than once in one. */
  sharedAtoms: number;
  /**
   * Atoms that neither a file cleaned here nor a checked-out file uses: older versions fetched,
   * atoms left by an interrupted add, or atoms awaiting gc (which knows the history).
   */
  unreferencedAtoms: number;
  dedupSavings: number;
  /** logicalBytes / storedBytes. */
  dedupRatio: number;
  byType: Partial<Record<AtomType, TypeStats>>;
}

/** `checkedOut`: concepts of the repository's index; a file also cleaned here counts once. */
export function computeStats(store: LocalStore, checkedOut: Iterable<Concept> = []): StorageStats {
  const typeOf = new Map<string, AtomType>();
  const uses = new Map<string, number>();
  const byType: Partial<Record<AtomType, TypeStats>> = {};
  const bucket = (t: AtomType): TypeStats => (byType[t] ??= { atoms: 0, storedBytes: 0, logicalBytes: 0 });
  let files = 0;
  let logicalBytes = 0;

  const visit = (ref: ContentRef, depth: number): void => {
    uses.set(ref.hash, (uses.get(ref.hash) ?? 0) + 1);
    if (!typeOf.has(ref.hash)) typeOf.set(ref.hash, ref.type);
    if (!MANIFEST_TYPES.has(ref.type)) {
      bucket(ref.type).logicalBytes += ref.size;
      return;
    }
    if (depth > 12 || uses.get(ref.hash)! > 1) return; // a shared manifest's children were counted once
    try {
      for (const e of readManifest(store, ref.hash)) visit({ ...e, offset: 0 }, depth + 1);
    } catch {
      // a missing or damaged manifest: stats report what can be seen; fsck reports the damage
    }
  };
  // Track manifests (a media file's per-track index, in `components`) list leaves content_refs
  // already counted: they are referenced atoms of their own that add no logical bytes.
  const markTrackManifest = (hash: string, type: AtomType, depth: number): void => {
    if (typeOf.has(hash) || depth > 12) return;
    typeOf.set(hash, type);
    try {
      for (const c of decodeTrackManifest(store.get(hash), hash)) if (MANIFEST_TYPES.has(c.type)) markTrackManifest(c.hash, c.type, depth + 1);
    } catch {
      // a missing or damaged manifest: fsck reports the damage
    }
  };
  const counted = new Set<string>();
  const count = (concept: Concept): void => {
    if (counted.has(concept.oid)) return;
    counted.add(concept.oid);
    files++;
    logicalBytes += concept.size;
    for (const ref of concept.refs) visit(ref, 0);
    for (const c of concept.components ?? []) markTrackManifest(c.hash, c.type, 0);
  };
  for (const { oid } of store.listConcepts()) {
    const text = store.getConcept(oid);
    if (!text) continue;
    let concept: Concept;
    try {
      concept = parseConcept(text);
    } catch {
      continue; // not a readable concept: skipped
    }
    count(concept);
  }
  for (const concept of checkedOut) count(concept);

  let totalAtoms = 0;
  let storedBytes = 0;
  let unreferencedAtoms = 0;
  for (const atom of store.list()) {
    totalAtoms++;
    storedBytes += atom.size;
    const type = typeOf.get(atom.hash);
    if (!type) {
      unreferencedAtoms++;
      continue;
    }
    const b = bucket(type);
    b.atoms++;
    b.storedBytes += atom.size;
  }
  let sharedAtoms = 0;
  for (const [hash, n] of uses) if (n > 1 && !MANIFEST_TYPES.has(typeOf.get(hash)!)) sharedAtoms++;
  return {
    files, totalAtoms, storedBytes, logicalBytes, sharedAtoms, unreferencedAtoms,
    dedupSavings: Math.max(0, logicalBytes - storedBytes),
    dedupRatio: storedBytes > 0 ? logicalBytes / storedBytes : 1,
    byType,
  };
}
