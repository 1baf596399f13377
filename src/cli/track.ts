import { addPatterns, listTracked } from '../git/attributes.js';
import { requireRepo } from '../git/repo.js';
import { PaniniError } from '../errors.js';
import { relative } from 'node:path';

export function run(args: string[]): number {
  const repo = requireRepo();
  if (!repo.top) throw new PaniniError('track needs a worktree (this is a bare repository)');
  const patterns = args.filter((a) => !a.startsWith('-'));
  if (patterns.length === 0) {
    const tracked = listTracked(repo.top, repo.gitDir);
    process.stdout.write(tracked.length === 0 ? 'No patterns are tracked by git-panini. Try: git panini track "*.mp4"\n'
      : 'Patterns tracked by git-panini:\n' + tracked.map((t) => `    ${t.pattern} (${relative(repo.top!, t.file)})`).join('\n') + '\n');
    return 0;
  }
  const added = addPatterns(repo.top, patterns);
  for (const p of patterns) process.stdout.write(added.includes(p.replace(/ /g, '[[:space:]]')) ? `Tracking "${p}"\n` : `"${p}" already supported\n`);
  if (added.length > 0) process.stdout.write('Commit .gitattributes; files already committed are converted when you `git add` them again.\n');
  return 0;
}
