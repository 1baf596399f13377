/**
 * Verified streaming reconstruction: atoms are read one at a time in file order, written out, and
 * the whole output checked against the concept's oid (a damaged atom is then named).
 */
import { MANIFEST_TYPES, type ContentRef } from '../atom.js';
import type { Concept } from '../concept/concept.js';
import { distinctLeaves, expandRefs } from '../concept/manifest.js';
import { AtomError, PaniniError } from '../errors.js';
import { MAX_WHOLE_PACKS, type AtomLocation, type AtomReader } from '../store/local.js';
import { LayoutBuilder } from '../store/layout.js';
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

/** A file's leaves in order and where each lies in a pack (null: not packed), found in one walk, with the atoms missing. */
export interface LeafPlan {
  leaves: ContentRef[];
  at: (AtomLocation | null)[];
  missing: string[];
}

/** A file of more leaves (8 GiB and more, in 64 KiB chunks) is walked twice instead (presence, then output): its plan would hold too much (~20 MB here). */
const MAX_PLANNED_LEAVES = 1 << 17;

/**
 * The concept's leaves with their locations and the atoms missing (missingAtoms' answer) in one
 * walk, which reconstruct then follows without walking the manifests or looking atoms up again.
 * Null for a store without packs' locations, or a file of more than MAX_PLANNED_LEAVES leaves (a
 * hostile manifest may declare billions).
 */
export function planLeaves(concept: Pick<Concept, 'refs'>, store: AtomReader): LeafPlan | null {
  if (!store.packedAt) return null;
  const leaves: ContentRef[] = [];
  const at: (AtomLocation | null)[] = [];
  const missing = new Set<string>();
  const loose = new Set<string>();
  try {
    for (const leaf of expandRefs(concept.refs, store)) {
      if (leaves.length === MAX_PLANNED_LEAVES) return null;
      const location = store.packedAt(leaf.hash);
      if (!location && !loose.has(leaf.hash) && !missing.has(leaf.hash)) (store.has(leaf.hash) ? loose : missing).add(leaf.hash);
      leaves.push(leaf);
      at.push(location);
    }
  } catch (err) {
    if (!(err instanceof AtomError && err.kind === 'missing')) throw err;
    return { leaves: [], at: [], missing: [err.hash] }; // a manifest: what lies below it is unknown
  }
  return { leaves, at, missing: [...missing] };
}

export interface ReconstructOptions {
  /** The concept's leaves and their locations (planLeaves), found just before: not looked up again. */
  plan?: LeafPlan;
  /** The file's layout (AtomReader.layoutOf), found just before: not looked up again. */
  layout?: AtomLocation[];
  /**
   * Everything written is thrown away if reconstruct throws (Git's filter protocol after an error
   * status, a temp file): then no atom's bytes need checking before they are written. Otherwise
   * each atom is checked first, so a damaged one's bytes are never written.
   */
  discardedOnError?: boolean;
  /**
   * With discardedOnError: `write` is done with the bytes it is given once release() returns, so
   * packed atoms are read through windows of their packs (PackWindows: fewer reads, no allocation
   * per atom), whose memory is read into again only after a release().
   */
  release?: () => void;
  /**
   * With release: reconstruct hands `write`'s side a step of work to do while it would wait for its
   * output to drain (hashing bytes already written; false once none is left), and null at the end.
   */
  whileBlocked?: (work: (() => boolean) | null) => void;
}

/** The most bytes of a pack read at once: a window its next leaves are sliced from. */
const WINDOW_BYTES = 4 * 1024 * 1024;
/** A window opened where no other ends reads this much; each that continues one reads twice as much. */
const FIRST_WINDOW_BYTES = 256 * 1024;
/** A leaf that starts in a window but runs past its end, or starts at most this far after it, continues it. */
const CONTINUES_WITHIN = 64 * 1024;
/** Windows kept at once (a file's leaves lie in a few runs: packs, or parts of one). */
const MAX_WINDOWS = 4;
/** A leaf that opened a window away from the others, up to this size, is kept for its next use... */
const REPEAT_MAX_BYTES = 64 * 1024;
/** ...up to this much in all. */
const REPEAT_CACHE_BYTES = 16 * 1024 * 1024;

