/**
 * Which atoms a set of concepts needs: their leaves, the file-order manifests above them, and the
 * track manifests of their components (so partial extraction works after a fetch too). Manifests
 * are read level by level; a level's manifests that the local store lacks are first handed to
 * `obtain` (a download, for fetch) so the walk can look inside them.
 *
 * A track manifest lists samples of its file, leaves the file's manifests list already (clean
 * writes them so). A track of at most TRACK_MANIFEST_FANOUT samples is one such manifest: a fetch
 * takes it and leaves its lines unread (~40% of the manifest lines of a video); a longer track's
 * tree is walked for the manifests below its root. A push and an extraction (`walkTracks`) read
 * every track manifest, so that the remote store gets every atom any concept names and an
 * extraction every atom its track lists, however the concept was written.
 */
import { MANIFEST_TYPES, type ContentRef } from '../atom.js';
import type { Concept } from '../concept/concept.js';
import { decodeTrackManifest, readManifest, TRACK_MANIFEST_FANOUT } from '../concept/manifest.js';
import { PaniniError } from '../errors.js';
import type { AtomReader } from '../store/local.js';

export interface AtomSet {
  /** Leaf atoms (file bytes) and their sizes. */
  leaves: Map<string, number>;
  /** Manifest atoms, parents before children. */
  manifests: string[];
  /** Manifests absent from the local store even after `obtain`: what is below them is unknown. */
  unreadable: string[];
}

/** Manifest trees are a few levels deep; a deeper walk means a loop or a crafted store. */
const MAX_LEVELS = 16;

/** A file-order manifest, a track manifest to read, or a track manifest of leaves only (not read). */
type ManifestKind = 'file' | 'track' | 'track-leaves';

export async function collectAtoms(
  concepts: Iterable<Pick<Concept, 'refs' | 'components'>>, store: AtomReader, obtain: (missing: string[]) => Promise<void>, { walkTracks = false } = {},
): Promise<AtomSet> {
  const leaves = new Map<string, number>();
  const manifests: string[] = [];
  const unreadable: string[] = [];
  const seen = new Set<string>();
  let level: [string, ManifestKind][] = [];
  const visit = (ref: Pick<ContentRef, 'hash' | 'type' | 'size'>, kind: ManifestKind): void => {
    if (!MANIFEST_TYPES.has(ref.type)) {
      leaves.set(ref.hash, ref.size);
    } else if (!seen.has(ref.hash)) {
      seen.add(ref.hash);
      level.push([ref.hash, kind]);
    }
  };
  for (const c of concepts) {
    for (const ref of c.refs) visit(ref, 'file');
    for (const component of c.components ?? []) visit(component, walkTracks || component.samples > TRACK_MANIFEST_FANOUT ? 'track' : 'track-leaves');
  }
  for (let depth = 0; level.length > 0; depth++) {
    if (depth >= MAX_LEVELS) throw new PaniniError(`manifest trees nest deeper than ${MAX_LEVELS} levels (at atom ${level[0]![0]})`, 'a concept or manifest was crafted or damaged; `git log -p` on the file shows who changed it');
    const current = level;
    level = [];
    manifests.push(...current.map(([hash]) => hash));
    const absent = current.filter(([hash]) => !store.has(hash)).map(([hash]) => hash);
    if (absent.length > 0) await obtain(absent);
    for (const [hash, kind] of current) {
      if (!store.has(hash)) {
        unreadable.push(hash);
        continue;
      }
      if (kind === 'file') for (const child of readManifest(store, hash)) visit(child, 'file');
      else if (kind === 'track') for (const child of decodeTrackManifest(store.get(hash), hash)) visit(child, 'track');
    }
  }
  return { leaves, manifests, unreadable };
}
