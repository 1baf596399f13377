/**
 * Turns a file into atoms: decompose by format, content-defined chunk what has no structure (and
 * any structured piece above the size bound), hash each piece, store the new ones. One sequential
 * read of the source; memory is bounded by the read window, whatever the file's size.
 */
import type { ContentRef } from '../atom.js';
import { decompose, type FormatInfo, type Segment, type TrackInfo } from '../decompose/index.js';
import { CDC_MAX_SIZE, cutPoint } from '../decompose/cdc.js';
import { newSha256, sha256Hex } from '../hash.js';
import { BufferSource, type Source } from '../source.js';
import type { AtomWriter } from './local.js';

/**
 * Default bound above which a structured atom (a huge IDAT, a long JPEG scan) is chunked.
 * Measured (README, "Choices made by measurement"; bench/max-atom-size.ts): 4 MiB keeps frames and
 * scans of ordinary media whole while bounding the memory an atom costs when read whole.
 */
export const DEFAULT_MAX_ATOM_SIZE = 4 * 1024 * 1024;
const READ_WINDOW = 8 * 1024 * 1024;

export interface IngestOptions {
  maxAtomSize?: number;
}

export interface IngestResult {
  oid: string;
  size: number;
  format: string;
  info: FormatInfo;
  /** Every atom of the file, in file order, covering it exactly. */
  leaves: ContentRef[];
  /** How many atoms were new to the store. */
  written: number;
  /** Media tracks with the leaves of their samples (a sample chunked into several keeps them together). */
  tracks?: TrackLeaves[];
}

export interface TrackLeaves extends TrackInfo {
  samples: number;
  /** The track's leaves, in file order (the same objects as in `leaves`). */
  leaves: ContentRef[];
}

export function ingest(src: Source, store: AtomWriter, options: IngestOptions = {}): IngestResult {
  const maxAtomSize = Math.max(CDC_MAX_SIZE, options.maxAtomSize ?? DEFAULT_MAX_ATOM_SIZE);
  const { format, info, segments, tracks: trackInfo } = decompose(src);
  const tracks: TrackLeaves[] | undefined = trackInfo?.map((t) => ({ ...t, samples: 0, leaves: [] }));
  const trackOf = (seg: Segment): TrackLeaves | undefined => (seg.track === undefined ? undefined : tracks?.[seg.track]);
  // The file's own hash: by the writer if it offers (a pack writer, on its thread); for a file held
  // in memory, once at the end, and not at all when one atom covers it (its hash is the file's).
  const inMemory = src instanceof BufferSource;
  const whole = store.fileDigest || inMemory ? null : newSha256();
  const leaves: ContentRef[] = [];
  let written = 0;
  const emit = (bytes: Uint8Array, seg: Segment, offset: number): void => {
    whole?.update(bytes);
    const hash = sha256Hex(bytes);
    if (store.put(hash, bytes)) written++;
    const ref = { hash, type: seg.type, offset, size: bytes.length };
    leaves.push(ref);
    trackOf(seg)?.leaves.push(ref);
  };
  for (const seg of segments) {
    const track = trackOf(seg);
    if (track) track.samples++;
    if (seg.type === 'Raw' || seg.size > maxAtomSize) chunkSegment(src, seg, emit);
    else emit(src.read(seg.offset, seg.size), seg, seg.offset);
  }
  const oid = whole ? whole.digest('hex')
    : store.fileDigest ? store.fileDigest()
      : leaves.length === 1 && leaves[0]!.size === src.size ? leaves[0]!.hash
        : sha256Hex(src.read(0, src.size));
  return { oid, size: src.size, format, info, leaves, written, tracks };
}

/**
 * Streams a segment through FastCDC in one reusable window: the undecided tail moves to the front
 * and the next bytes are read in after it, so each byte is copied from the source once. Emitted
 * chunks are views into the window, valid only until emit returns.
 */
function chunkSegment(src: Source, seg: Segment, emit: (bytes: Uint8Array, seg: Segment, offset: number) => void): void {
  if (src instanceof BufferSource) {
    // Already in memory: chunked where it is (same cut points as through the window, no copy).
    const bytes = src.read(seg.offset, seg.size);
    for (let at = 0; at < bytes.length; ) {
      const cut = cutPoint(bytes, at, bytes.length - at, true);
      emit(bytes.subarray(at, at + cut), seg, seg.offset + at);
      at += cut;
    }
    return;
  }
  const end = seg.offset + seg.size;
  const window = Buffer.allocUnsafe(Math.min(READ_WINDOW + CDC_MAX_SIZE, seg.size));
  let at = 0; // index in window of the next chunk's first byte
  let held = 0; // bytes held from `at` on
  let pos = seg.offset; // source offset of window[at]
  while (pos < end) {
    const final = pos + held >= end;
    const cut = cutPoint(window, at, held, final);
    if (cut === 0) {
      // Not enough bytes for a decision: keep the tail and read the next bytes after it.
      window.copyWithin(0, at, at + held);
      at = 0;
      const want = Math.min(window.length - held, end - (pos + held));
      const got = src.readInto ? src.readInto(window, held, pos + held, want) : src.read(pos + held, want).copy(window, held);
      if (got === 0) throw new Error(`source ended at ${pos + held} before ${end}`);
      held += got;
      continue;
    }
    emit(window.subarray(at, at + cut), seg, pos);
    at += cut;
    held -= cut;
    pos += cut;
  }
}
