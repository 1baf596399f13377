import { join } from 'node:path';
import { PaniniError } from '../errors.js';
import { listEntries, pathsWithPaniniFilter, readConceptBlobs } from '../git/concepts.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { formatBytes } from './stats.js';
import { readHead } from './resolve.js';
import { looksLikeConcept } from '../concept/concept.js';

/**
 * Files stored through git-panini in the index (or a given tree-ish), like `git lfs ls-files`:
 * `*` after the oid means the worktree holds the real file, `-` that it holds the concept.
 */
export function run(args: string[]): number {
  const { positional, flags } = parseArgs(args, ['json', 'long', 'l', 'size', 's']);
  const ctx = openContext();
  const top = ctx.repo?.top;
  if (!top) throw new PaniniError('ls-files needs a worktree');
  const entries = listEntries(top, positional[0]);
  const { concepts } = readConceptBlobs(top, entries.map((e) => e.blob));
  const rows = entries.filter((e) => concepts.has(e.blob)).map((e) => {
    const c = concepts.get(e.blob)!;
    let smudged = false;
    try {
      smudged = !looksLikeConcept(readHead(join(top, e.path), 1024));
    } catch {
      // not checked out
    }
    return { path: e.path, oid: c.oid, size: c.size, format: c.format, smudged };
  });
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify({ files: rows }, null, 2) + '\n');
    return 0;
  }
  const long = flags.has('long') || flags.has('l');
  const showSize = flags.has('size') || flags.has('s');
  for (const r of rows) {
    process.stdout.write(`${long ? r.oid : r.oid.slice(0, 10)} ${r.smudged ? '*' : '-'} ${r.path}${showSize ? ` (${formatBytes(r.size)})` : ''}\n`);
  }
  // Tracked paths whose blob is not a concept yet (committed before `track`): say so once.
  const pending = pathsWithPaniniFilter(top, entries.filter((e) => !concepts.has(e.blob)).map((e) => e.path));
  if (pending.size > 0 && !positional[0]) process.stderr.write(`${pending.size} tracked path(s) are still stored as plain Git blobs; \`git add --renormalize .\` converts them\n`);
  return 0;
}
