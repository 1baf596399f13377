import { uninstallFilter, uninstallHooks } from '../git/install.js';
import { findRepo } from '../git/repo.js';
import { parseArgs } from './args.js';
import { scopeOf } from './install.js';

export function run(args: string[]): number {
  const { flags } = parseArgs(args, ['local', 'global', 'system', 'skip-repo']);
  const scope = scopeOf(flags);
  uninstallFilter(scope);
  const lines = [`git-panini filter removed (${scope})`];
  if (findRepo()?.top && !flags.has('skip-repo')) lines.push(...uninstallHooks());
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
