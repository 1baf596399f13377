/**
 * Verified streaming reconstruction: atoms are read one at a time in file order, written out, and
 * the whole output checked against the concept's oid (a damaged atom is then named).
 */
import { MANIFEST_TYPES, type ContentRef } from '../atom.js';
import type { Concept } from '../concept/concept.js';
import { distinctLeaves, expandRefs } from '../concept/manifest.js';
import { AtomError, PaniniError } from '../errors.js';
import type { AtomLocation, AtomReader } from '../store/local.js';
import { FileHasher } from '../store/pack-writer.js';

/**
 * Files at least this large have their whole-file hash computed on a worker thread, unless it can
 * run behind the output (HashLag). Measured: the worker's start and copies cost more than hashing
 * inline up to a few hundred MiB (a 64 MiB smudge through the filter: 0.59 s with the worker, 0.49 s
 * without; 1 GiB: about even); behind Git's pipe, inline wins (1 GiB checkout: 2.7–2.9 s with the
 * worker, 1.9–2.1 s without).
 */
const BACKGROUND_HASH_MIN = 256 * 1024 * 1024;

/**
 * Leaf atoms of the concept that the store lacks. A missing manifest is listed itself (what lies
 * below it is unknown until it is fetched), so a fresh clone's concepts read as "needs a fetch".
 */
export function missingAtoms(concept: Pick<Concept, 'refs'>, store: AtomReader): string[] {
  const missing = new Set<string>();
  try {
    for (const leaf of distinctLeaves(concept.refs, store)) if (!store.has(leaf.hash)) missing.add(leaf.hash);
  } catch (err) {
    if (!(err instanceof AtomError && err.kind === 'missing')) throw err;
    missing.add(err.hash);
  }
  return [...missing];
}

export interface ReconstructOptions {
  /**
   * Everything written is thrown away if reconstruct throws (Git's filter protocol after an error
   * status, a temp file): then no atom's bytes need checking before they are written. Otherwise
   * each atom is checked first, so a damaged one's bytes are never written.
   */
  discardedOnError?: boolean;
  /**
   * With discardedOnError: `write` is done with the bytes it is given once release() returns, so
   * atoms lying one after another in a pack may be read together into one reused buffer (fewer
   * reads, no allocation per atom) and written at once.
   */
  release?: () => void;
  /**
   * With release: reconstruct hands `write`'s side a step of work to do while it would wait for its
   * output to drain (hashing bytes already written; false once none is left), and null at the end.
   */
  whileBlocked?: (work: (() => boolean) | null) => void;
}

/** The most bytes of consecutive packed atoms read at once. */
const RUN_BYTES = 4 * 1024 * 1024;

/**
 * Writes the file's bytes through `write` in order. Throws (naming the atom) on a missing or
 * corrupt atom, or if the result does not hash to the concept's oid; callers write to a temporary
 * place and keep it only if this returns.
 */
export function reconstruct(
  concept: Pick<Concept, 'refs' | 'oid' | 'size'>, store: AtomReader, write: (bytes: Buffer) => void, options: ReconstructOptions = {},
): void {
  const single = wholeFileAtom(concept, store);
  if (single) {
    write(single);
    return;
  }
  // When the output is discarded on failure, the file's own hash covers every byte, so atoms are
  // read without hashing each one too (one SHA-256 pass, not two); only if it fails are they checked
  // one by one, to name the damaged one. With a writer that can work while its output drains, that
  // hash runs behind the output (HashLag): bytes are hashed while Git reads them, at the latest
  // before their memory is reused. Else a large file's hash goes to a worker thread.
  const unchecked = options.discardedOnError === true;
  const lagging = unchecked && options.release !== undefined && options.whileBlocked !== undefined;
  const whole = new FileHasher(!lagging && concept.size >= BACKGROUND_HASH_MIN);
  const lag = lagging ? new HashLag(whole) : null;
  let written = 0;
  const emit = (bytes: Buffer): void => {
    if (lag) lag.add(bytes);
    else whole.update(bytes);
    write(bytes);
    written += bytes.length;
  };
  const emitAtom = (leaf: ContentRef): void => {
    const bytes = unchecked && store.readRaw ? store.readRaw(leaf.hash) : store.get(leaf.hash);
    if (bytes.length !== leaf.size) throw sizeMismatch(leaf, bytes.length);
    emit(bytes);
  };
  const release = options.release;
  const scratch = unchecked && release && store.packedAt && store.readPackRange ? Buffer.allocUnsafe(RUN_BYTES) : null;
  /** Leaves lying one after another in one pack, not yet written. */
  let run: { at: AtomLocation; leaves: ContentRef[]; bytes: number } | null = null;
  const emitRun = (): void => {
    if (!run) return;
    const bytes = store.readPackRange!(run.at, run.bytes, scratch!);
    if (bytes) {
      emit(bytes);
      release!();
      lag?.catchUp(); // `scratch` is read into again next
    } else {
      run.leaves.forEach(emitAtom);
    }
    run = null;
  };
  let oid: string;
  if (lag) options.whileBlocked!(lag.step);
  try {
    for (const leaf of expandRefs(concept.refs, store)) {
      const at = scratch && leaf.size <= RUN_BYTES ? store.packedAt!(leaf.hash) : null;
      if (!at) {
        emitRun();
        emitAtom(leaf);
        continue;
      }
      if (at.size !== leaf.size) throw sizeMismatch(leaf, at.size);
      if (run && at.pack === run.at.pack && at.offset === run.at.offset + run.bytes && run.bytes + leaf.size <= RUN_BYTES) {
        run.leaves.push(leaf);
        run.bytes += leaf.size;
        continue;
      }
      emitRun();
      run = { at, leaves: [leaf], bytes: leaf.size };
    }
    emitRun();
    lag?.catchUp();
    oid = whole.digest();
  } finally {
    if (lag) options.whileBlocked!(null);
    whole.stop();
  }
  if (written !== concept.size || oid !== concept.oid) {
    for (const leaf of expandRefs(concept.refs, store)) store.get(leaf.hash); // throws naming a damaged atom
    throw new PaniniError(`reconstructed bytes do not match the concept (sha256:${oid}, ${written} bytes; expected sha256:${concept.oid}, ${concept.size} bytes)`, 'the concept was edited or the store is damaged; run `git panini fsck`');
  }
}

