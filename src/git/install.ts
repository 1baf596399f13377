/**
 * Filter driver configuration and hook installation (`git panini install` / `uninstall`).
 * Hooks come from the project's hooks/ templates; a hook already in place is kept beside ours as
 * `<name>.pre-panini` and called after it, never overwritten.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PaniniError } from '../errors.js';
import { git, gitText } from './exec.js';

export const HOOK_MARKER = 'git-panini hook';
export const HOOKS = ['pre-push'] as const;
const TEMPLATES = fileURLToPath(new URL('../../../hooks/', import.meta.url));

export type Scope = 'global' | 'local' | 'system';

export const FILTER_SETTINGS: readonly [string, string][] = [
  ['filter.panini.process', 'git-panini filter-process'],
  ['filter.panini.clean', 'git-panini clean -- %f'],
  ['filter.panini.smudge', 'git-panini smudge -- %f'],
  ['filter.panini.required', 'true'],
];

export function installFilter(scope: Scope, cwd?: string): void {
  for (const [key, value] of FILTER_SETTINGS) gitText(['config', `--${scope}`, key, value], cwd);
}

export function uninstallFilter(scope: Scope, cwd?: string): void {
  const r = git(['config', `--${scope}`, '--remove-section', 'filter.panini'], { cwd });
  if (r.status !== 0 && !/no such section/i.test(r.stderr)) throw new PaniniError(`could not remove filter.panini from ${scope} config: ${r.stderr.trim()}`);
}

function hooksDir(cwd?: string): string {
  return gitText(['rev-parse', '--path-format=absolute', '--git-path', 'hooks'], cwd);
}

export function isOurHook(path: string): boolean {
  try {
    return readFileSync(path, 'utf8').includes(HOOK_MARKER);
  } catch {
    return false;
  }
}

/** Installs our hooks; returns what was done, one line each. */
export function installHooks(cwd?: string): string[] {
  const dir = hooksDir(cwd);
  mkdirSync(dir, { recursive: true });
  const done: string[] = [];
  for (const name of HOOKS) {
    const path = join(dir, name);
    if (existsSync(path) && !isOurHook(path)) {
      const chained = `${path}.pre-panini`;
      if (existsSync(chained)) throw new PaniniError(`both ${path} and ${chained} exist`, `merge them by hand, then run \`git panini install\` again`);
      renameSync(path, chained);
      done.push(`kept existing ${name} hook as ${name}.pre-panini (runs after git-panini's)`);
    }
    copyFileSync(join(TEMPLATES, name), path);
    chmodSync(path, 0o755);
    done.push(`installed ${name} hook`);
  }
  return done;
}

export function uninstallHooks(cwd?: string): string[] {
  const dir = hooksDir(cwd);
  const done: string[] = [];
  for (const name of HOOKS) {
    const path = join(dir, name);
    if (!isOurHook(path)) continue;
    unlinkSync(path);
    done.push(`removed ${name} hook`);
    if (existsSync(`${path}.pre-panini`)) {
      renameSync(`${path}.pre-panini`, path);
      done.push(`restored the previous ${name} hook`);
    }
  }
  return done;
}
