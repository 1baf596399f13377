/**
 * Turns a file into atoms: decompose by format, content-defined chunk what has no structure (and
 * any structured piece above the size bound), hash each piece, store the new ones. One sequential
 * read of the source; memory is bounded by the read window, whatever the file's size.
 */
import type { Hash } from 'node:crypto';
import type { AtomType, ContentRef } from '../atom.js';
import { decompose, type FormatInfo, type Segment, type TrackInfo } from '../decompose/index.js';
import { CDC_MAX_SIZE, chunkInput, type ChunkWindows } from '../decompose/cdc.js';
import type { ReadInto } from '../io.js';
import { newSha256, sha256Hex } from '../hash.js';
import { BufferSource, type Source } from '../source.js';
import type { AtomWriter } from './local.js';

/**
 * Default bound above which a structured atom (a huge IDAT, a long JPEG scan) is chunked.
 * Measured (README, "Choices made by measurement"; bench/max-atom-size.ts): 4 MiB keeps frames and
 * scans of ordinary media whole while bounding the memory an atom costs when read whole.
 */
export const DEFAULT_MAX_ATOM_SIZE = 4 * 1024 * 1024;

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
  // For a file held in memory the file's hash is taken once at the end, and not at all when one
  // atom covers it (its hash is the file's).
  const leaves = new Leaves(store, !(src instanceof BufferSource));
  const windows = store.chunkWindows?.();
  for (const seg of segments) {
    const track = trackOf(seg);
    if (track) track.samples++;
    const emit = (bytes: Uint8Array, offset: number): void => {
      const ref = leaves.add(bytes, seg.type, offset);
      trackOf(seg)?.leaves.push(ref);
    };
    if (seg.type === 'Raw' || seg.size > maxAtomSize) chunkSegment(src, seg, emit, windows);
    else emit(src.read(seg.offset, seg.size), seg.offset);
  }
  const oid = leaves.fileHash() ?? (leaves.list.length === 1 && leaves.list[0]!.size === src.size ? leaves.list[0]!.hash : sha256Hex(src.read(0, src.size)));
  return { oid, size: src.size, format, info, leaves: leaves.list, written: leaves.written, tracks };
}

/**
 * Ingests an input that no decomposer recognizes (see detectFormat) as it arrives, without a
 * second read: the same atoms and result as ingest() gives for the same bytes in a file.
 */
export function ingestStream(fill: ReadInto, store: AtomWriter): IngestResult {
  const leaves = new Leaves(store, true);
  const size = chunkInput(fill, (bytes, offset) => leaves.add(bytes, 'Raw', offset), store.chunkWindows?.());
  return { oid: leaves.fileHash()!, size, format: size === 0 ? 'empty' : 'binary', info: {}, leaves: leaves.list, written: leaves.written };
}

/** A file's atoms as they are stored, in file order, and (if asked) the file's own SHA-256. */
class Leaves {
  readonly list: ContentRef[] = [];
  written = 0;
  /** Null when the writer hashes the file (a pack writer, on its thread) or nobody asked. */
  private readonly whole: Hash | null;
  /** The writer hashes atoms too (putUnnamed): their refs are named by the time fileHash() returns. */
  private readonly unnamed: boolean;

  constructor(private readonly store: AtomWriter, hashFile: boolean) {
    this.whole = hashFile && !store.fileDigest ? newSha256() : null;
    this.unnamed = store.putUnnamed !== undefined && store.fileDigest !== undefined;
  }

  add(bytes: Uint8Array, type: AtomType, offset: number): ContentRef {
    const ref = { hash: '', type, offset, size: bytes.length };
    this.list.push(ref);
    if (this.unnamed) {
      this.store.putUnnamed!(bytes, (hash, fresh) => {
        ref.hash = hash;
        if (fresh) this.written++;
      });
      return ref;
    }
    this.whole?.update(bytes);
    ref.hash = sha256Hex(bytes);
    if (this.store.put(ref.hash, bytes)) this.written++;
    return ref;
  }

  /** The file's SHA-256, if it was computed as the atoms went by. Every ref is named once this returns. */
  fileHash(): string | null {
    return this.whole ? this.whole.digest('hex') : this.store.fileDigest ? this.store.fileDigest() : null;
  }
}

/** Streams a segment through FastCDC (chunkInput): each byte is read from the source once. */
function chunkSegment(src: Source, seg: Segment, emit: (bytes: Uint8Array, offset: number) => void, windows?: ChunkWindows): void {
  const end = seg.offset + seg.size;
  let next = seg.offset;
  const fill: ReadInto = (into, at, max) => {
    const want = Math.min(max, end - next);
    if (want === 0) return 0;
    const got = src.readInto ? src.readInto(into, at, next, want) : src.read(next, want).copy(into, at);
    if (got === 0) throw new Error(`source ended at ${next} before ${end}`);
    next += got;
    return got;
  };
  chunkInput(fill, (bytes, offset) => emit(bytes, seg.offset + offset), windows);
}
