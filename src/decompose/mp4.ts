/**
 * MP4 / MOV / M4A at box level: every top-level box is one segment. The media data box (mdat) is
 * split into its 8- or 16-byte header (Container) and its payload (Raw, content-defined chunked),
 * so the same media bytes dedup across files whatever their position.
 */
import type { AtomType } from '../atom.js';
import type { Source } from '../source.js';
import type { Decomposer, FormatInfo, Segment } from './types.js';

/** Box types that can open an ISO BMFF / QuickTime file. */
const FIRST_BOXES = new Set(['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot', 'styp', 'sidx']);

const BOX_TYPES: Record<string, AtomType> = {
  ftyp: 'Container', styp: 'Container', moov: 'Container', moof: 'Container', mfra: 'Container',
  sidx: 'Container', free: 'Raw', skip: 'Raw', wide: 'Raw', udta: 'Metadata', meta: 'Metadata',
  uuid: 'Metadata', pnot: 'Metadata',
};

export function isBoxType(b: Buffer): boolean {
  for (let i = 0; i < 4; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) return c === 0xa9 && i === 0; // QuickTime '©xyz' boxes
  }
  return true;
}

export interface BoxHeader {
  type: string;
  offset: number;
  headerSize: number;
  size: number;
}

/** Reads the box header at `pos`; null if it is not a plausible box inside [pos, end). */
export function readBoxHeader(src: Source, pos: number, end: number): BoxHeader | null {
  if (pos + 8 > end) return null;
  const h = src.read(pos, 16);
  if (h.length < 8 || !isBoxType(h.subarray(4, 8))) return null;
  const type = h.toString('latin1', 4, 8);
  let size = h.readUInt32BE(0);
  let headerSize = 8;
  if (size === 1) {
    if (h.length < 16) return null;
    const big = h.readBigUInt64BE(8);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    size = Number(big);
    headerSize = 16;
  } else if (size === 0) {
    size = end - pos; // box extends to the end of the file
  }
  if (size < headerSize || pos + size > end) return null;
  return { type, offset: pos, headerSize, size };
}

export const mp4: Decomposer = {
  format: 'mp4',
  detect(head) {
    return head.length >= 8 && isBoxType(head.subarray(4, 8)) && FIRST_BOXES.has(head.toString('latin1', 4, 8));
  },
  decompose(src, start, end) {
    const segments: Segment[] = [];
    const info: FormatInfo = {};
    const boxes: string[] = [];
    let pos = start;
    while (pos < end) {
      const box = readBoxHeader(src, pos, end);
      if (!box) break;
      if (box.type === 'ftyp' && box.size >= 12) info.brand = src.read(pos + 8, 4).toString('latin1');
      if (boxes.length < 16) boxes.push(box.type);
      if (box.type === 'mdat') {
        segments.push({ offset: pos, size: box.headerSize, type: 'Container' });
        if (box.size > box.headerSize) segments.push({ offset: pos + box.headerSize, size: box.size - box.headerSize, type: 'Raw' });
      } else {
        segments.push({ offset: pos, size: box.size, type: BOX_TYPES[box.type] ?? 'Container' });
      }
      pos += box.size;
    }
    info.boxes = boxes.join(' ');
    return { segments, info };
  },
};
