/**
 * Layouts in the remote store (docs/remote-stores.md, "Layouts"): where a pushed file's bytes lie
 * in the store's packs, as runs, in the local store's layout format (store/layout.ts). A push
 * writes one for each file of at least MIN_LAYOUT_ATOMS leaves that all lie in the store's packs.
 * A fetch reads it instead of the file's manifests, so no manifest is decoded and no leaf looked
 * up one by one. From a folder, the packs a fetch needs most of are taken whole under their ids,
 * where the runs stay right as they are; the other runs (from S3, all) move by their offsets into
 * one new pack (RemotePacks.moveRuns), every atom they cover verified. The fetch then keeps the
 * file's layout as its own, and the checkout reads the runs (checked by the local store as any of
 * its own: else the file is rebuilt from its manifests, fetched too). The file's SHA-256 still
 * checks every byte it is rebuilt from. A layout that does not hold together, or whose runs do not
 * lie in atoms of listed packs, is ignored, and its file fetched as any other.
 */
import { MANIFEST_TYPES } from '../atom.js';
import type { Concept } from '../concept/concept.js';
import { expandRefs, listsManifests } from '../concept/manifest.js';
import { bufferBody, layoutKey } from '../store/backend.js';
import { decodeLayout, encodeLayout, LayoutBuilder, MAX_LAYOUT_BYTES, mayHaveLayout, type LayoutRun } from '../store/layout.js';
import { readObject, type Transfer } from './atoms.js';
import { forEachConcurrently } from './pool.js';
import { WHOLE_PACK_SHARE, type ListedPack, type Wanted } from './remote-packs.js';
import { withRetries } from './retry.js';
import type { Session } from './session.js';

/** A file to fetch: its refs, and its oid and size where a layout may be looked for. */
export type FileToFetch = Pick<Concept, 'refs'> & Partial<Pick<Concept, 'components' | 'oid' | 'size'>>;

/**
 * After a push (or a remote gc that rewrote packs): writes the layout of each file whose leaves all
 * lie in the store's packs (those just uploaded among them). A layout that fails to upload only
 * costs its file's clones the manifests and lookups: the failure is not reported.
 */
export async function uploadLayouts(s: Session, files: readonly Pick<Concept, 'oid' | 'size' | 'refs'>[]): Promise<void> {
  const candidates = files.filter((f) => mayHaveLayout(f.refs));
  if (candidates.length === 0) return;
  await s.packs.list(); // with the packs just uploaded
  const layouts = new Map<string, Buffer>();
  for (const file of candidates) {
    if (layouts.has(file.oid)) continue;
    const runs = remoteRuns(s, file);
    if (runs) layouts.set(file.oid, encodeLayout(file.oid, file.size, runs));
  }
  await forEachConcurrently([...layouts], s.settings.concurrency, async ([oid, bytes]) => {
    await withRetries(s.settings.attempts, () => s.backend.upload(layoutKey(oid), bufferBody(bytes)));
  });
}

/** The file's leaves as runs of the store's packs, or null if one is not packed there (or the runs are not worth a layout). */
function remoteRuns(s: Session, file: Pick<Concept, 'refs'>): LayoutRun[] | null {
  const builder = new LayoutBuilder();
  try {
    for (const leaf of expandRefs(file.refs, s.store)) {
      const at = s.packs.locate(leaf.hash);
      builder.add(at && at.size === leaf.size ? at.pack : null, at?.offset ?? 0, leaf.size);
      if (!builder.complete) return null;
    }
  } catch {
    return null; // a manifest this clone lacks: no layout, the push itself said what it could
  }
  return builder.worthRecording() ? builder.runs : null;
}

/**
 * Before a fetch: the files whose layouts the store has get their atoms (packs taken whole, the
 * other runs moved into one new pack) and keep their layouts, moved to the local packs; the
 * manifests they list come through `download`, unread, so that as after any fetch the store has
 * every atom the files' concepts name; unless one lists manifests itself (a tree of more levels:
 * files of more than 32,768 atoms). Returns what is left to fetch as usual: the other files, the
 * manifests of such deeper trees, and the track manifests of the files done (a fetch asked for
 * their components); and the atoms and bytes of the packs it took whole and of the runs it moved.
 */
