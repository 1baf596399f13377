/**
 * .gitattributes entries for tracked patterns.
 *
 * `filter=panini`  the clean/smudge filter stores the file as atoms and commits its concept.
 * `merge=binary`   a line-by-line merge of two concepts would splice their atom lists into a file
 *                  that matches neither version; binary merge keeps ours and marks the conflict.
 * `-text`          no end-of-line conversion: it would alter binary bytes before they reach us.
 * No `diff` attribute: concepts are text, so `git diff` shows which atoms changed, line by line.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TRACK_ATTRIBUTES = 'filter=panini merge=binary -text';

/** Git attribute patterns cannot contain spaces; Git LFS writes them as [[:space:]]. */
export function escapePattern(pattern: string): string {
  return pattern.replace(/ /g, '[[:space:]]');
}

export interface TrackedPattern {
  pattern: string;
  file: string;
}

function readLines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n') : [];
}

function isPaniniLine(line: string): boolean {
  const fields = line.trim().split(/\s+/);
  return !line.trim().startsWith('#') && fields.slice(1).includes('filter=panini');
}

export function listTracked(top: string, gitDir: string): TrackedPattern[] {
  const result: TrackedPattern[] = [];
  for (const file of [join(top, '.gitattributes'), join(gitDir, 'info', 'attributes')]) {
    for (const line of readLines(file)) if (isPaniniLine(line)) result.push({ pattern: line.trim().split(/\s+/)[0]!, file });
  }
  return result;
}

/** Appends patterns to <top>/.gitattributes; returns the ones added (already tracked ones are skipped). */
export function addPatterns(top: string, patterns: readonly string[]): string[] {
  const path = join(top, '.gitattributes');
  const lines = readLines(path);
  const existing = new Set(lines.filter(isPaniniLine).map((l) => l.trim().split(/\s+/)[0]));
  const added: string[] = [];
  for (const p of patterns.map(escapePattern)) {
    if (existing.has(p)) continue;
    existing.add(p);
    added.push(p);
  }
  if (added.length === 0) return added;
  const body = lines.join('\n');
  const prefix = body.length === 0 || body.endsWith('\n') ? body : body + '\n';
  writeFileSync(path, prefix + added.map((p) => `${p} ${TRACK_ATTRIBUTES}\n`).join(''));
  return added;
}

/** Removes the lines that track these patterns through git-panini; returns the removed patterns. */
export function removePatterns(top: string, patterns: readonly string[]): string[] {
  const path = join(top, '.gitattributes');
  const wanted = new Set(patterns.map(escapePattern));
  const removed: string[] = [];
  const kept = readLines(path).filter((line) => {
    const p = line.trim().split(/\s+/)[0]!;
    if (isPaniniLine(line) && wanted.has(p)) {
      removed.push(p);
      return false;
    }
    return true;
  });
  if (removed.length > 0) writeFileSync(path, kept.join('\n'));
  return removed;
}
