/**
 * Downloading atoms from the remote store into the local store: given atoms (fetchAtoms), or
 * everything some concepts need (fetchConcepts: manifests level by level, then the leaves). Used by
 * `git panini fetch`/`pull`, by smudge and the filter process (batched through Git's delay
 * capability), and by the Git LFS agent.
 */
import type { Context } from '../cli/context.js';
import { errorMessage, PaniniError } from '../errors.js';
import { MAX_ATOM_BYTES, type LocalStore } from '../store/local.js';
import { PackWriter } from '../store/pack-writer.js';
import { AtomNotOnRemote, downloadAtom, type Transfer } from './atoms.js';
import { collectAtoms } from './plan.js';
import { forEachConcurrently } from './pool.js';
import { fetchByLayouts, laidOutHere, type FileToFetch } from './remote-layouts.js';
import type { Wanted } from './remote-packs.js';
import { withSession, type Session, type TransferOptions } from './session.js';

export interface FetchResult {
  downloaded: number;
  bytes: number;
}

/** Downloads the given atoms (those not already local) from the configured remote store. */
export async function fetchAtoms(ctx: Context, hashes: string[], options: TransferOptions = {}): Promise<void> {
  const wanted = absentFrom(ctx.store, Array.from(new Set(hashes), (hash) => ({ hash })));
  if (wanted.length === 0) return;
  await withSession(ctx, { ...options, listPacks: true }, (s) => downloadAll(s, wanted));
}

/**
 * Makes every atom the concepts need local: files the store already rebuilds through layouts of
 * its own are not looked at again (remote-layouts.ts, laidOutHere); files with layouts in the
 * remote store get their runs (fetchByLayouts: packs taken whole from a folder, runs moved by
 * their offsets otherwise); then, for the others, manifests level by level, then the leaves they
 * list (one plan, one pool of downloads).
 */
export async function fetchConcepts(ctx: Context, concepts: readonly FileToFetch[], options: TransferOptions = {}): Promise<FetchResult> {
  return withSession(ctx, { ...options, listPacks: true }, (s) => fetchConceptsWith(s, concepts));
}

/** fetchConcepts in an open session (the Git LFS agent keeps one for all its objects). */
export async function fetchConceptsWith(s: Session, concepts: readonly FileToFetch[]): Promise<FetchResult> {
  let own = { count: 0, bytes: 0 };
  const here = laidOutHere(s, concepts);
  const byLayouts = await fetchByLayouts(s, here.others, async (atoms) => {
    own = await downloadAll(s, absentFrom(s.store, atoms), { packed: true });
  });
  if (byLayouts.atoms > 0) {
    s.progress.addTotal(byLayouts.atoms, byLayouts.bytes);
    s.progress.advance(byLayouts.bytes, byLayouts.atoms);
  }
  let downloaded = byLayouts.atoms + own.count;
  let bytes = byLayouts.bytes + own.bytes;
  const set = await collectAtoms([...here.left, ...byLayouts.left], s.store, async (manifests) => {
    const r = await downloadAll(s, manifests.map((hash) => ({ hash })));
    downloaded += r.count;
    bytes += r.bytes;
  });
  if (set.unreadable.length > 0) throw notOnRemote(s, set.unreadable);
  const r = await downloadAll(s, absentFrom(s.store, Array.from(set.leaves, ([hash, size]) => ({ hash, size }))));
  return { downloaded: downloaded + r.count, bytes: bytes + r.bytes };
}

/**
 * The atoms the store lacks. Asked as a writer asks (LocalStore.presentForWrite): no system call per
 * atom in a shard directory that does not exist (a fresh clone's), and an atom found is refreshed,
 * so a concurrent gc keeps it until the checkout has read it.
 */
function absentFrom(store: LocalStore, atoms: readonly Wanted[]): Wanted[] {
  const refreshed = new Set<string>();
  return atoms.filter((a) => !store.presentForWrite(a.hash, refreshed));
}

