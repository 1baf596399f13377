/**
 * Writes the new atoms of one large file into one new pack (pack.ts): appended to a temp file in
 * `packs/`, then named by its index once `finish()` has written everything. A reader sees the
 * pack's atoms only after the index is renamed into place, so a crash leaves at most a temp file
 * (gc removes it), never a half-written atom under a name.
 *
 * With `background`, a worker thread does the writing, at most 64 MiB behind, so `git
 * add` of a big file uses both cores. If the worker does not start, atoms are written here.
 */
import { closeSync, openSync, utimesSync, write, writeSync } from 'node:fs';
import { join } from 'node:path';
import type * as WorkerThreads from 'node:worker_threads';
import type { MessagePort, Worker } from 'node:worker_threads';
import type { Hash } from 'node:crypto';
import { newSha256, sha256Hex } from '../hash.js';
import { PaniniError } from '../errors.js';
import { removeUnlessRefreshed, statOrNull, storeWriteError, tempName, type AtomWriter, type LocalStore } from './local.js';
import { DIGESTED, FAILED, PROGRESS, RUNNING, SLOT_STATE } from './pack-writer-state.js';
import { MERGE_ABOVE_PACKS, MERGE_BELOW_BYTES, PACK_MAGIC, readPackBytes, removeQuietly, type PackEntry, type PackIndex } from './pack.js';
import { gearTable, type ChunkWindows } from '../decompose/cdc.js';
import { PackJournal } from './journal.js';
import { gearScanner } from '../decompose/gear-scan.js';
import { lazily } from '../lazy.js';

/** A checkout loads this module (FileHasher) and seldom starts the worker. */
const workerThreads = lazily<typeof WorkerThreads>('node:worker_threads');

/** New atoms go to the worker in batches of up to SLOT_BYTES, at most SLOTS of them queued. */
const SLOT_BYTES = 4 * 1024 * 1024;
const SLOTS = 16;
/** Where the ring starts in its scanner's memory, past the gear table. */
const RING_AT = 64 * 1024;
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
  /**
   * Record each new atom in a journal (journal.ts) once its bytes are written, for a pack whose
   * atoms are handed out before it is named; on this thread (not with background or writeBehind).
   */
  journal?: boolean;
  /**
   * Atoms are written by libuv's thread pool, on the other core, while this thread goes on (a
   * download hashes the next range meanwhile); the bytes put must stay unchanged, and written() be
   * awaited before finish().
   */
  writeBehind?: boolean;
}

export class PackWriter implements AtomWriter {
  private readonly entries = new Map<string, PackEntry>();
  /** Packs this writer re-used atoms from, refreshed once each. */
  private readonly refreshed = new Set<string>();
  private fd = -1;
  private tmp = '';
  private end = PACK_MAGIC.length;
  private worker: BackgroundWrites | null = null;
  private readonly behind: WritesBehind | null;
  private readonly dedup: boolean;
  private readonly journaled: boolean;
  private journal: PackJournal | null = null;
  /** The file's SHA-256 when computed on this thread (no worker); null once digested. */
  private fileHasher: Hash | null;
  /** Present with `hashFile`: the SHA-256 of the pieces put so far (the file); later puts (its manifests) are not part of it. */
  readonly fileDigest?: () => string;

  constructor(private readonly store: LocalStore, options: PackWriterOptions = {}) {
    this.dedup = options.dedup ?? true;
    this.journaled = options.journal ?? false;
    this.fileHasher = options.hashFile ? newSha256() : null;
    if (options.hashFile) this.fileDigest = () => this.digestFile();
    if (options.background) this.worker = BackgroundWrites.take();
    this.behind = options.writeBehind ? new WritesBehind() : null;
  }

  /** How many new atoms this pack holds so far, and how many bytes it has. */
  get atoms(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.end;
  }

