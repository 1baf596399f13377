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

export class BackgroundAtomWriter implements AtomWriter {
  // state[0]: bytes queued and not yet written; state[1]: 1 once a write failed.
  private readonly state = new Int32Array(new SharedArrayBuffer(8));
  private readonly errorText = new SharedArrayBuffer(ERROR_TEXT_BYTES);
  private readonly worker: Worker;
  private readonly sent = new Set<string>();

  constructor(private readonly store: LocalStore) {
    this.worker = new Worker(new URL('./atom-writer-worker.js', import.meta.url), {
      workerData: { state: this.state.buffer, errorText: this.errorText },
    });
  }

  put(hash: string, bytes: Uint8Array): boolean {
    const path = this.store.atomPath(hash);
    if (this.sent.has(hash) || freshen(path)) return false;
    this.sent.add(hash);
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
    for (let queued = Atomics.load(this.state, 0); queued > Math.max(0, limit); queued = Atomics.load(this.state, 0)) {
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
