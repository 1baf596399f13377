import { buildConcept, buildStreamedConcept, type BuiltConcept } from '../concept/build.js';
import { detectFormat } from '../decompose/index.js';
import { looksLikeConcept, parseConcept } from '../concept/concept.js';
import { spoolFd, writeFdAll, type SpooledInput, type StreamedInput } from '../io.js';
import { PaniniError } from '../errors.js';
import { openContext, type Context } from './context.js';
import { storeFailure } from '../store/fs-errors.js';
import { announceWriter } from '../store/writers.js';
import type { AtomWriter } from '../store/local.js';

export { SmallFileAtoms } from '../store/small-files.js';

type CleanInput = SpooledInput | StreamedInput;

/** Bytes in → concept out. Content that already is a concept comes out unchanged. */
export function cleanInput(ctx: Context, input: CleanInput, path?: string): Buffer {
  const cleaned = cleanToConcept(ctx, input, path);
  cleaned.record();
  return cleaned.concept;
}

export interface Cleaned {
  concept: Buffer;
  /** Records the concept in the store's registry; its atoms are stored already. */
  record(): void;
}

/**
 * The same, leaving the registry entry to the caller (the filter process writes it while Git
 * works); `smallFiles`: where the atoms of small files go (store/small-files.ts), else loose.
 */
export function cleanToConcept(ctx: Context, input: CleanInput, path?: string, smallFiles?: AtomWriter): Cleaned {
  if ('read' in input) return recordLater(ctx, buildStreamedConcept(input.read, ctx.store, { record: false }));
  if (looksLikeConcept(input.head) && isValidConcept(input)) return { concept: Buffer.from(input.source.read(0, input.source.size)), record: () => undefined };
  const built = buildConcept(input.source, ctx.store, { maxAtomSize: ctx.maxAtomSize, record: false, smallFiles });
  if (input.unchanged && !input.unchanged()) {
    throw new PaniniError(`${path ?? 'the file'} changed while it was being added`, 'run `git add` again once nothing is writing to the file');
  }
  return recordLater(ctx, built);
}

function recordLater(ctx: Context, built: BuiltConcept): Cleaned {
  const concept = Buffer.from(built.text);
  return { concept, record: () => ctx.store.putConcept(built.ingest.oid, concept) };
}

/**
 * Large content that no decomposer recognizes (and that cannot be a concept, which is at most
 * 1 MiB) is chunked as it arrives: no spooling, no second read.
 */
export function unstructured(head: Buffer): boolean {
  return detectFormat(head) === undefined;
}

function isValidConcept(input: SpooledInput): boolean {
  if (input.source.size > 1024 * 1024) return false;
  try {
    parseConcept(input.source.read(0, input.source.size));
    return true;
  } catch {
    return false; // bytes that merely resemble a concept are stored like any other content
  }
}

/**
 * `clean [--] [path]`: Git passes the path (%f). A large stdin with no structure is chunked as it
 * arrives; other large input identical to that file is read in place.
 */
export function run(args: string[]): number {
  const path = args.filter((a) => a !== '--')[0];
  const ctx = openContext();
  announceWriter(ctx.store.root); // until exit: gc keeps what this process writes (store/writers.ts)
  let concept: Buffer;
  try {
    const input = spoolFd(0, () => ctx.store.tempPath('clean'), path, unstructured);
    try {
      concept = cleanInput(ctx, input, path);
    } finally {
      input.dispose();
    }
  } catch (err) {
    throw storeFailure(err, ctx.store.root); // a full or read-only store, said plainly
  }
  writeFdAll(1, concept);
  return 0;
}