  /** With writeBehind: every write done; throws the first that failed. */
  async written(): Promise<void> {
    const failure = await this.behind?.settled();
    if (failure) throw storeWriteError(failure, this.store.packsDir);
  }

  /**
   * Every piece of the file comes through here or putUnnamed in file order (see ingest), new or
   * not; until fileDigest() they also make up the file's SHA-256, which the worker computes when
   * there is one.
   */
  put(hash: string, bytes: Uint8Array): boolean {
    const offset = this.claim(hash, bytes.length);
    const fresh = offset >= 0;
    const hashing = this.fileHasher !== null;
    if (this.worker?.running()) {
      if (hashing || fresh) this.worker.append(this.fd, bytes, hashing, offset);
    } else {
      if (hashing) this.fileHasher!.update(bytes);
      if (fresh) {
        try {
          this.writeHere(bytes, offset);
        } catch (err) {
          this.entries.delete(hash); // a pack that outlives the file (journaled) must not name it
          throw err;
        }
        this.journal?.add(hash, offset, bytes.length);
      }
    }
    return fresh;
  }

  /**
   * The worker hashes the piece too, so this thread only chunks and copies; when the worker falls
   * behind, this thread hashes pieces itself (both cores stay busy whichever side is slower).
   */
  putUnnamed(bytes: Uint8Array, named: (hash: string, fresh: boolean) => void): void {
    if (bytes.length > SLOT_BYTES || !this.worker?.running() || this.worker.behind()) {
      const hash = sha256Hex(bytes);
      named(hash, this.put(hash, bytes));
      return;
    }
    const size = bytes.length; // not `bytes`: the caller reuses that memory
    this.worker.appendPiece(bytes, this.fileHasher !== null, (hash) => {
      const offset = this.claim(hash, size);
      named(hash, offset >= 0);
      return offset >= 0 ? { fd: this.fd, offset } : null;
    });
  }

  /**
   * With `hashFile` and a running worker: windows in the worker's ring to chunk the file's pieces
   * in, which then reach the worker without a copy (ChunkWindows). Pieces from them go through
   * putUnnamed, in order.
   */
  chunkWindows(): ChunkWindows | undefined {
    return this.fileHasher && this.worker?.running() ? this.worker.windows(true) : undefined;
  }

  /** Reserves room in the pack for an atom the store lacks; -1 if the store (or this pack) has it. */
  private claim(hash: string, size: number): number {
    if (this.entries.has(hash) || (this.dedup && this.store.presentForWrite(hash, this.refreshed))) return -1;
    if (this.fd < 0) this.open();
    const offset = this.end;
    this.end += size;
    this.entries.set(hash, { hash, offset, size });
    return offset;
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
      if (this.behind?.busy()) throw new Error('PackWriter.finish() before written()');
      this.worker?.drain();
      if (this.fd < 0) return null;
      closeSync(this.fd);
      this.fd = -1;
      this.journal?.close();
      if (this.entries.size === 0) return null;
      const tmp = this.tmp;
      this.tmp = '';
      return this.store.namePack(tmp, [...this.entries.values()], this.journal?.path);
    } finally {
      this.abort();
    }
  }

  /** Drops everything not yet named (after a failure); safe to call more than once. */
  abort(): void {
    this.worker?.stop();
    this.worker = null;
    const { fd, tmp } = this;
    this.fd = -1;
    this.tmp = '';
    // A journaled pack's atoms may be in concepts already: it stays, for a later reader to name.
    const keep = this.journal !== null;
    this.journal?.close();
    this.journal = null;
    // Not while a write is in flight: it could land in whatever file reuses the descriptor.
    const drop = (): void => {
      if (fd >= 0) closeSync(fd);
      if (tmp && !keep) removeQuietly(tmp);
    };
    if (this.behind) this.behind.whenIdle(drop);
    else drop();
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
    if (!this.journaled) return;
    try {
      this.journal = PackJournal.create(this.tmp);
    } catch (err) {
      closeSync(this.fd);
      this.fd = -1;
      removeQuietly(this.tmp);
      throw storeWriteError(err, dir);
    }
  }

  private writeHere(bytes: Uint8Array, position: number): void {
    if (this.behind && position > 0) return this.behind.write(this.fd, bytes, position);
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, position + done);
    } catch (err) {
      throw storeWriteError(err, this.store.packsDir);
    }
  }
}