/**
 * The file's bytes if its concept names one atom that is the whole file (most small files), read
 * and verified against its name, which is then the file's oid; null for any other concept. Throws
 * like reconstruct if the atom is missing or does not match. With `scratch`, the bytes may be read
 * into it (AtomReader.getInto): then they are valid until it is reused.
 */
export function wholeFileAtom(concept: Pick<Concept, 'refs' | 'oid' | 'size'>, store: AtomReader, scratch?: Buffer): Buffer | null {
  const only = wholeFileRef(concept);
  if (!only) return null;
  const bytes = scratch && store.getInto ? store.getInto(only.hash, only.size, scratch) : store.get(only.hash);
  if (bytes.length !== only.size) throw sizeMismatch(only, bytes.length);
  return bytes;
}

/** The concept's only ref when that atom is the whole file (its hash is the file's oid), else null. */
export function wholeFileRef(concept: Pick<Concept, 'refs' | 'oid' | 'size'>): ContentRef | null {
  const only = concept.refs.length === 1 ? concept.refs[0]! : null;
  return only && only.hash === concept.oid && only.offset === 0 && only.size === concept.size && !MANIFEST_TYPES.has(only.type) ? only : null;
}

/** Hashed this much at a time while the output is full: about what Git reads from the pipe at once. */
const LAG_STEP = 64 * 1024;
/** Bytes written and not hashed yet are held (fresh buffers) up to this much. */
const MAX_LAG = 16 * 1024 * 1024;

/** The file's hash running behind its output: bytes queued in order, hashed a step at a time. */
class HashLag {
  private readonly queue: Buffer[] = [];
  private queued = 0;

  constructor(private readonly whole: FileHasher) {}

  add(bytes: Buffer): void {
    this.queue.push(bytes);
    this.queued += bytes.length;
    if (this.queued > MAX_LAG) this.catchUp();
  }

  /** Hashes the next step; false if nothing waits. */
  readonly step = (): boolean => {
    const next = this.queue[0];
    if (!next) return false;
    if (next.length > LAG_STEP) {
      this.whole.update(next.subarray(0, LAG_STEP));
      this.queue[0] = next.subarray(LAG_STEP);
      this.queued -= LAG_STEP;
    } else {
      this.whole.update(next);
      this.queue.shift();
      this.queued -= next.length;
    }
    return true;
  };

  catchUp(): void {
    while (this.step()) { /* until nothing waits */ }
  }
}

function sizeMismatch(leaf: ContentRef, got: number): PaniniError {
  return new PaniniError(`atom ${leaf.hash} holds ${got} bytes but the concept expects ${leaf.size} at offset ${leaf.offset}`, 'the concept does not match the store; re-add the file');
}

/** Leaf refs in file order (for list-atoms and partial extraction). */
export function leafRefs(concept: Pick<Concept, 'refs'>, store: AtomReader): ContentRef[] {
  return [...expandRefs(concept.refs, store)];
}
