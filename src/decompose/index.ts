import type { Source } from '../source.js';
import type { DecomposeContext, Decomposer, FormatInfo, Segment, TrackInfo } from './types.js';
import { png } from './png.js';
import { jpeg } from './jpeg.js';
import { mp4 } from './mp4.js';
import { zip } from './zip.js';

export type { Segment, FormatInfo, TrackInfo } from './types.js';

/** Detection order matters only where signatures could overlap; these cannot. */
const DECOMPOSERS: readonly Decomposer[] = [png, jpeg, mp4, zip];
const HEAD_BYTES = 64;
/** Nested decomposition (a trailer inside a trailer ...) stops here. */
const MAX_NESTING = 4;

export interface Decomposition {
  format: string;
  info: FormatInfo;
  segments: Segment[];
  /** Media tracks of the top-level format; segments' `track` fields index it. */
  tracks?: TrackInfo[];
}

export function detectFormat(head: Buffer): Decomposer | undefined {
  return DECOMPOSERS.find((d) => d.detect(head));
}

/**
 * Splits source bytes [0, size) into typed segments that cover it exactly, in order.
 * Never throws on bad bytes: any part a decomposer cannot account for becomes Raw.
 */
export function decompose(src: Source): Decomposition {
  const top = decomposeRange(src, 0, src.size, 0);
  return { format: top.format, info: top.info, segments: top.segments, tracks: top.tracks };
}

function decomposeRange(src: Source, start: number, end: number, depth: number): Decomposition {
  const raw = (): Decomposition => ({ format: 'binary', info: {}, segments: rawSegment(start, end) });
  if (start >= end) return { format: 'empty', info: {}, segments: [] };
  const decomposer = depth < MAX_NESTING ? detectFormat(src.read(start, Math.min(HEAD_BYTES, end - start))) : undefined;
  if (!decomposer) return raw();
  const ctx: DecomposeContext = { nested: (s, e) => decomposeRange(src, s, e, depth + 1).segments };
  let result;
  try {
    result = decomposer.decompose(src, start, end, ctx);
  } catch {
    return raw(); // a decomposer bug must never cost the user their file
  }
  const covered = checkContiguous(result.segments, start, end);
  if (covered === null) return raw();
  return {
    format: decomposer.format,
    info: result.info,
    tracks: result.tracks,
    segments: covered < end ? [...result.segments, ...rawSegment(covered, end)] : result.segments,
  };
}

function rawSegment(start: number, end: number): Segment[] {
  return start < end ? [{ offset: start, size: end - start, type: 'Raw' }] : [];
}

/** Returns where the contiguous segments end, or null if they leave holes, overlap or overrun. */
function checkContiguous(segments: readonly Segment[], start: number, end: number): number | null {
  let pos = start;
  for (const s of segments) {
    if (s.offset !== pos || !Number.isSafeInteger(s.size) || s.size <= 0 || s.offset + s.size > end) return null;
    pos += s.size;
  }
  return pos;
}
