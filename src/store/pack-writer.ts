/**
 * Writes the new atoms of one large file into one new pack (pack.ts): appended to a temp file in
 * `packs/`, then named by its index once `finish()` has written everything. A reader sees the
 * pack's atoms only after the index is renamed into place, so a crash leaves at most a temp file
 * (gc removes it), never a half-written atom under a name.
 *
 * With `background`, a worker thread does the writing, at most 64 MiB behind, so `git
 * add` of a big file uses both cores. If the worker does not start, atoms are written here.
 */
import { closeSync, openSync, renameSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Hash } from 'node:crypto';
import { newSha256 } from '../hash.js';
import { PaniniError } from '../errors.js';
import { removeUnlessRefreshed, statOrNull, storeWriteError, tempName, writeAtomically, type AtomWriter, type LocalStore } from './local.js';
import { encodeIndex, PACK_MAGIC, readPackBytes, removeQuietly, type PackEntry, type PackIndex } from './pack.js';

/** New atoms go to the worker in batches of up to SLOT_BYTES, at most SLOTS of them queued. */
const SLOT_BYTES = 4 * 1024 * 1024;
const SLOTS = 16;
const ERROR_CODE_BYTES = 256;
/** The worker signals it is running within this time, else atoms are written on this thread. */
const START_TIMEOUT_MS = 10_000;
/** A worker that writes nothing for this long while atoms wait is reported, not waited for forever. */
const STALL_TIMEOUT_MS = 120_000;

export interface PackWriterOptions {
  /** Write on a worker thread (worth it for files of tens of MiB and more). */
  background?: boolean;
  /** Skip atoms the store already holds (refreshing them for gc); false when gc rewrites a pack. */
  dedup?: boolean;
  /** The atoms put are the pieces of one file, in order: compute its SHA-256 (fileDigest). */
  hashFile?: boolean;
}

export class PackWriter implements AtomWriter {
  private readonly entries = new Map<string, PackEntry>();
  /** Packs this writer re-used atoms from, refreshed once each. */
  private readonly refreshed = new Set<string>();
  private fd = -1;
  private tmp = '';
  private end = PACK_MAGIC.length;
  private worker: BackgroundWrites | null = null;
  private readonly dedup: boolean;
  /** The file's SHA-256 when computed on this thread (no worker); null once digested. */
  private fileHasher: Hash | null;
  /** Present with `hashFile`: the SHA-256 of the pieces put so far (the file); later puts (its manifests) are not part of it. */
  readonly fileDigest?: () => string;

  constructor(private readonly store: LocalStore, options: PackWriterOptions = {}) {
    this.dedup = options.dedup ?? true;
    this.fileHasher = options.hashFile ? newSha256() : null;
    if (options.hashFile) this.fileDigest = () => this.digestFile();
    if (options.background) this.worker = new BackgroundWrites();
  }

  /**
   * Every piece of the file comes through here in file order (see ingest), new or not; until
   * fileDigest() they also make up the file's SHA-256, which the worker computes when there is one.
   */
  put(hash: string, bytes: Uint8Array): boolean {
    const fresh = !this.entries.has(hash) && !(this.dedup && this.store.presentForWrite(hash, this.refreshed));
    let offset = -1;
    if (fresh) {
      if (this.fd < 0) this.open();
      offset = this.end;
      this.end += bytes.length;
      this.entries.set(hash, { hash, offset, size: bytes.length });
    }
    const hashing = this.fileHasher !== null;
    if (this.worker?.running()) {
      if (hashing || fresh) this.worker.append(this.fd, bytes, hashing, offset);
    } else {
      if (hashing) this.fileHasher!.update(bytes);
      if (fresh) this.writeHere(bytes, offset);
    }
    return fresh;
  }

  private digestFile(): string {
    if (!this.fileHasher) throw new Error('fileDigest called twice');
    const digest = this.worker?.running() ? this.worker.fileDigest() : this.fileHasher.digest('hex');
    this.fileHasher = null;
    return digest;
  }