export async function fetchByLayouts(
  s: Session, files: readonly FileToFetch[], download: (atoms: Wanted[]) => Promise<void>,
): Promise<{ left: FileToFetch[]; atoms: number; bytes: number }> {
  const candidates = files.filter(mayBeLaidOut);
  if (candidates.length === 0) return { left: [...files], atoms: 0, bytes: 0 };
  // The layouts are read while the packs are listed; from a store that hands over no whole packs
  // (S3), into a store without packs (a clone's), their runs are asked for while the packs'
  // indexes load: the listing, the indexes and the ranges take two round trips, not three.
  const hadPacks = s.store.packIndexes().length > 0;
  const read = new Map<FileToFetch, RemoteLayout>();
  const listing = s.packs.list();
  listing.catch(() => undefined); // awaited below
  await forEachConcurrently(candidates, s.settings.concurrency, async (f) => {
    const layout = await readLayout(s, f.oid, f.size);
    if (layout) read.set(f, layout);
  });
  if (!s.backend.copyTo && !hadPacks) s.packs.prefetchRuns([...read.values()].flatMap((l) => l.runs));
  const packs = await listing;
  const listed = new Map(packs.filter((p) => p.index && p.packSize !== null).map((p) => [p.id, p]));
  const found = new Map([...read].filter(([, { runs }]) => runs.every((r) => listed.has(r.pack))).map(([f, { runs }]) => [f, runs]));
  if (found.size === 0) return { left: [...files], atoms: 0, bytes: 0 };
  // Packs the store holds already (a clone's, for `fetch --all` after it) serve their runs as they
  // are, however little of them these files need.
  const named = new Set([...found.values()].flatMap((runs) => runs.map((r) => r.pack)));
  const heldBefore = new Set([...named].filter((id) => s.store.holdsPack(id)));
  const mostlyNeeded = s.backend.copyTo ? packsMostlyNeeded([...found.values()], listed) : [];
  const whole = [...new Set([...mostlyNeeded, ...heldBefore])];
  const taken = await s.packs.adoptWhole(whole);
  // The other runs move by their offsets into one new pack while the manifests the files list come
  // in a download of their own (fetched unread: see fetchConceptsWith).
  const manifests = new Set([...found.keys()].flatMap(manifestsListed));
  const [runsMoved, manifestsFetched] = await Promise.allSettled([
    s.packs.moveRuns([...found.values()].flatMap((runs) => runs.filter((r) => !taken.has(r.pack))), hadPacks),
    manifests.size > 0 ? download([...manifests].map((hash) => ({ hash }))) : undefined,
  ]); // both settled before either failure is thrown: nothing runs on once the fetch has ended
  if (runsMoved.status === 'rejected') throw runsMoved.reason;
  if (manifestsFetched.status === 'rejected') throw manifestsFetched.reason;
  const { moved, atoms: movedAtoms, bytes: movedBytes } = runsMoved.value;
  const left: FileToFetch[] = [];
  for (const f of files) {
    const runs = found.get(f);
    // All in packs taken whole: the store's layout is the remote one, byte for byte.
    const same = runs?.every((r) => taken.has(r.pack)) === true;
    const local = runs && (same ? runs : localRuns(runs, taken, moved));
    if (!local || !s.store.recordLayout(f.oid!, f.size!, local, same ? read.get(f)!.raw : undefined)) {
      left.push(f);
      continue;
    }
    const rest = leftOnceLaidOut(s, f);
    if (rest) left.push(rest);
  }
  let takenAtoms = movedAtoms;
  let takenBytes = movedBytes;
  for (const id of taken) {
    if (heldBefore.has(id)) continue;
    const index = listed.get(id)!.index!;
    takenAtoms += index.count;
    takenBytes += index.atomBytes();
  }
  return { left, atoms: takenAtoms, bytes: takenBytes };
}

/**
 * What a fetch still has to do for a file the store rebuilds through a layout of its own (with
 * the manifests its concept lists, fetched unread): the manifests below those, where one lists
 * manifests itself, and its components' track manifests; null if nothing.
 */
function leftOnceLaidOut(s: Session, f: FileToFetch): FileToFetch | null {
  const deeper = manifestsListed(f).some((hash) => s.store.has(hash) && listsManifests(s.store.get(hash), hash));
  return deeper || f.components?.length ? { refs: deeper ? f.refs : [], components: f.components } : null;
}

/**
 * Files the store already rebuilds through a layout of its own, their concepts' manifests local (a
 * file fetched or checked out before): a fetch leaves them as a fetch by layouts would (`left`:
 * what is left of them, see leftOnceLaidOut), without reading the remote's layouts or looking at
 * their atoms one by one. `fetch --all` after a clone, or a branch switch, asks again for files of
 * thousands of atoms that are all here.
 */
