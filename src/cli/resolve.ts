import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { looksLikeConcept, MAX_CONCEPT_BYTES, parseConcept, type Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { git } from '../git/exec.js';
import type { Context } from './context.js';

export function readHead(path: string, limit: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(limit);
    const n = readSync(fd, buf, 0, limit, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Finds the concept for a command argument: a concept file itself (a knowledge note, or a worktree
 * file left as a concept), else the concept Git has staged for that path. Null if the argument is
 * a plain file Git does not track through git-panini.
 */
export function resolveConcept(ctx: Context, target: string): Concept | null {
  let isFile = false;
  try {
    isFile = statSync(target).isFile();
  } catch {
    // not in the worktree: maybe only in the index (deleted, or sparse checkout)
  }
  if (isFile) {
    const head = readHead(target, MAX_CONCEPT_BYTES + 1);
    if (looksLikeConcept(head)) return parseConcept(head);
  }
  if (ctx.repo?.top) {
    const spec = `:${target.startsWith('/') ? target : `./${target}`}`;
    const r = git(['cat-file', 'blob', spec]);
    if (r.status === 0 && looksLikeConcept(r.stdout)) return parseConcept(r.stdout);
  }
  if (!isFile) throw new PaniniError(`${target}: no such file, and Git has no concept staged for it`, 'give a path tracked by git-panini or a concept file');
  return null;
}

export function requireConcept(ctx: Context, target: string): Concept {
  const c = resolveConcept(ctx, target);
  if (!c) throw new PaniniError(`${target} is not a concept and Git holds no concept for it`, 'track it with `git panini track` and `git add` it, or pass a concept file');
  return c;
}
