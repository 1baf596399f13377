/**
 * Pack files: the new atoms of one large file written one after another into a single file, with
 * an index beside it (docs/store-format.md, "Packs"). One sequential write instead of thousands of
 * small files and shard directories: this is what makes `git add` of a large file fast. Like Git's
 * packs, a pack is immutable once named; an atom leaves it only when gc or fsck rewrites it.
 *
 *   <id>.pack   "PANINI-PACK 1\n\0\0", then the atoms' bytes back to back
 *   <id>.idx    "PANINI-IDX 1\n\0\0\0", count (u32 BE), 4 zero bytes, the atoms' hashes sorted
 *               (32 bytes each), their offsets in the pack (u64 BE each), their sizes (u32 BE
 *               each), then the SHA-256 of everything before it. <id> is that SHA-256 in hex.
 */
import { closeSync, fstatSync, openSync, readFileSync, unlinkSync } from 'node:fs';
import { readFully } from '../source.js';
import { join } from 'node:path';
import { sha256Hex } from '../hash.js';

/** No atom this program writes is larger; a bigger one under an atom's name is not one of ours. */
export const MAX_ATOM_BYTES = 256 * 1024 * 1024;

export const PACK_MAGIC = Buffer.from('PANINI-PACK 1\n\0\0', 'latin1');
const IDX_MAGIC = Buffer.from('PANINI-IDX 1\n\0\0\0', 'latin1');
const IDX_HEADER = IDX_MAGIC.length + 8;
const HASH_BYTES = 32;
/** An index larger than this (about 24 million atoms) is not one of ours. */
const MAX_IDX_BYTES = 1024 * 1024 * 1024;

export interface PackEntry {
  hash: string;
  offset: number;
  size: number;
}

/** An index's bytes and its id (their checksum); and the index itself if it was read from them already. */
export interface EncodedIndex {
  id: string;
  bytes: Buffer;
  parsed?: PackIndex;
}

/** Packs with more atoms than this are not ordered by offset for `following` (a sort of ~5 ms at most). */
const MAX_ORDERED_ATOMS = 65536;

/** A loaded pack index: lookups by binary search within the bucket of the hash's first byte. */
export class PackIndex {
  private readonly fanout = new Uint32Array(257);
  /** offsetKeys(), made when first asked (undefined until then). */
  private byOffset: Float64Array | null | undefined = undefined;

  private constructor(
    readonly id: string,
    readonly packPath: string,
    readonly idxPath: string,
    readonly count: number,
    private readonly hashes: Buffer,
    /** The first four bytes of each hash: a lookup compares these, and whole hashes only where they are equal. */
    private readonly prefixes: Uint32Array,
    private readonly offsets: Float64Array,
    private readonly sizes: Uint32Array,
    private readonly raw: Buffer,
  ) {
    for (let i = 0; i < count; i++) this.fanout[hashes[i * HASH_BYTES]! + 1]!++;
    for (let b = 1; b <= 256; b++) this.fanout[b]! += this.fanout[b - 1]!;
  }

  /**
   * Reads and checks `<dir>/<id>.idx` against its checksum, its order and the size of its pack.
   * Returns null for an index that does not hold together (fsck names it; reads ignore it).
   */
  static load(dir: string, id: string): PackIndex | null {
    const idxPath = join(dir, `${id}.idx`);
    const packPath = join(dir, `${id}.pack`);
    let raw: Buffer;
    let packSize: number;
    try {
      raw = readFileSync(idxPath);
      const fd = openSync(packPath, 'r');
      try {
        packSize = fstatSync(fd).size;
      } finally {
        closeSync(fd);
      }
    } catch {
      return null;
    }
    return PackIndex.parse(raw, id, packSize, packPath, idxPath);
  }