/** Bytes that follow each other in memory and in the pack go to the thread pool as one write up to this size. */
const MAX_JOINED_WRITE = 8 * 1024 * 1024;

/**
 * Writes handed to libuv's thread pool. Atoms cut from one downloaded range lie one after another
 * in memory and in the pack: they are joined into one write, one job in the pool instead of one per
 * atom (a clone of 5,280 frames from S3: 451 -> 420 ms). The first failure is kept (later writes are
 * skipped) and returned by settled(), which hands over what is still joined; whenIdle() runs once
 * nothing is in flight, and drops what was not handed over (an abort).
 */
class WritesBehind {
  private inFlight = 0;
  private failure: unknown = null;
  private waiting: (() => void)[] = [];
  /** Bytes put and not handed to the pool yet: `length` bytes from `bytes`'s start, for `position`. */
  private joined: { fd: number; bytes: Uint8Array; length: number; position: number } | null = null;

  write(fd: number, bytes: Uint8Array, position: number): void {
    const j = this.joined;
    if (j && j.fd === fd && j.bytes.buffer === bytes.buffer && j.bytes.byteOffset + j.length === bytes.byteOffset && j.position + j.length === position && j.length + bytes.length <= MAX_JOINED_WRITE) {
      j.length += bytes.length;
      return;
    }
    this.handOver();
    this.joined = { fd, bytes, length: bytes.length, position };
  }

  private handOver(): void {
    const j = this.joined;
    this.joined = null;
    if (!j || this.failure) return;
    const bytes = new Uint8Array(j.bytes.buffer, j.bytes.byteOffset, j.length);
    this.inFlight++;
    const from = (done: number): void => {
      write(j.fd, bytes, done, bytes.length - done, j.position + done, (err, n) => {
        if (!err && n > 0 && done + n < bytes.length && !this.failure) return from(done + n);
        if (err || n === 0) this.failure ??= err ?? Object.assign(new Error('a pack write made no progress'), { code: 'EIO' });
        if (--this.inFlight === 0) for (const f of this.waiting.splice(0)) f();
      });
    };
    from(0);
  }

  busy(): boolean {
    return this.inFlight > 0 || this.joined !== null;
  }

  whenIdle(f: () => void): void {
    this.joined = null;
    this.afterWrites(f);
  }

  settled(): Promise<unknown> {
    this.handOver();
    return new Promise((resolve) => this.afterWrites(() => resolve(this.failure)));
  }

  /** Runs `f` once no write is in flight. */
  private afterWrites(f: () => void): void {
    if (this.inFlight === 0) f();
    else this.waiting.push(f);
  }
}

/** Where the worker writes a piece once named: the pack and the offset, or null (the store has it). */
type PieceTarget = { fd: number; offset: number } | null;
/** A piece in a slot that the worker hashes: its place in the slot, and what decides its fate. */
interface UnnamedPiece { at: number; size: number; named: (hash: string) => PieceTarget }

/** A finished writer, idle, kept for the next one (BackgroundWrites.stop and take). */
let kept: BackgroundWrites | null = null;

/**
 * The worker thread and a ring of SLOTS shared buffers: the main thread copies pieces into a free
 * slot and posts its number with what to do (hash the slot into the file's SHA-256, write ranges
 * of it at pack offsets); the worker does it and frees the slot. Reusing the same memory spares an
 * allocation (and its page faults) per batch; hashing there takes the file's SHA-256 off the main
 * thread, which chunks. A slot with unnamed pieces takes two turns: the worker hashes each of them
 * and answers on a port that this thread reads synchronously; this thread decides which are new
 * (the store's lookups stay here) and posts their writes, after which the slot is freed.
 */
