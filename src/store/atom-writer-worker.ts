/**
 * Worker thread that writes atoms for BackgroundAtomWriter, so file creation and writing run on
 * the second core while the main thread chunks and hashes. See background-writer.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PaniniError, StoreError } from '../errors.js';
import { writeAtomically } from './local.js';

interface Job {
  /** The shard directory, already created by the main thread. */
  dir: string;
  path: string;
  bytes: Uint8Array;
}

const state = new Int32Array(workerData.state as SharedArrayBuffer);
const errorText = new Uint8Array(workerData.errorText as SharedArrayBuffer);

Atomics.store(state, 2, 1);
Atomics.notify(state, 2);

parentPort!.on('message', (job: Job) => {
  try {
    if (Atomics.load(state, 1) === 0) writeAtomically(job.dir, job.path, job.bytes);
  } catch (err) {
    const e = err as Error;
    const report = JSON.stringify({ store: err instanceof StoreError, message: e.message, hint: err instanceof PaniniError ? err.hint : undefined });
    errorText.set(Buffer.from(report).subarray(0, errorText.length - 1));
    Atomics.store(state, 1, 1);
  }
  Atomics.sub(state, 0, job.bytes.length);
  Atomics.notify(state, 0);
});
