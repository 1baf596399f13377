import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Random-access bytes being decomposed. `read` returns at most `length` bytes (fewer only at the
 * end of the source); callers never ask for more than a bounded window, so no read is sized by an
 * untrusted length field.
 */
export interface Source {
  readonly size: number;
  read(offset: number, length: number): Buffer;
  /** Reads into `target` without allocating; returns the byte count (fewer only at the end). */
  readInto?(target: Buffer, targetOffset: number, offset: number, length: number): number;
}

/** Reads `length` bytes of a file from `position` into `into` at `at`; fewer only at its end. Returns how many. */
export function readFully(fd: number, into: Uint8Array, at: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const got = readSync(fd, into, at + done, length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

export class BufferSource implements Source {
  constructor(private readonly buf: Buffer) {}
  get size(): number {
    return this.buf.length;
  }
  read(offset: number, length: number): Buffer {
    if (offset >= this.buf.length || length <= 0) return Buffer.alloc(0);
    return this.buf.subarray(offset, Math.min(this.buf.length, offset + length));
  }
}

export class FileSource implements Source {
  readonly size: number;
  private constructor(private readonly fd: number, size: number, private readonly owned: boolean) {
    this.size = size;
  }
  static open(path: string): FileSource {
    const fd = openSync(path, 'r');
    return new FileSource(fd, fstatSync(fd).size, true);
  }
  /** Wraps an already open descriptor of a regular file (for example stdin redirected from a file). */
  static fromFd(fd: number): FileSource {
    return new FileSource(fd, fstatSync(fd).size, false);
  }
  read(offset: number, length: number): Buffer {
    const n = Math.max(0, Math.min(length, this.size - offset));
    const buf = Buffer.allocUnsafe(n);
    const done = this.readInto(buf, 0, offset, n);
    return done === n ? buf : buf.subarray(0, done);
  }
  readInto(target: Buffer, targetOffset: number, offset: number, length: number): number {
    return readFully(this.fd, target, targetOffset, Math.max(0, Math.min(length, this.size - offset)), offset);
  }
  close(): void {
    if (this.owned) closeSync(this.fd);
  }
}