class BackgroundWrites {
  private readonly state = new Int32Array(new SharedArrayBuffer(4 * (SLOT_STATE + SLOTS)));
  /** The ring lives in a gear scanner's shared memory, so that files can be chunked in it (windows). */
  private readonly scanner = gearScanner(gearTable(), RING_AT + SLOTS * SLOT_BYTES, true);
  private readonly ring = this.scanner.buffer;
  /** The ring as a Buffer: Buffer.copy is a memcpy, ~4x faster than TypedArray.set here. */
  private readonly ringBytes = Buffer.from(this.ring, RING_AT, SLOTS * SLOT_BYTES);
  private readonly errorCode = new SharedArrayBuffer(ERROR_CODE_BYTES);
  private readonly digest = new SharedArrayBuffer(32);
  private readonly worker: Worker;
  /** The worker's piece hashes, read with receiveMessageOnPort (this thread never yields to its event loop). */
  private readonly names: MessagePort;
  /** Slots whose pieces the worker is hashing, with those pieces. */
  private readonly unnamed = new Map<number, UnnamedPiece[]>();
  private mode: 'unknown' | 'worker' | 'inline' = 'unknown';
  /** The slot being filled (-1: none), how full it is, whether it is hashed, its writes (slot offset, length, pack offset), its unnamed pieces. */
  private slot = -1;
  private nextSlot = 0;
  private fill = 0;
  private hashed = false;
  private writes: number[] = [];
  private pieces: UnnamedPiece[] = [];
  private fd = -1;
  /** stop() was called (and take() has not handed it out again); the worker has exited. */
  private stopped = false;
  private exited = false;

  constructor() {
    const channel = new (workerThreads().MessageChannel)();
    this.names = channel.port1;
    this.names.unref(); // read synchronously, never listened to: it must not keep the process alive
    // Named from dist/src/<dir>/, so that the CLI bundle (dist/src/cli/git-panini.cjs) finds it too.
    this.worker = new (workerThreads().Worker)(new URL('../store/pack-writer-worker.js', import.meta.url), {
      workerData: { state: this.state.buffer, ring: this.ring, ringAt: RING_AT, slotBytes: SLOT_BYTES, errorCode: this.errorCode, digest: this.digest, names: channel.port2 },
      transferList: [channel.port2],
      // Not the parent's flags: under `node -e` or `--input-type` they would change how the worker starts.
      execArgv: [],
    });
    // This thread waits for it with Atomics, not through its event loop; a kept, idle worker must
    // not keep the process alive (the filter process ends when Git closes its input).
    this.worker.unref();
    this.worker.once('exit', () => {
      this.exited = true;
      if (kept === this) kept = null;
    });
  }

  /** Whether the worker does the work; waits (once, bounded) for it to start. */
  running(): boolean {
    if (this.mode === 'unknown') {
      Atomics.wait(this.state, RUNNING, 0, START_TIMEOUT_MS);
      this.mode = Atomics.load(this.state, RUNNING) === 1 ? 'worker' : 'inline'; // inline: slower, still correct
    }
    return this.mode === 'worker';
  }

  /** Queues a piece: hashed into the file's SHA-256 if `hash`, written at `packOffset` unless it is -1. */
  append(fd: number, bytes: Uint8Array, hash: boolean, packOffset: number): void {
    if (this.slot >= 0 && this.hashed !== hash) this.send();
    if (fd >= 0) this.fd = fd; // the pack is opened at the first new atom, maybe mid-slot
    if (this.inPlace(bytes)) {
      if (packOffset >= 0) addWrite(this.writes, this.fill, bytes.length, packOffset);
      this.fill += bytes.length;
      return;
    }
    const source = asBuffer(bytes);
    for (let done = 0; done < bytes.length;) {
      if (this.slot >= 0 && this.fill === SLOT_BYTES) this.send();
      if (this.slot < 0) this.take(hash);
      const n = Math.min(SLOT_BYTES - this.fill, bytes.length - done);
      source.copy(this.ringBytes, this.slot * SLOT_BYTES + this.fill, done, done + n);
      if (packOffset >= 0) addWrite(this.writes, this.fill, n, packOffset + done);
      this.fill += n;
      done += n;
    }
  }

