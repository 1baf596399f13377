/**
 * Worker thread for PackWriter: hashes the file's pieces into its SHA-256, names the pieces it is
 * asked to (their own SHA-256, answered on the `names` port) and writes atoms at their pack
 * offsets, while the main thread chunks. Each message names a slot of the shared ring and what to
 * do with it. See pack-writer.ts.
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { newSha256, sha256Hex } from '../hash.js';
import { DIGESTED, FAILED, PROGRESS, RUNNING, SLOT_STATE } from './pack-writer-state.js';

/** A slot's work: hash it into the file, write ranges of it, name unnamed pieces (then it stays in use until their writes come). */
type Job = { slot: number; length: number; hash: boolean; fd: number; writes: number[]; ranges: number[] } | { digest: true } | { reset: true };

const state = new Int32Array(workerData.state as SharedArrayBuffer);
const ring = workerData.ring as SharedArrayBuffer;
const ringAt = workerData.ringAt as number;
const slotBytes = workerData.slotBytes as number;
const errorCode = new Uint8Array(workerData.errorCode as SharedArrayBuffer);
const digest = new Uint8Array(workerData.digest as SharedArrayBuffer);
const names = workerData.names as MessagePort;
let file = newSha256();

/** Wakes the main thread, which waits on PROGRESS for whatever it needs (a slot, names, the digest). */
function wake(): void {
  Atomics.add(state, PROGRESS, 1);
  Atomics.notify(state, PROGRESS);
}

function progressed(index: number, value: number): void {
  Atomics.store(state, index, value);
  wake();
}

Atomics.store(state, RUNNING, 1);
Atomics.notify(state, RUNNING);

parentPort!.on('message', (job: Job) => {
  if ('digest' in job) {
    digest.set(file.digest());
    progressed(DIGESTED, 1);
    return;
  }
  if ('reset' in job) {
    file = newSha256(); // a new writer: a new file
    return;
  }
  const bytes = new Uint8Array(ring, ringAt + job.slot * slotBytes, slotBytes);
  if (job.hash) file.update(bytes.subarray(0, job.length));
  try {
    for (let i = 0; i < job.writes.length && Atomics.load(state, FAILED) === 0; i += 3) {
      const [at, length, position] = [job.writes[i]!, job.writes[i + 1]!, job.writes[i + 2]!];
      for (let done = 0; done < length;) done += writeSync(job.fd, bytes, at + done, length - done, position + done);
    }
  } catch (err) {
    // The main thread turns the code into a StoreError with what to do (see storeWriteError).
    errorCode.set(Buffer.from(String((err as NodeJS.ErrnoException).code ?? (err as Error).message)).subarray(0, errorCode.length - 1));
    Atomics.store(state, FAILED, 1);
  }
  if (job.ranges.length > 0) {
    const hashes: string[] = [];
    for (let i = 0; i < job.ranges.length; i += 2) hashes.push(sha256Hex(bytes.subarray(job.ranges[i]!, job.ranges[i + 1]!)));
    names.postMessage({ slot: job.slot, hashes });
    wake(); // the slot stays in use until the main thread posts the writes of its new pieces
    return;
  }
  progressed(SLOT_STATE + job.slot, 0);
});
