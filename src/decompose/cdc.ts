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

export const CDC_MIN_SIZE = 16 * 1024;
export const CDC_AVG_SIZE = 64 * 1024;
export const CDC_MAX_SIZE = 256 * 1024;

/**
 * Gear table: gear[i] = first 4 bytes (big-endian) of SHA-256("git-panini gear v1 " + i).
 * Derived rather than pasted so anyone can regenerate and check it.
 */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`git-panini gear v1 ${i}`).digest().readInt32BE(0);
  }
  return table;
})();

// The rolling hash is 32 bits wide, so bit k depends on the last k+1 bytes; the masks use the top
// bits, which see the widest window. Normalized chunking: a harder mask (bits+2) before the average
// size and an easier one (bits-2) after it pull chunk sizes towards the average.
const AVG_BITS = Math.round(Math.log2(CDC_AVG_SIZE));
const topBits = (n: number): number => (n >= 32 ? -1 : ((1 << n) - 1) << (32 - n)) | 0;
export const MASK_SMALL = topBits(AVG_BITS + 2);
export const MASK_LARGE = topBits(AVG_BITS - 2);

/**
 * Length of the chunk that starts at buf[start], given `available` bytes from there.
 * When `final` is false and no cut point is found before `available` runs out (and available is
 * below the maximum), returns 0: the caller must supply more bytes.
 */
export function cutPoint(buf: Uint8Array, start: number, available: number, final: boolean): number {
  if (available <= CDC_MIN_SIZE) return final ? available : 0;
  const limit = Math.min(available, CDC_MAX_SIZE);
  const normal = Math.min(limit, CDC_AVG_SIZE);
  const gear = GEAR;
  const small = MASK_SMALL;
  const large = MASK_LARGE;
  let h = 0;
  let i = start + CDC_MIN_SIZE;
  const normalEnd = start + normal;
  const end = start + limit;
  // Eight bytes per turn: V8 runs this ~2x faster than one per turn (bench: 520 → 1,100+ MB/s).
  for (; i + 7 < normalEnd; i += 8) {
    h = ((h << 1) + gear[buf[i + 0]!]!) | 0;
    if ((h & small) === 0) return i + 1 - start;
    h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
    if ((h & small) === 0) return i + 2 - start;
    h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
    if ((h & small) === 0) return i + 3 - start;
    h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
    if ((h & small) === 0) return i + 4 - start;
    h = ((h << 1) + gear[buf[i + 4]!]!) | 0;
    if ((h & small) === 0) return i + 5 - start;
    h = ((h << 1) + gear[buf[i + 5]!]!) | 0;
    if ((h & small) === 0) return i + 6 - start;
    h = ((h << 1) + gear[buf[i + 6]!]!) | 0;
    if ((h & small) === 0) return i + 7 - start;
    h = ((h << 1) + gear[buf[i + 7]!]!) | 0;
    if ((h & small) === 0) return i + 8 - start;
  }
  for (; i < normalEnd; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & small) === 0) return i + 1 - start;
  }
  for (; i + 7 < end; i += 8) {
    h = ((h << 1) + gear[buf[i + 0]!]!) | 0;
    if ((h & large) === 0) return i + 1 - start;
    h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
    if ((h & large) === 0) return i + 2 - start;
    h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
    if ((h & large) === 0) return i + 3 - start;
    h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
    if ((h & large) === 0) return i + 4 - start;
    h = ((h << 1) + gear[buf[i + 4]!]!) | 0;
    if ((h & large) === 0) return i + 5 - start;
    h = ((h << 1) + gear[buf[i + 5]!]!) | 0;
    if ((h & large) === 0) return i + 6 - start;
    h = ((h << 1) + gear[buf[i + 6]!]!) | 0;
    if ((h & large) === 0) return i + 7 - start;
    h = ((h << 1) + gear[buf[i + 7]!]!) | 0;
    if ((h & large) === 0) return i + 8 - start;
  }
  for (; i < end; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & large) === 0) return i + 1 - start;
  }
  if (limit === CDC_MAX_SIZE || final) return limit;
  return 0;
}
