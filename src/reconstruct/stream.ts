/**
 * Streaming access to a stored file: its atoms in file order, one component's atoms (a track
 * manifest), or any byte range through a random-access Source over the store. Every atom is
 * verified against its name and its expected size. Read-ahead keeps a few atom reads in flight so
 * a slow store (a remote one) overlaps with the consumer's work; memory is readAhead × atom size.
 */
import type { ContentRef } from '../atom.js';
import type { Concept, TrackComponent } from '../concept/concept.js';
import { expandRefs, expandTrackRefs } from '../concept/manifest.js';
import { PaniniError } from '../errors.js';
import type { Source } from '../source.js';
import type { AtomReader } from '../store/local.js';

/** Where atom bytes come from: a local store, or anything that verifies and returns them. */
export interface AtomFetcher {
  get(hash: string): Buffer | Promise<Buffer>;
}

export interface StoredAtom {
  ref: ContentRef;
  bytes: Buffer;
}

export const DEFAULT_READ_AHEAD = 8;

function checkSize(ref: ContentRef, bytes: Buffer): Buffer {
  if (bytes.length !== ref.size) {
    throw new PaniniError(`atom ${ref.hash} holds ${bytes.length} bytes but ${ref.size} are expected at offset ${ref.offset}`, 'the concept does not match the store; re-add the file');
  }
  return bytes;
}

/** Yields each ref's bytes in the refs' order, with up to `readAhead` reads in flight. */
export async function* streamAtoms(refs: Iterable<ContentRef>, store: AtomFetcher, readAhead = DEFAULT_READ_AHEAD): AsyncGenerator<StoredAtom> {
  const pending = refs[Symbol.iterator]();
  const queue: Promise<StoredAtom>[] = [];
  const fill = (): void => {
    while (queue.length < Math.max(1, readAhead)) {
      const next = pending.next();
      if (next.done) return;
      const ref = next.value;
      const read = Promise.resolve().then(async () => ({ ref, bytes: checkSize(ref, await store.get(ref.hash)) }));
      read.catch(() => undefined); // rejections surface when awaited in order, not as unhandled
      queue.push(read);
    }
  };
  fill();
  while (queue.length > 0) {
    const atom = await queue.shift()!;
    fill();
    yield atom;
  }
}

/** The file's atoms in file order (manifests are read to list them, then skipped). */
export function fileAtoms(concept: Pick<Concept, 'refs'>, store: AtomReader, readAhead?: number): AsyncGenerator<StoredAtom> {
  return streamAtoms(expandRefs(concept.refs, store), store, readAhead);
}

/** One component's atoms (a track's samples), in file order. */
export function componentAtoms(component: TrackComponent, store: AtomReader, readAhead?: number): AsyncGenerator<StoredAtom> {
  return streamAtoms(expandTrackRefs(component, store), store, readAhead);
}

/** The concept's component for a track id, or the first of a kind. */
export function findComponent(concept: Pick<Concept, 'components'>, select: { track?: number; kind?: TrackComponent['kind'] }): TrackComponent | undefined {
  return concept.components?.find((c) => (select.track === undefined || c.track === select.track) && (select.kind === undefined || c.kind === select.kind));
}

/** Atoms kept by StoredSource: a header read followed by its payload often hits the same atom. */
const CACHED_ATOMS = 4;

/**
 * Random access to a stored file's bytes: reads only the atoms a range touches, each verified.
 * `leaves` are the file's leaf refs in file order, covering [0, size).
 */
export class StoredSource implements Source {
  private readonly cache: StoredAtom[] = [];
  /** Distinct atoms read so far (for callers that report or check what a task touched). */
  readonly atomsRead = new Set<string>();

  constructor(private readonly leaves: readonly ContentRef[], private readonly store: AtomReader, readonly size: number) {}

  read(offset: number, length: number): Buffer {
    const end = Math.min(this.size, offset + length);
    if (offset >= end || length <= 0) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    for (let i = this.leafAt(offset); i < this.leaves.length && this.leaves[i]!.offset < end; i++) {
      const ref = this.leaves[i]!;
      const bytes = this.atom(ref);
      parts.push(bytes.subarray(Math.max(0, offset - ref.offset), Math.min(ref.size, end - ref.offset)));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Leaves overlapping the given ranges (sorted, non-overlapping), each once, in file order. */
  *leavesFor(ranges: Iterable<{ offset: number; size: number }>): Generator<ContentRef> {
    let last = -1;
    for (const range of ranges) {
      const end = range.offset + range.size;
      for (let i = Math.max(last + 1, this.leafAt(range.offset)); i < this.leaves.length && this.leaves[i]!.offset < end; i++) {
        last = i;
        yield this.leaves[i]!;
      }
    }
  }

  /** Index of the leaf holding `offset` (the leaves are contiguous from 0). */
  private leafAt(offset: number): number {
    let lo = 0;
    let hi = this.leaves.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.leaves[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private atom(ref: ContentRef): Buffer {
    const hit = this.cache.find((a) => a.ref.offset === ref.offset);
    if (hit) return hit.bytes;
    const bytes = checkSize(ref, this.store.get(ref.hash));
    this.atomsRead.add(ref.hash);
    this.cache.push({ ref, bytes });
    if (this.cache.length > CACHED_ATOMS) this.cache.shift();
    return bytes;
  }
}
