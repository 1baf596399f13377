/**
 * FastCDC content-defined chunking with normalized chunking (level 2), as in Xia et al.,
 * "FastCDC: a Fast and Efficient Content-Defined Chunking Approach for Data Deduplication"
 * (USENIX ATC 2016).
 *
 * The chunk boundaries are part of the storage format: changing the gear table, the masks or the
 * sizes changes every atom of every chunked file. They are fixed here and written down in
 * docs/store-format.md.
 */
import { createHash } from 'node:crypto';
import type { ReadInto } from '../io.js';
import { gearScanner, type GearScanner } from './gear-scan.js';

export const CDC_MIN_SIZE = 16 * 1024;
export const CDC_AVG_SIZE = 64 * 1024;
export const CDC_MAX_SIZE = 256 * 1024;

/**
 * Gear table: gear[i] = first 4 bytes (big-endian) of SHA-256("git-panini gear v1 " + i).
 * Derived rather than pasted so anyone can regenerate and check it; on first use, so that a
 * process that chunks nothing (a checkout) does not spend ~1.5 ms on 256 hashes as it starts.
 */
export function gearTable(): Int32Array {
  if (!gearValues) {
    gearValues = new Int32Array(256);
    for (let i = 0; i < 256; i++) gearValues[i] = createHash('sha256').update(`git-panini gear v1 ${i}`).digest().readInt32BE(0);
  }
  return gearValues;
}
let gearValues: Int32Array | null = null;

// The rolling hash is 32 bits wide, so bit k depends on the last k+1 bytes; the masks use the top
// bits, which see the widest window. Normalized chunking: a harder mask (bits+2) before the average
// size and an easier one (bits-2) after it pull chunk sizes towards the average.
const AVG_BITS = Math.round(Math.log2(CDC_AVG_SIZE));
const topBits = (n: number): number => (n >= 32 ? -1 : ((1 << n) - 1) << (32 - n)) | 0;
export const MASK_SMALL = topBits(AVG_BITS + 2);
export const MASK_LARGE = topBits(AVG_BITS - 2);

/** Where the scanner's memory holds copies of bytes that live elsewhere (at most one chunk's worth). */
const SCRATCH_AT = 64 * 1024;
const WINDOW_AT = SCRATCH_AT + CDC_MAX_SIZE;
/** The reading window ingest chunks files in: 8 MiB read at a time, plus the undecided tail. */
export const CDC_WINDOW_BYTES = 8 * 1024 * 1024 + CDC_MAX_SIZE;

let scanner: GearScanner | null = null;
/** Compiled on first use: processes that chunk nothing (most smudges) never pay for it. */
function gear(): GearScanner {
  scanner ??= gearScanner(gearTable(), WINDOW_AT + CDC_WINDOW_BYTES);
  return scanner;
}

/**
 * A buffer of CDC_WINDOW_BYTES in the scanner's own memory: bytes read into it are chunked where
 * they lie, without a copy. There is one per thread, for one chunking at a time.
 */
export function cdcWindow(): Buffer {
  return gear().memory.subarray(WINDOW_AT, WINDOW_AT + CDC_WINDOW_BYTES);
}

/**
 * Where chunkInput reads its input and chunks it: windows in a scanner's memory. By default one,
 * the cdcWindow(), whose undecided tail moves back to its start; a pack writer lends the slots of
 * its ring instead, so that the chunks it is given already lie where it would copy them.
 */
export interface ChunkWindows {
  readonly scanner: GearScanner;
  /** The first window (chunkInput asks for the next one at once if it is too short). */
  first(): Buffer;
  /** The next window, with `tail` (the current one's last bytes, not yet chunked) copied to its start. */
  next(tail: Buffer): Buffer;
}

const ONE_WINDOW: ChunkWindows = {
  get scanner() {
    return gear();
  },
  first: cdcWindow,
  next(tail) {
    const window = cdcWindow();
    const from = tail.byteOffset - window.byteOffset;
    window.copyWithin(0, from, from + tail.length);
    return window;
  },
};

/**
 * Length of the chunk that starts at buf[start], given `available` bytes from there.
 * When `final` is false and no cut point is found before `available` runs out (and available is
 * below the maximum), returns 0: the caller must supply more bytes. Fastest when `buf` lies in the
 * scanner's memory (a ChunkWindows window); other bytes are copied into the scanner first.
 */
export function cutPoint(buf: Uint8Array, start: number, available: number, final: boolean, g: GearScanner = gear()): number {
  if (available <= CDC_MIN_SIZE) return final ? available : 0;
  const limit = Math.min(available, CDC_MAX_SIZE);
  const normal = Math.min(limit, CDC_AVG_SIZE);
  let base: number; // where buf[start] is (or would be) in the scanner's memory
  if (buf.buffer === g.memory.buffer) base = buf.byteOffset + start;
  else {
    base = SCRATCH_AT - CDC_MIN_SIZE; // the first CDC_MIN_SIZE bytes are skipped, not read
    g.memory.set(buf.subarray(start + CDC_MIN_SIZE, start + limit), SCRATCH_AT);
  }
  let after = g.scan(base + CDC_MIN_SIZE, base + normal, 0, MASK_SMALL);
  if (after === 0 && normal < limit) after = g.scan(base + normal, base + limit, g.carry(), MASK_LARGE);
  if (after !== 0) return after - base;
  return limit === CDC_MAX_SIZE || final ? limit : 0;
}

/**
 * Cuts an input read through `fill` into chunks, in `windows`: the input is read into a window,
 * and when too little room is left after the undecided bytes, they move to the start of the next
 * one; each byte is read in once. `emit` gets each chunk (a view into its window, valid until it
 * returns) and its offset in the input. Returns the input's length.
 */
export function chunkInput(fill: ReadInto, emit: (bytes: Buffer, offset: number) => void, windows: ChunkWindows = ONE_WINDOW): number {
  const g = windows.scanner;
  let window = windows.first();
  let at = 0; // index in window of the next chunk's first byte
  let held = 0; // bytes held from `at` on
  let pos = 0; // input offset of window[at]
  let ended = false;
  while (!(ended && held === 0)) {
    const cut = cutPoint(window, at, held, ended, g);
    if (cut === 0) {
      // Not enough bytes for a decision (never with a full window: held < CDC_MAX_SIZE here).
      if (window.length - (at + held) < CDC_MAX_SIZE) {
        window = windows.next(window.subarray(at, at + held));
        at = 0;
      }
      const got = fill(window, at + held, window.length - (at + held));
      if (got === 0) ended = true;
      held += got;
      continue;
    }
    emit(window.subarray(at, at + cut), pos);
    at += cut;
    held -= cut;
    pos += cut;
  }
  return pos;
}
