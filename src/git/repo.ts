import { existsSync, lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { PaniniError } from '../errors.js';
import { commandLineConfig, readConfigFile } from './config.js';
import { git } from './exec.js';

export interface Repo {
  /** Worktree top, or null in a bare repository. */
  top: string | null;
  /** The directory shared by all worktrees (where the store lives). */
  commonDir: string;
  /** This worktree's own git dir (its index, its HEAD). */
  gitDir: string;
  /** The variables of the repository's config file, when plainRepoAt read it (loadConfig then reads Git's other files too). */
  ownConfig?: [string, string][];
}

/** Finds the repository around `cwd`; null when not inside one. */
export function findRepo(cwd = process.cwd()): Repo | null {
  const plain = plainRepoAt(cwd);
  if (plain) return plain;
  // --show-cdup (unlike --show-toplevel) also answers in a bare repository or inside .git.
  const r = git(['rev-parse', '--path-format=absolute', '--git-common-dir', '--git-dir', '--is-inside-work-tree', '--show-cdup'], { cwd });
  if (r.status !== 0) return null;
  const [commonDir, gitDir, inside, cdup] = r.stdout.toString().split('\n');
  return { commonDir: commonDir!, gitDir: gitDir!, top: inside === 'true' ? resolve(cwd, cdup ?? '') : null };
}

/** Variables with which Git finds its work tree elsewhere than at the top of a repository's directory. */
const WORK_TREE_ENV = ['GIT_WORK_TREE', 'GIT_COMMON_DIR'];

/**
 * The repository whose work tree's top is `cwd`, found without a `git rev-parse` process (~4 ms
 * at every start; Git runs its filters and hooks there), when it is plainly one: `.git` a
 * directory of this user's, as Git's safe.directory check wants, that Git takes for a repository
 * (HEAD, objects/, refs/), not a linked worktree's (commondir), with a config (its file, which
 * readConfigFile reads, and `git -c`) that neither moves the work tree nor makes the repository
 * bare, nor names a format extension; nothing in the environment that changes where Git looks, but a GIT_DIR naming that
 * same `.git` (as Git sets it for what it runs in a clone: its work tree is then `cwd`, as
 * found). Null for anything else: Git decides.
 */
export function plainRepoAt(cwd: string): Repo | null {
  if (WORK_TREE_ENV.some((name) => process.env[name] !== undefined) || process.env.GIT_CONFIG_COUNT) return null;
  const commandLine = commandLineConfig(process.env); // `git -c …`, read by Git after the files
  if (!commandLine) return null;
  let gitDir: string;
  try {
    gitDir = join(realpathSync(cwd), '.git'); // as Git names it: through no symlink
    const named = process.env.GIT_DIR;
    if (named !== undefined && realpathSync(resolve(cwd, named)) !== gitDir) return null;
    const uid = process.getuid?.();
    const dir = lstatSync(gitDir);
    if (!dir.isDirectory() || dir.uid !== uid || statSync(cwd).uid !== uid) return null;
    if (!statSync(join(gitDir, 'objects')).isDirectory() || !statSync(join(gitDir, 'refs')).isDirectory() || existsSync(join(gitDir, 'commondir'))) return null;
    if (!/^(ref: refs\/\S+|[0-9a-f]{40}|[0-9a-f]{64})\n?$/.test(readFileSync(join(gitDir, 'HEAD'), 'latin1'))) return null;
  } catch {
    return null;
  }
  const config = readConfigFile(join(gitDir, 'config'));
  if (!config) return null;
  for (const [key, value] of [...config, ...commandLine]) {
    if (key === 'core.worktree' || key.startsWith('extensions.')) return null;
    if (key === 'core.bare' && value.toLowerCase() !== 'false') return null;
    if (key === 'core.repositoryformatversion' && value !== '0' && value !== '1') return null;
  }
  return { commonDir: gitDir, gitDir, top: cwd, ownConfig: config };
}

export function requireRepo(cwd = process.cwd()): Repo {
  const repo = findRepo(cwd);
  if (!repo) throw new PaniniError('not inside a Git repository', 'cd into a repository (or run `git init`) first');
  return repo;
}

/** Where the local atom store lives: panini.storage (relative to the common dir) or <common dir>/panini. */
export function storeRoot(repo: Repo, storage: string | undefined): string {
  if (!storage) return join(repo.commonDir, 'panini');
  return isAbsolute(storage) ? storage : resolve(repo.commonDir, storage);
}

export function hasPaniniConfigFile(repo: Repo): boolean {
  return repo.top !== null && existsSync(join(repo.top, '.paniniconfig'));
}
