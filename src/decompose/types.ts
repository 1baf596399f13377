import type { AtomType } from '../atom.js';
import type { Source } from '../source.js';

/** Bytes [offset, offset+size) of the source form one atom of the given type. */
export interface Segment {
  offset: number;
  size: number;
  type: AtomType;
  /** For a media sample: index into DecomposeResult.tracks of the track it belongs to. */
  track?: number;
}

export type TrackKind = 'video' | 'audio' | 'subtitle' | 'other';

/** A media track whose samples are segments (their `track` field points here). */
export interface TrackInfo {
  /** The container's track id (tkhd track_ID for MP4). */
  id: number;
  kind: TrackKind;
  /** Sample format fourcc, e.g. avc1, hvc1, mp4a. */
  codec: string;
}

/** What a decomposer found: facts for the concept's readable body (dimensions, codecs ...). */
export type FormatInfo = Record<string, string | number>;

export interface DecomposeResult {
  /** Contiguous segments from the range's start; whatever they leave uncovered is chunked as Raw. */
  segments: Segment[];
  info: FormatInfo;
  /** Media tracks, for per-track manifests (absent for formats without tracks). */
  tracks?: TrackInfo[];
}

export interface DecomposeContext {
  /** Decomposes a sub-range again by content (a JPEG's trailing motion-photo video, a ZIP prefix). */
  nested(start: number, end: number): Segment[];
}

/**
 * A format decomposer. It reads only through `src` and only bounded windows; it stops parsing at
 * the first thing it does not understand and returns what it has. It may throw on a bug, which the
 * caller catches: the range is then chunked, so a file always round-trips.
 */
export interface Decomposer {
  readonly format: string;
  /** True if the bytes at the start of the range (up to 64 bytes given) look like this format. */
  detect(head: Buffer): boolean;
  decompose(src: Source, start: number, end: number, ctx: DecomposeContext): DecomposeResult;
}
