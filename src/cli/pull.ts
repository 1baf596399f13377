/**
 * `git panini pull`: fetch what the checkout needs, then rebuild the tracked files that the
 * worktree still holds as concepts (a clone made with PANINI_SKIP_SMUDGE, or before the store
 * was reachable). Only files whose bytes are exactly the staged concept are touched, so no local
 * edit is ever overwritten; Git itself writes them back, through the smudge filter.
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { looksLikeConcept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { listEntries, readConceptBlobs } from '../git/concepts.js';
import { git } from '../git/exec.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { fetchAndReport, wantedConcepts } from './fetch.js';
import { readHead } from './resolve.js';

export async function run(args: string[]): Promise<number> {
  const { flags } = parseArgs(args, ['quiet', 'q']);
  const quiet = flags.has('quiet') || flags.has('q');
  const ctx = openContext();
  const top = ctx.repo?.top;
  if (!top) throw new PaniniError('pull needs a worktree (this is a bare repository)', 'use `git panini fetch` in a bare repository');
  await fetchAndReport(ctx, wantedConcepts(ctx, [], false), quiet);
  const restored = restoreWorktree(top);
  if (!quiet && restored.length > 0) process.stdout.write(`restored ${restored.length} file(s) from their atoms\n`);
  return 0;
}

/** Re-checks-out tracked files whose worktree content is still their staged concept; returns their paths. */
function restoreWorktree(top: string): string[] {
  const entries = listEntries(top);
  const { concepts } = readConceptBlobs(top, entries.map((e) => e.blob));
  const holdingConcept = entries.filter((e) => {
    if (!concepts.has(e.blob)) return false;
    try {
      return looksLikeConcept(readHead(join(top, e.path), 1024));
    } catch {
      return false; // absent from the worktree: deleted on purpose, or not checked out
    }
  });
  if (holdingConcept.length === 0) return [];
  const hashed = git(['hash-object', '--no-filters', '--stdin-paths'], { cwd: top, input: holdingConcept.map((e) => e.path).join('\n') + '\n' });
  if (hashed.status !== 0) throw new PaniniError(`git hash-object failed: ${hashed.stderr.trim()}`);
  const oids = hashed.stdout.toString().split('\n');
  const stale = holdingConcept.filter((e, i) => oids[i] === e.blob).map((e) => e.path);
  if (stale.length === 0) return [];
  if (git(['config', '--get', 'filter.panini.process'], { cwd: top }).status !== 0 && git(['config', '--get', 'filter.panini.smudge'], { cwd: top }).status !== 0) {
    throw new PaniniError(`${stale.length} file(s) are still concepts in the worktree, but Git has no git-panini filter configured to rebuild them`, 'run `git panini install`, then `git panini pull` again');
  }
  // Git skips files whose stat data matches the index: remove them first (their bytes are the
  // staged concept, so nothing is lost), then let Git write them through the filter and record
  // their new stat data in the index (-u), so status sees them unchanged.
  for (const path of stale) unlinkSync(join(top, path));
  const r = git(['checkout-index', '-f', '-u', '-z', '--stdin'], { cwd: top, input: stale.join('\0') + '\0' });
  if (r.status !== 0) {
    throw new PaniniError(`git checkout-index failed: ${r.stderr.trim()}`, 'the files are safe in the index; `git checkout -- <path>` writes them again once the cause is fixed');
  }
  return stale;
}
