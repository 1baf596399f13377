/**
 * An AtomWriter that hands new atoms to a worker thread, keeping at most IN_FLIGHT bytes queued.
 * Used for large files: the main thread chunks and hashes while the worker creates and writes
 * atom files, so `git add` of a big file uses both cores. `finish()` returns only when every atom
 * is written (or throws the first write error), so a concept never names an unwritten atom.
 */
import { Worker } from 'node:worker_threads';
import { PaniniError, StoreError } from '../errors.js';
import { freshen, type AtomWriter, type LocalStore } from './local.js';

const IN_FLIGHT = 64 * 1024 * 1024;
const ERROR_TEXT_BYTES = 4096;
/** The worker signals it is running within this time, else atoms are written on this thread. */
const START_TIMEOUT_MS = 10_000;
/** A worker that writes nothing for this long while atoms wait is reported, not waited for forever. */
const STALL_TIMEOUT_MS = 120_000;

export class BackgroundAtomWriter implements AtomWriter {
  // state[0]: bytes queued and not yet written; state[1]: 1 once a write failed; state[2]: 1 once the worker runs.
  private readonly state = new Int32Array(new SharedArrayBuffer(12));
  private readonly errorText = new SharedArrayBuffer(ERROR_TEXT_BYTES);
  private readonly worker: Worker;
  private readonly sent = new Set<string>();
  /** Known once the first atom comes: whether the worker started (else atoms are written here). */
  private mode: 'unknown' | 'worker' | 'inline' = 'unknown';

  constructor(private readonly store: LocalStore) {
    this.worker = new Worker(new URL('./atom-writer-worker.js', import.meta.url), {
      workerData: { state: this.state.buffer, errorText: this.errorText },
      // Not the parent's flags: under `node -e` or `--input-type` they would change how the worker starts.
      execArgv: [],
    });
  }

  put(hash: string, bytes: Uint8Array): boolean {
    const path = this.store.atomPath(hash);
    if (this.sent.has(hash) || freshen(path)) return false;
    this.sent.add(hash);
    if (this.mode === 'unknown') {
      Atomics.wait(this.state, 2, 0, START_TIMEOUT_MS);
      this.mode = Atomics.load(this.state, 2) === 1 ? 'worker' : 'inline';
    }
    if (this.mode === 'inline') return this.store.put(hash, bytes); // slower, still correct
    this.waitUntilQueued(IN_FLIGHT - bytes.length);
    this.throwIfFailed();
    const copy = new Uint8Array(bytes); // the caller reuses its buffer once put returns
    Atomics.add(this.state, 0, copy.length);
    // Directory creation stays here: it balances the two threads (the worker's file creation is the slower half).
    this.worker.postMessage({ dir: this.store.ensureDir(path), path, bytes: copy }, [copy.buffer]);
    return true;
  }

  /** Waits for every queued atom to be written; throws the first write error. Ends the worker. */
  finish(): void {
    try {
      this.waitUntilQueued(0);
      this.throwIfFailed();
    } finally {
      void this.worker.terminate();
    }
  }

  private waitUntilQueued(limit: number): void {
    let last = Atomics.load(this.state, 0);
    let progressAt = Date.now();
    for (let queued = last; queued > Math.max(0, limit); queued = Atomics.load(this.state, 0)) {
      if (queued !== last) {
        last = queued;
        progressAt = Date.now();
      } else if (Date.now() - progressAt > STALL_TIMEOUT_MS) {
        throw new PaniniError(`the atom writer thread wrote nothing for ${STALL_TIMEOUT_MS / 1000} s`, 'check the disk holding the store, then run the command again; atoms already written are complete');
      }
      Atomics.wait(this.state, 0, queued, 1000);
    }
  }

  private throwIfFailed(): void {
    if (Atomics.load(this.state, 1) === 0) return;
    const bytes = new Uint8Array(this.errorText);
    const end = bytes.indexOf(0);
    const report = JSON.parse(Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString()) as { store: boolean; message: string; hint?: string };
    throw report.store ? new StoreError(report.message, report.hint ?? '') : new PaniniError(report.message, report.hint);
  }
}
