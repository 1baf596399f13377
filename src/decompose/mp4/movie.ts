/**
 * The structure of an MP4 / MOV / M4A file: its top-level boxes, its tracks and every sample's
 * place, from the moov (wherever it is: the Source gives random access) and any moof fragments.
 * Shared by the decomposer and by partial extraction, so both see the same samples.
 */
import type { Source } from '../../source.js';
import { childBoxes, findChild, payload, readBoxHeader, type BoxHeader } from './boxes.js';
import { readFragment } from './fragments.js';
import { MAX_SAMPLES, type SampleBudget } from './samples.js';
import { parseTrack, readTrackDefaults, type Track } from './tracks.js';

/** A larger moov is not read (the file is then split at box level): memory stays bounded. */
const MAX_MOOV_BYTES = 64 * 1024 * 1024;
/** A larger moof is skipped; its samples stay in Raw chunks. */
const MAX_MOOF_BYTES = 16 * 1024 * 1024;
/** Top-level boxes walked (a long fragmented stream has a few thousand moof/mdat pairs). */
const MAX_TOP_BOXES = 1 << 18;
/** Tracks read from a moov (real files have a few). */
const MAX_TRACKS = 1024;

export interface Movie {
  /**
   * Top-level boxes, absolute offsets, in file order, up to the first thing that is not a box (the
   * decomposition framework keeps the rest as Raw). A final mdat cut short is clamped to the end.
   */
  boxes: BoxHeader[];
  brand?: string;
  /** Movie timescale (mvhd), for edit lists and track headers. */
  timescale: number;
  /** The first moov, read whole (absent, or not read if larger than MAX_MOOV_BYTES). */
  moov?: { box: BoxHeader; bytes: Buffer };
  tracks: Track[];
  fragmented: boolean;
}

export function parseMovie(src: Source, start: number, end: number): Movie {
  const movie: Movie = { boxes: [], timescale: 1000, tracks: [], fragmented: false };
  let pos = start;
  while (pos < end && movie.boxes.length < MAX_TOP_BOXES) {
    let box = readBoxHeader(src, pos, end, true);
    if (!box) break;
    if (box.offset + box.size > end) {
      if (box.type !== 'mdat') break;
      box = { ...box, size: end - pos }; // a download cut short: the samples that made it are still samples
    }
    movie.boxes.push(box);
    pos += box.size;
  }
  const ftyp = movie.boxes[0]?.type === 'ftyp' ? movie.boxes[0] : undefined;
  if (ftyp && ftyp.size >= 12) movie.brand = src.read(ftyp.offset + 8, 4).toString('latin1');
  const moovBox = movie.boxes.find((b) => b.type === 'moov');
  if (!moovBox || moovBox.size > MAX_MOOV_BYTES) return movie;
  const moov = src.read(moovBox.offset, moovBox.size);
  if (moov.length !== moovBox.size) return movie;
  const local = { ...moovBox, offset: 0 };
  movie.moov = { box: moovBox, bytes: moov };
  const mvhd = findChild(moov, local, 'mvhd');
  if (mvhd) {
    const p = payload(moov, mvhd);
    const timescale = p.length >= 24 ? p.readUInt32BE(p[0] === 1 ? 20 : 12) : 0;
    if (timescale > 0) movie.timescale = timescale;
  }
  const budget: SampleBudget = { remaining: MAX_SAMPLES };
  for (const trak of childBoxes(moov, local.headerSize, moov.length)) {
    if (trak.type !== 'trak' || movie.tracks.length >= MAX_TRACKS) continue;
    const track = parseTrack(moov, trak, start, end - start, budget);
    if (track && !movie.tracks.some((t) => t.id === track.id)) movie.tracks.push(track);
  }
  readTrackDefaults(moov, local, movie.tracks);
  const byId = new Map(movie.tracks.map((t) => [t.id, t]));
  for (const box of movie.boxes) {
    if (box.type !== 'moof' || box.size > MAX_MOOF_BYTES) continue;
    movie.fragmented = true;
    const moof = src.read(box.offset, box.size);
    if (moof.length === box.size) readFragment(moof, box.offset, start, end - start, byId, budget);
  }
  return movie;
}

/** Samples that stand for bytes of the file: in file order, each inside an mdat, none overlapping. */
export interface Placement {
  count: number;
  /** Index into movie.tracks of each placed sample. */
  track: Uint16Array;
  /** Index into that track's sample table. */
  index: Uint32Array;
  /** Per track, 1 for each sample placed. */
  placed: Uint8Array[];
}

/**
 * Keeps the samples whose bytes lie wholly inside one mdat's payload, sorted by offset; of samples
 * that overlap, the first (lowest offset, then track order) wins. Others are dropped: their bytes
 * stay wherever they are (Raw between samples), so nothing is lost.
 */
export function placeSamples(movie: Movie): Placement {
  const tracks = movie.tracks;
  const bases: number[] = [];
  let total = 0;
  for (const t of tracks) {
    bases.push(total);
    total += t.samples.count;
  }
  const offsets = new Float64Array(total);
  for (const [i, t] of tracks.entries()) offsets.set(t.samples.offset.subarray(0, t.samples.count), bases[i]);
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  order.sort((a, b) => offsets[a]! - offsets[b]! || a - b);
  const mdats = movie.boxes.filter((b) => b.type === 'mdat');
  const placement: Placement = {
    count: 0,
    track: new Uint16Array(total),
    index: new Uint32Array(total),
    placed: tracks.map((t) => new Uint8Array(t.samples.count)),
  };
  let m = 0;
  let cursor = -1;
  for (const id of order) {
    const offset = offsets[id]!;
    const t = lastAtOrBelow(bases, id);
    const index = id - bases[t]!;
    const size = tracks[t]!.samples.size[index]!;
    while (m < mdats.length && mdats[m]!.offset + mdats[m]!.size <= offset) m++;
    const mdat = mdats[m];
    if (size === 0 || !mdat || offset < mdat.offset + mdat.headerSize || offset + size > mdat.offset + mdat.size || offset < cursor) continue;
    placement.track[placement.count] = t;
    placement.index[placement.count] = index;
    placement.count++;
    placement.placed[t]![index] = 1;
    cursor = offset + size;
  }
  return placement;
}

/** Index of the last value <= x in an ascending array (the track whose samples hold global id x). */
function lastAtOrBelow(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (sorted[mid]! <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