interface Window {
  pack: AtomLocation['pack'];
  start: number;
  bytes: Buffer;
  memory: Buffer;
  /** When it last served a leaf (a count of reads). */
  used: number;
}

/**
 * Packed leaves read through windows of their packs. A leaf inside a window is a slice of it (no
 * read, no copy). A file's atoms mostly lie in file order, as its clean wrote them, so a leaf just
 * past a window moves it on, reading twice as much as before (up to WINDOW_BYTES); a leaf anywhere
 * else opens a small window there, in the slot least recently used, and a small such leaf (an
 * atom used again, as a repeated audio frame is) is kept for its next use. `release` is called
 * before a window's memory is read into again: everything sliced from it must be written and
 * hashed by then.
 */
class PackWindows {
  private readonly windows: Window[] = [];
  /** Packs read whole (AtomReader.wholePack): leaves in them are slices, never read again. */
  private readonly wholes = new Map<AtomLocation['pack'], Buffer>();
  private readonly repeats = new Map<string, Buffer>();
  private repeatBytes = 0;
  private reads = 0;

  /** `fileSize`: a window never reads past what the rest of the file could need (a small file reads its own bytes). */
  constructor(private readonly store: Required<Pick<AtomReader, 'readPackRange'>> & Pick<AtomReader, 'wholePack'>, private readonly fileSize: number, private readonly release: () => void) {}

  /**
   * Reads whole the small packs of which `locations` (the file's, in order) need much
   * (AtomReader.wholePack), up to MAX_WHOLE_PACKS for the file.
   */
  readWhole(locations: readonly (AtomLocation | null)[]): void {
    if (!this.store.wholePack) return;
    const needed = new Map<AtomLocation['pack'], number>();
    for (const at of locations) if (at) needed.set(at.pack, (needed.get(at.pack) ?? 0) + at.size);
    let held = 0;
    for (const [pack, bytes] of needed) {
      const whole = this.store.wholePack(pack!, bytes);
      if (!whole) continue;
      if ((held += whole.length) > MAX_WHOLE_PACKS) return;
      this.wholes.set(pack, whole);
    }
  }