  /**
   * Checks index bytes against their checksum (which must be `id`), their order and the size of
   * their pack; null if they do not hold together. Also used for the indexes of a remote store's
   * packs, whose paths are keys.
   */
  static parse(raw: Buffer, id: string, packSize: number, packPath: string, idxPath: string): PackIndex | null {
    if (raw.length < IDX_HEADER + HASH_BYTES || raw.length > MAX_IDX_BYTES || !raw.subarray(0, IDX_MAGIC.length).equals(IDX_MAGIC)) return null;
    const body = raw.subarray(0, raw.length - HASH_BYTES);
    const sum = sha256Hex(body);
    if (sum !== id || sum !== raw.subarray(body.length).toString('hex')) return null;
    const count = raw.readUInt32BE(IDX_MAGIC.length);
    if (body.length !== IDX_HEADER + count * (HASH_BYTES + 12)) return null;
    const hashes = raw.subarray(IDX_HEADER, IDX_HEADER + count * HASH_BYTES);
    const offsetsAt = IDX_HEADER + count * HASH_BYTES;
    const sizesAt = offsetsAt + count * 8;
    // The big-endian fields are copied and byte-swapped natively into typed arrays, so that the loop
    // that checks them reads array elements (5,280 entries in 2.2 instead of 3.4 ms, cold).
    const sizes = bigEndianWords(raw.subarray(sizesAt, sizesAt + count * 4), 4);
    const offsetWords = bigEndianWords(raw.subarray(offsetsAt, offsetsAt + count * 8), 8); // [low, high] per offset
    const hashWords = bigEndianWords(hashes, 4);
    const prefixes = new Uint32Array(count);
    const offsets = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const offset = offsetWords[2 * i + 1]! * 2 ** 32 + offsetWords[2 * i]!;
      const size = sizes[i]!;
      if (offset < PACK_MAGIC.length || offset + size > packSize || size > MAX_ATOM_BYTES) return null;
      const prefix = hashWords[i * (HASH_BYTES / 4)]!;
      // Sorted, no hash twice: each above the one before (the whole hash compared only if the prefixes tie).
      if (i > 0 && (prefix < prefixes[i - 1]! || (prefix === prefixes[i - 1] && hashes.compare(hashes, i * HASH_BYTES, (i + 1) * HASH_BYTES, (i - 1) * HASH_BYTES, i * HASH_BYTES) >= 0))) return null;
      prefixes[i] = prefix;
      offsets[i] = offset;
    }
    return new PackIndex(id, packPath, idxPath, count, hashes, prefixes, offsets, sizes, raw);
  }

  /** The bytes it was parsed from: the same pack copied elsewhere needs no index built or read again. */
  encoded(): EncodedIndex {
    return { id: this.id, bytes: this.raw, parsed: this };
  }

  /** The same index for the same pack at other paths (a copy of it), sharing what was read. */
  relocated(packPath: string, idxPath: string): PackIndex {
    const moved = new PackIndex(this.id, packPath, idxPath, this.count, this.hashes, this.prefixes, this.offsets, this.sizes, this.raw);
    moved.byOffset = this.byOffset;
    return moved;
  }

  /** The position of a hash (64 lowercase hex digits) in the index, or -1. */
  find(hash: string): number {
    const prefix = parseInt(hash.slice(0, 8), 16);
    let lo = this.fanout[prefix >>> 24]!;
    let hi = this.fanout[(prefix >>> 24) + 1]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = this.prefixes[mid]!;
      if (at < prefix) lo = mid + 1;
      else if (at > prefix) hi = mid - 1;
      else return this.findTied(hash, prefix, mid);
    }
    return -1;
  }

  /** Among the hashes sharing `prefix` around `mid` (almost always `mid` alone), the one equal to `hash`. */
  private findTied(hash: string, prefix: number, mid: number): number {
    if (hash.length !== HASH_BYTES * 2) return -1;
    let i = mid;
    while (i > 0 && this.prefixes[i - 1] === prefix) i--;
    for (; i < this.count && this.prefixes[i] === prefix; i++) if (this.holdsAt(i, hash)) return i;
    return -1;
  }

  /** Whether entry i's hash is `hash` (lowercase hex). */
  holdsAt(i: number, hash: string): boolean {
    return this.hashAt(i) === hash;
  }

  /**
   * Every name as one hex string (entry i's at i × 64), for checking many entries with one
   * conversion instead of one string per entry (5,280 atoms checked in ~19 instead of ~23 ms,
   * cold); null past MAX_ORDERED_ATOMS entries (4 MiB of string).
   */
  hexNames(): string | null {
    return this.count > MAX_ORDERED_ATOMS ? null : this.hashes.toString('hex');
  }

  entry(i: number): PackEntry {
    return { hash: this.hashAt(i), offset: this.offsets[i]!, size: this.sizes[i]! };
  }

  hashAt(i: number): string {
    return this.hashes.toString('hex', i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  /**
   * The entry whose bytes start where entry i's end (-1 if none): the atom written after it. Only
   * for packs of up to 65,536 atoms and 4 GiB (-1 in others).
   */
  following(i: number): number {
    const keys = this.offsetKeys();
    const end = this.offsets[i]! + this.sizes[i]!;
    if (!keys || end >= 2 ** 32) return -1;
    const n = this.count;
    const target = end * n;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    const key = keys[lo];
    return key !== undefined && key < target + n ? key - target : -1;
  }

  offsetOf(i: number): number {
    return this.offsets[i]!;
  }

  /** The positions of the entries in the order of their offsets. */
  positionsByOffset(): Uint32Array {
    const n = this.count;
    const positions = new Uint32Array(n);
    const keys = this.offsetKeys();
    if (keys) {
      for (let j = 0; j < n; j++) positions[j] = keys[j]! % n;
      return positions;
    }
    for (let j = 0; j < n; j++) positions[j] = j;
    return positions.sort((a, b) => this.offsets[a]! - this.offsets[b]!);
  }

  /**
   * offset × count + position for each entry, sorted: exact in a double, so sorted natively without
   * a comparator, in packs of up to 65,536 atoms and 4 GiB; null for others.
   */
  private offsetKeys(): Float64Array | null {
    if (this.byOffset !== undefined) return this.byOffset;
    const n = this.count;
    let keys: Float64Array | null = n > MAX_ORDERED_ATOMS ? null : new Float64Array(n);
    for (let j = 0; keys && j < n; j++) {
      if (this.offsets[j]! >= 2 ** 32) keys = null;
      else keys[j] = this.offsets[j]! * n + j;
    }
    this.byOffset = keys?.sort() ?? null;
    return this.byOffset;
  }

  sizeOf(i: number): number {
    return this.sizes[i]!;
  }

  /** The bytes of all its atoms (without making an entry per atom). */
  atomBytes(): number {
    let n = 0;
    for (const size of this.sizes) n += size;
    return n;
  }

  *entries(): Generator<PackEntry> {
    for (let i = 0; i < this.count; i++) yield this.entry(i);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Big-endian integers of `width` bytes (4 or 8) as native 32-bit words: a copy swapped in place, so
 * that a 64-bit one is [low word, high word].
 */
export function bigEndianWords(bytes: Buffer, width: 4 | 8): Uint32Array {
  const words = new Uint32Array(bytes.length / 4);
  const view = Buffer.from(words.buffer, 0, bytes.length);
  bytes.copy(view);
  if (width === 8) view.swap64(); // low half first, each half's bytes reversed
  if ((width === 4) === LITTLE_ENDIAN) view.swap32(); // each word's bytes in the machine's order
  return words;
}

/** The inverse of bigEndianWords for 4-byte integers: `words` written big-endian into `out` at `at`. */
export function putBigEndianWords(words: Uint32Array, out: Buffer, at: number): void {
  const bytes = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  if (LITTLE_ENDIAN) bytes.swap32();
  bytes.copy(out, at);
}

/**
 * A u64 big-endian as a number (offsets and sizes stay far below 2^53), through the engine's own
 * DataView accessors: fast in a cold process, unlike BigInt reads.
 */
export function getUint64(view: DataView, at: number): number {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

export function setUint64(view: DataView, at: number, n: number): void {
  view.setUint32(at, Math.floor(n / 2 ** 32));
  view.setUint32(at + 4, n % 2 ** 32);
}

/** The index of `entries` (any order; hashes distinct), and its id. */
export function encodeIndex(entries: readonly PackEntry[]): EncodedIndex {
  // Sorted by the engine's own string order (no comparator called per pair): for hex, byte order.
  const byHash = new Map(entries.map((e) => [e.hash, e]));
  const sorted = [...byHash.keys()].sort().map((hash) => byHash.get(hash)!);
  const n = sorted.length;
  const bytes = Buffer.alloc(IDX_HEADER + n * (HASH_BYTES + 12) + HASH_BYTES);
  IDX_MAGIC.copy(bytes, 0);
  bytes.writeUInt32BE(n, IDX_MAGIC.length);
  const offsetsAt = IDX_HEADER + n * HASH_BYTES;
  const sizesAt = offsetsAt + n * 8;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length); // the engine's own accessors: fast in a cold process
  for (let i = 0; i < n; i++) {
    const e = sorted[i]!;
    bytes.write(e.hash, IDX_HEADER + i * HASH_BYTES, 'hex');
    setUint64(view, offsetsAt + i * 8, e.offset);
    view.setUint32(sizesAt + i * 4, e.size);
  }
  const body = bytes.subarray(0, bytes.length - HASH_BYTES);
  const id = sha256Hex(body);
  bytes.write(id, body.length, 'hex');
  return { id, bytes };
}

/**
 * Past this many packs, gc merges the small ones (as Git repacks): every pack costs each local
 * reader an index to load and a lookup per atom, and a fresh clone a remote index to download.
 */
export const MERGE_ABOVE_PACKS = 16;
/** Packs from this size (a large file's) are left whole: merging copies every byte it merges. */
export const MERGE_BELOW_BYTES = 64 * 1024 * 1024;

/** Sequential reads of a pack when checking its atoms go through a buffer this large (4 MiB faulted in cost ~2 ms more). */
const VERIFY_BUFFER_BYTES = 1024 * 1024;

/** The entries whose bytes in the open pack `fd` hash to their names: the pack read in order, once. */
export function entriesHeld(fd: number, entries: readonly PackEntry[]): PackEntry[] {
  const window = new PackWindow(fd);
  return [...entries].sort((a, b) => a.offset - b.offset).filter((e) => {
    const atom = window.bytesAt(e.offset, e.size);
    return atom !== null && sha256Hex(atom) === e.hash;
  });
}

/**
 * Which atoms of `index` the open pack `fd` holds, each hashed to its name: a flag per position.
 * The pack is read in order, once, and no object is made per atom but a view of its bytes (a
 * fresh clone checks thousands: 5,280 atoms took ~20 ms cold, ~24 with two callbacks and a
 * Buffer per atom).
 */
export function atomsHeld(fd: number, index: PackIndex): Uint8Array {
  const held = new Uint8Array(index.count);
  const order = index.positionsByOffset();
  const names = index.hexNames();
  const window = new PackWindow(fd);
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    const atom = window.bytesAt(index.offsetOf(i), index.sizeOf(i));
    if (atom === null) continue;
    const name = sha256Hex(atom); // hex strings compared: faster than a digest Buffer, measured
    if (names ? names.startsWith(name, i * 2 * HASH_BYTES) : index.holdsAt(i, name)) held[i] = 1;
  }
  return held;
}

/** Atoms of an open pack read in increasing offsets, through one reused buffer. */
class PackWindow {
  private readonly buf = Buffer.allocUnsafe(VERIFY_BUFFER_BYTES);
  /** The bytes of the file in buf. */
  private start = 0;
  private end = 0;

  constructor(private readonly fd: number) {}

  /** The atom's bytes (a view valid until the next call), or null if the pack is cut short there. */
  bytesAt(offset: number, size: number): Uint8Array | null {
    if (size > this.buf.length) {
      const atom = readPackBytes(this.fd, offset, size);
      return atom.length === size ? atom : null;
    }
    if (offset < this.start || offset + size > this.end) {
      this.start = offset;
      this.end = offset + readFully(this.fd, this.buf, 0, this.buf.length, offset);
    }
    return offset + size <= this.end ? new Uint8Array(this.buf.buffer, this.buf.byteOffset + offset - this.start, size) : null;
  }
}

/**
 * The pack of `packs` holding `hash`, and its position there. `first`, one of them (the pack the
 * last atom was found in: a file's atoms mostly share one), is looked in first.
 */
export function findInPacks(packs: Iterable<PackIndex | null>, hash: string, first: PackIndex | null): { pack: PackIndex; i: number } | null {
  const i = first ? first.find(hash) : -1;
  if (i >= 0) return { pack: first!, i };
  for (const pack of packs) {
    if (!pack || pack === first) continue;
    const j = pack.find(hash);
    if (j >= 0) return { pack, i: j };
  }
  return null;
}

/** Reads `size` bytes at `offset` of an open pack (short only if the pack was cut). */
export function readPackBytes(fd: number, offset: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  const done = readFully(fd, buf, 0, size, offset);
  return done === size ? buf : buf.subarray(0, done);
}

export const isPackId = (name: string): boolean => /^[0-9a-f]{64}$/.test(name);

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
