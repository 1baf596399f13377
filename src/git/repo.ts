import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { PaniniError } from '../errors.js';
import { git } from './exec.js';

export interface Repo {
  /** Worktree top, or null in a bare repository. */
  top: string | null;
  /** The directory shared by all worktrees (where the store lives). */
  commonDir: string;
  /** This worktree's own git dir (its index, its HEAD). */
  gitDir: string;
}

/** Finds the repository around `cwd`; null when not inside one. */
export function findRepo(cwd = process.cwd()): Repo | null {
  // --show-cdup (unlike --show-toplevel) also answers in a bare repository or inside .git.
  const r = git(['rev-parse', '--path-format=absolute', '--git-common-dir', '--git-dir', '--is-inside-work-tree', '--show-cdup'], { cwd });
  if (r.status !== 0) return null;
  const [commonDir, gitDir, inside, cdup] = r.stdout.toString().split('\n');
  return { commonDir: commonDir!, gitDir: gitDir!, top: inside === 'true' ? resolve(cwd, cdup ?? '') : null };
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