/** Downloads of at least this many atoms are written as one pack. */
const PACK_MIN_ATOMS = 64;

/**
 * Downloads atoms: those in the remote store's packs by ranges, the others one by one,
 * `concurrency` requests at a time. Atoms the remote lacks are reported together; any other
 * failure stops new downloads and is thrown.
 */
export async function downloadAll(s: Session, atoms: Wanted[], { packed = false } = {}): Promise<{ count: number; bytes: number }> {
  const { progress } = s;
  progress.addTotal(atoms.length, atoms.reduce((n, a) => n + (a.size ?? 0), 0));
  let count = 0;
  let bytes = 0;
  // Atoms from the remote's packs need no note in the inventory: the packs' indexes list them.
  const loose: string[] = [];
  const stored = (size: number, expected?: number): void => {
    count++;
    bytes += size;
    if (expected === undefined) progress.addTotal(0, size); // a manifest: its size is known only now
    progress.advance(size);
  };
  // Many atoms (or atoms a layout will name: `packed`) go into one pack (one file, not one per
  // atom); it is named once the downloads end, with every atom that arrived, whatever failed. The
  // thread pool writes it while this thread hashes what arrives next.
  const pack = packed || atoms.length >= PACK_MIN_ATOMS ? new PackWriter(s.store, { writeBehind: true }) : null;
  const into = pack ?? s.store;
  let failures;
  let packedFailure: unknown = null;
  try {
    const sizes = new Map(atoms.map((a) => [a.hash, a.size]));
    let unpacked: Wanted[] = [];
    try {
      unpacked = atoms.length === 0 ? [] : await s.packs.download(atoms, into, (hash, size) => stored(size, sizes.get(hash)));
    } catch (err) {
      packedFailure = err;
    }
    failures = await forEachConcurrently(unpacked, s.settings.concurrency, async ({ hash, size: expected }) => {
      stored(await downloadAtom(s, hash, expected ?? MAX_ATOM_BYTES, into), expected);
      loose.push(hash);
    }, (err) => err instanceof AtomNotOnRemote);
    await pack?.written();
    pack?.finish();
  } finally {
    pack?.abort();
    // Best effort, as the inventory is: without the gc epoch it can be neither trusted nor written.
    if (loose.length > 0) await s.inventory.then((inventory) => inventory.record(loose), () => undefined);
  }
  if (packedFailure) {
    if (packedFailure instanceof PaniniError) throw packedFailure;
    throw new PaniniError(`downloading from the packs of ${s.backend.url} failed: ${errorMessage(packedFailure)}`, 'run the command again');
  }
  const other = failures.find((f) => !(f.error instanceof AtomNotOnRemote));
  if (other) {
    const more = failures.length > 1 ? ` (${failures.length} atoms failed; first shown)` : '';
    if (other.error instanceof PaniniError) throw new PaniniError(other.error.message + more, other.error.hint);
    throw new PaniniError(`downloading atom ${other.item.hash} from ${s.backend.url} failed: ${errorMessage(other.error)}${more}`, 'run the command again');
  }
  if (failures.length > 0) throw notOnRemote(s, failures.map((f) => f.item.hash));
  return { count, bytes };
}

/** Atoms the remote store does not have (reported together, after the others were fetched). */
export class AtomsNotOnRemote extends PaniniError {
  constructor(readonly hashes: string[], url: string) {
    const shown = hashes.slice(0, 5).join(', ') + (hashes.length > 5 ? `, and ${hashes.length - 5} more` : '');
    super(
      `${hashes.length} atom${hashes.length === 1 ? ' is' : 's are'} not in the remote store ${url}: ${shown}`,
      'they were committed from a clone that has not pushed them yet: run `git panini push` there; or check that panini.url names the right store',
    );
    this.name = 'AtomsNotOnRemote';
  }
}

function notOnRemote(t: Transfer, hashes: string[]): PaniniError {
  return new AtomsNotOnRemote(hashes, t.backend.url);
}