  /**
   * The unverified bytes at `at`, which start at `fileOffset` in the file; null if its pack is gone
   * (gc rewrote it). `atom`: the leaf's hash, when they are one atom's (a small one may be kept).
   */
  read(at: AtomLocation, fileOffset: number, atom?: string): Buffer | null {
    const whole = this.wholes.get(at.pack);
    if (whole && at.offset + at.size <= whole.length) return whole.subarray(at.offset, at.offset + at.size);
    this.reads++;
    let continued: Window | null = null;
    for (const w of this.windows) {
      if (w.pack !== at.pack) continue;
      const from = at.offset - w.start;
      if (from >= 0 && from + at.size <= w.bytes.length) {
        w.used = this.reads;
        return w.bytes.subarray(from, from + at.size);
      }
      if (from >= 0 && from - w.bytes.length <= CONTINUES_WITHIN) continued = w; // runs past its end, or starts just after
    }
    const kept = atom === undefined ? undefined : this.repeats.get(atom);
    if (kept) return kept;
    if (at.size > WINDOW_BYTES) return this.store.readPackRange(at, at.size, Buffer.allocUnsafe(at.size));
    const wanted = continued ? Math.min(WINDOW_BYTES, 2 * continued.bytes.length) : FIRST_WINDOW_BYTES;
    const length = Math.max(at.size, Math.min(wanted, this.fileSize - fileOffset));
    const w = continued ?? (this.windows.length < MAX_WINDOWS ? null : this.windows.reduce((a, b) => (b.used < a.used ? b : a)));
    if (w) this.windows.splice(this.windows.indexOf(w), 1);
    this.release();
    const memory = w && w.memory.length >= length ? w.memory : Buffer.allocUnsafe(length);
    const bytes = this.store.readPackRange(at, length, memory, at.size);
    if (!bytes) return null;
    this.windows.push({ pack: at.pack, start: at.offset, bytes, memory, used: this.reads });
    const own = bytes.subarray(0, at.size);
    if (atom !== undefined && !continued && at.size <= REPEAT_MAX_BYTES && this.repeatBytes + at.size <= REPEAT_CACHE_BYTES) {
      this.repeats.set(atom, Buffer.from(own));
      this.repeatBytes += at.size;
    }
    return own;
  }
}

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
  // Leaves that lie one after another in memory (in a window, mostly) are written as one piece.
  let span: Buffer | null = null;
  let spanEnd = 0;
  const emitSpan = (): void => {
    if (span) emit(Buffer.from(span.buffer, span.byteOffset, spanEnd - span.byteOffset));
    span = null;
  };
  const release = options.release;
  const windows = unchecked && release && store.packedAt && store.readPackRange
    ? new PackWindows({ readPackRange: store.readPackRange.bind(store), wholePack: store.wholePack?.bind(store) }, concept.size, () => {
      emitSpan();
      release();
      lag?.catchUp(); // window memory is read into again next
    })
    : null;
  const take = (bytes: Buffer): void => {
    if (span && span.buffer === bytes.buffer && spanEnd === bytes.byteOffset) {
      spanEnd += bytes.length;
    } else {
      emitSpan();
      span = bytes;
      spanEnd = bytes.byteOffset + bytes.length;
    }
  };
  // A file rebuilt before through windows has its runs of pack bytes recorded (layout.ts): read
  // them, and neither manifests nor atoms are looked at. Its hash below checks them as it checks atoms.
  const layout = !windows ? null : options.layout ?? (options.plan ? null : store.layoutOf?.(concept.oid, concept.size) ?? null);
  const recording = windows && !layout && store.recordLayout ? new LayoutBuilder() : null;
  let oid: string;
  if (lag) options.whileBlocked!(lag.step);
  try {
    if (layout) {
      windows!.readWhole(layout);
      let fileOffset = 0;
      for (const run of layout) {
        for (let done = 0; done < run.size; done += WINDOW_BYTES) {
          const size = Math.min(WINDOW_BYTES, run.size - done);
          const bytes = windows!.read({ ...run, offset: run.offset + done, size }, fileOffset);
          if (!bytes) {
            store.forgetLayout?.(concept.oid);
            throw new PaniniError(`pack ${run.pack!.id} was cut short while it was read`, 'run `git panini fsck`, then the command again');
          }
          take(bytes);
          fileOffset += size;
        }
      }
    } else {
      const plan = options.plan;
      if (plan) windows?.readWhole(plan.at);
      let i = 0;
      for (const leaf of plan?.leaves ?? expandRefs(concept.refs, store)) {
        const at = !windows ? null : plan ? plan.at[i++]! : store.packedAt!(leaf.hash);
        if (at && at.size !== leaf.size) throw sizeMismatch(leaf, at.size);
        const bytes = at ? windows!.read(at, leaf.offset, leaf.hash) : null;
        recording?.add(bytes ? at!.pack!.id : null, at?.offset ?? 0, leaf.size);
        if (bytes) take(bytes);
        else {
          emitSpan();
          emitAtom(leaf);
        }
      }
    }
    emitSpan();
    lag?.catchUp();
    oid = whole.digest();
  } finally {
    if (lag) options.whileBlocked!(null);
    whole.stop();
  }
  if (written !== concept.size || oid !== concept.oid) {
    if (layout) store.forgetLayout?.(concept.oid);
    for (const leaf of expandRefs(concept.refs, store)) store.get(leaf.hash); // throws naming a damaged atom
    throw new PaniniError(`reconstructed bytes do not match the concept (sha256:${oid}, ${written} bytes; expected sha256:${concept.oid}, ${concept.size} bytes)`, 'the concept was edited or the store is damaged; run `git panini fsck`');
  }
  if (recording?.worthRecording()) store.recordLayout!(concept.oid, concept.size, recording.runs);
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
