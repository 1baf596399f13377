/**
 * Partial reconstruction: one component of a stored media file, reading only the atoms it needs
 * (the container boxes, found by walking the stored file's box headers, and that track's samples).
 *   audio     → an M4A (one-track MP4 remux, any codec); ADTS AAC for *.aac; MP3 frames for *.mp3;
 *               an MP3 file as it is
 *   video     → a video-only MP4 with the source's sample tables, so it keeps the source's duration
 *   keyframes → the same with only the sync samples, each lasting until the next one
 *   metadata  → JSON: tracks, codecs, durations, tags
 * The codec configuration comes from the stored moov, parsed with the decomposer's own code, so
 * the extractor sees exactly the samples the decomposer stored.
 */
import { extname } from 'node:path';
import type { ContentRef } from '../atom.js';
import type { Concept } from '../concept/concept.js';
import { expandRefs, expandTrackRefs } from '../concept/manifest.js';
import { parseMovie, placeSamples, type Movie, type Placement } from '../decompose/mp4/movie.js';
import { adtsConfig, adtsHeader, muxHead, type MuxSamples } from '../decompose/mp4/mux.js';
import { SAMPLE_SYNC } from '../decompose/mp4/samples.js';
import { readTags } from '../decompose/mp4/tags.js';
import { trackSeconds, type Track } from '../decompose/mp4/tracks.js';
import { PaniniError } from '../errors.js';
import type { AtomReader } from '../store/local.js';
import { leafRefs, reconstruct } from './reconstruct.js';
import { StoredSource, streamAtoms, type StoredAtom } from './stream.js';

export const COMPONENT_NAMES = ['audio', 'video', 'keyframes', 'metadata'] as const;
export type ComponentName = (typeof COMPONENT_NAMES)[number];

export function isComponentName(value: unknown): value is ComponentName {
  return typeof value === 'string' && (COMPONENT_NAMES as readonly string[]).includes(value);
}

export interface ExtractOptions {
  component: ComponentName;
  /** The output file's name: its extension picks the audio format (.aac → ADTS, .mp3 → MP3 frames). */
  outputName?: string;
  readAhead?: number;
}

export interface ExtractSummary {
  /** One line for the user: what was written. */
  description: string;
  bytes: number;
  /** Distinct content atoms read (manifests not counted). */
  atomsRead: number;
}

/**
 * The leaf atoms a component's extraction reads, known from manifests alone (they must be local):
 * every atom but the samples of the tracks it does not use. Concepts without track manifests
 * (written before them, or tracks beyond the first few) need every atom. For a remote fetch.
 */
export function componentLeaves(concept: Pick<Concept, 'refs' | 'components'>, store: AtomReader, component: ComponentName): ContentRef[] {
  const all = [...expandRefs(concept.refs, store)];
  const components = concept.components ?? [];
  const kind = component === 'audio' ? 'audio' : component === 'metadata' ? undefined : 'video';
  const used = components.find((c) => c.kind === kind);
  if (kind !== undefined && !used) return all;
  const skipped = new Set<string>();
  const wanted = new Set<string>();
  for (const c of components) {
    for (const leaf of expandTrackRefs(c, store)) {
      if (c === used && (component !== 'keyframes' || leaf.type === 'IFrame')) wanted.add(leaf.hash);
      else skipped.add(leaf.hash);
    }
  }
  return all.filter((leaf) => wanted.has(leaf.hash) || !skipped.has(leaf.hash));
}

