/**
 * Packs in the remote store (docs/remote-stores.md, "Packs"). A push of many atoms uploads them
 * as one pack object, in the local pack format, then its index: `packs/<id>.pack`, `packs/<id>.idx`.
 * A fetch reads the atoms it needs out of packs with ranged downloads, neighbours merged into one
 * request. One request per few MiB instead of one per atom is what makes a clone from S3 fast.
 *
 * Each session lists `packs/` once (when it first needs to) and loads the indexes: from a cache in
 * the local store (`<store>/remotes/<id>.packs/<pack>.idx`; an index never changes, its name is its
 * checksum), else downloaded and checked. Every atom read from a pack is hashed before it is stored,
 * as for loose atoms, so a forged index or pack costs a failed download, never a wrong byte.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AtomError, PaniniError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { bufferBody, packKey, packOfKey, PACKS_PREFIX, RemoteError, type UploadBody } from '../store/backend.js';
import { LayoutBuilder, type LayoutRun } from '../store/layout.js';
import { statOrNull, tempName, type AtomWriter, type LocalStore } from '../store/local.js';
import { atomsHeld, encodeIndex, entriesHeld, findInPacks, PACK_MAGIC, PackIndex, readPackBytes, removeQuietly, type EncodedIndex, type PackEntry } from '../store/pack.js';
import { readAll, readObject, remoteCachePath, type Transfer } from './atoms.js';
import { forEachConcurrently } from './pool.js';
import { withRetries } from './retry.js';

/** A pushed pack holds at least this many bytes unless the push is smaller ... */
const PACK_MIN_BYTES = 16 * 1024 * 1024;
/** ... and at most this many (a failed upload is retried whole). */
const PACK_MAX_BYTES = 256 * 1024 * 1024;
/** A pushed pack this small is read into memory and handed over whole (a folder writes it at once). */
const PACK_IN_MEMORY_BYTES = 8 * 1024 * 1024;
/** One ranged download covers at most this much (several run at once, each held whole). */
const RANGE_MAX_BYTES = 8 * 1024 * 1024;
/**
 * Atoms closer than this in a pack are fetched in one range, the bytes between them discarded.
 * Small: a wider gap costs more than the request it saves (S3 prices a GET like about 4 KB of
 * transfer; the requests run `concurrency` at a time).
 */
const RANGE_MAX_GAP = 4 * 1024;
/**
 * A fetch that wants (a push that sends, a fetch's layouts need) at least this share of a pack's atom
 * bytes moves the whole pack file instead, where the store can (a folder: a hard link or a kernel copy).
 */
export const WHOLE_PACK_SHARE = 0.75;
/** At most this many bytes of a layout's runs are downloaded before the indexes that check them (prefetchRuns). */
const PREFETCH_MAX_BYTES = 64 * 1024 * 1024;
/** Uploaded atoms whose place a session remembers (~150 bytes each); past them, `locate` looks up. */
const MAX_SENT_REMEMBERED = 131_072;
/** No index this program writes is larger (2.7 million atoms). */
const MAX_REMOTE_IDX_BYTES = 128 * 1024 * 1024;

/** Where an atom is in the remote store's packs: its entry, at `position` in the pack's index. */
export interface PackedAtom {
  pack: PackIndex;
  entry: PackEntry;
  position: number;
}

/** A listed pack: its index (null if absent or not valid), its size and last write. */
export interface ListedPack {
  id: string;
  index: PackIndex | null;
  packSize: number | null;
  idxSize: number | null;
  modifiedMs?: number;
}

/** An atom to download, and its size when a ref says it (a leaf): more bytes than that is an error. */
export interface Wanted {
  hash: string;
  size?: number;
}

/** The pack is gone from the remote store (a remote gc rewrote or deleted it since it was listed). */
class PackGone extends Error {}

const aheadKey = (key: string, start: number, length: number): string => `${key} ${start} ${length}`;

/** Bytes a pack served for an atom that are not that atom (nothing of them is stored). */
function badAtom(t: Transfer, pack: string, hash: string, size: number, actual: string): RemoteError {
  return new RemoteError(
    `the remote store ${t.backend.url} served ${size} bytes for atom ${hash} that hash to ${actual}; they were not stored`,
    `if this repeats, the remote copy in ${packKey(pack, 'pack')} is damaged: delete ${packKey(pack, 'idx')} from the remote store and push again from a clone that has the files`,
    true,
  );
}

/** Runs of one pack to download as one range: [start, end). */
interface Stretch {
  pack: string;
  start: number;
  end: number;
  runs: LayoutRun[];
}

