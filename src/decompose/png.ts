/**
 * PNG and APNG: the signature, then every chunk (length, type, data, CRC) as its own atom.
 * IDAT and fdAT carry image data; IEND closes the image; everything else is metadata.
 * Bytes after IEND are decomposed again by content (or chunked).
 */
import type { AtomType } from '../atom.js';
import type { Decomposer, FormatInfo, Segment } from './types.js';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHUNK_OVERHEAD = 12; // length + type + CRC
const COLOR_TYPES: Record<number, string> = { 0: 'grayscale', 2: 'RGB', 3: 'palette', 4: 'grayscale+alpha', 6: 'RGBA' };

function isChunkType(b: Buffer): boolean {
  for (let i = 0; i < 4; i++) {
    const c = b[i]!;
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) return false;
  }
  return true;
}

function chunkAtomType(type: string): AtomType {
  if (type === 'IDAT' || type === 'fdAT') return 'ImageData';
  if (type === 'IEND') return 'Container';
  return 'Metadata';
}

export const png: Decomposer = {
  format: 'png',
  detect: (head) => head.length >= 8 && head.subarray(0, 8).equals(SIGNATURE),
  decompose(src, start, end, ctx) {
    const info: FormatInfo = {};
    if (!png.detect(src.read(start, Math.min(8, end - start)))) return { segments: [], info };
    const segments: Segment[] = [{ offset: start, size: 8, type: 'Container' }];
    let frames = 0;
    let pos = start + 8;
    while (pos + CHUNK_OVERHEAD <= end) {
      const header = src.read(pos, 8);
      if (header.length < 8 || !isChunkType(header.subarray(4, 8))) break;
      const length = header.readUInt32BE(0);
      // PNG caps chunk lengths at 2^31-1; a length past the end means a lying or truncated file.
      if (length > 0x7fffffff || pos + CHUNK_OVERHEAD + length > end) break;
      const type = header.toString('latin1', 4, 8);
      if (type === 'IHDR' && length >= 13) {
        const ihdr = src.read(pos + 8, 13);
        info.width = ihdr.readUInt32BE(0);
        info.height = ihdr.readUInt32BE(4);
        info.bit_depth = ihdr[8]!;
        info.color = COLOR_TYPES[ihdr[9]!] ?? `type ${ihdr[9]}`;
      }
      if (type === 'acTL' && length >= 8) info.animation_frames = src.read(pos + 8, 4).readUInt32BE(0);
      if (type === 'fcTL') frames++;
      segments.push({ offset: pos, size: CHUNK_OVERHEAD + length, type: chunkAtomType(type) });
      pos += CHUNK_OVERHEAD + length;
      if (type === 'IEND') {
        if (pos < end) {
          segments.push(...ctx.nested(pos, end));
          info.trailing_bytes = end - pos;
        }
        break;
      }
    }
    if (frames > 0) info.frame_controls = frames;
    return { segments, info };
  },
};
