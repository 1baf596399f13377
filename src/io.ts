/** Synchronous descriptor I/O that tolerates non-blocking pipes (EAGAIN) without spinning hot. */
import { closeSync, fstatSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { BufferSource, FileSource, type Source } from './source.js';

const pause = new Int32Array(new SharedArrayBuffer(4));
function waitBriefly(): void {
  Atomics.wait(pause, 0, 0, 2);
}

export function readFd(fd: number, buf: Buffer, offset = 0, length = buf.length - offset): number {
  for (;;) {
    try {
      return readSync(fd, buf, offset, length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') waitBriefly();
      else if (code === 'EOF') return 0;
      else throw err;
    }
  }
}

export function writeFdAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') waitBriefly();
      else throw err;
    }
  }
}

/** Inputs up to this size are kept in memory; larger ones are spooled to a temp file. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;

export interface SpooledInput {
  source: Source;
  /** The first bytes, for cheap content sniffing. */
  head: Buffer;
  dispose(): void;
}

/**
 * Reads a byte stream into a random-access Source: a regular file is used in place, a small input
 * stays in memory, a large one goes to a temp file (so memory stays bounded).
 */
export function spoolFd(fd: number, tempPath: () => string): SpooledInput {
  if (fstatSync(fd).isFile()) {
    const source = FileSource.fromFd(fd);
    return { source, head: source.read(0, 4096), dispose: () => undefined };
  }
  return spoolChunks((buf) => readFd(fd, buf), tempPath);
}

/** Same, for any pull-style reader returning 0 at the end. */
export function spoolChunks(read: (buf: Buffer) => number, tempPath: () => string): SpooledInput {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    const n = read(buf);
    if (n === 0) {
      const all = Buffer.concat(chunks, total);
      return { source: new BufferSource(all), head: all.subarray(0, 4096), dispose: () => undefined };
    }
    chunks.push(buf.subarray(0, n));
    total += n;
    if (total > IN_MEMORY_LIMIT) break;
  }
  const path = tempPath();
  const out = openSync(path, 'wx', 0o600);
  try {
    for (const c of chunks) writeFdAll(out, c);
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (let n = read(buf); n > 0; n = read(buf)) writeFdAll(out, buf.subarray(0, n));
  } catch (err) {
    closeSync(out);
    unlinkSync(path);
    throw err;
  }
  closeSync(out);
  const source = FileSource.open(path);
  const head = source.read(0, 4096);
  return {
    source,
    head,
    dispose() {
      source.close();
      try { unlinkSync(path); } catch { /* already gone */ }
    },
  };
}