  /** Writes the index and names the pack; returns its id, or null if no atom was new. */
  finish(): string | null {
    try {
      this.worker?.drain();
      if (this.fd < 0) return null;
      closeSync(this.fd);
      this.fd = -1;
      if (this.entries.size === 0) return null;
      const { id, bytes } = encodeIndex([...this.entries.values()]);
      const dir = this.store.packsDir;
      try {
        renameSync(this.tmp, join(dir, `${id}.pack`));
      } catch (err) {
        throw storeWriteError(err, dir);
      }
      this.tmp = '';
      // The index last: its arrival is what makes the pack's atoms visible.
      writeAtomically(dir, join(dir, `${id}.idx`), bytes);
      this.store.addPack(id);
      return id;
    } finally {
      this.abort();
    }
  }

  /** Drops everything not yet named (after a failure); safe to call more than once. */
  abort(): void {
    this.worker?.stop();
    this.worker = null;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    if (this.tmp) removeQuietly(this.tmp);
    this.tmp = '';
  }

  private open(): void {
    const dir = this.store.ensurePacksDir();
    this.tmp = tempName(dir, '.pack');
    try {
      this.fd = openSync(this.tmp, 'wx', 0o444);
    } catch (err) {
      throw storeWriteError(err, dir);
    }
    this.writeHere(PACK_MAGIC, 0);
  }

  private writeHere(bytes: Uint8Array, position: number): void {
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, position + done);
    } catch (err) {
      throw storeWriteError(err, this.store.packsDir);
    }
  }
}

/**
 * The worker thread and a ring of SLOTS shared buffers: the main thread copies pieces into a free
 * slot and posts its number with what to do (hash the slot into the file's SHA-256, write ranges
 * of it at pack offsets); the worker does it and frees the slot. Reusing the same memory spares an
 * allocation (and its page faults) per batch; hashing there takes the file's SHA-256 off the main
 * thread, which chunks and hashes atoms.
 */
class BackgroundWrites {
  // state[0]: 1 once a write failed; state[1]: 1 once the worker runs; state[2]: 1 once the digest is
  // ready; state[3 + i]: 1 while slot i is queued.
  private readonly state = new Int32Array(new SharedArrayBuffer(4 * (3 + SLOTS)));
  private readonly ring = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  /** The ring as a Buffer: Buffer.copy is a memcpy, ~4x faster than TypedArray.set here. */
  private readonly ringBytes = Buffer.from(this.ring);
  private readonly errorCode = new SharedArrayBuffer(ERROR_CODE_BYTES);
  private readonly digest = new SharedArrayBuffer(32);
  private readonly worker: Worker;
  private mode: 'unknown' | 'worker' | 'inline' = 'unknown';
  /** The slot being filled (-1: none), how full it is, whether it is hashed, its writes (slot offset, length, pack offset). */
  private slot = -1;
  private nextSlot = 0;
  private fill = 0;
  private hashed = false;
  private writes: number[] = [];
  private fd = -1;

  constructor() {
    this.worker = new Worker(new URL('./pack-writer-worker.js', import.meta.url), {
      workerData: { state: this.state.buffer, ring: this.ring, slotBytes: SLOT_BYTES, errorCode: this.errorCode, digest: this.digest },
      // Not the parent's flags: under `node -e` or `--input-type` they would change how the worker starts.
      execArgv: [],
    });
  }

  /** Whether the worker does the work; waits (once, bounded) for it to start. */
  running(): boolean {
    if (this.mode === 'unknown') {
      Atomics.wait(this.state, 1, 0, START_TIMEOUT_MS);
      this.mode = Atomics.load(this.state, 1) === 1 ? 'worker' : 'inline'; // inline: slower, still correct
    }
    return this.mode === 'worker';
  }

