/**
 * JPEG: SOI, every marker segment (APPn, COM, tables, frame headers) as its own atom, and every
 * scan (SOS header plus its entropy-coded data) as one ImageData atom, so an EXIF edit leaves the
 * scans' atoms untouched. Fill bytes (FF) before a marker belong to that marker's segment.
 * Bytes after EOI (motion-photo video, MPF images) are decomposed again by content (or chunked).
 */
import type { AtomType } from '../atom.js';
import type { Source } from '../source.js';
import type { Decomposer, FormatInfo, Segment } from './types.js';

/** Largest read: entropy-coded data is searched for markers in windows of this size. */
const WINDOW = 1 << 20;
/** Marker headers (and fill-byte runs) are read in small windows. */
const HEADER_WINDOW = 4096;

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
/** SOF2, SOF6, SOF10, SOF14: the progressive frame types. */
const PROGRESSIVE_SOF = new Set([0xc2, 0xc6, 0xca, 0xce]);

function isRst(code: number): boolean {
  return code >= 0xd0 && code <= 0xd7;
}

/** SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC). */
function isSof(code: number): boolean {
  return code >= 0xc0 && code <= 0xcf && code !== 0xc4 && code !== 0xc8 && code !== 0xcc;
}

/**
 * Marker segments with a length field that are not scans: SOFn, DHT, JPG, DAC (C0–CF), DQT, DNL,
 * DRI, DHP, EXP (DB–DF), APPn (E0–EF), JPGn extensions (F0–FD) and COM (FE). Reserved codes are
 * garbage to us.
 */
function isHeaderMarker(code: number): boolean {
  return (code >= 0xc0 && code <= 0xcf) || (code >= 0xdb && code <= 0xfe);
}

/** The marker code after `pos` and where it sits, skipping fill bytes; null if no marker starts at `pos`. */
function readMarker(src: Source, pos: number, end: number): { code: number; at: number } | null {
  let q = pos;
  for (;;) {
    const w = src.read(q, Math.min(HEADER_WINDOW, end - q));
    if (w.length < 2 || w[0] !== 0xff) return null;
    let i = 1;
    while (i < w.length && w[i] === 0xff) i++;
    if (i < w.length) return { code: w[i]!, at: q + i };
    q += w.length - 1; // all fill so far: go on from the last FF
  }
}

/**
 * Where the entropy-coded data starting at `pos` ends: the first FF that is neither a stuffed FF00
 * nor a restart marker. -1 if the range ends first (a truncated scan).
 */
function findScanEnd(src: Source, pos: number, end: number): number {
  let p = pos;
  while (p < end) {
    const w = src.read(p, Math.min(WINDOW, end - p));
    if (w.length === 0) return -1;
    let k = w.indexOf(0xff);
    while (k >= 0 && k + 1 < w.length) {
      const next = w[k + 1]!;
      if (next !== 0x00 && !isRst(next)) return p + k;
      k = w.indexOf(0xff, k + 2);
    }
    if (k < 0) p += w.length;
    else if (w.length === 1) return -1;
    else p += k; // an FF ends the window: read again from it to see the byte after it
  }
  return -1;
}

export const jpeg: Decomposer = {
  format: 'jpeg',
  detect: (head) => head.length >= 3 && head[0] === 0xff && head[1] === SOI && head[2] === 0xff,
  decompose(src, start, end, ctx) {
    const segments: Segment[] = [{ offset: start, size: 2, type: 'Container' }];
    const info: FormatInfo = {};
    let scans = 0;
    let pos = start + 2;
    while (pos < end) {
      const marker = readMarker(src, pos, end);
      if (!marker) break;
      const { code, at } = marker;
      if (code === EOI) {
        segments.push({ offset: pos, size: at + 1 - pos, type: 'Container' });
        pos = at + 1;
        if (pos < end) {
          segments.push(...ctx.nested(pos, end));
          info.trailing_bytes = end - pos;
        }
        break;
      }
      if (code !== SOS && !isHeaderMarker(code)) break;
      const head = src.read(at + 1, 8);
      if (head.length < 2) break;
      const length = head.readUInt16BE(0);
      const headerEnd = at + 1 + length;
      if (length < 2 || headerEnd > end) break;
      let segEnd = headerEnd;
      let type: AtomType = 'Metadata';
      if (code === SOS) {
        segEnd = findScanEnd(src, headerEnd, end);
        if (segEnd < 0) break; // truncated scan: left to the Raw fallback
        type = 'ImageData';
        scans++;
      } else if (isSof(code) && length >= 8 && head.length >= 8 && info.width === undefined) {
        info.height = head.readUInt16BE(3);
        info.width = head.readUInt16BE(5);
        info.components = head[7]!;
        if (PROGRESSIVE_SOF.has(code)) info.progressive = 1;
      }
      segments.push({ offset: pos, size: segEnd - pos, type });
      pos = segEnd;
    }
    info.scans = scans;
    return { segments, info };
  },
};