/**
 * A layout's runs joined into stretches, per pack and by offset: a run within RANGE_MAX_GAP of the
 * stretch so far joins it, unless the stretch would grow past RANGE_MAX_BYTES. From the runs alone,
 * so that their bytes can be asked for before the packs' indexes arrive (RemotePacks.prefetchRuns)
 * in the very ranges moveRuns asks for once they have.
 */
function stretchesOf(runs: readonly LayoutRun[]): Stretch[] {
  const sorted = [...runs].sort((a, b) => (a.pack < b.pack ? -1 : a.pack > b.pack ? 1 : a.offset - b.offset));
  const stretches: Stretch[] = [];
  for (const run of sorted) {
    const end = run.offset + run.size;
    const last = stretches[stretches.length - 1];
    if (last?.pack === run.pack && run.offset <= last.end + RANGE_MAX_GAP && Math.max(last.end, end) - last.start <= RANGE_MAX_BYTES) {
      last.end = Math.max(last.end, end);
      last.runs.push(run);
    } else {
      stretches.push({ pack: run.pack, start: run.offset, end, runs: [run] });
    }
  }
  return stretches;
}

/** Atoms of a span to download in one range: order[first] to order[last - 1], bytes [start, end), at `local` in the new pack. */
interface Piece {
  span: Span;
  start: number;
  end: number;
  first: number;
  last: number;
  local: number;
  /** Its atoms where they lie in the new pack, once downloaded and checked. */
  entries?: PackEntry[];
}

/**
 * Runs of one remote pack taken as one stretch of its bytes, [start, end): the atoms at
 * `order[first]` to `order[last - 1]` (positions in its index, by offset) fill it exactly, one after
 * the other, so that every byte downloaded is checked; `broken` if no atom holds the first run's
 * first byte. A run needs no atom boundary of its own where the whole span is downloaded: it
 * moves by its offset.
 */
class Span {
  readonly start: number;
  end: number;
  readonly first: number;
  last: number;
  readonly broken: boolean;
  readonly runs: LayoutRun[] = [];
  /** Where the span starts in the new pack, when all of it is downloaded. */
  private local = -1;
  /** Otherwise, for each atom (from `first`): its place in the store's packs, or in the new pack. */
  private places: { pack: string | null; offset: number }[] | null = null;

  constructor(readonly index: PackIndex, readonly order: Uint32Array, run: LayoutRun) {
    const lo = this.atomAfter(run.offset, 0);
    // The atom that holds the run's first byte (the last one starting at or before it).
    this.first = this.last = Math.max(0, lo - 1);
    this.start = this.end = lo > 0 ? index.offsetOf(order[lo - 1]!) : 0;
    this.broken = lo === 0 || !this.take(run);
  }

  /** Takes in the run, with the atoms that follow up to its end; false (the run left out) if they stop short of it. */
  take(run: LayoutRun): boolean {
    const to = run.offset + run.size;
    while (this.end < to) {
      const i = this.order[this.last];
      if (i === undefined || this.index.offsetOf(i) !== this.end) return false;
      this.end += this.index.sizeOf(i);
      this.last++;
    }
    this.runs.push(run);
    return true;
  }

  /**
   * Decides what to download: the atoms `store`'s packs lack (all of them without a store to ask),
   * in pieces of at most RANGE_MAX_BYTES placed in the new pack from `at` on; returns where the
   * next span's bytes go.
   */
  plan(store: LocalStore | null, at: number, pieces: Piece[]): number {
    const { index, order } = this;
    if (store) this.places = [];
    const firstPiece = pieces.length;
    let piece: Piece | null = null;
    for (let k = this.first; k < this.last; k++) {
      const i = order[k]!;
      const size = index.sizeOf(i);
      const held = store?.packedAt(index.hashAt(i));
      if (held?.pack && held.size === size) {
        this.places!.push({ pack: held.pack.id, offset: held.offset });
        piece = null;
        continue;
      }
      const offset = index.offsetOf(i);
      if (!piece || offset + size - piece.start > RANGE_MAX_BYTES) {
        piece = { span: this, start: offset, end: offset, first: k, last: k, local: at };
        pieces.push(piece);
      }
      this.places?.push({ pack: null, offset: at });
      piece.end = offset + size;
      piece.last = k + 1;
      at += size;
    }
    if (!store) this.local = pieces[firstPiece]?.local ?? -1;
    return at;
  }