  /**
   * Queues a piece of at most SLOT_BYTES for the worker to hash (and into the file's SHA-256 if
   * `hash`); `named` is called with its hash by a later call here, and decides where it is written.
   */
  appendPiece(bytes: Uint8Array, hash: boolean, named: (hash: string) => PieceTarget): void {
    if (this.hashed === hash && this.inPlace(bytes)) {
      this.pieces.push({ at: this.fill, size: bytes.length, named });
      this.fill += bytes.length;
      return;
    }
    if (this.slot >= 0 && (this.hashed !== hash || this.fill + bytes.length > SLOT_BYTES)) this.send();
    if (this.slot < 0) this.take(hash);
    asBuffer(bytes).copy(this.ringBytes, this.slot * SLOT_BYTES + this.fill);
    this.pieces.push({ at: this.fill, size: bytes.length, named });
    this.fill += bytes.length;
  }

  /**
   * Windows in the ring for chunkInput: the rest of the slot being filled, then fresh slots (the
   * bytes not yet chunked move along). A window's chunks, put in order, lie where they would be
   * copied to, so they are not copied (see inPlace).
   */
  windows(hash: boolean): ChunkWindows {
    return {
      scanner: this.scanner,
      first: () => this.room(hash),
      next: (tail) => {
        this.send(); // the tail lies past the sent slot's end: the worker reads only up to there
        const room = this.room(hash);
        tail.copy(room, 0);
        return room;
      },
    };
  }

  /** The unfilled rest of the slot being filled (taking a slot if none is). */
  private room(hash: boolean): Buffer {
    if (this.slot >= 0 && this.hashed !== hash) this.send();
    if (this.slot < 0) this.take(hash);
    return this.ringBytes.subarray(this.slot * SLOT_BYTES + this.fill, (this.slot + 1) * SLOT_BYTES);
  }

  /**
   * Whether `bytes` lie exactly where the slot being filled goes on (a window's chunk). Any other
   * bytes from the ring would be a window's chunk out of order, which copying could overwrite.
   */
  private inPlace(bytes: Uint8Array): boolean {
    if (bytes.buffer !== this.ring) return false;
    if (this.slot >= 0 && bytes.byteOffset === RING_AT + this.slot * SLOT_BYTES + this.fill) return true;
    throw new Error('PackWriter: a chunk of a ring window was put out of order');
  }

  /** Whether the worker has half the ring or more still to do: the caller had better hash pieces itself. */
  behind(): boolean {
    let busy = 0;
    for (let i = 0; i < SLOTS; i++) busy += Atomics.load(this.state, SLOT_STATE + i);
    return busy >= SLOTS / 2;
  }

  /** The SHA-256 of every hashed piece, once the worker has seen them all; every piece is named by then. */
  fileDigest(): string {
    this.send();
    this.worker.postMessage({ digest: true });
    this.waitUntil(() => Atomics.load(this.state, DIGESTED) === 1);
    this.nameReadyPieces(); // answers posted before the digest
    return Buffer.from(this.digest).toString('hex');
  }

  /** Waits for every queued piece; throws the first write error. */
  drain(): void {
    this.send();
    this.waitUntil(() => this.idle());
  }

