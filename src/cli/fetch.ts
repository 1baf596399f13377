/**
 * `git panini fetch [refs...]`: downloads the atoms the current checkout needs (the concepts in
 * HEAD's tree, or in the given refs' trees); `--all`: of every commit of every ref.
 */
import type { Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { listEntries, readConceptBlobs } from '../git/concepts.js';
import { git } from '../git/exec.js';
import { conceptsInCommits } from '../transfer/commits.js';
import { fetchConcepts } from '../transfer/fetch.js';
import { parseArgs } from './args.js';
import { openContext, type Context } from './context.js';
import { formatBytes } from './stats.js';

export async function run(args: string[]): Promise<number> {
  const { positional, flags } = parseArgs(args, ['all', 'quiet', 'q']);
  const quiet = flags.has('quiet') || flags.has('q');
  const ctx = openContext();
  await fetchAndReport(ctx, wantedConcepts(ctx, positional, flags.has('all')), quiet);
  return 0;
}

/** Concepts in the trees of `refs` (HEAD by default), or in all history. */
export function wantedConcepts(ctx: Context, refs: readonly string[], all: boolean): Concept[] {
  const cwd = ctx.repo?.top ?? ctx.repo?.commonDir;
  if (!cwd) throw new PaniniError('fetch needs a repository');
  if (all) return conceptsInCommits(cwd, ['--all'], [], (line) => void process.stderr.write(line + '\n')).map((c) => c.concept);
  for (const ref of refs) {
    if (git(['rev-parse', '--verify', '--quiet', `${ref}^{tree}`], { cwd }).status !== 0) throw new PaniniError(`${ref} is not a commit or tree of this repository`, 'give branch or tag names, or commit ids');
  }
  const blobs = (refs.length > 0 ? refs : ['HEAD']).flatMap((ref) => listEntries(cwd, ref).map((e) => e.blob));
  return [...readConceptBlobs(cwd, blobs).concepts.values()];
}

export async function fetchAndReport(ctx: Context, concepts: Concept[], quiet: boolean): Promise<void> {
  if (concepts.length === 0) return;
  const r = await fetchConcepts(ctx, concepts, { quiet });
  if (quiet) return;
  process.stdout.write(r.downloaded > 0 ? `fetched ${r.downloaded} atoms (${formatBytes(r.bytes)}) for ${concepts.length} file version(s)\n` : `the atoms of all ${concepts.length} file version(s) are already local\n`);
}