/** Writes the component through `write`; throws PaniniError if the file has no such component. */
export async function extractComponent(concept: Concept, store: AtomReader, options: ExtractOptions, write: (bytes: Buffer) => void): Promise<ExtractSummary> {
  let bytes = 0;
  const out = (b: Buffer): void => {
    bytes += b.length;
    write(b);
  };
  const src = new StoredSource(leafRefs(concept, store), store, concept.size);
  const isMp4 = concept.format === 'mp4';
  const movie = isMp4 ? parseMovie(src, 0, concept.size) : undefined;
  if (options.component === 'metadata') {
    out(Buffer.from(JSON.stringify(describe(concept, movie), null, 2) + '\n'));
    return { description: 'metadata (JSON)', bytes, atomsRead: src.atomsRead.size };
  }
  if (!movie) {
    if (options.component === 'audio' && looksLikeMp3(src.read(0, 3))) {
      reconstruct(concept, store, out); // an MP3 file is its own audio component
      return { description: 'audio (the MP3 file as it is)', bytes, atomsRead: src.atomsRead.size };
    }
    throw new PaniniError(`the ${options.component} component needs an MP4, MOV or M4A file (or an MP3 for audio); this file's format is ${concept.format}`, 'run get-content without --component to get the whole file');
  }
  if (!movie.moov) throw new PaniniError('this MP4 has no readable moov box, so its tracks are unknown', 'run get-content without --component to get the whole file');
  const placement = placeSamples(movie);
  const kind = options.component === 'audio' ? 'audio' : 'video';
  const t = movie.tracks.findIndex((track, i) => track.kind === kind && placement.placed[i]!.includes(1));
  if (t < 0) throw new PaniniError(`this file has no ${kind} track with stored samples`, `its tracks: ${movie.tracks.map((x) => `${x.id} ${x.kind} ${x.codec}`).join(', ') || 'none'}`);
  const track = movie.tracks[t]!;
  const chosen = chooseSamples(track, placement, t, options.component === 'keyframes');
  const format = kind === 'audio' ? audioFormat(track, options.outputName) : 'mp4';
  const adts = format === 'adts' ? adtsConfig(track) : undefined;
  if (format === 'mp4') out(muxHead(track, chosen.samples, movie.timescale, chosen.keepsSourceDuration).head);
  let streamed = 0;
  await copySamples(src, store, track, chosen.byOffset, options.readAhead, (sample, pieces) => {
    if (adts) out(adtsHeader(adts, track.samples.size[sample]!));
    for (const piece of pieces) out(piece);
  }, () => streamed++);
  const seconds = track.timescale ? (chosen.totalDuration / track.timescale).toFixed(2) : '?';
  const label = options.component === 'keyframes' ? 'keyframes' : kind;
  return {
    description: `${label} of track ${track.id} (${track.codec}, ${chosen.samples.count} sample${chosen.samples.count === 1 ? '' : 's'}, ${seconds} s) as ${format === 'adts' ? 'ADTS AAC' : format === 'mp3' ? 'MP3 frames' : 'MP4'}`,
    bytes,
    atomsRead: src.atomsRead.size + streamed,
  };
}

function looksLikeMp3(head: Buffer): boolean {
  return head.toString('latin1', 0, 3) === 'ID3' || (head.length >= 2 && head[0] === 0xff && (head[1]! & 0xe6) === 0xe2);
}

function audioFormat(track: Track, outputName: string | undefined): 'mp4' | 'adts' | 'mp3' {
  const ext = outputName ? extname(outputName).toLowerCase() : '';
  if (ext === '.aac' || ext === '.adts') return 'adts';
  if (ext !== '.mp3') return 'mp4';
  const isMp3 = track.codec === '.mp3' || track.audio?.objectType === 0x69 || track.audio?.objectType === 0x6b;
  if (!isMp3) throw new PaniniError(`the audio track is ${track.codec}, not MP3`, 'ask for an .m4a (or .aac for AAC) output instead');
  return 'mp3';
}

interface ChosenSamples {
  samples: MuxSamples;
  /** Source sample indexes in the order their bytes are read and written (file order). */
  byOffset: Uint32Array;
  totalDuration: number;
  /** True if the samples span the whole source track (its header's duration still holds). */
  keepsSourceDuration: boolean;
}

/**
 * The track's stored samples in decode order (only sync samples for keyframes). A sample left
 * out passes its duration to the one before, so timing and total duration stay the source's;
 * samples missing at the end of a cut-short file are simply absent.
 */
