/**
 * ISO BMFF box headers, read either from a Source (top-level boxes of a file of any size) or from
 * a Buffer already in memory (the children of a bounded moov or moof).
 */
import type { Source } from '../../source.js';

/** A box: [offset, offset+size), its payload starting at offset+headerSize. */
export interface BoxHeader {
  type: string;
  offset: number;
  headerSize: number;
  size: number;
}

/** Printable ASCII fourcc, or a QuickTime '©xyz' box. */
export function isBoxType(b: Uint8Array): boolean {
  for (let i = 0; i < 4; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) return c === 0xa9 && i === 0;
  }
  return true;
}

/**
 * Parses the header at buf[at]; `room` is how many bytes the box may span (to the end of its
 * parent). Returns the header with `offset` = `at`, or null if it is not a plausible box.
 * With `allowOverrun`, a box whose size runs past `room` is returned as is (a truncated file).
 */
export function parseBoxHeader(buf: Buffer, at: number, room: number, allowOverrun = false): BoxHeader | null {
  if (room < 8 || at + 8 > buf.length || !isBoxType(buf.subarray(at + 4, at + 8))) return null;
  const type = buf.toString('latin1', at + 4, at + 8);
  let size = buf.readUInt32BE(at);
  let headerSize = 8;
  if (size === 1) {
    if (room < 16 || at + 16 > buf.length) return null;
    const big = buf.readBigUInt64BE(at + 8);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    size = Number(big);
    headerSize = 16;
  } else if (size === 0) {
    size = room; // box extends to the end of its parent (the file, at top level)
  }
  if (size < headerSize || (size > room && !allowOverrun)) return null;
  return { type, offset: at, headerSize, size };
}

/** Reads the box header at `pos` of the source; null if it is not a plausible box inside [pos, end). */
export function readBoxHeader(src: Source, pos: number, end: number, allowOverrun = false): BoxHeader | null {
  // 8 bytes first: a box's payload may be another atom, not to be fetched just to read a header.
  let h = src.read(pos, Math.min(8, end - pos));
  if (h.length === 8 && h.readUInt32BE(0) === 1) h = src.read(pos, Math.min(16, end - pos));
  const box = parseBoxHeader(h, 0, end - pos, allowOverrun);
  return box && { ...box, offset: pos };
}

/** Bounds any walk over sibling boxes (real files have a handful to a few thousand). */
const MAX_CHILDREN = 1 << 16;

/** The child boxes of buf[start, end), in order, stopping at the first implausible header. */
export function childBoxes(buf: Buffer, start: number, end: number): BoxHeader[] {
  const children: BoxHeader[] = [];
  let pos = start;
  while (pos + 8 <= end && children.length < MAX_CHILDREN) {
    const box = parseBoxHeader(buf, pos, end - pos);
    if (!box) break;
    children.push(box);
    pos += box.size;
  }
  return children;
}

/** First child of `parent` (a box inside buf) with the given type, skipping `skip` payload bytes first. */
export function findChild(buf: Buffer, parent: BoxHeader, type: string, skip = 0): BoxHeader | undefined {
  return childBoxes(buf, parent.offset + parent.headerSize + skip, parent.offset + parent.size).find((b) => b.type === type);
}

/** Follows a path of box types down from `parent`. */
export function findPath(buf: Buffer, parent: BoxHeader, ...types: string[]): BoxHeader | undefined {
  let box: BoxHeader | undefined = parent;
  for (const t of types) {
    box = findChild(buf, box, t);
    if (!box) return undefined;
  }
  return box;
}

/** The payload of a box inside buf. */
export function payload(buf: Buffer, box: BoxHeader): Buffer {
  return buf.subarray(box.offset + box.headerSize, box.offset + box.size);
}

/** The whole box (header included). */
export function boxBytes(buf: Buffer, box: BoxHeader): Buffer {
  return buf.subarray(box.offset, box.offset + box.size);
}