  /** Queues a piece: hashed into the file's SHA-256 if `hash`, written at `packOffset` unless it is -1. */
  append(fd: number, bytes: Uint8Array, hash: boolean, packOffset: number): void {
    if (this.slot >= 0 && this.hashed !== hash) this.send();
    if (fd >= 0) this.fd = fd; // the pack is opened at the first new atom, maybe mid-slot
    const source = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let done = 0; done < bytes.length;) {
      if (this.slot >= 0 && this.fill === SLOT_BYTES) this.send();
      if (this.slot < 0) this.take(hash);
      const n = Math.min(SLOT_BYTES - this.fill, bytes.length - done);
      source.copy(this.ringBytes, this.slot * SLOT_BYTES + this.fill, done, done + n);
      if (packOffset >= 0) this.addWrite(this.fill, n, packOffset + done);
      this.fill += n;
      done += n;
    }
  }

  /** The SHA-256 of every hashed piece, once the worker has seen them all. */
  fileDigest(): string {
    this.send();
    this.worker.postMessage({ digest: true });
    this.waitWhile(2, 0);
    return Buffer.from(this.digest).toString('hex');
  }

  /** Waits for every queued piece; throws the first write error. */
  drain(): void {
    this.send();
    for (let i = 0; i < SLOTS; i++) this.waitWhile(3 + i, 1);
  }

  stop(): void {
    void this.worker.terminate();
  }

  private take(hash: boolean): void {
    this.slot = this.nextSlot;
    this.nextSlot = (this.nextSlot + 1) % SLOTS;
    this.waitWhile(3 + this.slot, 1);
    this.fill = 0;
    this.hashed = hash;
    this.writes = [];
  }

  private addWrite(at: number, length: number, packOffset: number): void {
    const w = this.writes;
    const last = w.length - 3;
    // Consecutive new atoms are consecutive in the pack: one write.
    if (last >= 0 && w[last]! + w[last + 1]! === at && w[last + 2]! + w[last + 1]! === packOffset) w[last + 1]! += length;
    else w.push(at, length, packOffset);
  }

  private send(): void {
    if (this.slot < 0) return;
    Atomics.store(this.state, 3 + this.slot, 1);
    this.worker.postMessage({ fd: this.fd, slot: this.slot, length: this.fill, hash: this.hashed, writes: this.writes });
    this.slot = -1;
  }

  /** Waits while state[index] holds `value`, reporting a worker that stalls; then throws any write error. */
  private waitWhile(index: number, value: number): void {
    const since = Date.now();
    while (Atomics.load(this.state, index) === value) {
      if (Date.now() - since > STALL_TIMEOUT_MS) {
        throw new PaniniError(`the atom writer thread made no progress for ${STALL_TIMEOUT_MS / 1000} s`, 'check the disk holding the store, then run the command again; nothing was named in the store');
      }
      Atomics.wait(this.state, index, value, 1000);
    }
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (Atomics.load(this.state, 0) === 0) return;
    const bytes = new Uint8Array(this.errorCode);
    const end = bytes.indexOf(0);
    const code = Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString();
    throw storeWriteError(Object.assign(new Error(`writing a pack failed: ${code}`), { code }), 'the pack directory');
  }
}

/**
 * The SHA-256 of a stream of bytes: with `background`, computed on a worker thread through the
 * same ring (smudge hashes every atom against its name here and the whole file there), else, or if
 * the worker does not start, here. stop() ends the worker.
 */
export class FileHasher {
  private readonly ring: BackgroundWrites | null;
  private inline: Hash | null = null;

  constructor(background: boolean) {
    this.ring = background ? new BackgroundWrites() : null;
  }

  update(bytes: Uint8Array): void {
    if (this.ring?.running()) this.ring.append(-1, bytes, true, -1);
    else (this.inline ??= newSha256()).update(bytes);
  }

  digest(): string {
    return this.ring?.running() ? this.ring.fileDigest() : (this.inline ?? newSha256()).digest('hex');
  }

  stop(): void {
    this.ring?.stop();
  }
}

export interface RewriteResult {
  /** Packed copies removed (an atom also stored loose or in another pack may still be there). */
  removed: PackEntry[];
  /** Packs refreshed by a writer since `cutoffMs`: left whole. */
  refreshedPacks: number;
}

