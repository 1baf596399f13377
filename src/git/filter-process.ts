/**
 * Git's long-running filter process protocol, version 2 (gitattributes(5), "Long Running Filter
 * Process"), with the clean, smudge and delay capabilities. One process serves a whole `git add`,
 * `checkout` or `clone`. Smudges whose atoms must be downloaded are answered `delayed`, then fetched
 * together when Git asks `list_available_blobs`.
 */
import { MANIFEST_TYPES } from '../atom.js';
import { assertAtomsPresent } from '../cli/smudge.js';
import type { Context } from '../cli/context.js';
import { ConceptReader, looksLikeConcept, type Concept } from '../concept/concept.js';
import { AtomError, errorMessage, PaniniError, StoreError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { IN_MEMORY_LIMIT, receiveToClean, spoolChunks, type SpooledInput, type StreamedInput } from '../io.js';
import { missingAtoms, planLeaves, reconstruct, wholeFileAtom, wholeFileRef, type LeafPlan } from '../reconstruct/reconstruct.js';
import { storeFailure } from '../store/fs-errors.js';
import { mayHaveLayout } from '../store/layout.js';
import type { AtomLocation, LocalStore } from '../store/local.js';
import { MAX_PAYLOAD, PktReader, PktWriter } from './pktline.js';
import type { SmallFileAtoms } from '../store/small-files.js';

/** Downloads every atom the concepts need into the local store. */
export type AtomFetcher = (concepts: Concept[]) => Promise<void>;

export interface FilterOptions {
  /** Null when no remote store is configured: missing atoms are then an error. */
  fetcher: AtomFetcher | null;
  /** Leave concepts in the worktree (PANINI_SKIP_SMUDGE). */
  skipSmudge: boolean;
  log?: (line: string) => void;
  /** Log what the process did as it ends (PANINI_TRACE). */
  trace?: boolean;
}

const CAPABILITIES = ['clean', 'smudge', 'delay'];

/**
 * Git sends the next file to clean within a fraction of a millisecond; this long without a request
 * and it is doing something else (writing the index or a commit, running hooks that may read the
 * store): the pack of small files' atoms is named then (store/small-files.ts).
 */
const SEAL_WHEN_IDLE_MS = 20;

/**
 * A small file's atom is read into this buffer, reused from file to file (sent before the next),
 * also when read ahead: the atom read ahead is taken, or dropped, before anything else is read in.
 */
const SMALL_ATOM_BYTES = 1024 * 1024;
let smallAtomBuffer: Buffer | undefined;
const smallAtomScratch = (): Buffer => (smallAtomBuffer ??= Buffer.allocUnsafe(SMALL_ATOM_BYTES));

/** Past this many more misses than hits, SmallAtomsAhead stops guessing (files not in pack order). */
const MAX_AHEAD_MISSES = 32;

/**
 * The small files of a checkout are asked for in Git's index order, which is the order `git add`
 * cleaned them in, so the order of their atoms in the pack of small files. While Git writes one
 * file (on the other core), the atom after it in its pack is read and hashed; if Git asks for it
 * next, it is sent at once, verified already. A wrong guess costs that work, done while waiting.
 */
class SmallAtomsAhead {
  private prepared: { hash: string; bytes: Buffer } | null = null;
  hits = 0;
  misses = 0;

  constructor(private readonly store: LocalStore, private readonly reader: PktReader) {}

  /** The atom's bytes, verified, if they are the ones prepared. */
  take(hash: string, size: number): Buffer | null {
    const prepared = this.prepared;
    this.prepared = null;
    if (!prepared) return null;
    if (prepared.hash !== hash || prepared.bytes.length !== size) {
      this.misses++;
      return null;
    }
    this.hits++;
    return prepared.bytes;
  }

  /**
   * The concept's file was just sent: if it lists its atoms itself (no manifest), the atom after its
   * last one is prepared while the reader waits for Git's next request.
   */
  sent(concept: Pick<Concept, 'refs'>): void {
    const last = concept.refs[concept.refs.length - 1];
    if (!last || MANIFEST_TYPES.has(last.type) || this.misses > this.hits + MAX_AHEAD_MISSES) return;
    const hash = last.hash;
    this.reader.ahead = () => {
      this.prepared = null; // its bytes are about to be overwritten, whatever this read finds
      try {
        const next = this.store.packedAfter(hash);
        const buffer = smallAtomScratch();
        if (!next || next.size === 0 || next.size >= buffer.length) return;
        const bytes = this.store.readPackRange(next, next.size, buffer);
        if (bytes && sha256Hex(bytes) === next.hash) this.prepared = { hash: next.hash, bytes };
      } catch {
        // only a guess: the request, when it comes, reads the atom as usual and reports any error
      }
    };
  }
}

let cleanModule: typeof import('../cli/clean.js') | undefined;
/** Files to clean that fit in memory are received here, reused from file to file (each is disposed of before the next). */
let cleanBuffer: Buffer | undefined;
/** Most concepts to smudge are alike but for their atom: read so, not parsed (ConceptReader). */
const concepts = new ConceptReader();
/** Concepts to smudge are received here, reused from file to file (parsed before the next). */
const CONCEPT_BUFFER_BYTES = 64 * 1024;
let conceptBuffer: Buffer | undefined;

/**
 * Git asks for the files it was told are available in sorted path order (it keeps them in a sorted
 * string list), each once it has written the one before. While it writes one (on the other core),
 * the next is located: its manifests walked and its leaves looked up (findBytes). Any other
 * request finds that work dropped, and a file asked for is located afresh if it was not the one.
 */
class DelayedAhead {
  private located: { pathname: string; found: FoundBytes } | null = null;
  /** The files listed to Git so far (those not served yet are still in `delayed`). */
  private listed: ReadonlySet<string> = new Set();
  hits = 0;
  misses = 0;

  constructor(private readonly ctx: Context, private readonly reader: PktReader, private readonly delayed: ReadonlyMap<string, { concept: Concept }>) {}

  /** Where the delayed file's bytes lie: as located ahead, if it was this file and nothing was missing then. */
  find(pathname: string, concept: Concept): FoundBytes {
    const ahead = this.located;
    this.located = null;
    if (ahead?.pathname === pathname && ahead.found.missing.length === 0) {
      this.hits++;
      return ahead.found;
    }
    if (ahead) this.misses++;
    return findBytes(this.ctx, concept);
  }

  /** After files were listed to Git (all of them so far), or one was served: locates the next while the reader waits. */
  expectNext(listed = this.listed): void {
    this.listed = listed;
    let next: string | null = null;
    for (const p of this.delayed.keys()) if (listed.has(p) && (next === null || p < next)) next = p;
    if (next === null) return;
    const pathname = next;
    const { concept } = this.delayed.get(pathname)!;
    this.reader.ahead = () => {
      this.located = null;
      try {
        this.located = { pathname, found: findBytes(this.ctx, concept) };
      } catch {
        // only a guess: asked for, the file is located again and any error reported then
      }
    };
  }
}

export async function serveFilterProcess(ctx: Context, reader: PktReader, writer: PktWriter, options: FilterOptions): Promise<void> {
  handshake(reader, writer);
  /** Delayed smudges by path: their concept, and the error if fetching failed. */
  const delayed = new Map<string, { concept: Concept; error?: string }>();
  const retried = { failed: 0 };
  let listed = new Set<string>();
  let unrecorded: { pathname: string; err: unknown } | null = null;
  let smallFiles: SmallFileAtoms | null = null;
  /** Names the pack of small files' atoms so far (store/small-files.ts): before anything reads them, and at the end. */
  const sealSmallFiles = (): void => {
    try {
      smallFiles?.seal();
    } catch (err) {
      options.log?.(`git-panini: ${errorMessage(storeFailure(err, ctx.store.root))} (the atoms of the files just added are kept in a journaled pack, which the next git-panini command names)`);
    }
  };
  reader.idle = { afterMs: SEAL_WHEN_IDLE_MS, pending: () => smallFiles?.unnamed ?? false, run: sealSmallFiles };
  const ahead = new SmallAtomsAhead(ctx.store, reader);
  const delayedAhead = new DelayedAhead(ctx, reader, delayed);
  for (;;) {
    const request = reader.readKeyValues();
    reader.ahead = null; // the guess is for the request that was still to come
    if (request === undefined) {
      sealSmallFiles();
      if (options.trace) {
        options.log?.(`git-panini: filter-process: ${ahead.hits} small files sent as read ahead, ${ahead.misses} read ahead for nothing; ${delayedAhead.hits} delayed files located ahead, ${delayedAhead.misses} located ahead for nothing`);
      }
      if (unrecorded) options.log?.(`git-panini: ${unrecorded.pathname}: ${errorMessage(storeFailure(unrecorded.err, ctx.store.root))}`);
      return; // Git closed the pipe: done
    }
    const command = request.get('command');
    const pathname = request.get('pathname') ?? '';
    if (command !== 'clean') sealSmallFiles();
    if (command === 'list_available_blobs') {
      const pending = [...delayed.entries()].filter(([p]) => !listed.has(p));
      if (pending.length > 0 && options.fetcher) {
        try {
          await options.fetcher(pending.map(([, d]) => d.concept));
        } catch (err) {
          for (const [, d] of pending) d.error = errorMessage(err);
        }
      }
      for (const [p] of pending) writer.text(`pathname=${p}`);
      listed = new Set([...listed, ...pending.map(([p]) => p)]);
      writer.flushPkt();
      writer.text('status=success');
      writer.flushPkt();
      writer.send();
      delayedAhead.expectNext(listed);
      continue;
    }
    if (command !== 'clean' && command !== 'smudge') {
      drainContent(reader);
      respondStatus(writer, 'error');
      continue;
    }
    if (unrecorded) {
      // The previous file's registry entry could not be written: fail now, as that file would have.
      const cause = storeFailure(unrecorded.err, ctx.store.root);
      options.log?.(`git-panini: ${unrecorded.pathname}: ${errorMessage(cause)}`);
      unrecorded = null;
      drainContent(reader);
      respondStatus(writer, cause instanceof StoreError ? 'abort' : 'error');
      continue;
    }
    // The clean path (decomposers, pack writer) is loaded at the first clean: a checkout never needs it.
    const clean = command === 'clean' ? (cleanModule ??= await import('../cli/clean.js')) : null;
    let contentEnded = false;
    let input: SpooledInput | StreamedInput;
    try {
      const next = (): Buffer | null => {
        const p = reader.readTransient(); // spooling copies what it keeps
        if (p === null || p === undefined) contentEnded = true;
        return p ?? null;
      };
      const readInto = (into: Buffer, at: number, max: number): number => {
        const n = reader.readContentInto(into, at, max);
        if (n === 0) contentEnded = true;
        return n;
      };
      const tempPath = (): string => ctx.store.tempPath('filter');
      // Cleaning a large file: chunked as it arrives if it has no structure, else (once Git's copy
      // proved identical) decomposed from the worktree file itself.
      input = clean ? receiveToClean({ next, readInto, lent: (cleanBuffer ??= Buffer.allocUnsafeSlow(IN_MEMORY_LIMIT)) }, pathname || undefined, tempPath, clean.unstructured) : spoolChunks(next, tempPath, (conceptBuffer ??= Buffer.allocUnsafeSlow(CONCEPT_BUFFER_BYTES)));
    } catch (caught) {
      // Spooling writes to the store's tmp/: a full or read-only store must say so, not ENOSPC/EROFS.
      const err = storeFailure(caught, ctx.store.root);
      if (!contentEnded) drainContent(reader);
      options.log?.(`git-panini: ${pathname}: ${errorMessage(err)}`);
      respondStatus(writer, err instanceof StoreError ? 'abort' : 'error');
      continue;
    }
    try {
      if (clean) {
        const cleaned = clean.cleanToConcept(ctx, input, pathname, (smallFiles ??= new clean.SmallFileAtoms(ctx.store)));
        respondContent(writer, (emit) => emit(cleaned.concept));
        // The registry entry is written while Git stores the concept (its atoms are stored already).
        try {
          cleaned.record();
        } catch (err) {
          unrecorded = { pathname, err };
        }
      } else {
        await smudge(ctx, writer, options, input as SpooledInput, pathname, request.get('can-delay') === '1', delayed, retried, ahead, delayedAhead);
      }
    } catch (err) {
      if (!contentEnded) drainContent(reader); // a streamed input failed half-way
      const cause = storeFailure(err instanceof ResponseFailed ? err.cause : err, ctx.store.root);
      options.log?.(`git-panini: ${pathname}: ${errorMessage(cause)}`); // before the status: Git reports it after this line
      if (err instanceof ResponseFailed) endContentWithError(writer);
      else respondStatus(writer, cause instanceof StoreError ? 'abort' : 'error');
    } finally {
      input.dispose();
    }
  }
}

async function smudge(
  ctx: Context, writer: PktWriter, options: FilterOptions, input: SpooledInput, pathname: string, canDelay: boolean,
  delayed: Map<string, { concept: Concept; error?: string }>, retried: { failed: number }, ahead: SmallAtomsAhead, delayedAhead: DelayedAhead,
): Promise<void> {
  const wasDelayed = delayed.get(pathname);
  if (wasDelayed && input.source.size === 0) {
    delayed.delete(pathname);
    const { concept, error } = wasDelayed;
    if (error && missingAtoms(concept, ctx.store).length > 0) {
      // The batch fetch stopped at the first bad atom, which may be another file's: fetch this file
      // alone, so an error names the file it belongs to and an innocent file still checks out. Git
      // stops at the first failed file (the filter is required), so an outage costs one more fetch;
      // with a non-required filter, two failures end the retrying.
      if (!options.fetcher || retried.failed >= 2) throw new PaniniError(`could not download the atoms of ${pathname}: ${error}`);
      try {
        await options.fetcher([concept]);
      } catch (err) {
        retried.failed++;
        throw new PaniniError(`could not download the atoms of ${pathname}: ${errorMessage(err)}`);
      }
    }
    if (serveSmall(ctx, writer, concept, ahead)) return;
    serveConcept(ctx, writer, concept, delayedAhead.find(pathname, concept));
    delayedAhead.expectNext();
    return;
  }
  if (options.skipSmudge || !looksLikeConcept(input.head)) {
    return respondContent(writer, (emit) => streamSource(input, emit));
  }
  const concept = concepts.read(input.source.read(0, input.source.size));
  if (serveSmall(ctx, writer, concept, ahead)) return;
  const found = findBytes(ctx, concept);
  if (found.missing.length > 0 && options.fetcher) {
    if (canDelay) {
      delayed.set(pathname, { concept });
      respondStatus(writer, 'delayed');
      return;
    }
    await options.fetcher([concept]);
    return serveConcept(ctx, writer, concept, findBytes(ctx, concept)); // looks again after the download
  }
  serveConcept(ctx, writer, concept, found);
  ahead.sent(concept);
}

/** Where a concept's bytes lie in the store: its layout, or else its leaves found one by one; and the atoms missing. */
interface FoundBytes {
  layout?: AtomLocation[];
  plan?: LeafPlan;
  missing: string[];
}

function findBytes(ctx: Context, concept: Concept): FoundBytes {
  // A file rebuilt before has its layout: its packs hold every byte, and nothing is looked up. A
  // concept that lists fewer atoms than a layout needs, and no manifest, has none.
  const layout = mayHaveLayout(concept.refs) ? ctx.store.layoutOf(concept.oid, concept.size) : null;
  if (layout) return { layout, missing: [] };
  // Its leaves located in one walk (reconstruct then reads the packs they need most of whole).
  const plan = planLeaves(concept, ctx.store);
  return plan ? { plan, missing: plan.missing } : { missing: missingAtoms(concept, ctx.store) };
}

/**
 * Most small files are one atom, served here: the atom read ahead (verified already), else read at
 * once (no presence check first) into a reused buffer and sent, then hashed while Git reads it (a
 * mismatch ends the content with status=error, and Git discards it). False if the file is not one
 * atom or its atom cannot be read so: the caller finds out why and answers as it always does (a
 * delay, a fetch, or the error).
 */
function serveSmall(ctx: Context, writer: PktWriter, concept: Concept, ahead: SmallAtomsAhead): boolean {
  const only = wholeFileRef(concept);
  if (!only) return false;
  const verified = ahead.take(only.hash, only.size);
  const scratch = smallAtomScratch();
  const unchecked = verified ? null : ctx.store.readUnchecked(only.hash, only.size, scratch);
  if (verified) {
    respondContent(writer, (emit) => emit(verified));
  } else if (unchecked) {
    respondContent(writer, (emit) => emit(unchecked), () => {
      if (sha256Hex(unchecked) !== only.hash) throw new AtomError(only.hash, 'corrupt');
    });
  } else {
    // Not readable so: too large for the buffer, or damaged, or missing (then nothing to try: a
    // checkout of a fresh clone asks for thousands of files whose atoms are still to be fetched).
    if (!ctx.store.mightHave(only.hash)) return false;
    let single: Buffer | null = null;
    try {
      single = wholeFileAtom(concept, ctx.store, scratch);
    } catch {
      return false;
    }
    if (!single) return false;
    respondContent(writer, (emit) => emit(single));
  }
  ahead.sent(concept);
  return true;
}

function serveConcept(ctx: Context, writer: PktWriter, concept: Concept, { missing, plan, layout }: FoundBytes): void {
  assertAtomsPresent(ctx, concept, undefined, missing); // the log line names the file
  // Git discards content followed by an error status; sent bytes may be reused.
  respondContent(writer, (emit) => reconstruct(concept, ctx.store, emit, {
    plan,
    layout,
    discardedOnError: true,
    release: () => writer.send(),
    whileBlocked: (work) => void (writer.whileBlocked = work),
  }));
}

function streamSource(input: SpooledInput, emit: (b: Buffer) => void): void {
  for (let pos = 0; pos < input.source.size; pos += 1024 * 1024) emit(input.source.read(pos, 1024 * 1024));
}

/** Producing content failed after status=success went out; the content must end with an error status. */
class ResponseFailed extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessage(cause));
  }
}

