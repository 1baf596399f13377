import { installFilter, installHooks, type Scope } from '../git/install.js';
import { findRepo } from '../git/repo.js';
import { PaniniError } from '../errors.js';
import { parseArgs } from './args.js';

export function scopeOf(flags: Map<string, string | true>): Scope {
  if (flags.has('local')) return 'local';
  if (flags.has('system')) return 'system';
  return 'global';
}

/** Like `git lfs install`: the filter driver in global (default), local or system config, hooks in the current repo. */
export function run(args: string[]): number {
  const { flags } = parseArgs(args, ['local', 'global', 'system', 'skip-repo']);
  const scope = scopeOf(flags);
  const repo = findRepo();
  if (scope === 'local' && !repo) throw new PaniniError('--local needs a repository', 'cd into a repository, or use --global');
  installFilter(scope);
  const lines = [`git-panini filter configured (${scope})`];
  if (repo?.top && !flags.has('skip-repo')) lines.push(...installHooks());
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
