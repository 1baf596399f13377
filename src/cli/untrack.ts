import { removePatterns } from '../git/attributes.js';
import { requireRepo } from '../git/repo.js';
import { PaniniError } from '../errors.js';

export function run(args: string[]): number {
  const repo = requireRepo();
  if (!repo.top) throw new PaniniError('untrack needs a worktree (this is a bare repository)');
  const patterns = args.filter((a) => !a.startsWith('-'));
  if (patterns.length === 0) throw new PaniniError('usage: git panini untrack <pattern>...');
  const removed = removePatterns(repo.top, patterns);
  for (const p of patterns) process.stdout.write(removed.includes(p.replace(/ /g, '[[:space:]]')) ? `Untracking "${p}"\n` : `"${p}" was not tracked\n`);
  return 0;
}
