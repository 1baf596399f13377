/**
 * What a history walk learned, kept for the next one (<store>/cache/walk-v1): for each reachable
 * commit, the concept blobs it adds against its first parent; for each concept blob, what it
 * references. Both are facts about immutable objects, so they stay true; only reachability
 * changes, and that is recomputed every time. One JSON value per line, ending with a line holding
 * the count and SHA-256 of the lines before it: a file that is cut short, damaged or from another
 * version is ignored whole (the walk is then done from scratch), never half-trusted.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAtomHash, isAtomType } from '../atom.js';
import { newSha256, sha256Hex } from '../hash.js';
import type { AtomRef, BlobMeaning } from '../git/history.js';

export interface CommitAdditions {
  /** First parent the additions were computed against (null for a root or shallow commit). */
  parent: string | null;
  /** [blob, path] of the concept blobs the commit adds. */
  blobs: [string, string][];
}

export interface WalkCache {
  commits: Map<string, CommitAdditions>;
  blobs: Map<string, BlobMeaning>;
}

const FILE = 'walk-v1';
/** Bump the number whenever what a blob is taken to reference changes (see meaningOf). */
const HEADER = '["git-panini walk cache",2]';
const OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

export function loadWalkCache(dir: string): WalkCache {
  const empty = (): WalkCache => ({ commits: new Map(), blobs: new Map() });
  let text: string;
  try {
    text = readFileSync(join(dir, FILE), 'utf8');
  } catch {
    return empty();
  }
  const lastLine = text.lastIndexOf('\n', text.length - 2);
  const body = text.slice(0, lastLine + 1);
  const lines = body.split('\n').slice(0, -1);
  try {
    const [tag, count, digest] = JSON.parse(text.slice(lastLine + 1)) as unknown[];
    if (tag !== 'end' || count !== lines.length || digest !== sha256Hex(Buffer.from(body)) || lines[0] !== HEADER) return empty();
    const cache = empty();
    for (const line of lines.slice(1)) if (!readEntry(JSON.parse(line) as unknown, cache)) return empty();
    return cache;
  } catch {
    return empty();
  }
}

function readEntry(entry: unknown, cache: WalkCache): boolean {
  if (!Array.isArray(entry)) return false;
  const [tag, oid] = entry as unknown[];
  if (typeof oid !== 'string' || !OID.test(oid)) return false;
  if (tag === 'c') {
    const [, , parent, pairs] = entry as unknown[];
    if (!(parent === null || (typeof parent === 'string' && OID.test(parent))) || !Array.isArray(pairs) || pairs.length % 2 !== 0) return false;
    const blobs: [string, string][] = [];
    for (let i = 0; i < pairs.length; i += 2) {
      const [blob, path] = [pairs[i], pairs[i + 1]];
      if (typeof blob !== 'string' || !OID.test(blob) || typeof path !== 'string') return false;
      blobs.push([blob, path]);
    }
    cache.commits.set(oid, { parent, blobs });
    return true;
  }
  if (tag !== 'b') return false;
  const [, , kind, value, refs] = entry as unknown[];
  if (typeof value !== 'string') return false;
  if (kind === 'lfs' && isAtomHash(value)) {
    cache.blobs.set(oid, { kind, oid: value });
    return true;
  }
  const parsed = readRefs(refs);
  if (!parsed) return false;
  if (kind === 'concept' && isAtomHash(value)) cache.blobs.set(oid, { kind, oid: value, refs: parsed });
  else if (kind === 'invalid') cache.blobs.set(oid, { kind, why: value, refs: parsed });
  else return false;
  return true;
}

function readRefs(value: unknown): AtomRef[] | null {
  if (!Array.isArray(value)) return null;
  const refs: AtomRef[] = [];
  for (const item of value as unknown[]) {
    if (!Array.isArray(item)) return null;
    const [hash, type, size, component] = item as unknown[];
    if (!isAtomHash(hash) || !(type === null || isAtomType(type)) || !(size === null || (typeof size === 'number' && Number.isSafeInteger(size) && size > 0))) return null;
    if (component !== undefined && component !== 1) return null;
    refs.push(component === 1 ? { hash, type, size, component: true } : { hash, type, size });
  }
  return refs;
}

/** Replaces the cache file (temp file, then rename: a reader sees the old file or the new one). */
export function saveWalkCache(dir: string, commits: Map<string, CommitAdditions>, blobs: Map<string, BlobMeaning>): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, FILE);
  const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fd = openSync(tmp, 'wx', 0o644);
  const hasher = newSha256();
  let count = 0;
  let pending = '';
  const write = (line: string): void => {
    pending += line + '\n';
    count++;
    if (pending.length >= 1 << 20) flush();
  };
  const flush = (): void => {
    const bytes = Buffer.from(pending);
    hasher.update(bytes);
    writeSync(fd, bytes);
    pending = '';
  };
  try {
    write(HEADER);
    for (const [commit, a] of commits) write(JSON.stringify(['c', commit, a.parent, a.blobs.flat()]));
    for (const [blob, m] of blobs) {
      const refs = m.kind === 'lfs' ? undefined : m.refs.map((r) => (r.component ? [r.hash, r.type, r.size, 1] : [r.hash, r.type, r.size]));
      write(JSON.stringify(['b', blob, m.kind, m.kind === 'invalid' ? m.why : m.oid, ...(refs ? [refs] : [])]));
    }
    flush();
    writeSync(fd, JSON.stringify(['end', count, hasher.digest('hex')]) + '\n');
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
}
