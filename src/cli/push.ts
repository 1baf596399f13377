/**
 * `git panini push [remote] [refs...]`: uploads the atoms of commits not yet on the Git remote (by
 * default HEAD's commits missing from `origin`'s remote-tracking refs); `--all`: of every commit of
 * every ref, whatever the remote has (to fill or repair a store).
 */
import { PaniniError } from '../errors.js';
import { git } from '../git/exec.js';
import { conceptsInCommits } from '../transfer/commits.js';
import { pushConcepts } from '../transfer/push.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { formatBytes } from './stats.js';

export async function run(args: string[]): Promise<number> {
  const { positional, flags } = parseArgs(args, ['all', 'quiet', 'q']);
  const quiet = flags.has('quiet') || flags.has('q');
  const ctx = openContext();
  const cwd = ctx.repo?.top ?? ctx.repo?.commonDir;
  if (!cwd) throw new PaniniError('push needs a repository');
  const [remote = 'origin', ...refs] = positional;
  const isRemote = git(['config', '--get', `remote.${remote}.url`], { cwd }).status === 0;
  if (positional.length > 0 && !isRemote) throw new PaniniError(`${remote} is not a Git remote of this repository`, 'name a remote from `git remote`, then the refs to push');
  const include = flags.has('all') ? ['--all'] : refs.length > 0 ? refs : ['HEAD'];
  const exclude = flags.has('all') || !isRemote ? [] : [`--remotes=${remote}`];
  const concepts = conceptsInCommits(cwd, include, exclude, (line) => void process.stderr.write(line + '\n'));
  if (concepts.length === 0) {
    if (!quiet) process.stdout.write('nothing to push: no file stored through git-panini in those commits\n');
    return 0;
  }
  const r = await pushConcepts(ctx, concepts, { quiet });
  if (!quiet) process.stdout.write(`pushed ${r.uploaded} atoms (${formatBytes(r.bytes)}) for ${concepts.length} file version(s); ${r.needed - r.uploaded} of ${r.needed} were already in the remote store\n`);
  return 0;
}