/**
 * Rewrites every pack holding an atom that `drop` selects into a new pack without those atoms,
 * then removes the old pack. With `cutoffMs`, a pack written or refreshed since then is left whole
 * (checked before and again just before removal): a running `add` may be re-using its atoms.
 */
export function rewritePacks(store: LocalStore, drop: (hash: string, pack: PackIndex) => boolean, cutoffMs?: number): RewriteResult {
  const result: RewriteResult = { removed: [], refreshedPacks: 0 };
  const recent = (path: string): boolean => cutoffMs !== undefined && (statOrNull(path)?.mtimeMs ?? 0) >= cutoffMs;
  for (const pack of store.packIndexes()) {
    const entries = [...pack.entries()];
    const dropped = entries.filter((e) => drop(e.hash, pack));
    if (dropped.length === 0) continue;
    if (recent(pack.packPath)) {
      result.refreshedPacks++;
      continue;
    }
    const kept = entries.filter((e) => !drop(e.hash, pack)).sort((a, b) => a.offset - b.offset);
    const writer = new PackWriter(store, { dedup: false });
    try {
      const fd = openSync(pack.packPath, 'r');
      try {
        for (const e of kept) writer.put(e.hash, readPackBytes(fd, e.offset, e.size));
      } finally {
        closeSync(fd);
      }
      writer.finish();
    } catch (err) {
      writer.abort();
      throw err;
    }
    const outcome = cutoffMs === undefined ? (removeQuietly(pack.packPath), 'removed') : removeUnlessRefreshed(pack.packPath, cutoffMs);
    if (outcome === 'refreshed') {
      result.refreshedPacks++; // keep both: the new pack only repeats atoms the old one has
      continue;
    }
    removeQuietly(pack.idxPath);
    if (outcome === 'removed') result.removed.push(...dropped);
  }
  store.reloadPacks();
  return result;
}

/**
 * Keeps one copy of each packed atom: two adds running at once each pack the atoms they share, and
 * an atom fetched loose may later arrive in a pack. Loose copies of packed atoms are deleted and
 * packs repeating an earlier pack's atoms are rewritten without them. Safe beside writers: only
 * gc deletes, and every atom keeps a copy. Returns the copies dropped and their bytes.
 */
export function dropDuplicateCopies(store: LocalStore): { count: number; bytes: number } {
  const packs = store.packIndexes();
  const owner = new Map<string, PackIndex>(); // atom → the pack whose copy is kept
  const newest = new Map<PackIndex, number>(); // a kept pack → the newest time among the copies it replaces
  const replaces = (keep: PackIndex, mtimeMs: number): void => {
    if (mtimeMs > (newest.get(keep) ?? 0)) newest.set(keep, mtimeMs);
  };
  for (const pack of packs) {
    const mtimeMs = statOrNull(pack.packPath)?.mtimeMs ?? 0;
    for (const e of pack.entries()) {
      const keep = owner.get(e.hash);
      if (!keep) owner.set(e.hash, pack);
      else replaces(keep, mtimeMs);
    }
  }
  const loose = [...store.listLooseNames()].filter((hash) => owner.has(hash));
  const looseStats = loose.map((hash) => statOrNull(store.atomPath(hash)));
  loose.forEach((hash, i) => replaces(owner.get(hash)!, looseStats[i]?.mtimeMs ?? 0));
  // The kept copy inherits the newest time of those it replaces: gc's grace period protects it as it did them.
  for (const [pack, mtimeMs] of newest) {
    const st = statOrNull(pack.packPath);
    if (st && st.mtimeMs < mtimeMs) utimesSync(pack.packPath, new Date(mtimeMs), new Date(mtimeMs));
  }
  let count = 0;
  let bytes = 0;
  loose.forEach((hash, i) => {
    if (!store.deleteLoose(hash)) return;
    count++;
    bytes += looseStats[i]?.size ?? 0;
  });
  const rewritten = rewritePacks(store, (hash, pack) => owner.get(hash)?.id !== pack.id);
  count += rewritten.removed.length;
  bytes += rewritten.removed.reduce((n, e) => n + e.size, 0);
  return { count, bytes };
}