  /** The run's bytes as local runs, with `id` the new pack's; null if it cannot be told (a run that cuts an atom, among atoms kept where they were). */
  localRuns(run: LayoutRun, id: string): LayoutRun[] | null {
    if (!this.places) return [{ pack: id, offset: this.local + run.offset - this.start, size: run.size }];
    const builder = new LayoutBuilder();
    let k = this.atomAfter(run.offset, this.first) - 1;
    if (k < this.first || this.index.offsetOf(this.order[k]!) !== run.offset) return null;
    for (let at = run.offset; at < run.offset + run.size; k++) {
      if (k >= this.last) return null;
      const size = this.index.sizeOf(this.order[k]!);
      const place = this.places[k - this.first]!;
      builder.add(place.pack ?? id, place.offset, size);
      at += size;
      if (at > run.offset + run.size) return null;
    }
    return builder.complete ? builder.runs : null;
  }

  /** The first position from `from` on whose atom starts after `offset`. */
  private atomAfter(offset: number, from: number): number {
    let lo = from;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.index.offsetOf(this.order[mid]!) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export class RemotePacks {
  private listed: ListedPack[] | null = null;
  /** The pack `find` last found an atom in (one of `listed`). */
  private lastHit: PackIndex | null = null;
  /** The listing under way, shared by callers that ask for it meanwhile. */
  private listing: Promise<ListedPack[]> | null = null;
  /** The atoms this session uploaded, where they lie in their packs. */
  private readonly sent = new Map<string, LayoutRun>();
  /** Ranges asked for ahead (prefetchRuns), by key, start and length, until moveRuns takes them. */
  private readonly ahead = new Map<string, Promise<Buffer | null>>();
  /** The downloads ahead, while under way. */
  private prefetching: Promise<unknown> | null = null;
  private readonly cacheDir: string;

  constructor(private readonly t: Transfer) {
    this.cacheDir = remoteCachePath(t, '.packs');
  }

  /** Every pack in the remote store, listed once per session (again after `refresh`). */
  list(): Promise<ListedPack[]> {
    if (this.listed) return Promise.resolve(this.listed);
    this.listing ??= this.listAndLoad().finally(() => {
      this.listing = null;
    });
    return this.listing;
  }

  /** Waits for a listing under way (as a session starts one), so that none outlives its session. */
  async settled(): Promise<void> {
    await this.listing?.catch(() => undefined);
    await this.prefetching;
  }

  /**
   * Starts downloading the stretches of a layout's runs (stretchesOf) before the packs' indexes
   * are there to check them: they arrive with the indexes instead of a round trip after. moveRuns
   * takes a range from here where it asks for the very same one, and checks every atom in it as
   * ever; a range never asked for is dropped with the session. Stretches of one range at most
   * (RANGE_MAX_BYTES), up to PREFETCH_MAX_BYTES in all.
   */
  prefetchRuns(runs: readonly LayoutRun[]): void {
    const jobs: (() => Promise<void>)[] = [];
    let total = 0;
    for (const stretch of stretchesOf(runs)) {
      const length = stretch.end - stretch.start;
      // A run longer than one range is cut by its atoms, which only the index tells.
      if (length > RANGE_MAX_BYTES) continue;
      if (total + length > PREFETCH_MAX_BYTES) break;
      total += length;
      const key = packKey(stretch.pack, 'pack');
      let start = (): Promise<void> => Promise.resolve();
      const bytes = new Promise<Buffer | null>((resolve, reject) => {
        start = () => this.fetchBytes(key, stretch.start, length, `downloading bytes ${stretch.start}–${stretch.end - 1} of ${key} from ${this.t.backend.url}`).then(resolve, reject);
      });
      bytes.catch(() => undefined); // a failure is met again, and retried, by moveRuns
      this.ahead.set(aheadKey(key, stretch.start, length), bytes);
      jobs.push(start);
    }
    if (jobs.length > 0) this.prefetching = forEachConcurrently(jobs, this.t.settings.concurrency, (start) => start());
  }

  private async listAndLoad(): Promise<ListedPack[]> {
    const byId = new Map<string, ListedPack>();
    await withRetries(this.t.settings.attempts, async () => {
      byId.clear();
      for await (const o of this.t.backend.list(PACKS_PREFIX)) {
        const named = packOfKey(o.key);
        if (!named) continue;
        const p = byId.get(named.id) ?? { id: named.id, index: null, packSize: null, idxSize: null };
        if (named.part === 'pack') {
          p.packSize = o.size;
          p.modifiedMs = o.modifiedMs;
        } else {
          p.idxSize = o.size;
        }
        byId.set(named.id, p);
      }
    });
    const complete = [...byId.values()].filter((p) => p.packSize !== null && p.idxSize !== null);
    const failures = await forEachConcurrently(complete, this.t.settings.concurrency, async (p) => {
      p.index = await this.loadIndex(p.id, p.packSize!, p.idxSize!);
    });
    if (failures.length > 0) throw failures[0]!.error;
    this.forgetCachedExcept(new Set(complete.map((p) => p.id)));
    this.listed = [...byId.values()];
    return this.listed;
  }

  /** Where the atom is packed, if it is (after `list`); the pack of the last atom found is looked in first (a file's atoms mostly share one). */
  find(hash: string): PackedAtom | null {
    const found = findInPacks((this.listed ?? []).map((p) => p.index), hash, this.lastHit);
    if (!found) return null;
    const { pack, i } = found;
    this.lastHit = pack;
    return { pack, entry: { hash, offset: pack.offsetOf(i), size: pack.sizeOf(i) }, position: i };
  }

  /**
   * Where the atom lies in the store's packs (its pack's id, its offset and size there), or null:
   * those this session uploaded are known without a lookup (a push's layouts ask for every leaf of
   * every file it sent).
   */
  locate(hash: string): LayoutRun | null {
    const sent = this.sent.get(hash);
    if (sent) return sent;
    const at = this.find(hash);
    return at && { pack: at.pack.id, offset: at.entry.offset, size: at.entry.size };
  }

  /** Forgets the listing: the next use lists again. */
  refresh(): void {
    this.listed = null;
    this.listing = null;
    this.lastHit = null;
  }

  /**
   * Uploads local atoms as packs (each pack, then its index); returns the atoms uploaded, also
   * when a later pack fails (that failure is then thrown as `error`).
   */
  async upload(all: readonly string[], onPack: (hashes: string[], bytes: number) => void): Promise<{ uploaded: string[]; error?: unknown }> {
    const placed: string[] = [];
    try {
      await this.placeWholePacks(all, placed, onPack);
    } catch (error) {
      return { uploaded: placed, error };
    }
    const done = new Set(placed);
    const hashes = done.size > 0 ? all.filter((h) => !done.has(h)) : all;
    const total = hashes.reduce((n, h) => n + this.t.store.sizeOf(h), 0);
    const target = Math.min(PACK_MAX_BYTES, Math.max(PACK_MIN_BYTES, Math.ceil(total / this.t.settings.concurrency)));
    const groups: string[][] = [[]];
    let bytes = 0;
    for (const h of hashes) {
      const size = this.t.store.sizeOf(h);
      if (bytes > 0 && bytes + size > target) {
        groups.push([]);
        bytes = 0;
      }
      groups[groups.length - 1]!.push(h);
      bytes += size;
    }
    const uploaded: string[] = [...placed];
    const failures = await forEachConcurrently(groups.filter((g) => g.length > 0), this.t.settings.concurrency, async (group) => {
      const size = await this.uploadPack(group);
      uploaded.push(...group);
      onPack(group, size);
    });
    return { uploaded, error: failures[0]?.error };
  }

  /**
   * Downloads the wanted atoms that are in packs into `into`, calling `stored` for each; returns
   * the others (not packed, or in a pack that vanished meanwhile), for loose downloads. Throws the
   * first failure after the other ranges have finished.
   */
  async download(wanted: readonly Wanted[], into: AtomWriter, stored: (hash: string, size: number) => void): Promise<Wanted[]> {
    await this.list();
    let { ranges, rest } = this.plan(wanted);
    if (ranges.length === 0) return rest;
    ranges = await this.adoptWholePacks(ranges, stored);
    let gone = await this.fetchRanges(ranges, into, stored);
    if (gone.length > 0) {
      // A remote gc moved them: one new listing finds their new pack, if any.
      this.refresh();
      await this.list();
      ({ ranges, rest: gone } = this.plan(gone, rest));
      gone.push(...(await this.fetchRanges(ranges, into, stored)));
      rest = gone;
    }
    return rest;
  }

  private plan(wanted: readonly Wanted[], rest: Wanted[] = []): { ranges: PackRange[]; rest: Wanted[] } {
    const byPack = new Map<PackIndex, PackRange['items']>();
    for (const w of wanted) {
      const at = this.find(w.hash);
      // An index claiming a size other than the ref's is not trusted: the loose copy may be right.
      if (!at || (w.size !== undefined && at.entry.size !== w.size)) {
        rest.push(w);
        continue;
      }
      const item = { wanted: w, entry: at.entry, position: at.position };
      const items = byPack.get(at.pack);
      if (items) items.push(item);
      else byPack.set(at.pack, [item]);
    }
    const ranges: PackRange[] = [];
    for (const [pack, items] of byPack) {
      items.sort((a, b) => a.entry.offset - b.entry.offset);
      let current: PackRange | null = null;
      for (const item of items) {
        const e = item.entry;
        const end = e.offset + e.size;
        if (current && e.offset - current.end <= RANGE_MAX_GAP && end - current.start <= RANGE_MAX_BYTES) {
          current.items.push(item);
          current.end = Math.max(current.end, end);
        } else {
          current = { pack, start: e.offset, end, items: [item] };
          ranges.push(current);
        }
      }
    }
    // Largest first, so one big range does not finish last alone.
    ranges.sort((a, b) => b.end - b.start - (a.end - a.start));
    return { ranges, rest };
  }

  /**
   * Where the store can hand over a whole pack file (a folder: a hard link, or a copy by the kernel)
   * and at least WHOLE_PACK_SHARE of its atoms' bytes are wanted, that file becomes a local pack,
   * as if its atoms had been downloaded: no bytes pass through this process but to be hashed, and
   * none are written. Every atom is verified first. The index names those that hold (the others
   * are there anyway: a later fetch of older versions then finds them); a pack where a wanted one
   * fails is dropped and its ranges downloaded as usual, which names the bad atom. Returns the
   * ranges of the other packs.
   */
  private async adoptWholePacks(ranges: PackRange[], stored: (hash: string, size: number) => void): Promise<PackRange[]> {
    if (!this.t.backend.copyTo) return ranges;
    const byPack = new Map<PackIndex, PackRange[]>();
    for (const r of ranges) byPack.set(r.pack, [...(byPack.get(r.pack) ?? []), r]);
    const left: PackRange[] = [];
    for (const [pack, packRanges] of byPack) {
      const items = packRanges.flatMap((r) => r.items);
      const entries = [...new Map(items.map((i) => [i.position, i.entry])).values()];
      if (!mostOf(pack, entries) || !(await this.adopt(pack, items.map((i) => i.position)))) {
        left.push(...packRanges);
        continue;
      }
      for (const item of items) {
        item.done = true;
        stored(item.entry.hash, item.entry.size);
      }
    }
    return left;
  }

  /**
   * Takes these remote packs whole into the local store (see adoptWholePacks), each only if every
   * atom in it holds, so that it keeps its id; returns the ids the local store then holds (also
   * those it held already). For remote layouts (remote-layouts.ts): a layout's runs are offsets in
   * its packs, right only in the very same pack.
   */
  async adoptWhole(ids: readonly string[]): Promise<Set<string>> {
    const held = new Set<string>();
    const listed = await this.list();
    for (const id of ids) {
      const index = listed.find((p) => p.id === id)?.index;
      if (this.t.store.holdsPack(id) || (this.t.backend.copyTo && index && (await this.adopt(index, [])) === 'whole')) held.add(id);
    }
    return held;
  }

  /**
   * Copies (or links) the remote pack into the local store, verifies its atoms, and names it with
   * those that hold, if those `wanted` (positions in its index) all do: 'whole' if every atom held
   * (the pack keeps its id), 'part' if not, null if it was not taken.
   */
  private async adopt(pack: PackIndex, wanted: readonly number[]): Promise<'whole' | 'part' | null> {
    const { backend, store } = this.t;
    const listed = this.listed?.find((p) => p.index === pack);
    if (!listed?.packSize) return null;
    const tmp = tempName(store.ensurePacksDir(), '.pack');
    try {
      if (!(await backend.copyTo!(pack.packPath, tmp))) return null; // gone since listed: the ranges find out
    } catch {
      removeQuietly(tmp);
      return null; // not copied: the ranges download it
    }
    const held = withPackFile(tmp, listed.packSize, (fd) => atomsHeld(fd, pack));
    if (!held || !wanted.every((i) => held[i] === 1)) {
      removeQuietly(tmp);
      return null;
    }
    const all = held.every((flag) => flag === 1);
    store.namePack(tmp, all ? pack.encoded() : [...pack.entries()].filter((_, i) => held[i] === 1)); // the store's own index if every atom holds
    return all ? 'whole' : 'part';
  }

  /**
   * Moves byte runs of remote packs (a layout's) into the local store: the atoms they cover that
   * the store's packs lack are downloaded, every one hashed to its name, and written back to back
   * into one new pack that lists them; returns where each run now lies (as local runs), and the
   * atoms and bytes downloaded. Runs a few KiB apart are fetched as one range (RANGE_MAX_GAP), the
   * atoms between them kept too. A run is left out (absent from the result) if its pack is not
   * listed or gone, or if the pack's index does not cover its bytes with atoms. With `lookUp`
   * false (a store that had no packs: a clone's, whatever packs it took whole since, as no atom
   * lies in two of the remote's), a run moves by its offset: no atom is looked up by its name.
   */
  async moveRuns(runs: readonly LayoutRun[], lookUp: boolean): Promise<{ moved: Map<LayoutRun, LayoutRun[]>; atoms: number; bytes: number }> {
    const listed = new Map((await this.list()).filter((p) => p.index && p.packSize !== null).map((p) => [p.id, p.index!]));
    const spans: Span[] = [];
    const orders = new Map<PackIndex, Uint32Array>();
    for (const stretch of stretchesOf(runs.filter((r) => listed.has(r.pack)))) {
      const index = listed.get(stretch.pack)!;
      let order = orders.get(index);
      if (!order) orders.set(index, (order = index.positionsByOffset()));
      const [first, ...rest] = stretch.runs;
      const span = new Span(index, order, first!);
      if (span.broken) continue;
      for (const run of rest) span.take(run); // a run whose bytes are not all atoms of the index is left out
      spans.push(span);
    }
    const store = this.t.store;
    const kept = spans.filter((span) => !span.broken);
    // Atoms already in the store's packs stay there (`fetch --all` after a clone asks for older
    // versions that share most of them); the others lie in the new pack back to back, in order.
    const pieces: Piece[] = [];
    let end = PACK_MAGIC.length;
    for (const span of kept) end = span.plan(lookUp ? store : null, end, pieces);
    const moved = new Map<LayoutRun, LayoutRun[]>();
    let id = '';
    const gone = new Set<Span>();
    let atoms = 0;
    let bytes = 0;
    if (pieces.length > 0) {
      const tmp = tempName(store.ensurePacksDir(), '.pack');
      const fd = openSync(tmp, 'wx', 0o444);
      try {
        writeSync(fd, PACK_MAGIC, 0, PACK_MAGIC.length, 0);
        const failures = await forEachConcurrently(pieces, this.t.settings.concurrency, async (piece) => {
          const key = packKey(piece.span.index.id, 'pack');
          const what = `downloading bytes ${piece.start}–${piece.end - 1} of ${key} from ${this.t.backend.url}`;
          await withRetries(this.t.settings.attempts, async () => {
            const got = await this.readRange(key, piece.start, piece.end - piece.start, what);
            if (!got) {
              gone.add(piece.span);
              return;
            }
            if (got.length !== piece.end - piece.start) throw new RemoteError(`${what}: ${got.length} bytes arrived`, 'run the command again', true);
            const { index, order } = piece.span;
            const entries: PackEntry[] = [];
            for (let k = piece.first; k < piece.last; k++) {
              const i = order[k]!;
              const at = index.offsetOf(i) - piece.start;
              const hash = index.hashAt(i);
              const size = index.sizeOf(i);
              const actual = sha256Hex(got.subarray(at, at + size));
              if (actual !== hash) throw badAtom(this.t, index.id, hash, size, actual);
              entries.push({ hash, offset: piece.local + at, size });
            }
            writeSync(fd, got, 0, got.length, piece.local);
            piece.entries = entries;
          });
        });
        if (failures.length > 0) throw failures[0]!.error;
        closeSync(fd);
        const entries = new Map<string, PackEntry>();
        for (const piece of pieces) {
          if (gone.has(piece.span)) continue;
          for (const e of piece.entries!) if (!entries.has(e.hash)) entries.set(e.hash, e);
          bytes += piece.end - piece.start;
        }
        if (entries.size > 0) id = store.namePack(tmp, [...entries.values()]);
        else removeQuietly(tmp);
        atoms = entries.size;
      } catch (err) {
        try { closeSync(fd); } catch { /* closed already */ }
        removeQuietly(tmp);
        throw err;
      }
    }
    for (const span of kept) {
      if (gone.has(span)) continue;
      for (const run of span.runs) {
        const local = span.localRuns(run, id);
        if (local) moved.set(run, local);
      }
    }
    return { moved, atoms, bytes };
  }

  /** Downloads the ranges; returns the atoms of packs that are gone. */
  private async fetchRanges(ranges: PackRange[], into: AtomWriter, stored: (hash: string, size: number) => void): Promise<Wanted[]> {
    const gone: Wanted[] = [];
    const failures = await forEachConcurrently(ranges, this.t.settings.concurrency, async (range) => {
      try {
        await withRetries(this.t.settings.attempts, () => this.fetchRange(range, into, stored));
      } catch (err) {
        if (!(err instanceof PackGone)) throw err;
        gone.push(...range.items.filter((i) => !i.done).map((i) => i.wanted));
      }
    });
    if (failures.length > 0) throw failures[0]!.error;
    return gone;
  }

  private async fetchRange(range: PackRange, into: AtomWriter, stored: (hash: string, size: number) => void): Promise<void> {
    const { backend } = this.t;
    const key = packKey(range.pack.id, 'pack');
    const length = range.end - range.start;
    const what = `downloading bytes ${range.start}–${range.end - 1} of ${key} from ${backend.url}`;
    const bytes = await this.readRange(key, range.start, length, what);
    if (!bytes) throw new PackGone();
    if (bytes.length !== length) throw new RemoteError(`${what}: ${bytes.length} bytes arrived`, 'run the command again', true);
    let bad: { hash: string; size: number; actual: string } | null = null;
    for (const item of range.items) {
      if (item.done) continue;
      const { hash, offset, size } = item.entry;
      const atom = bytes.subarray(offset - range.start, offset - range.start + size);
      const actual = sha256Hex(atom);
      if (actual !== hash) {
        bad ??= { hash, size, actual };
        continue;
      }
      into.put(hash, atom);
      item.done = true;
      stored(hash, size);
    }
    if (bad) throw badAtom(this.t, range.pack.id, bad.hash, bad.size, bad.actual);
  }

  private async readRange(key: string, start: number, length: number, what: string): Promise<Buffer | null> {
    const ahead = this.ahead.get(aheadKey(key, start, length));
    if (ahead) {
      this.ahead.delete(aheadKey(key, start, length));
      return ahead;
    }
    return this.fetchBytes(key, start, length, what);
  }

  private async fetchBytes(key: string, start: number, length: number, what: string): Promise<Buffer | null> {
    const { backend, settings } = this.t;
    if (length === 0) return Buffer.alloc(0); // zero-length atoms need no bytes (and no range is empty)
    if (backend.readRange) return backend.readRange(key, { start, length });
    const stream = await backend.download(key, { start, length });
    return stream && readAll(stream, length, settings.timeoutMs, what, true);
  }

  /**
   * The push side of adoptWholePacks: a local pack file of which at least WHOLE_PACK_SHARE of the
   * atom bytes are to be uploaded goes to the store whole (backend.copyFrom: a hard link or a kernel
   * copy), after its atoms to upload are verified, with an index naming those alone. The atoms so
   * placed go to `placed`; a pack whose atoms fail is left to the usual upload, which names the atom.
   */
  private async placeWholePacks(hashes: readonly string[], placed: string[], onPack: (hashes: string[], bytes: number) => void): Promise<void> {
    const { backend, store } = this.t;
    if (!backend.copyFrom) return;
    // The atoms to send, grouped by the local pack each is found in (one pack per atom, so an atom
    // in two packs goes once); the store's other atoms are not looked at.
    const byPack = new Map<PackIndex, PackEntry[]>();
    for (const hash of new Set(hashes)) {
      const at = store.packedAt(hash);
      if (!at?.pack) continue;
      const entry = { hash, offset: at.offset, size: at.size };
      const entries = byPack.get(at.pack);
      if (entries) entries.push(entry);
      else byPack.set(at.pack, [entry]);
    }
    for (const [pack, entries] of byPack) {
      if (!mostOf(pack, entries)) continue;
      const packSize = statOrNull(pack.packPath)?.size;
      // Every atom of the pack sent (a first push): its own index goes with it, not one built again.
      const all = entries.length === pack.count;
      const held = packSize !== undefined && withPackFile(pack.packPath, packSize, (fd) => (all ? !atomsHeld(fd, pack).includes(0) : entriesHeld(fd, entries).length === entries.length));
      if (!held) continue;
      await this.uploadWith(all ? pack.encoded() : encodeIndex(entries), entries, packSize, (key) => backend.copyFrom!(pack.packPath, key));
      const names = entries.map((e) => e.hash);
      placed.push(...names);
      onPack(names, atomBytes(entries));
    }
  }

  /** One pack and its index; returns the pack's size. */
  private async uploadPack(hashes: string[]): Promise<number> {
    const { store, backend } = this.t;
    const entries: PackEntry[] = [];
    let end = PACK_MAGIC.length;
    for (const hash of hashes) {
      const size = store.sizeOf(hash);
      if (size < 0) throw new AtomError(hash, 'missing');
      entries.push({ hash, offset: end, size });
      end += size;
    }
    await this.uploadWith(encodeIndex(entries), entries, end, (key) => backend.upload(key, packBody(this.t, entries, end)));
    return end;
  }

  /** Stores a pack of `entries` through `put` (given its key), then its index, which this session then knows. */
  private async uploadWith(encoded: EncodedIndex, entries: readonly PackEntry[], packSize: number, put: (key: string) => Promise<void>): Promise<void> {
    const { backend, settings } = this.t;
    const { id, bytes: idx, parsed } = encoded;
    await withRetries(settings.attempts, () => put(packKey(id, 'pack')));
    await withRetries(settings.attempts, () => backend.upload(packKey(id, 'idx'), bufferBody(idx)));
    for (const e of entries) if (this.sent.size < MAX_SENT_REMEMBERED) this.sent.set(e.hash, { pack: id, offset: e.offset, size: e.size });
    this.cache(id, idx);
    const index = parsed ? parsed.relocated(packKey(id, 'pack'), packKey(id, 'idx')) : PackIndex.parse(idx, id, packSize, packKey(id, 'pack'), packKey(id, 'idx'));
    this.listed?.push({ id, index, packSize, idxSize: idx.length, modifiedMs: Date.now() });
  }

  private async loadIndex(id: string, packSize: number, idxSize: number): Promise<PackIndex | null> {
    const parse = (raw: Buffer): PackIndex | null => PackIndex.parse(raw, id, packSize, packKey(id, 'pack'), packKey(id, 'idx'));
    try {
      const cached = parse(readFileSync(join(this.cacheDir, `${id}.idx`)));
      if (cached) return cached;
    } catch {
      // not cached yet
    }
    if (idxSize > MAX_REMOTE_IDX_BYTES) return null;
    const key = packKey(id, 'idx');
    const raw = await withRetries(this.t.settings.attempts, async () => {
      return readObject(this.t, key, MAX_REMOTE_IDX_BYTES, `downloading ${key} from ${this.t.backend.url}`);
    });
    // Deleted since listed, or not a valid index (readers ignore it, as local ones; gc --remote names it).
    const index = raw ? parse(raw) : null;
    if (index) this.cache(id, raw!);
    return index;
  }

  private cache(id: string, idx: Buffer): void {
    try {
      mkdirSync(this.cacheDir, { recursive: true });
      const tmp = join(this.cacheDir, `.tmp-${process.pid}-${id}`);
      writeFileSync(tmp, idx);
      renameSync(tmp, join(this.cacheDir, `${id}.idx`));
    } catch {
      // the cache only saves downloads
    }
  }

  private forgetCachedExcept(ids: Set<string>): void {
    let names: string[];
    try {
      names = readdirSync(this.cacheDir);
    } catch {
      return;
    }
    for (const name of names) if (!ids.has(name.replace(/\.idx$/, ''))) removeQuietly(join(this.cacheDir, name));
  }
}

interface PackRange {
  pack: PackIndex;
  start: number;
  end: number;
  items: { wanted: Wanted; entry: PackEntry; position: number; done?: boolean }[];
}

const atomBytes = (entries: readonly PackEntry[]): number => entries.reduce((n, e) => n + e.size, 0);

/** Whether `entries` (of `pack`) are at least WHOLE_PACK_SHARE of its atom bytes. */
const mostOf = (pack: PackIndex, entries: readonly PackEntry[]): boolean => atomBytes(entries) >= pack.atomBytes() * WHOLE_PACK_SHARE;

/** What `check` finds in the pack file at `path`; null unless the file is `size` bytes and starts as a pack does. */
function withPackFile<T>(path: string, size: number, check: (fd: number) => T): T | null {
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).size !== size || !readPackBytes(fd, 0, PACK_MAGIC.length).equals(PACK_MAGIC)) return null;
    return check(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The pack's bytes, read atom by atom from the local store, each verified before it is sent: as
 * they are sent, or all first for a pack of at most PACK_IN_MEMORY_BYTES.
 */
function packBody(t: Transfer, entries: readonly PackEntry[], size: number): UploadBody {
  function* bytes(): Generator<Buffer> {
    yield PACK_MAGIC;
    for (const e of entries) {
      const atom = t.store.get(e.hash); // verified: a damaged local atom fails the upload
      if (atom.length !== e.size) throw new PaniniError(`atom ${e.hash} changed size while it was uploaded`, 'run the command again');
      yield atom;
    }
  }
  if (size <= PACK_IN_MEMORY_BYTES) return bufferBody(Buffer.concat([...bytes()], size));
  return { size, open: () => Readable.from(bytes(), { objectMode: false }) };
}