export function laidOutHere(s: Session, files: readonly FileToFetch[]): { left: FileToFetch[]; others: FileToFetch[] } {
  const left: FileToFetch[] = [];
  const others: FileToFetch[] = [];
  for (const f of files) {
    if (!mayBeLaidOut(f) || !manifestsListed(f).every((hash) => s.store.has(hash)) || !s.store.layoutOf(f.oid, f.size)) {
      others.push(f);
      continue;
    }
    const rest = leftOnceLaidOut(s, f);
    if (rest) left.push(rest);
  }
  return { left, others };
}

/** Whether a file may have a layout: its oid and size known, and enough atoms. */
const mayBeLaidOut = (f: FileToFetch): f is FileToFetch & Required<Pick<Concept, 'oid' | 'size'>> => f.oid !== undefined && f.size !== undefined && mayHaveLayout(f.refs);

/** The manifests a file's concept lists itself. */
const manifestsListed = (f: FileToFetch): string[] => f.refs.filter((r) => MANIFEST_TYPES.has(r.type)).map((r) => r.hash);

/** The bytes of file `oid`'s layout object (null if there is none), read up to MAX_LAYOUT_BYTES. */
export async function downloadLayout(t: Transfer, oid: string): Promise<Buffer | null> {
  const key = layoutKey(oid);
  return readObject(t, key, MAX_LAYOUT_BYTES, `reading ${key} from ${t.backend.url}`);
}

/** A layout read from the store: its runs, and its bytes. */
interface RemoteLayout {
  runs: LayoutRun[];
  raw: Buffer;
}

/** The file's layout in the store, if there is one that holds together; a failure to read it is no layout. */
async function readLayout(s: Session, oid: string, size: number): Promise<RemoteLayout | null> {
  try {
    const raw = await downloadLayout(s, oid);
    const runs = raw && decodeLayout(raw, oid, size);
    return runs && { runs, raw: raw! };
  } catch {
    return null;
  }
}

/** The file's runs in the local store's packs: as they are in packs taken whole, else where they moved; null if one did not. */
function localRuns(runs: readonly LayoutRun[], taken: ReadonlySet<string>, moved: ReadonlyMap<LayoutRun, LayoutRun[]>): LayoutRun[] | null {
  const builder = new LayoutBuilder();
  for (const run of runs) {
    const at = taken.has(run.pack) ? [run] : moved.get(run);
    if (!at) return null;
    for (const r of at) builder.add(r.pack, r.offset, r.size);
  }
  return builder.complete ? builder.runs : null;
}

/** The packs of which the layouts need at least WHOLE_PACK_SHARE of the atom bytes (overlapping runs counted once). */
function packsMostlyNeeded(layouts: readonly LayoutRun[][], listed: ReadonlyMap<string, ListedPack>): Set<string> {
  const byPack = new Map<string, LayoutRun[]>();
  for (const runs of layouts) {
    for (const run of runs) {
      const of = byPack.get(run.pack);
      if (of) of.push(run);
      else byPack.set(run.pack, [run]);
    }
  }
  const chosen = new Set<string>();
  for (const [id, runs] of byPack) {
    if (coveredBytes(runs) >= WHOLE_PACK_SHARE * listed.get(id)!.index!.atomBytes()) chosen.add(id);
  }
  return chosen;
}

/**
 * The bytes the runs cover together: their starts and ends sorted apart (natively, no comparator:
 * a clone's layouts are thousands of runs) and swept, counting the bytes under at least one run.
 * The arrays are filled by a loop: Float64Array.from with a function took twice as long, cold.
 */
export function coveredBytes(runs: readonly Pick<LayoutRun, 'offset' | 'size'>[]): number {
  const starts = new Float64Array(runs.length);
  const ends = new Float64Array(runs.length);
  for (let k = 0; k < runs.length; k++) {
    starts[k] = runs[k]!.offset;
    ends[k] = runs[k]!.offset + runs[k]!.size;
  }
  starts.sort();
  ends.sort();
  let covered = 0;
  let open = 0;
  let from = 0;
  for (let i = 0, j = 0; j < ends.length;) {
    if (i < starts.length && starts[i]! < ends[j]!) {
      if (open++ === 0) from = starts[i]!;
      i++;
    } else {
      if (--open === 0) covered += ends[j]! - from;
      j++;
    }
  }
  return covered;
}
