import { join } from 'node:path';
import { looksLikeConcept, type Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { listEntries, readConceptBlobs } from '../git/concepts.js';
import { missingAtoms } from '../reconstruct/reconstruct.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { readHead } from './resolve.js';

interface FileStatus {
  path: string;
  staged: 'added' | 'modified' | 'deleted' | 'unchanged';
  oid: string | null;
  size: number | null;
  missingAtoms: number;
  worktree: 'file' | 'concept' | 'absent';
}

/** Tracked paths: staged vs committed concept, whether their atoms are local, what the worktree holds. */
export function run(args: string[]): number {
  const { flags } = parseArgs(args, ['json', 'porcelain']);
  const ctx = openContext();
  const top = ctx.repo?.top;
  if (!top) throw new PaniniError('status needs a worktree');
  const index = listEntries(top);
  const head = listEntries(top, 'HEAD');
  const { concepts } = readConceptBlobs(top, [...index, ...head].map((e) => e.blob));
  const headByPath = new Map(head.filter((e) => concepts.has(e.blob)).map((e) => [e.path, e.blob]));
  const rows: FileStatus[] = [];
  const describe = (path: string, concept: Concept | undefined, staged: FileStatus['staged']): void => {
    let worktree: FileStatus['worktree'] = 'absent';
    try {
      worktree = looksLikeConcept(readHead(join(top, path), 1024)) ? 'concept' : 'file';
    } catch {
      // absent from the worktree
    }
    let missing = 0;
    if (concept) {
      try {
        missing = missingAtoms(concept, ctx.store).length;
      } catch {
        missing = -1; // a manifest is missing: the count is unknown
      }
    }
    rows.push({ path, staged, oid: concept?.oid ?? null, size: concept?.size ?? null, missingAtoms: missing, worktree });
  };
  for (const e of index) {
    const concept = concepts.get(e.blob);
    if (!concept) continue;
    const headBlob = headByPath.get(e.path);
    describe(e.path, concept, headBlob === undefined ? 'added' : headBlob === e.blob ? 'unchanged' : 'modified');
    headByPath.delete(e.path);
  }
  for (const [path] of headByPath) describe(path, undefined, 'deleted');
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify({ store: ctx.store.root, remote: ctx.config.get('panini.url') ?? null, files: rows }, null, 2) + '\n');
    return 0;
  }
  const out = [`store:  ${ctx.store.root}`, `remote: ${ctx.config.get('panini.url') ?? '(none: set panini.url or commit a .paniniconfig)'}`, ''];
  if (rows.length === 0) out.push('No files are stored through git-panini yet.');
  const staged = rows.filter((r) => r.staged !== 'unchanged');
  if (staged.length > 0) {
    out.push('Changes to be committed:');
    for (const r of staged) out.push(`  ${r.staged.padEnd(9)} ${r.path}${r.oid ? ` (${r.oid.slice(0, 10)}, ${r.size} bytes)` : ''}`);
    out.push('');
  }
  out.push(`Tracked files (${rows.filter((r) => r.staged !== 'deleted').length}):`);
  for (const r of rows.filter((r) => r.staged !== 'deleted')) {
    const atoms = r.missingAtoms === 0 ? 'atoms local' : r.missingAtoms < 0 ? 'manifest missing' : `${r.missingAtoms} atoms missing`;
    out.push(`  ${r.path}  [${atoms}; worktree: ${r.worktree}]`);
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