  /**
   * Done with: kept for the next writer of this process if it is idle and sound (one is kept: its
   * worker started and its ring's pages touched, a file of tens of MiB costs neither again), else
   * ended.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // Only if idle: a slot not yet sent is dropped, as the file it held was.
    if (this.mode === 'worker' && this.idle() && Atomics.load(this.state, FAILED) === 0 && !kept && !this.exited) {
      this.slot = -1;
      this.fill = 0;
      this.writes = [];
      this.pieces = [];
      this.fd = -1;
      Atomics.store(this.state, DIGESTED, 0);
      this.worker.postMessage({ reset: true }); // the next file's SHA-256 starts afresh
      kept = this;
      return;
    }
    this.names.close();
    void this.worker.terminate();
  }

  /** No job posted and not done: every slot free, every piece named. */
  private idle(): boolean {
    return this.unnamed.size === 0 && this.state.subarray(SLOT_STATE).every((busy) => busy === 0);
  }

  /** The writer kept by stop(), or a new one. */
  static take(): BackgroundWrites {
    const reused = kept;
    kept = null;
    if (!reused) return new BackgroundWrites();
    reused.stopped = false;
    return reused;
  }

  private take(hash: boolean): void {
    const slot = this.nextSlot;
    this.nextSlot = (this.nextSlot + 1) % SLOTS;
    this.waitUntil(() => Atomics.load(this.state, SLOT_STATE + slot) === 0);
    this.slot = slot;
    this.fill = 0;
    this.hashed = hash;
    this.writes = [];
    this.pieces = [];
  }

  private send(): void {
    if (this.slot < 0) return;
    Atomics.store(this.state, SLOT_STATE + this.slot, 1);
    if (this.pieces.length > 0) this.unnamed.set(this.slot, this.pieces);
    const ranges = this.pieces.flatMap((p) => [p.at, p.at + p.size]);
    this.worker.postMessage({ slot: this.slot, length: this.fill, hash: this.hashed, fd: this.fd, writes: this.writes, ranges });
    this.slot = -1;
    this.nameReadyPieces(); // keeps the worker supplied with writes while this thread goes on
  }

  /** Decides the fate of every piece the worker has named so far and posts their slots' writes. */
  private nameReadyPieces(): void {
    const { receiveMessageOnPort } = workerThreads();
    for (let answer = receiveMessageOnPort(this.names); answer; answer = receiveMessageOnPort(this.names)) {
      const { slot, hashes } = answer.message as { slot: number; hashes: string[] };
      const pieces = this.unnamed.get(slot)!;
      this.unnamed.delete(slot);
      const writes: number[] = [];
      let fd = -1;
      pieces.forEach((piece, i) => {
        const target = piece.named(hashes[i]!);
        if (!target) return;
        fd = target.fd;
        addWrite(writes, piece.at, piece.size, target.offset);
      });
      this.worker.postMessage({ slot, length: 0, hash: false, fd, writes, ranges: [] });
    }
  }

  /** Waits until `done()`, naming pieces meanwhile and reporting a worker that stalls; throws any write error. */
  private waitUntil(done: () => boolean): void {
    const since = Date.now();
    for (;;) {
      const progress = Atomics.load(this.state, PROGRESS);
      this.nameReadyPieces();
      this.throwIfFailed();
      if (done()) return;
      if (Date.now() - since > STALL_TIMEOUT_MS) {
        throw new PaniniError(`the atom writer thread made no progress for ${STALL_TIMEOUT_MS / 1000} s`, 'check the disk holding the store, then run the command again; nothing was named in the store');
      }
      Atomics.wait(this.state, PROGRESS, progress, 1000);
    }
  }