function handshake(reader: PktReader, writer: PktWriter): void {
  const hello = reader.readText();
  if (hello !== 'git-filter-client') throw new PaniniError(`unexpected filter handshake ${JSON.stringify(hello)}`, 'filter-process is started by Git; run `git panini install`');
  const versions: string[] = [];
  for (let line = reader.readText(); line !== null; line = reader.readText()) versions.push(line);
  if (!versions.includes('version=2')) throw new PaniniError('Git does not offer filter protocol version 2', 'upgrade Git to 2.11 or later');
  writer.text('git-filter-server');
  writer.text('version=2');
  writer.flushPkt();
  writer.send();
  const offered = new Set<string>();
  for (let line = reader.readText(); line !== null; line = reader.readText()) offered.add(line.replace(/^capability=/, ''));
  for (const cap of CAPABILITIES) if (offered.has(cap)) writer.text(`capability=${cap}`);
  writer.flushPkt();
  writer.send();
}

/** Discards the rest of the request's content, from wherever its reading stopped. */
function drainContent(reader: PktReader): void {
  const scratch = Buffer.allocUnsafe(MAX_PAYLOAD);
  while (reader.readContentInto(scratch, 0, scratch.length) > 0) { /* discard */ }
}

/** status=error after partly sent content, so Git discards what it received. */
function endContentWithError(writer: PktWriter): void {
  writer.flushPkt();
  writer.text('status=error');
  writer.flushPkt();
  writer.send();
}

function respondStatus(writer: PktWriter, status: 'error' | 'delayed' | 'abort'): void {
  writer.text(`status=${status}`);
  writer.flushPkt();
  writer.send();
}

/**
 * status=success, the content, then an empty list (status unchanged) — or, if producing the content
 * fails half-way, ResponseFailed: the caller then ends it with endContentWithError. `check`, if
 * given, runs once the content is sent (Git reads it meanwhile); if it throws, the response ends
 * the same way.
 */
function respondContent(writer: PktWriter, produce: (emit: (bytes: Buffer) => void) => void, check?: () => void): void {
  writer.text('status=success');
  writer.flushPkt();
  try {
    produce((bytes) => writer.data(bytes));
  } catch (err) {
    throw new ResponseFailed(err);
  }
  if (check) {
    writer.send();
    try {
      check();
    } catch (err) {
      throw new ResponseFailed(err);
    }
  }
  writer.flushPkt();
  writer.flushPkt();
  writer.send();
}
