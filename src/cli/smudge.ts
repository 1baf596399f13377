import { looksLikeConcept, MAX_CONCEPT_BYTES, parseConcept, type Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { readFd, writeFdAll } from '../io.js';
import { missingAtoms, reconstruct } from '../reconstruct/reconstruct.js';
import { storeFailure } from '../store/fs-errors.js';
import { openContext, type Context } from './context.js';
import { remoteFetcher } from './fetcher.js';

/** Set to leave concepts in the worktree instead of rebuilding files (like GIT_LFS_SKIP_SMUDGE). */
export const SKIP_SMUDGE_ENV = 'PANINI_SKIP_SMUDGE';

export function skipSmudge(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env[SKIP_SMUDGE_ENV];
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/** Throws a clear error naming the file if any atom is missing locally (`missing`: if just checked). */
export function assertAtomsPresent(ctx: Context, concept: Concept, path?: string, missing = missingAtoms(concept, ctx.store)): void {
  if (missing.length === 0) return;
  throw new PaniniError(
    `${path ? `${path}: ` : ''}${missing.length} atom${missing.length === 1 ? '' : 's'} missing from the local store (first: ${missing[0]})`,
    ctx.config.get('panini.url')
      ? 'run `git panini pull` (or `git panini fetch`, then `git checkout -- <path>`) to download them'
      : `no remote store is configured: set panini.url (or commit a .paniniconfig), or set ${SKIP_SMUDGE_ENV}=1 to check out concepts only`,
  );
}

/** Concept on stdin → file bytes on stdout; anything that is not a concept passes through. */
export async function run(args: string[]): Promise<number> {
  const path = args[0];
  const first = Buffer.allocUnsafe(64 * 1024);
  let n = 0;
  for (let got = readFd(0, first, 0); got > 0 && n < first.length; got = readFd(0, first, n)) n += got;
  if (!looksLikeConcept(first.subarray(0, n)) || skipSmudge()) {
    writeFdAll(1, first.subarray(0, n));
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let got = readFd(0, buf); got > 0; got = readFd(0, buf)) writeFdAll(1, buf.subarray(0, got));
    return 0;
  }
  const chunks = [first.subarray(0, n)];
  let total = n;
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (let got = readFd(0, buf); got > 0; got = readFd(0, buf)) {
    total += got;
    if (total > MAX_CONCEPT_BYTES) throw new PaniniError(`${path ?? 'input'}: concept larger than 1 MiB`, 'this is not a concept git-panini wrote; check the file with `git show`');
    chunks.push(Buffer.from(buf.subarray(0, got)));
  }
  const concept = parseConcept(Buffer.concat(chunks));
  const ctx = openContext();
  let missing: string[] | undefined = missingAtoms(concept, ctx.store);
  const fetcher = missing.length > 0 ? remoteFetcher(ctx) : null;
  try {
    if (fetcher) await fetcher([concept]);
  } catch (err) {
    throw storeFailure(err, ctx.store.root); // downloads write atoms: a full or read-only store, said plainly
  }
  if (fetcher) missing = undefined; // look again after the download
  assertAtomsPresent(ctx, concept, path, missing);
  reconstruct(concept, ctx.store, (bytes) => writeFdAll(1, bytes));
  return 0;
}