  private throwIfFailed(): void {
    if (Atomics.load(this.state, FAILED) === 0) return;
    const bytes = new Uint8Array(this.errorCode);
    const end = bytes.indexOf(0);
    const code = Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString();
    throw storeWriteError(Object.assign(new Error(`writing a pack failed: ${code}`), { code }), 'the pack directory');
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Adds a write of `length` bytes at slot offset `at` to pack offset `packOffset`; consecutive ones become one. */
function addWrite(writes: number[], at: number, length: number, packOffset: number): void {
  const last = writes.length - 3;
  if (last >= 0 && writes[last]! + writes[last + 1]! === at && writes[last + 2]! + writes[last + 1]! === packOffset) writes[last + 1]! += length;
  else writes.push(at, length, packOffset);
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
    this.ring = background ? BackgroundWrites.take() : null;
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
    copyIntoNewPack(store, [{ pack, entries: entries.filter((e) => !drop(e.hash, pack)) }]);
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

/** A merged pack is closed at this size and the next one begun. */
const MERGED_MAX_BYTES = 1024 * 1024 * 1024;

export interface MergeResult {
  /** Small packs merged, and the packs they became. */
  packs: number;
  into: number;
}

/**
 * Merges the small packs into few (as Git repacks its packs), once there are more than
 * MERGE_ABOVE_PACKS: bulk adds and large files each leave a pack, and every reader pays per pack.
 * With `budgetBytes`, only the smallest packs, up to that many bytes in all.
 * The new pack is named before an old one goes; an old one a writer refreshed meanwhile stays
 * (removeUnlessRefreshed: it only repeats atoms the new one has, and the next gc drops the
 * copies). The new pack keeps the newest time of those it replaces, so gc's grace period still
 * protects what it protected.
 */
export function mergeSmallPacks(store: LocalStore, budgetBytes = Infinity): MergeResult {
  const result: MergeResult = { packs: 0, into: 0 };
  const packs = store.packIndexes();
  if (packs.length <= MERGE_ABOVE_PACKS) return result;
  const small = packs.map((pack) => ({ pack, st: statOrNull(pack.packPath) })).filter(({ st }) => st && st.size < MERGE_BELOW_BYTES);
  if (budgetBytes < Infinity) {
    // The smallest first, as many as the budget holds: most packs for the bytes copied.
    small.sort((a, b) => a.st!.size - b.st!.size);
    let total = 0;
    const within = small.findIndex(({ st }) => (total += st!.size) > budgetBytes);
    if (within >= 0) small.length = within;
  }
  if (small.length < 2) return result;
  let group: typeof small = [];
  let bytes = 0;
  const groups = [group];
  for (const p of small) {
    if (bytes > 0 && bytes + p.st!.size > MERGED_MAX_BYTES) {
      groups.push((group = []));
      bytes = 0;
    }
    group.push(p);
    bytes += p.st!.size;
  }
  for (const g of groups.filter((g) => g.length > 1)) {
    const written = new Set<string>();
    const sources = g.map(({ pack }) => ({
      pack,
      entries: [...pack.entries()].filter((e) => {
        if (written.has(e.hash)) return false; // an atom in two packs goes once
        written.add(e.hash);
        return true;
      }),
    }));
    const id = copyIntoNewPack(store, sources);
    if (id === null) continue;
    const newest = new Date(Math.max(...g.map(({ st }) => st!.mtimeMs)));
    utimesSync(join(store.packsDir, `${id}.pack`), newest, newest);
    for (const { pack, st } of g) {
      if (removeUnlessRefreshed(pack.packPath, st!.mtimeMs + 1) !== 'removed') continue;
      removeQuietly(pack.idxPath);
      result.packs++;
    }
    result.into++;
  }
  store.reloadPacks();
  return result;
}

/** A new pack of the given atoms of existing packs, each pack's read in file order; its id, null if none. */
function copyIntoNewPack(store: LocalStore, sources: readonly { pack: PackIndex; entries: readonly PackEntry[] }[]): string | null {
  const writer = new PackWriter(store, { dedup: false });
  try {
    for (const { pack, entries } of sources) {
      const fd = openSync(pack.packPath, 'r');
      try {
        for (const e of [...entries].sort((a, b) => a.offset - b.offset)) writer.put(e.hash, readPackBytes(fd, e.offset, e.size));
      } finally {
        closeSync(fd);
      }
    }
    return writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
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
