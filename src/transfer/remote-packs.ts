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
import type { LayoutRun } from '../store/layout.js';
import { statOrNull, tempName, type AtomWriter } from '../store/local.js';
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

/** Bytes a pack served for an atom that are not that atom (nothing of them is stored). */
function badAtom(t: Transfer, pack: string, hash: string, size: number, actual: string): RemoteError {
  return new RemoteError(
    `the remote store ${t.backend.url} served ${size} bytes for atom ${hash} that hash to ${actual}; they were not stored`,
    `if this repeats, the remote copy in ${packKey(pack, 'pack')} is damaged: delete ${packKey(pack, 'idx')} from the remote store and push again from a clone that has the files`,
    true,
  );
}

/**
 * Runs of one remote pack fetched as one stretch of its bytes, [start, end): the atoms at
 * `order[first]` to `order[last - 1]` (positions in its index, by offset) fill it exactly, one after
 * the other, so that every byte fetched is checked; `broken` if no atom holds the first run's first
 * byte. A run needs no atom boundary of its own: it moves by its offset. `local`: where the span
 * starts in the new pack.
 */
class Span {
  readonly start: number;
  end: number;
  readonly first: number;
  last: number;
  local = 0;
  readonly broken: boolean;
  readonly runs: LayoutRun[] = [];

  constructor(readonly index: PackIndex, readonly order: Uint32Array, run: LayoutRun) {
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (index.offsetOf(order[mid]!) <= run.offset) lo = mid + 1;
      else hi = mid;
    }
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

  /** The span cut at atom boundaries into downloads of at most RANGE_MAX_BYTES (an atom larger than that alone). */
  pieces(): { span: Span; start: number; end: number; first: number; last: number }[] {
    const pieces = [];
    let first = this.first;
    let start = this.start;
    let at = this.start;
    for (let k = this.first; k < this.last; k++) {
      const size = this.index.sizeOf(this.order[k]!);
      if (at > start && at + size - start > RANGE_MAX_BYTES) {
        pieces.push({ span: this as Span, start, end: at, first, last: k });
        first = k;
        start = at;
      }
      at += size;
    }
    pieces.push({ span: this as Span, start, end: at, first, last: this.last });
    return pieces;
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
   * Downloads byte runs of remote packs (a layout's) into one new local pack, their bytes back to
   * back, every atom in them hashed to its name and listed in the pack's index; returns where each
   * run now lies, and the atoms and bytes moved. Runs a few KiB apart are fetched as one range
   * (RANGE_MAX_GAP), the atoms between them kept too. A run is left out (absent from the result)
   * if its pack is not listed or gone, or if the pack's index does not cut its bytes into whole
   * atoms. The runs move by their offsets, a run at a time: no atom is looked up by its name.
   */
  async moveRuns(runs: readonly LayoutRun[]): Promise<{ moved: Map<LayoutRun, LayoutRun>; atoms: number; bytes: number }> {
    const listed = new Map((await this.list()).filter((p) => p.index && p.packSize !== null).map((p) => [p.id, p.index!]));
    const spans: Span[] = [];
    const byPack = new Map<string, LayoutRun[]>();
    for (const run of runs) {
      if (!listed.has(run.pack)) continue;
      const of = byPack.get(run.pack);
      if (of) of.push(run);
      else byPack.set(run.pack, [run]);
    }
    for (const [id, packRuns] of byPack) {
      const index = listed.get(id)!;
      packRuns.sort((a, b) => a.offset - b.offset);
      let order: Uint32Array | null = null;
      for (const run of packRuns) {
        const last = spans[spans.length - 1];
        if (last?.index === index && !last.broken && run.offset <= last.end + RANGE_MAX_GAP) {
          last.take(run); // a run whose bytes are not all atoms of the index is left out
          continue;
        }
        order ??= index.positionsByOffset();
        spans.push(new Span(index, order, run));
      }
    }
    // The spans kept lie in the new pack back to back, in order.
    const kept = spans.filter((span) => !span.broken);
    let end = PACK_MAGIC.length;
    for (const span of kept) {
      span.local = end;
      end += span.end - span.start;
    }
    const moved = new Map<LayoutRun, LayoutRun>();
    if (kept.length === 0) return { moved, atoms: 0, bytes: 0 };
    const store = this.t.store;
    const tmp = tempName(store.ensurePacksDir(), '.pack');
    const fd = openSync(tmp, 'wx', 0o444);
    const entries = new Map<string, PackEntry>();
    let id: string;
    let gone: Set<Span>;
    try {
      writeSync(fd, PACK_MAGIC, 0, PACK_MAGIC.length, 0);
      gone = new Set<Span>();
      const failures = await forEachConcurrently(kept.flatMap((span) => span.pieces()), this.t.settings.concurrency, async (piece) => {
        const key = packKey(piece.span.index.id, 'pack');
        const what = `downloading bytes ${piece.start}–${piece.end - 1} of ${key} from ${this.t.backend.url}`;
        await withRetries(this.t.settings.attempts, async () => {
          const bytes = await this.readRange(key, piece.start, piece.end - piece.start, what);
          if (!bytes) {
            gone.add(piece.span);
            return;
          }
          if (bytes.length !== piece.end - piece.start) throw new RemoteError(`${what}: ${bytes.length} bytes arrived`, 'run the command again', true);
          const { index, order } = piece.span;
          for (let k = piece.first; k < piece.last; k++) {
            const i = order[k]!;
            const at = index.offsetOf(i) - piece.start;
            const hash = index.hashAt(i);
            const actual = sha256Hex(bytes.subarray(at, at + index.sizeOf(i)));
            if (actual !== hash) throw badAtom(this.t, index.id, hash, index.sizeOf(i), actual);
          }
          writeSync(fd, bytes, 0, bytes.length, piece.span.local + piece.start - piece.span.start);
        });
      });
      if (failures.length > 0) throw failures[0]!.error;
      for (const span of kept) {
        if (gone.has(span)) continue;
        for (let k = span.first; k < span.last; k++) {
          const i = span.order[k]!;
          const hash = span.index.hashAt(i);
          if (!entries.has(hash)) entries.set(hash, { hash, offset: span.local + span.index.offsetOf(i) - span.start, size: span.index.sizeOf(i) });
        }
      }
      closeSync(fd);
      if (entries.size === 0) {
        removeQuietly(tmp);
        return { moved, atoms: 0, bytes: 0 };
      }
      id = store.namePack(tmp, [...entries.values()]);
    } catch (err) {
      try { closeSync(fd); } catch { /* closed already */ }
      removeQuietly(tmp);
      throw err;
    }
    let bytes = 0;
    for (const span of kept) {
      if (gone.has(span)) continue;
      for (const run of span.runs) moved.set(run, { pack: id, offset: span.local + run.offset - span.start, size: run.size });
      bytes += span.end - span.start;
    }
    return { moved, atoms: entries.size, bytes };
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
