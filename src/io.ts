/** Synchronous descriptor I/O that tolerates non-blocking pipes (EAGAIN) without spinning hot (readFdPolling alone polls, briefly and on purpose). */
import { closeSync, constants, fstatSync, openSync, readSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import type * as Tty from 'node:tty';
import { lazily } from './lazy.js';
import { BufferSource, FileSource, type Source } from './source.js';

const tty = lazily<typeof Tty>('node:tty');

/**
 * Whether `fd` is a terminal (where progress is drawn), found without making `process.stderr`:
 * for a pipe, as Git's stderr often is, that stream loads Node's `net` modules (~4 ms in every
 * clone's filter process). Only a character device can be a terminal.
 */
export function isTerminal(fd: number): boolean {
  try {
    return fstatSync(fd).isCharacterDevice() && tty().isatty(fd);
  } catch {
    return false;
  }
}

/**
 * A monotonic clock in milliseconds. Not `performance.now()`: the first use of the global loads
 * Node's perf_hooks (~1 ms), in every filter process, which polls Git's pipe with it.
 */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

const pause = new Int32Array(new SharedArrayBuffer(4));
function waitBriefly(): void {
  Atomics.wait(pause, 0, 0, 2);
}

/**
 * A blocking descriptor for the pipe behind `fd`, where Linux can give one: opening
 * /proc/self/fd/N makes a file description of our own, without the O_NONBLOCK that the inherited
 * pipe can carry. On a non-blocking pipe every full buffer costs a 2 ms wait (waitBriefly) instead
 * of waking as soon as Git reads: ~1 s per 64 MiB smudged through the filter process. Anything
 * else (a file, a terminal, another OS) keeps `fd`.
 */
export function blockingPipe(fd: number, flags: 'r' | 'w'): number {
  try {
    return fstatSync(fd).isFIFO() ? openSync(`/proc/self/fd/${fd}`, flags) : fd;
  } catch {
    return fd;
  }
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

/** Work a reader does once its input has been quiet for `afterMs` (readFdPolling). */
export interface IdleWork {
  afterMs: number;
  /** Whether there is any: if not, the reader goes to sleep in the kernel at once. */
  pending(): boolean;
  run(): void;
}

/** While waiting for idle work to be due, input is looked for this often. */
const IDLE_CHECK_MS = 0.1;

/**
 * Like readFd on `fd`, but first polls `nonBlockingFd` (a non-blocking descriptor of the same pipe,
 * see nonBlockingPipe) for up to `pollMs`. A reader asleep in the kernel is woken by each write of
 * the other side, which costs both processes a context switch and, across cores, an
 * inter-processor interrupt (slow in virtual machines). During a checkout or an add, Git sends the
 * filter its next request within a fraction of a millisecond, so polling that long finds it
 * there. Only worth it with a core to spare: Git runs on the other one meanwhile.
 *
 * `ahead`, if given, is done first when nothing has come yet: work for the likely next request,
 * done while Git works on the last answer on the other core.
 *
 * With pending `idle` work, the reader then keeps looking every 0.1 ms, asleep in between, and
 * does the work if nothing came for `idle.afterMs`, before it sleeps in the kernel.
 */
export function readFdPolling(fd: number, nonBlockingFd: number, pollMs: number, buf: Buffer, offset: number, length: number, idle?: IdleWork, ahead?: () => void): number {
  let start = nowMs();
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0; // each empty poll throws EAGAIN: no stack to capture
  const tryRead = (): number | null => {
    try {
      return readSync(nonBlockingFd, buf, offset, length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EOF') return 0;
      if (code !== 'EAGAIN') return -1; // the blocking read reports it
      return null;
    }
  };
  try {
    let got = tryRead();
    if (got === null && ahead) {
      ahead();
      start = nowMs();
      got = tryRead();
    }
    while (got === null && nowMs() < start + pollMs) got = tryRead();
    if (got === null && idle?.pending()) {
      while (got === null && nowMs() < start + idle.afterMs) {
        Atomics.wait(pause, 0, 0, IDLE_CHECK_MS);
        got = tryRead();
      }
      if (got === null) idle.run();
    }
    if (got !== null && got >= 0) return got;
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  return readFd(fd, buf, offset, length);
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

/** Writes several buffers with as few syscalls as possible (no concatenation copy). */
export function writeFdAllv(fd: number, buffers: Uint8Array[]): void {
  let pending = buffers.filter((b) => b.length > 0);
  while (pending.length > 0) {
    try {
      pending = advance(pending, writevSync(fd, pending.slice(0, 1024)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      waitBriefly();
    }
  }
}

/**
 * Writes buffers to a pipe while doing other work: through `nonBlockingFd` (see nonBlockingPipe),
 * at most `slice` bytes at a time, with a step of `work` after each write and whenever the pipe is
 * full, so the reader drains it while this thread works. Once `work` has nothing left (returns
 * false), the rest goes through the blocking `fd`.
 */
export function writeFdAllvWorking(nonBlockingFd: number, fd: number, buffers: Uint8Array[], work: () => boolean, slice = 64 * 1024): void {
  let pending = buffers.filter((b) => b.length > 0);
  while (pending.length > 0) {
    const batch: Uint8Array[] = [];
    for (let i = 0, room = slice; i < pending.length && room > 0; i++) {
      const b = pending[i]!.length <= room ? pending[i]! : pending[i]!.subarray(0, room);
      batch.push(b);
      room -= b.length;
    }
    try {
      pending = advance(pending, writevSync(nonBlockingFd, batch));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
    if (pending.length > 0 && !work()) return writeFdAllv(fd, pending);
  }
}

/** The buffers left once the first `n` bytes of them are written. */
function advance(pending: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < pending.length && n >= pending[i]!.length) n -= pending[i++]!.length;
  const rest = pending.slice(i);
  if (n > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

/**
 * A second descriptor for the pipe behind `fd`, non-blocking (Linux: its own file description),
 * or -1: a writer can then do other work while the pipe is full (see PktWriter.whileBlocked), and
 * a reader poll for input before it sleeps (readFdPolling).
 */
export function nonBlockingPipe(fd: number, flags: 'r' | 'w'): number {
  try {
    return fstatSync(fd).isFIFO() ? openSync(`/proc/self/fd/${fd}`, (flags === 'r' ? constants.O_RDONLY : constants.O_WRONLY) | constants.O_NONBLOCK) : -1;
  } catch {
    return -1;
  }
}

/** Inputs up to this size are kept in memory; larger ones are spooled to a temp file. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;

export interface SpooledInput {
  source: Source;
  /** The first bytes, for cheap content sniffing. */
  head: Buffer;
  /** False if the bytes behind `source` may have changed since they were received (see below). */
  unchanged?(): boolean;
  dispose(): void;
}

/**
 * Reads a byte stream into a random-access Source: a regular file is used in place, a small input
 * stays in memory, a large one goes to a temp file (so memory stays bounded) unless it proves
 * identical to `likeFile` or `streamable` takes it (see receiveToClean).
 */
export function spoolFd(fd: number, tempPath: () => string, likeFile?: string, streamable?: (head: Buffer) => boolean): SpooledInput | StreamedInput {
  if (fstatSync(fd).isFile()) {
    const source = FileSource.fromFd(fd);
    return { source, head: source.read(0, 4096), dispose: () => undefined };
  }
  const buf = Buffer.allocUnsafe(READ_CHUNK); // reused: whoever keeps a chunk copies it
  const next = (): Buffer | null => {
    const n = readFd(fd, buf);
    return n === 0 ? null : buf.subarray(0, n);
  };
  const readInto: ReadInto = (into, at, max) => readFd(fd, into, at, max);
  return likeFile || streamable ? receiveToClean({ next, readInto }, likeFile, tempPath, streamable) : spoolChunks(next, tempPath);
}

/**
 * Same, for any pull-style reader of chunks (null at the end); a chunk may be reused by the next
 * call. `lent`: memory to gather into first, as in Incoming.lent.
 */
export function spoolChunks(next: () => Buffer | null, tempPath: () => string, lent?: Buffer): SpooledInput {
  const got = gather(next, IN_MEMORY_LIMIT, lent);
  if (got.overflow === null) return inMemory(got.held);
  return spoolToFile(got.held, got.overflow, next, tempPath);
}

function inMemory(all: Buffer): SpooledInput {
  return { source: new BufferSource(all), head: all.subarray(0, 4096), dispose: () => undefined };
}

/**
 * Gathers chunks into one growing buffer (one copy of each) until the input ends or would pass
 * `limit`; then `overflow` is the chunk that would have (not copied: valid until the next call).
 * `lent` is memory to gather into first (see Incoming.lent).
 */
function gather(next: () => Buffer | null, limit: number, lent?: Buffer): { held: Buffer; overflow: Buffer | null } {
  let held = lent ?? Buffer.allocUnsafe(0); // else grown to fit: a small input (a concept) takes a small buffer
  let total = 0;
  for (;;) {
    const chunk = next();
    if (chunk === null) return { held: held.subarray(0, total), overflow: null };
    if (total + chunk.length > limit) return { held: held.subarray(0, total), overflow: chunk };
    if (total + chunk.length > held.length) {
      const bigger = Buffer.allocUnsafe(Math.min(limit, Math.max(held.length * 2, total + chunk.length)));
      held.copy(bigger, 0, 0, total);
      held = bigger;
    }
    chunk.copy(held, total);
    total += chunk.length;
  }
}

/** Over IN_MEMORY_LIMIT: what was gathered, the chunk in hand and the rest go to a temp file. */
function spoolToFile(gathered: Buffer, pending: Buffer, next: () => Buffer | null, tempPath: () => string): SpooledInput {
  const path = tempPath();
  const out = openSync(path, 'wx', 0o600);
  try {
    writeFdAll(out, gathered);
    writeFdAll(out, pending);
    for (let c = next(); c !== null; c = next()) writeFdAll(out, c);
  } catch (err) {
    closeSync(out);
    unlinkSync(path);
    // A write to a descriptor carries no path: name the temp file, so the caller can tell whose disk is full.
    const e = err as NodeJS.ErrnoException;
    if (e.code && !e.path) Object.assign(e, { path, syscall: e.syscall ?? 'write' });
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

/** Reads up to `max` bytes into `into` at `at`; returns how many, 0 only at the end. */
export type ReadInto = (into: Buffer, at: number, max: number) => number;

/** Bytes arriving: chunks from `next` (null at the end; a chunk may be reused by the next call), or read straight into a buffer. */
export interface Incoming {
  next(): Buffer | null;
  /** The same bytes, read into the caller's buffer (0 at the end); saves a copy. Used once next() has been. */
  readInto?: ReadInto;
  /**
   * Memory to hold an input that fits in it, lent by a caller that receives input after input: it
   * spares an allocation (and its page faults) per small file. The input must be disposed of
   * before the next one arrives.
   */
  lent?: Buffer;
}

/** A large input handed over to be consumed once, in order, as it arrives (see receiveToClean). */
export interface StreamedInput {
  read: ReadInto;
  dispose(): void;
}

/**
 * Receives a stream that is normally a copy of the file at `path` (Git cleaning a worktree file).
 * A large input that `streamable` accepts by its first bytes is returned as a StreamedInput, to be
 * consumed as it arrives (one pass, nothing spooled or compared). Other large inputs are compared
 * with the file as they arrive and, if they match, the file is decomposed in place instead of
 * writing a second copy to a temp file; on the first difference (or without a path) this falls
 * back to spooling. `unchanged()` then tells whether the file still has the size and times it had
 * while compared.
 */
export function receiveToClean(
  incoming: Incoming, path: string | undefined, tempPath: () => string, streamable: (head: Buffer) => boolean = () => false,
): SpooledInput | StreamedInput {
  const { next } = incoming;
  // Inputs that fit in memory are gathered without touching the file (no open, stat, close each).
  const first = gather(next, IN_MEMORY_LIMIT, incoming.lent);
  if (first.overflow === null) return inMemory(first.held);
  const head = first.held.subarray(0, 4096);
  if (streamable(head)) return { read: readThrough([first.held, first.overflow], incoming), dispose: () => undefined };
  const firstChunks: Buffer[] = [first.held, Buffer.from(first.overflow)];
  let owned = true; // the chunk in hand is one of ours, not next()'s (which its next call may reuse)
  const received = (): Buffer | null => {
    const c = firstChunks.shift();
    if (c) return c;
    owned = false;
    return next();
  };
  if (path === undefined) return spoolChunks(received, tempPath);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return spoolChunks(received, tempPath);
  }
  const before = fstatSync(fd);
  if (!before.isFile()) {
    closeSync(fd);
    return spoolChunks(received, tempPath);
  }
  const file = FileSource.fromFd(fd);
  let pos = 0;
  let pending: Buffer | null = null;
  const mine = Buffer.allocUnsafe(READ_CHUNK); // one buffer for the whole comparison
  const matches = (chunk: Buffer): boolean => {
    for (let off = 0; off < chunk.length; off += mine.length) {
      const n = Math.min(mine.length, chunk.length - off);
      if (file.readInto(mine, 0, pos + off, n) !== n || !mine.subarray(0, n).equals(chunk.subarray(off, off + n))) return false;
    }
    return true;
  };
  for (let chunk = received(); chunk !== null; chunk = received()) {
    if (!matches(chunk)) {
      pending = owned ? chunk : Buffer.from(chunk);
      break;
    }
    pos += chunk.length;
  }
  if (pending === null && pos === file.size) {
    return {
      source: file,
      head: file.read(0, 4096),
      unchanged() {
        const now = fstatSync(fd);
        return now.size === before.size && now.mtimeMs === before.mtimeMs && now.ctimeMs === before.ctimeMs && now.ino === before.ino;
      },
      dispose: () => closeSync(fd),
    };
  }
  // Different from the file: the matched prefix is the file's bytes, then the rest of the stream.
  let prefixAt = 0;
  const rest = (): Buffer | null => {
    if (prefixAt < pos) {
      const part = file.read(prefixAt, Math.min(READ_CHUNK, pos - prefixAt));
      prefixAt += part.length;
      return part;
    }
    if (pending !== null) {
      const p = pending;
      pending = null;
      return p;
    }
    return received();
  };
  try {
    return spoolChunks(rest, tempPath);
  } finally {
    closeSync(fd);
  }
}

/**
 * Copies `chunks`, then what `incoming` gives, into the reader's buffers. A chunk is used up before
 * `next` is called again (its buffer may be reused then), and nothing is read after the end.
 */
function readThrough(chunks: Buffer[], incoming: Incoming): ReadInto {
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  return (into, at, max) => {
    let done = 0;
    while (done < max && !ended) {
      if (pending.length === 0) {
        const chunk = chunks.shift();
        if (chunk === undefined && incoming.readInto) {
          const got = incoming.readInto(into, at + done, max - done);
          if (got === 0) ended = true;
          done += got;
          continue;
        }
        const next = chunk ?? incoming.next();
        if (next === null) {
          ended = true;
          break;
        }
        pending = next;
      }
      const n = pending.copy(into, at + done, 0, Math.min(pending.length, max - done));
      pending = pending.subarray(n);
      done += n;
    }
    return done;
  };
}
