/**
 * The local atom store: loose atoms `<root>/atoms/ab/cd/<sha256>`, one file per atom, named by the
 * SHA-256 of its bytes, and packs `<root>/packs/<id>.pack` holding the atoms of large files
 * (pack.ts). Beside them: `tmp/` for spooled input and `concepts/` (every file cleaned into this
 * store, by oid: what `stats` and the Git LFS agent read).
 */
import {
  closeSync, existsSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync,
  renameSync, statSync, unlinkSync, utimesSync, writeSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAtomHash } from '../atom.js';
import type { ChunkWindows } from '../decompose/cdc.js';
import { AtomError, PaniniError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { storeErrorFor } from './fs-errors.js';
import { encodeIndex, entriesHeld, findInPacks, isPackId, MAX_ATOM_BYTES, PackIndex, readPackBytes, removeQuietly, type EncodedIndex, type PackEntry } from './pack.js';
import { journaledPack, readJournal, isJournalName } from './journal.js';
import { decodeLayout, encodeLayout, layoutPacks, type LayoutRun } from './layout.js';
import { liveWriterSince } from './writers.js';
import { readFully } from '../source.js';

export { MAX_ATOM_BYTES } from './pack.js';

export interface AtomReader {
  has(hash: string): boolean;
  /** The atom's bytes, verified against its name; throws AtomError if missing or corrupt. */
  get(hash: string): Buffer;
  /** The same, possibly read into `scratch` (then valid until it is reused); `size`: expected. */
  getInto?(hash: string, size: number, scratch: Buffer): Buffer;
  /** Optional: the stored bytes without verification (the caller verifies them otherwise). */
  readRaw?(hash: string): Buffer;
  /** Optional: where an atom lies in a pack (no system call), or null if it is not packed. */
  packedAt?(hash: string): AtomLocation | null;
  /**
   * Optional: `length` unverified bytes of a pack from a location packedAt gave, read with one call
   * into `into` (fewer where the pack ends, but never fewer than `atLeast`); null if that pack is
   * gone (gc rewrote it) or shorter: then read the atoms one by one.
   */
  readPackRange?(at: AtomLocation, length: number, into: Buffer, atLeast?: number): Buffer | null;
  /**
   * Optional: where file `oid` of `size` bytes lies in packs, in file order, as recordLayout left
   * it (layout.ts); null if none is recorded or it names a pack that is gone. Its packs are open
   * from then on: a gc removing them meanwhile does not cut the reads short.
   */
  layoutOf?(oid: string, size: number): AtomLocation[] | null;
  /**
   * Optional: the whole of a small pack (up to 32 MiB) of which a file needs `needed` bytes, read
   * once and kept for the process (up to 64 MiB of packs), if it is worth it: at least half of it
   * needed, or already read. A file's runs jump about its packs (frames shared with other files,
   * tracks stored apart), and windows read the same bytes again for each file. Null otherwise.
   */
  wholePack?(pack: PackIndex, needed: number): Buffer | null;
  /** Optional: records a file's layout (quietly not, in a store that cannot be written). */
  recordLayout?(oid: string, size: number, runs: readonly LayoutRun[]): boolean;
  /** Optional: drops a file's layout (its bytes did not match: the file is then read atom by atom). */
  forgetLayout?(oid: string): void;
}

export interface AtomWriter {
  /** Stores bytes whose SHA-256 is `hash`; returns true if written, false if already present. */
  put(hash: string, bytes: Uint8Array): boolean;
  /**
   * Optional: the SHA-256 of everything put so far, when the writer computes it (PackWriter does,
   * on its worker thread); ingest then puts every piece in file order and asks for it at the end.
   */
  fileDigest?(): string;
  /**
   * Optional, with fileDigest: stores bytes whose SHA-256 the writer computes itself (PackWriter:
   * on its worker thread, taking that work off the caller's). `named` gets the hash and whether the
   * atom was new, at the latest when fileDigest() returns. `bytes` is copied before this returns.
   */
  putUnnamed?(bytes: Uint8Array, named: (hash: string, fresh: boolean) => void): void;
  /**
   * Optional, with putUnnamed: where to chunk a file's pieces (in the writer's own memory, so that
   * putting them in order copies nothing), or undefined.
   */
  chunkWindows?(): ChunkWindows | undefined;
}

export interface StoredAtom {
  hash: string;
  size: number;
  mtimeMs: number;
}

/** Where an atom's bytes are: a whole loose file, or a range of a pack. */
export interface AtomLocation {
  readonly path: string;
  readonly offset: number;
  readonly size: number;
  readonly pack?: PackIndex;
}

function packedLocation(pack: PackIndex, i: number): AtomLocation {
  return { path: pack.packPath, offset: pack.offsetOf(i), size: pack.sizeOf(i), pack };
}

/** Packs up to this size may be read whole and kept (wholePack)... */
const MAX_WHOLE_PACK = 32 * 1024 * 1024;
/** ...up to this much of them at a time (and for one file). */
export const MAX_WHOLE_PACKS = 64 * 1024 * 1024;

/** Packed atoms whose location is remembered (~150 bytes each). */
const MAX_LOCATED = 131_072;

/** Open pack file descriptors kept for reads; beyond this the oldest is closed. */
const MAX_OPEN_PACKS = 32;

function shardPath(dir: string, hash: string): string {
  return join(dir, hash.slice(0, 2), hash.slice(2, 4), hash);
}

export class LocalStore implements AtomReader, AtomWriter {
  readonly atomsDir: string;
  readonly conceptsDir: string;
  readonly tmpDir: string;
  readonly layoutsDir: string;
  readonly packsDir: string;
  private readonly knownDirs = new Set<string>();
  /** Loaded pack indexes by id; null until first needed. */
  private packs: Map<string, PackIndex> | null = null;
  /** The pack of the last atom found: a file's atoms mostly lie in one pack, looked in first. */
  private lastHit: PackIndex | null = null;
  /**
   * Where packed atoms were found, for the process (until the packs are read again): the files of a
   * checkout share many leaves (re-muxes of one recording, a repeated frame), each looked up once.
   */
  private readonly located = new Map<string, AtomLocation>();
  /** Small packs read whole (wholePack), least recently used first. */
  private readonly wholePacks = new Map<string, Buffer>();
  private readonly openPacks = new Map<string, number>();
  /** Loose shard directories seen, by first-level name: lets a writer skip a lookup bound to fail. */
  private readonly looseShards = new Map<string, Set<string>>();
  /** The first-level shard directories, listed once (a fresh clone has none: no listing per shard). */
  private firstLevelShards: Set<string> | null = null;
  /** Registry directories seen, by name (see conceptNames). */
  private readonly conceptDirs = new Map<string, Set<string> | null>();

  constructor(readonly root: string) {
    this.atomsDir = join(root, 'atoms');
    this.conceptsDir = join(root, 'concepts');
    this.tmpDir = join(root, 'tmp');
    this.layoutsDir = join(root, 'layouts');
    this.packsDir = join(root, 'packs');
  }

  atomPath(hash: string): string {
    if (!isAtomHash(hash)) throw new PaniniError(`invalid atom name ${JSON.stringify(hash)}`, 'atom names are 64 lowercase hex digits');
    return shardPath(this.atomsDir, hash);
  }

  has(hash: string): boolean {
    return this.findPacked(hash) !== null || existsSync(this.atomPath(hash));
  }

  /**
   * Whether a writer can skip this atom: present, and refreshed so that a concurrent gc keeps it
   * (a pack once per writer, in `refreshed`). Cheap when absent: no system call for a loose atom
   * whose shard directory did not exist when first looked at.
   */
  presentForWrite(hash: string, refreshed: Set<string>): boolean {
    const packed = this.findPacked(hash);
    if (packed) {
      if (refreshed.has(packed.pack!.id) || freshen(packed.path)) {
        refreshed.add(packed.pack!.id);
        return true;
      }
      this.reloadPacks(); // gc removed that pack meanwhile
      if (this.findPacked(hash)) return this.presentForWrite(hash, refreshed);
    }
    return this.looseShardExists(hash) && freshen(this.atomPath(hash));
  }

  put(hash: string, bytes: Uint8Array): boolean {
    const path = this.atomPath(hash);
    // No lookup where the shard directory was absent: at worst an atom written meanwhile by another
    // process is written again (same bytes, and a fresh time that protects it from gc the same way).
    const listed = this.looseShardExists(hash);
    if (listed && freshen(path)) return false;
    this.writeNew(path, bytes, listed);
    return true;
  }

  /** Writes a file into its shard directory, made first unless known to exist (`listed`: seen by a listing). */
  private writeNew(path: string, bytes: Uint8Array, listed: boolean): void {
    const dir = path.slice(0, path.lastIndexOf('/'));
    if (listed || this.knownDirs.has(dir)) {
      try {
        writeAtomically(dir, path, bytes);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.knownDirs.delete(dir); // removed since: make it again
      }
    }
    writeAtomically(this.ensureDir(path), path, bytes);
  }

  get(hash: string): Buffer {
    const bytes = this.readRaw(hash);
    if (sha256Hex(bytes) !== hash) throw new AtomError(hash, 'corrupt');
    return bytes;
  }

  /**
   * Reads an atom of the expected size into `scratch` when it fits: no stat and no fresh buffer per
   * atom (a packed one in one read of its open pack). Anything unexpected (missing, too short, a
   * wrong hash) goes through get, which says what is wrong.
   */
  getInto(hash: string, size: number, scratch: Buffer): Buffer {
    const bytes = this.readUnchecked(hash, size, scratch);
    return bytes && sha256Hex(bytes) === hash ? bytes : this.get(hash);
  }

  /** getInto without the check, for a caller that hashes the bytes itself; null where getInto would call get. */
  readUnchecked(hash: string, size: number, scratch: Buffer): Buffer | null {
    if (size >= scratch.length) return null;
    const packed = this.findPacked(hash);
    if (packed) return packed.size === size ? this.readPackRange(packed, size, scratch) : null;
    if (!this.looseShardExists(hash)) return null; // no failed open per atom of a fresh clone
    const bytes = readLooseInto(this.atomPath(hash), size + 1, scratch); // one byte more: a longer file shows
    return bytes?.length === size ? bytes : null;
  }

  /**
   * False only for an atom that is not packed and whose shard directory did not exist when this
   * process first looked (has() asks the file system): the cheap answer for thousands of atoms a
   * fresh clone has still to fetch.
   */
  mightHave(hash: string): boolean {
    return this.findPacked(hash) !== null || this.looseShardExists(hash);
  }

  /** The atom written right after this one in its pack, if it is packed (PackIndex.following). */
  packedAfter(hash: string): (AtomLocation & { hash: string }) | null {
    const at = this.locatePacked(hash);
    const next = at ? at.pack.following(at.i) : -1;
    return next >= 0 ? { ...packedLocation(at!.pack, next), hash: at!.pack.hashAt(next) } : null;
  }

  packedAt(hash: string): AtomLocation | null {
    return this.findPacked(hash);
  }

  readPackRange(at: AtomLocation, length: number, into: Buffer, atLeast = length): Buffer | null {
    try {
      const got = readFully(this.packFd(at.pack!), into, 0, length, at.offset);
      return got >= atLeast ? into.subarray(0, got) : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  wholePack(pack: PackIndex, needed: number): Buffer | null {
    const kept = this.wholePacks.get(pack.id);
    if (kept) {
      this.wholePacks.delete(pack.id); // most recently used last
      this.wholePacks.set(pack.id, kept);
      return kept;
    }
    try {
      const fd = this.packFd(pack);
      const size = fstatSync(fd).size;
      if (size > MAX_WHOLE_PACK || needed * 2 < size) return null;
      const bytes = Buffer.allocUnsafe(size);
      if (readFully(fd, bytes, 0, size, 0) !== size) return null;
      let held = size;
      for (const b of this.wholePacks.values()) held += b.length;
      for (const [id, b] of this.wholePacks) {
        if (held <= MAX_WHOLE_PACKS) break;
        this.wholePacks.delete(id);
        held -= b.length;
      }
      this.wholePacks.set(pack.id, bytes);
      return bytes;
    } catch {
      return null; // gone: its atoms are read one by one
    }
  }

  private layoutPath(oid: string): string {
    return join(this.layoutsDir, oid.slice(0, 2), oid);
  }

  layoutOf(oid: string, size: number): AtomLocation[] | null {
    let raw: Buffer;
    try {
      raw = readFileSync(this.layoutPath(oid));
    } catch {
      return null;
    }
    const runs = decodeLayout(raw, oid, size);
    if (!runs) return null;
    const packs = new Map<string, { pack: PackIndex; size: number }>();
    const located: AtomLocation[] = [];
    try {
      for (const run of runs) {
        let open = packs.get(run.pack);
        if (!open) {
          const pack = this.loadedPacks().get(run.pack);
          if (!pack) return null;
          packs.set(run.pack, (open = { pack, size: fstatSync(this.packFd(pack)).size }));
        }
        if (run.offset + run.size > open.size) return null;
        located.push({ path: open.pack.packPath, offset: run.offset, size: run.size, pack: open.pack });
      }
    } catch {
      return null; // a pack removed since its index was loaded
    }
    return located;
  }

  /** Whether the store has the pack of this id (its index loaded). */
  holdsPack(id: string): boolean {
    return this.loadedPacks().has(id);
  }

  /**
   * Records the layout; false if it could not be written (a read-only or full store: the file is
   * rebuilt from its atoms next time too). `encoded`: the runs' layout as decodeLayout accepted it
   * already (a remote store's), written as it is.
   */
  recordLayout(oid: string, size: number, runs: readonly LayoutRun[], encoded?: Buffer): boolean {
    const path = this.layoutPath(oid);
    try {
      writeAtomically(this.ensureDir(path), path, encoded ?? encodeLayout(oid, size, runs));
      return true;
    } catch {
      return false;
    }
  }

  forgetLayout(oid: string): void {
    removeQuietly(this.layoutPath(oid));
  }

  /**
   * Removes the layouts of files `keep` does not name and those naming a pack no longer in the
   * store (gc rewrote or merged it), and temp files of interrupted writes older than `tempCutoffMs`.
   * Returns how many layouts went.
   */
  pruneLayouts(keep: ReadonlySet<string>, tempCutoffMs: number): number {
    let removed = 0;
    this.reloadPacks(); // as gc left them
    const packs = this.loadedPacks();
    for (const a of listDir(this.layoutsDir)) {
      const dir = join(this.layoutsDir, a);
      for (const name of listDir(dir)) {
        const path = join(dir, name);
        if (!isAtomHash(name)) {
          if ((statOrNull(path)?.mtimeMs ?? Infinity) < tempCutoffMs) removeQuietly(path);
          continue;
        }
        let named: string[] | null = null;
        try {
          named = layoutPacks(readFileSync(path));
        } catch {
          continue; // removed meanwhile
        }
        if (keep.has(name) && named?.every((id) => packs.has(id))) continue;
        removeQuietly(path);
        removed++;
      }
    }
    return removed;
  }

  /** The stored bytes without verification (for fsck, which reports rather than throws). */
  readRaw(hash: string): Buffer {
    const path = this.atomPath(hash); // checks the name first
    const packed = this.findPacked(hash);
    if (packed) return this.readPacked(hash, packed);
    const loose = readLoose(path, hash);
    if (loose) return loose;
    // Not loose: packed since the packs were loaded? (Looked at only now: a stat per read otherwise.)
    const repacked = this.reloadPacksIfChanged() ? this.findPacked(hash) : null;
    if (repacked) return this.readPacked(hash, repacked);
    throw new AtomError(hash, 'missing');
  }

  private readPacked(hash: string, packed: AtomLocation): Buffer {
    try {
      return readPackBytes(this.packFd(packed.pack!), packed.offset, packed.size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.reloadPacks(); // rewritten by gc since loaded: look again
      const again = this.findPacked(hash);
      if (again) return readPackBytes(this.packFd(again.pack!), again.offset, again.size);
    }
    const loose = readLoose(this.atomPath(hash), hash); // gone from the packs (gc): loose, if anywhere
    if (loose) return loose;
    throw new AtomError(hash, 'missing');
  }

  /** Size on disk, or -1 if absent. */
  sizeOf(hash: string): number {
    const packed = this.findPacked(hash);
    if (packed) return packed.size;
    try {
      return statSync(this.atomPath(hash)).size;
    } catch {
      return -1;
    }
  }

  /** Where the atom's bytes are (a pack first, then a loose file), or null if absent. */
  locate(hash: string): AtomLocation | null {
    const packed = this.findPacked(hash);
    if (packed) return packed;
    const path = this.atomPath(hash);
    try {
      return { path, offset: 0, size: statSync(path).size };
    } catch {
      return null;
    }
  }

  /** The first `n` bytes of an atom (fewer if it is shorter), unverified; null if absent. */
  readHead(hash: string, n: number): Buffer | null {
    const at = this.locate(hash);
    if (!at) return null;
    let fd: number;
    try {
      fd = at.pack ? this.packFd(at.pack) : openSync(at.path, 'r');
    } catch {
      return null;
    }
    try {
      return readPackBytes(fd, at.offset, Math.min(n, at.size));
    } finally {
      if (!at.pack) closeSync(fd);
    }
  }

  /** Every atom, once each, with its size and last write (a packed atom: its pack's). */
  *list(onOther?: (path: string) => void): Generator<StoredAtom> {
    const seen = new Set<string>();
    for (const hash of this.listLooseNames(onOther)) {
      try {
        const st = statSync(shardPath(this.atomsDir, hash));
        seen.add(hash);
        yield { hash, size: st.size, mtimeMs: st.mtimeMs };
      } catch {
        // deleted while listing (a concurrent gc): not an atom any more
      }
    }
    for (const pack of this.packIndexes(onOther)) {
      const mtimeMs = statOrNull(pack.packPath)?.mtimeMs;
      if (mtimeMs === undefined) continue;
      for (const e of pack.entries()) {
        if (seen.has(e.hash)) continue;
        seen.add(e.hash);
        yield { hash: e.hash, size: e.size, mtimeMs };
      }
    }
  }

  /** The names of every atom, once each, without a stat each (gc needs sizes and times only of a few). */
  *listNames(onOther?: (path: string) => void): Generator<string> {
    const packs = this.packIndexes(onOther);
    const seen = packs.length > 0 ? new Set<string>() : null;
    for (const hash of this.listLooseNames(onOther)) {
      seen?.add(hash);
      yield hash;
    }
    for (const pack of packs) {
      for (const e of pack.entries()) {
        if (seen!.has(e.hash)) continue;
        seen!.add(e.hash);
        yield e.hash;
      }
    }
  }

  /** Loose atoms only: the names in the shard directories; other names (temp files) go to `onOther`. */
  *listLooseNames(onOther?: (path: string) => void): Generator<string> {
    for (const a of listDir(this.atomsDir)) {
      if (a.length !== 2) continue;
      for (const b of listDir(join(this.atomsDir, a))) {
        if (b.length !== 2) continue;
        const dir = join(this.atomsDir, a, b);
        for (const name of listDir(dir)) {
          if (isAtomHash(name) && name.startsWith(a + b)) yield name;
          else onOther?.(join(dir, name));
        }
      }
    }
  }

  /** Records the concept of a file cleaned into this store, by the file's oid. */
  putConcept(oid: string, text: string | Buffer): void {
    const path = this.conceptPath(oid);
    const names = this.conceptNames(oid.slice(0, 2));
    // Only an entry listed can be refreshed: no failing system call per new entry.
    if (names?.has(oid) && freshen(path)) return;
    this.writeNew(path, typeof text === 'string' ? Buffer.from(text) : text, names !== null);
    if (names) names.add(oid);
    else this.conceptDirs.set(oid.slice(0, 2), new Set([oid])); // made by writeNew
  }

  /** The entries of `concepts/<a>/` when first looked at (plus those written since), or null if it did not exist. */
  private conceptNames(a: string): Set<string> | null {
    let names = this.conceptDirs.get(a);
    if (names === undefined) {
      try {
        names = new Set(readdirSync(join(this.conceptsDir, a)));
      } catch {
        names = null;
      }
      this.conceptDirs.set(a, names);
    }
    return names;
  }

  /**
   * `concepts/ab/<oid>`: one level of 256 directories, created once, where a two-level layout cost
   * a fresh directory per small file added (0.2 ms each here). Stores written before keep their
   * entries at `concepts/ab/cd/<oid>`, still read and listed.
   */
  conceptPath(oid: string): string {
    return join(this.conceptsDir, oid.slice(0, 2), oid);
  }

  getConcept(oid: string): string | null {
    if (!isAtomHash(oid)) return null;
    for (const path of [this.conceptPath(oid), shardPath(this.conceptsDir, oid)]) {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        // not there: the older layout, or absent
      }
    }
    return null;
  }

  /** Every registry entry: the oid and its file. */
  *listConcepts(): Generator<{ oid: string; path: string }> {
    for (const a of listDir(this.conceptsDir)) {
      const dir = join(this.conceptsDir, a);
      for (const name of listDir(dir)) {
        if (name.length === 2) {
          for (const oid of listDir(join(dir, name))) if (isAtomHash(oid)) yield { oid, path: join(dir, name, oid) };
        } else if (isAtomHash(name)) {
          yield { oid: name, path: join(dir, name) };
        }
      }
    }
  }

  /** A fresh path for a temporary file inside the store (same filesystem as the atoms). */
  tempPath(label: string): string {
    mkdirSync(this.tmpDir, { recursive: true });
    return join(this.tmpDir, `${label}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Removes a loose atom file; returns false if there was none (packed copies stay: see rewritePacks). */
  deleteLoose(hash: string): boolean {
    try {
      unlinkSync(this.atomPath(hash));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** The loaded pack indexes; damaged or orphaned pack files go to `onOther`. */
  packIndexes(onOther?: (path: string) => void): PackIndex[] {
    if (onOther) {
      const names = listDir(this.packsDir);
      // A journal and its pack are a writer's batch, named by the writer or, once it is gone, from
      // the journal: never strays, even if that waits for a reused pid to exit.
      const batches = new Set(names.filter(isJournalName).flatMap((n) => [n, journaledPack(n)]));
      for (const name of names) {
        if (batches.has(name)) continue;
        const id = name.slice(0, -5);
        const ok = (name.endsWith('.pack') || name.endsWith('.idx')) && isPackId(name.replace(/\.(pack|idx)$/, ''));
        if (!ok || (name.endsWith('.pack') && !this.loadedPacks().has(id))) onOther(join(this.packsDir, name));
      }
    }
    return [...this.loadedPacks().values()];
  }

  /**
   * Makes a pack just named visible to this process, from the index it was named with (not read
   * back); an index parsed already (that of a remote pack taken whole) is not parsed again.
   */
  private addPack({ id, bytes, parsed }: EncodedIndex): void {
    const packPath = join(this.packsDir, `${id}.pack`);
    const idxPath = join(this.packsDir, `${id}.idx`);
    const size = statOrNull(packPath)?.size;
    const pack = size === undefined ? null : parsed ? parsed.relocated(packPath, idxPath) : PackIndex.parse(bytes, id, size, packPath, idxPath);
    if (pack) this.loadedPacks().set(id, pack);
  }

  /** Reads the packs directory again (packs written or removed by other processes). */
  reloadPacks(): void {
    const current = this.packs ?? new Map<string, PackIndex>();
    this.packs = new Map();
    this.located.clear();
    this.packsDirMtime = statOrNull(this.packsDir)?.mtimeMs ?? 0;
    for (const name of listDir(this.packsDir)) {
      if (isJournalName(name)) this.nameJournaledPack(name);
      if (!name.endsWith('.idx')) continue;
      const id = name.slice(0, -4);
      if (!isPackId(id)) continue;
      const pack = current.get(id) ?? PackIndex.load(this.packsDir, id);
      if (pack) this.packs.set(id, pack);
    }
    for (const [id, fd] of this.openPacks) {
      if (this.packs.has(id)) continue;
      closeSync(fd);
      this.openPacks.delete(id);
    }
  }

  /**
   * Names a complete pack written at `tmp` (in the packs directory) with an index of `entries` (or
   * that index, already encoded): the index last, as its arrival is what makes the pack's atoms
   * visible. Returns the pack's id. A pack
   * with a `journal` keeps its temp name (a second link) until its index is written, so that
   * whenever this process dies the journal still finds it (journal.ts); if it cannot be named it
   * stays, for a later reader to name. Another pack is removed.
   */
  namePack(tmp: string, entries: readonly PackEntry[] | EncodedIndex, journal?: string): string {
    const index = 'bytes' in entries ? entries : encodeIndex(entries);
    const { id, bytes } = index;
    const packPath = join(this.packsDir, `${id}.pack`);
    const linked = journal !== undefined && linkPack(tmp, packPath);
    if (!linked) {
      try {
        renameSync(tmp, packPath);
      } catch (err) {
        if (!journal) removeQuietly(tmp);
        throw storeWriteError(err, this.packsDir);
      }
    }
    try {
      writeAtomically(this.packsDir, join(this.packsDir, `${id}.idx`), bytes);
    } catch (err) {
      if (journal && !linked) {
        try { renameSync(packPath, tmp); } catch { /* as good as gone: the rename before just worked */ }
      }
      throw err;
    }
    if (linked) removeQuietly(tmp);
    if (journal) removeQuietly(journal);
    this.addPack(index);
    return id;
  }

  /**
   * Names the pack of a journal whose writer is gone (it died before naming it), with the recorded
   * atoms its bytes still hold. Quiet: whatever fails is tried again by the next reader.
   */
  private nameJournaledPack(name: string): void {
    const journal = join(this.packsDir, name);
    const pack = journaledPack(journal);
    try {
      const { writer, entries } = readJournal(journal);
      if (liveWriterSince(writer, statSync(journal).mtimeMs, Date.now()) !== null) return;
      let fd: number;
      try {
        fd = openSync(pack, 'r');
      } catch (err) {
        // No such pack: named by its writer just before it died, or by another reader.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') removeQuietly(journal);
        return;
      }
      let held: PackEntry[];
      try {
        held = entriesHeld(fd, [...new Map(entries.map((e) => [e.hash, e])).values()]);
      } finally {
        closeSync(fd);
      }
      if (held.length === 0) {
        removeQuietly(pack);
        removeQuietly(journal);
        return;
      }
      const now = new Date();
      try {
        utimesSync(pack, now, now); // gc's grace period starts now, as for an atom just written
      } catch {
        // another user's file: it keeps the time of its last write
      }
      this.namePack(pack, held, journal);
    } catch {
      // read-only store, or another reader naming it at the same time
    }
  }

  ensurePacksDir(): string {
    mkdirSync(this.packsDir, { recursive: true });
    return this.packsDir;
  }


  private packsDirMtime = 0;

  private loadedPacks(): Map<string, PackIndex> {
    if (this.packs === null) this.reloadPacks();
    return this.packs!;
  }

  private reloadPacksIfChanged(): boolean {
    if ((statOrNull(this.packsDir)?.mtimeMs ?? 0) === this.packsDirMtime) return false;
    this.reloadPacks();
    return true;
  }

  private findPacked(hash: string): AtomLocation | null {
    const known = this.located.get(hash);
    if (known) return known;
    const found = this.locatePacked(hash);
    if (!found) return null;
    const at = packedLocation(found.pack, found.i);
    if (this.located.size < MAX_LOCATED) this.located.set(hash, at);
    return at;
  }

  /** The pack holding the atom and its entry there; the pack of the last hit is tried first. */
  private locatePacked(hash: string): { pack: PackIndex; i: number } | null {
    const packs = this.loadedPacks();
    if (packs.size === 0) return null;
    const last = this.lastHit;
    const found = findInPacks(packs.values(), hash, last && packs.get(last.id) === last ? last : null); // not one a reload dropped
    if (found) this.lastHit = found.pack;
    return found;
  }

  private packFd(pack: PackIndex): number {
    let fd = this.openPacks.get(pack.id);
    if (fd !== undefined) return fd;
    fd = openSync(pack.packPath, 'r');
    if (this.openPacks.size >= MAX_OPEN_PACKS) {
      const [oldest, oldFd] = this.openPacks.entries().next().value as [string, number];
      closeSync(oldFd);
      this.openPacks.delete(oldest);
    }
    this.openPacks.set(pack.id, fd);
    return fd;
  }

  /** Whether the loose shard directory `ab/cd` of a hash existed when this process first looked. */
  private looseShardExists(hash: string): boolean {
    const a = hash.slice(0, 2);
    let seen = this.looseShards.get(a);
    if (!seen) {
      this.firstLevelShards ??= new Set(listDir(this.atomsDir));
      seen = new Set(this.firstLevelShards.has(a) ? listDir(join(this.atomsDir, a)) : []);
      this.looseShards.set(a, seen);
    }
    return seen.has(hash.slice(2, 4));
  }

  /** Creates (once per process) the shard directory of an atom path; returns it. */
  ensureDir(path: string): string {
    const dir = path.slice(0, path.lastIndexOf('/'));
    if (!this.knownDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.knownDirs.add(dir);
      if (dir.startsWith(this.atomsDir)) this.looseShards.get(hash2(dir))?.add(dir.slice(-2));
    }
    return dir;
  }
}

/**
 * True if the file exists, its mtime then set to now: like Git freshening an object it was about
 * to write, this tells a concurrent `git panini gc` that the file is in use again (its grace
 * period starts over), so an atom re-used by an `add` is not deleted before the index names it.
 */
export function freshen(path: string): boolean {
  try {
    const now = new Date();
    utimesSync(path, now, now);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return existsSync(path); // not ours to touch (another user's store): it exists all the same
  }
}

/**
 * Deletes a file (an atom, a pack) unless a writer refreshed it since `cutoffMs`, with no window
 * between the check and the deletion: it is renamed aside first (a writer refreshing it from then
 * on finds it gone and writes its own copy), then its time is read; one refreshed before the
 * rename is put back. The aside name starts with `.tmp-`, so a crash leaves a stray gc removes.
 */
export function removeUnlessRefreshed(path: string, cutoffMs: number): 'removed' | 'refreshed' | 'absent' {
  const slash = path.lastIndexOf('/');
  const aside = `${path.slice(0, slash + 1)}.tmp-gc-${process.pid}-${path.slice(slash + 1)}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  if (statSync(aside).mtimeMs >= cutoffMs) {
    renameSync(aside, path); // a writer that re-wrote it meanwhile wrote the same bytes
    return 'refreshed';
  }
  unlinkSync(aside);
  return 'removed';
}

// Unique per process and write; the random part guards against a dead process's leftovers with a reused pid.
const TEMP_PREFIX = `${process.pid}-${randomBytes(4).toString('hex')}`;
let tempCounter = 0;

/** A fresh temp file name in `dir` (never listed as an atom or a pack; gc removes it once old). */
export function tempName(dir: string, suffix = ''): string {
  return join(dir, `.tmp-${TEMP_PREFIX}-${tempCounter++}${suffix}`);
}

/**
 * Temp file in the destination's own directory, then rename: a reader sees the whole atom under
 * its name or nothing. Two writers of the same atom both rename identical bytes; either wins.
 */
export function writeAtomically(dir: string, path: string, bytes: Uint8Array): void {
  const tmp = tempName(dir);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o444);
  } catch (err) {
    throw storeWriteError(err, dir);
  }
  try {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw storeWriteError(err, dir);
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw storeWriteError(err, dir);
  }
}

/**
 * A second name for a pack; true if `to` now names it or an identical pack (same index, so the same
 * atoms at the same places), false where there can be no link (then the caller renames).
 */
function linkPack(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EEXIST';
  }
}

/** A loose atom's bytes, or null if there is no such file. */
function readLoose(path: string, hash: string): Buffer | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_ATOM_BYTES) throw new AtomError(hash, 'corrupt');
    return readPackBytes(fd, 0, size); // a range of any file: here all of it
  } finally {
    closeSync(fd);
  }
}

/** Up to `max` bytes of a loose atom file into `into`; null if it cannot be opened. */
function readLooseInto(path: string, max: number, into: Buffer): Buffer | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null; // get opens it again and reports why
  }
  try {
    // One read: a regular file's read is short only at its end, and a caller that gets fewer bytes
    // than it needs falls back to the checked path.
    return into.subarray(0, readSync(fd, into, 0, max, 0));
  } finally {
    closeSync(fd);
  }
}

export function storeWriteError(err: unknown, dir: string): Error {
  return storeErrorFor((err as NodeJS.ErrnoException).code, `writing in ${dir}`) ?? (err as Error);
}

/** The first-level shard name of a shard directory path (`…/ab/cd` → `ab`). */
const hash2 = (dir: string): string => dir.slice(-5, -3);

export function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