function chooseSamples(track: Track, placement: Placement, t: number, keyframesOnly: boolean): ChosenSamples {
  const table = track.samples;
  const placed = placement.placed[t]!;
  const lastPlaced = placed.lastIndexOf(1);
  const keep = (i: number): boolean => placed[i] === 1 && (!keyframesOnly || (table.flags[i]! & SAMPLE_SYNC) !== 0);
  let count = 0;
  for (let i = 0; i <= lastPlaced; i++) if (keep(i)) count++;
  const samples: MuxSamples = {
    count,
    size: new Uint32Array(count),
    duration: new Uint32Array(count),
    cts: new Int32Array(count),
    sync: new Uint8Array(count),
    position: new Float64Array(count),
    payloadSize: 0,
  };
  const source = new Uint32Array(count);
  let leading = 0;
  let c = 0;
  for (let i = 0; i <= lastPlaced; i++) {
    if (!keep(i)) {
      if (c > 0) samples.duration[c - 1]! += table.duration[i]!;
      else leading += table.duration[i]!;
      continue;
    }
    source[c] = i;
    samples.size[c] = table.size[i]!;
    samples.duration[c] = table.duration[i]!;
    samples.cts[c] = table.cts[i]!;
    samples.sync[c] = table.flags[i]! & SAMPLE_SYNC ? 1 : 0;
    c++;
  }
  // Bytes go out in file order (one sequential pass over the store); positions follow from it.
  const order = Uint32Array.from({ length: count }, (_, k) => k);
  order.sort((a, b) => table.offset[source[a]!]! - table.offset[source[b]!]!);
  const byOffset = new Uint32Array(count);
  let position = 0;
  for (const [n, k] of order.entries()) {
    samples.position[k] = position;
    position += samples.size[k]!;
    byOffset[n] = source[k]!;
  }
  samples.payloadSize = position;
  let totalDuration = 0;
  for (let k = 0; k < count; k++) totalDuration += samples.duration[k]!;
  return { samples, byOffset, totalDuration, keepsSourceDuration: leading === 0 && lastPlaced === table.count - 1 };
}

/**
 * Streams the atoms holding the given samples (in file order, with read-ahead) and hands each
 * sample's bytes, as one or more pieces, to `onSample`.
 */
async function copySamples(
  src: StoredSource, store: AtomReader, track: Track, byOffset: Uint32Array, readAhead: number | undefined,
  onSample: (sample: number, pieces: Buffer[]) => void, onAtom: () => void,
): Promise<void> {
  const ranges = (function* () {
    for (const i of byOffset) yield { offset: track.samples.offset[i]!, size: track.samples.size[i]! };
  })();
  const atoms = streamAtoms(src.leavesFor(ranges), store, readAhead);
  let current: StoredAtom | undefined;
  for (const i of byOffset) {
    let pos = track.samples.offset[i]!;
    const end = pos + track.samples.size[i]!;
    const pieces: Buffer[] = [];
    while (pos < end) {
      while (!current || current.ref.offset + current.ref.size <= pos) {
        const next = await atoms.next();
        if (next.done) throw new PaniniError(`the stored atoms end before sample ${i} of track ${track.id} (offset ${pos})`, 'the concept does not match its atoms; run `git panini verify-content`');
        current = next.value;
        onAtom();
      }
      const from = pos - current.ref.offset;
      const piece = current.bytes.subarray(from, Math.min(current.ref.size, end - current.ref.offset));
      pieces.push(piece);
      pos += piece.length;
    }
    onSample(i, pieces);
  }
}

/** The metadata component: what the file is, its tracks and tags. */
function describe(concept: Concept, movie: Movie | undefined): Record<string, unknown> {
  const file = { oid: `sha256:${concept.oid}`, size: concept.size, format: concept.format, info: concept.info };
  if (!movie) return { file };
  const placement = placeSamples(movie);
  const tracks = movie.tracks.map((track, t) => {
    let bytes = 0;
    let stored = 0;
    let keyframes = 0;
    for (let i = 0; i < track.samples.count; i++) {
      if (placement.placed[t]![i]) {
        stored++;
        bytes += track.samples.size[i]!;
      }
      if (track.samples.flags[i]! & SAMPLE_SYNC) keyframes++;
    }
    return {
      id: track.id,
      kind: track.kind,
      handler: track.handler,
      codec: track.codec,
      timescale: track.timescale,
      duration_s: Number(trackSeconds(track).toFixed(6)),
      samples: track.samples.count,
      samples_stored: stored,
      bytes,
      ...(track.kind === 'video' ? { width: track.width, height: track.height, keyframes } : {}),
      ...(track.kind === 'audio' ? { sample_rate: track.sampleRate, channels: track.channels, ...(track.audio ? { object_type: track.audio.objectType } : {}) } : {}),
    };
  });
  return {
    file,
    brand: movie.brand ?? null,
    duration_s: Number(Math.max(0, ...movie.tracks.map(trackSeconds)).toFixed(6)),
    fragmented: movie.fragmented,
    tracks,
    tags: movie.moov ? readTags(movie.moov.bytes, { ...movie.moov.box, offset: 0 }) : {},
  };
}
