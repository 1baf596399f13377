/**
 * Writes the new atoms of one large file into one new pack (pack.ts): appended to a temp file in
 * `packs/`, then named by its index once `finish()` has written everything. A reader sees the
 * pack's atoms only after the index is renamed into place, so a crash leaves at most a temp file
 * (gc removes it), never a half-written atom under a name.
 *
 * With `background`, a worker thread does the writing, at most IN_FLIGHT bytes behind, so `git
 * add` of a big file uses both cores. If the worker does not start, atoms are written here.
 */
import { closeSync, openSync, renameSync, statSync, writeSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { PaniniError } from '../errors.js';
import { storeWriteError, writeAtomically, type AtomWriter, type LocalStore } from './local.js';
import { encodeIndex, PACK_MAGIC, readPackBytes, removeQuietly, type PackEntry } from './pack.js';

const IN_FLIGHT = 64 * 1024 * 1024;
/** New atoms are sent to the worker in batches this large (one message each, not one per atom). */
const BATCH_BYTES = 4 * 1024 * 1024;
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

  constructor(private readonly store: LocalStore, private readonly options: PackWriterOptions = {}) {
    this.dedup = options.dedup ?? true;
  }

  put(hash: string, bytes: Uint8Array): boolean {
    if (this.entries.has(hash) || (this.dedup && this.store.presentForWrite(hash, this.refreshed))) return false;
    if (this.fd < 0) this.open();
    const offset = this.end;
    this.end += bytes.length;
    this.entries.set(hash, { hash, offset, size: bytes.length });
    if (this.worker?.running()) this.worker.append(this.fd, offset, bytes);
    else this.writeHere(bytes, offset);
    return true;
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
    this.tmp = this.store.tempName(dir, '.pack');
    try {
      this.fd = openSync(this.tmp, 'wx', 0o444);
    } catch (err) {
      throw storeWriteError(err, dir);
    }
    this.writeHere(PACK_MAGIC, 0);
    if (this.options.background) this.worker = new BackgroundWrites();
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

/** The worker thread and the shared counters that bound what it has queued. */
class BackgroundWrites {
  // state[0]: bytes queued and not yet written; state[1]: 1 once a write failed; state[2]: 1 once the worker runs.
  private readonly state = new Int32Array(new SharedArrayBuffer(12));
  private readonly errorCode = new SharedArrayBuffer(ERROR_CODE_BYTES);
  private readonly worker: Worker;
  private mode: 'unknown' | 'worker' | 'inline' = 'unknown';
  /** Atoms waiting to be sent: contiguous in the pack from batchAt. */
  private batch: Buffer | null = null;
  private batchFill = 0;
  private batchAt = 0;
  private batchFd = -1;

  constructor() {
    this.worker = new Worker(new URL('./pack-writer-worker.js', import.meta.url), {
      workerData: { state: this.state.buffer, errorCode: this.errorCode },
      // Not the parent's flags: under `node -e` or `--input-type` they would change how the worker starts.
      execArgv: [],
    });
  }

  /** Whether writes go to the worker; waits (once, bounded) for it to start. */
  running(): boolean {
    if (this.mode === 'unknown') {
      Atomics.wait(this.state, 2, 0, START_TIMEOUT_MS);
      this.mode = Atomics.load(this.state, 2) === 1 ? 'worker' : 'inline'; // inline: slower, still correct
    }
    return this.mode === 'worker';
  }

  /** Queues bytes for `position` of the pack; positions follow one another (appends). */
  append(fd: number, position: number, bytes: Uint8Array): void {
    if (this.batch && this.batchFill + bytes.length > this.batch.length) this.send();
    if (!this.batch) {
      // Copied: the caller reuses its buffer once put returns.
      this.batch = Buffer.allocUnsafeSlow(Math.max(BATCH_BYTES, bytes.length));
      this.batchFill = 0;
      this.batchAt = position;
      this.batchFd = fd;
    }
    this.batch.set(bytes, this.batchFill);
    this.batchFill += bytes.length;
  }

  /** Waits for every queued write; throws the first write error. */
  drain(): void {
    this.send();
    this.waitUntilQueued(0);
    this.throwIfFailed();
  }

  private send(): void {
    if (!this.batch) return;
    const bytes = this.batch.subarray(0, this.batchFill);
    this.batch = null;
    this.waitUntilQueued(IN_FLIGHT - bytes.length);
    this.throwIfFailed();
    Atomics.add(this.state, 0, bytes.length);
    this.worker.postMessage({ fd: this.batchFd, position: this.batchAt, bytes }, [bytes.buffer as ArrayBuffer]);
  }

  stop(): void {
    void this.worker.terminate();
  }

  private waitUntilQueued(limit: number): void {
    let last = Atomics.load(this.state, 0);
    let progressAt = Date.now();
    for (let queued = last; queued > Math.max(0, limit); queued = Atomics.load(this.state, 0)) {
      if (queued !== last) {
        last = queued;
        progressAt = Date.now();
      } else if (Date.now() - progressAt > STALL_TIMEOUT_MS) {
        throw new PaniniError(`the atom writer thread wrote nothing for ${STALL_TIMEOUT_MS / 1000} s`, 'check the disk holding the store, then run the command again; nothing was named in the store');
      }
      Atomics.wait(this.state, 0, queued, 1000);
    }
  }

  private throwIfFailed(): void {
    if (Atomics.load(this.state, 1) === 0) return;
    const bytes = new Uint8Array(this.errorCode);
    const end = bytes.indexOf(0);
    const code = Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString();
    throw storeWriteError(Object.assign(new Error(`writing a pack failed: ${code}`), { code }), 'the pack directory');
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
export function rewritePacks(store: LocalStore, drop: (hash: string) => boolean, cutoffMs?: number): RewriteResult {
  const result: RewriteResult = { removed: [], refreshedPacks: 0 };
  const recent = (path: string): boolean => cutoffMs !== undefined && (statOrNull(path)?.mtimeMs ?? 0) >= cutoffMs;
  for (const pack of store.packIndexes()) {
    const entries = [...pack.entries()];
    const dropped = entries.filter((e) => drop(e.hash));
    if (dropped.length === 0) continue;
    if (recent(pack.packPath)) {
      result.refreshedPacks++;
      continue;
    }
    const kept = entries.filter((e) => !drop(e.hash)).sort((a, b) => a.offset - b.offset);
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
    if (recent(pack.packPath)) {
      result.refreshedPacks++; // keep both: the new pack only repeats atoms the old one has
      continue;
    }
    removeQuietly(pack.idxPath);
    removeQuietly(pack.packPath);
    result.removed.push(...dropped);
  }
  store.reloadPacks();
  return result;
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}
