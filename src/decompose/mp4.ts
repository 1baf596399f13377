/**
 * MP4 / MOV / M4A, fragmented MP4 included, at frame level: every sample of every track is one
 * segment (video IFrame/PFrame/BFrame, audio AudioChunk, subtitles Subtitle), so the same frames
 * dedup across files whatever their position, container or metadata. Top-level boxes are Container
 * or Metadata segments (the moov split into its children, so a tag edit leaves the track boxes'
 * atoms alone); each mdat's header is a Container segment and the payload bytes no sample covers
 * are Raw. Without a usable moov (absent, larger than MAX_MOOV_BYTES) the file is split at box
 * level: mdat payloads stay Raw, content-defined chunked.
 */
import type { AtomType } from '../atom.js';
import type { Source } from '../source.js';
import { childBoxes, isBoxType, type BoxHeader } from './mp4/boxes.js';
import { parseMovie, placeSamples, type Movie, type Placement } from './mp4/movie.js';
import { sampleFrameType } from './mp4/nal.js';
import { SAMPLE_DISPOSABLE, SAMPLE_SYNC } from './mp4/samples.js';
import { trackSeconds, type Track } from './mp4/tracks.js';
import type { Decomposer, FormatInfo, Segment, TrackInfo } from './types.js';

/** Box types that can open an ISO BMFF / QuickTime file. */
const FIRST_BOXES = new Set(['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot', 'styp', 'sidx']);

const BOX_TYPES: Record<string, AtomType> = {
  ftyp: 'Container', styp: 'Container', moov: 'Container', moof: 'Container', mfra: 'Container',
  sidx: 'Container', free: 'Raw', skip: 'Raw', wide: 'Raw', udta: 'Metadata', meta: 'Metadata',
  uuid: 'Metadata', pnot: 'Metadata',
};

/** Tracks summarised in the concept's info line, and its length: concepts stay under 8 KiB. */
const MAX_SUMMARISED_TRACKS = 4;
const MAX_SUMMARY_CHARS = 240;

export const mp4: Decomposer = {
  format: 'mp4',
  detect(head) {
    return head.length >= 8 && isBoxType(head.subarray(4, 8)) && FIRST_BOXES.has(head.toString('latin1', 4, 8));
  },
  decompose(src, start, end) {
    const movie = parseMovie(src, start, end);
    const placement = placeSamples(movie);
    const segments: Segment[] = [];
    const tracks: TrackInfo[] = movie.tracks.map((t) => ({ id: t.id, kind: t.kind, codec: t.codec }));
    let next = 0; // next placed sample, in file order
    for (const box of movie.boxes) {
      if (box.type === 'mdat') {
        segments.push({ offset: box.offset, size: box.headerSize, type: 'Container' });
        next = mdatSegments(src, movie, placement, next, box, segments);
      } else if (box.type === 'moov' && movie.moov?.box === box) {
        moovSegments(movie.moov.bytes, box, segments);
      } else {
        segments.push({ offset: box.offset, size: box.size, type: BOX_TYPES[box.type] ?? 'Container' });
      }
    }
    return { segments, info: describeMovie(movie, placement), tracks: placement.count > 0 ? tracks : undefined };
  },
};

/** The mdat payload: its placed samples in file order, Raw between and around them. */
function mdatSegments(src: Source, movie: Movie, placement: Placement, next: number, mdat: BoxHeader, segments: Segment[]): number {
  let pos = mdat.offset + mdat.headerSize;
  const end = mdat.offset + mdat.size;
  for (; next < placement.count; next++) {
    const t = placement.track[next]!;
    const i = placement.index[next]!;
    const track = movie.tracks[t]!;
    const offset = track.samples.offset[i]!;
    if (offset >= end) break;
    if (offset > pos) segments.push({ offset: pos, size: offset - pos, type: 'Raw' });
    const size = track.samples.size[i]!;
    segments.push({ offset, size, type: sampleType(src, track, i), track: t });
    pos = offset + size;
  }
  if (pos < end) segments.push({ offset: pos, size: end - pos, type: 'Raw' });
  return next;
}

/** The moov's header and each child box; udta and meta are Metadata, the rest Container. */
function moovSegments(moov: Buffer, box: BoxHeader, segments: Segment[]): void {
  segments.push({ offset: box.offset, size: box.headerSize, type: 'Container' });
  let pos = box.headerSize;
  for (const child of childBoxes(moov, box.headerSize, moov.length)) {
    segments.push({ offset: box.offset + child.offset, size: child.size, type: BOX_TYPES[child.type] === 'Metadata' ? 'Metadata' : 'Container' });
    pos = child.offset + child.size;
  }
  if (pos < moov.length) segments.push({ offset: box.offset + pos, size: moov.length - pos, type: 'Raw' });
}

function sampleType(src: Source, track: Track, i: number): AtomType {
  switch (track.kind) {
    case 'audio':
      return 'AudioChunk';
    case 'subtitle':
      return 'Subtitle';
    case 'other':
      return 'Metadata';
    case 'video': {
      const s = track.samples;
      const fromSlices = track.nal ? sampleFrameType(src, s.offset[i]!, s.size[i]!, track.nal) : null;
      if (fromSlices) return fromSlices;
      const flags = s.flags[i]!;
      return flags & SAMPLE_SYNC ? 'IFrame' : flags & SAMPLE_DISPOSABLE ? 'BFrame' : 'PFrame';
    }
  }
}

function describeMovie(movie: Movie, placement: Placement): FormatInfo {
  const info: FormatInfo = {};
  if (movie.brand !== undefined) info.brand = movie.brand;
  info.boxes = movie.boxes.slice(0, 16).map((b) => b.type).join(' ');
  if (movie.tracks.length === 0) return info;
  const summary = movie.tracks.slice(0, MAX_SUMMARISED_TRACKS).map((t) => {
    const shape = t.kind === 'video' ? ` ${Math.round(t.width)}x${Math.round(t.height)}` : t.kind === 'audio' ? ` ${Math.round(t.sampleRate)} Hz` : '';
    return `${t.id} ${t.kind} ${t.codec}${shape} ${trackSeconds(t).toFixed(2)} s`;
  });
  if (movie.tracks.length > MAX_SUMMARISED_TRACKS) summary.push(`${movie.tracks.length - MAX_SUMMARISED_TRACKS} more`);
  info.tracks = summary.join(', ').slice(0, MAX_SUMMARY_CHARS);
  info.duration_s = Number(Math.max(...movie.tracks.map(trackSeconds)).toFixed(3));
  info.samples = placement.count;
  if (movie.fragmented) info.fragmented = 'yes';
  return info;
}
