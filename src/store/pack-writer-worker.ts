/**
 * Worker thread for PackWriter: hashes the file's pieces into its SHA-256 and writes new atoms at
 * their pack offsets, while the main thread chunks and hashes atoms. Each message names a slot of
 * the shared ring and what to do with it. See pack-writer.ts.
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { newSha256 } from '../hash.js';

type Job = { fd: number; slot: number; length: number; hash: boolean; writes: number[] } | { digest: true };

const state = new Int32Array(workerData.state as SharedArrayBuffer);
const ring = workerData.ring as SharedArrayBuffer;
const slotBytes = workerData.slotBytes as number;
const errorCode = new Uint8Array(workerData.errorCode as SharedArrayBuffer);
const digest = new Uint8Array(workerData.digest as SharedArrayBuffer);
const file = newSha256();

Atomics.store(state, 1, 1);
Atomics.notify(state, 1);

parentPort!.on('message', (job: Job) => {
  if ('digest' in job) {
    digest.set(file.digest());
    Atomics.store(state, 2, 1);
    Atomics.notify(state, 2);
    return;
  }
  const bytes = new Uint8Array(ring, job.slot * slotBytes, job.length);
  if (job.hash) file.update(bytes);
  try {
    for (let i = 0; i < job.writes.length && Atomics.load(state, 0) === 0; i += 3) {
      const [at, length, position] = [job.writes[i]!, job.writes[i + 1]!, job.writes[i + 2]!];
      for (let done = 0; done < length;) done += writeSync(job.fd, bytes, at + done, length - done, position + done);
    }
  } catch (err) {
    // The main thread turns the code into a StoreError with what to do (see storeWriteError).
    errorCode.set(Buffer.from(String((err as NodeJS.ErrnoException).code ?? (err as Error).message)).subarray(0, errorCode.length - 1));
    Atomics.store(state, 0, 1);
  }
  Atomics.store(state, 3 + job.slot, 0);
  Atomics.notify(state, 3 + job.slot);
});
