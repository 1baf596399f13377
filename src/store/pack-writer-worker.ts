/**
 * Worker thread that writes a pack's atoms at their offsets for PackWriter, so the writing runs on
 * the second core while the main thread chunks and hashes. See pack-writer.ts.
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

interface Job {
  fd: number;
  position: number;
  bytes: Uint8Array;
}

const state = new Int32Array(workerData.state as SharedArrayBuffer);
const errorCode = new Uint8Array(workerData.errorCode as SharedArrayBuffer);

Atomics.store(state, 2, 1);
Atomics.notify(state, 2);

parentPort!.on('message', (job: Job) => {
  try {
    if (Atomics.load(state, 1) === 0) {
      let done = 0;
      while (done < job.bytes.length) done += writeSync(job.fd, job.bytes, done, job.bytes.length - done, job.position + done);
    }
  } catch (err) {
    // The main thread turns the code into a StoreError with what to do (see storeWriteError).
    errorCode.set(Buffer.from(String((err as NodeJS.ErrnoException).code ?? (err as Error).message)).subarray(0, errorCode.length - 1));
    Atomics.store(state, 1, 1);
  }
  Atomics.sub(state, 0, job.bytes.length);
  Atomics.notify(state, 0);
});
