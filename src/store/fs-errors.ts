/**
 * Filesystem failures inside the local store, as errors a user can act on. The atom writes report
 * a full disk or a read-only store themselves (local.ts), but other steps touch the store too:
 * creating shard and temp directories, spooling input to tmp/. Without this, a full or read-only
 * store surfaced as "ENOSPC: no space left on device, write" or, from Node's recursive mkdir on a
 * read-only file system, "ENOENT: no such file or directory, mkdir …", with no hint. Commands pass
 * what they catch through storeFailure, so every such error says what happened and what to do.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, isAbsolute, relative } from 'node:path';
import { PaniniError, StoreError } from '../errors.js';

/** `err` as a StoreError if it is a filesystem error on a path inside the store at `root`; else `err` itself. */
export function storeFailure(err: unknown, root: string): unknown {
  if (err instanceof PaniniError || !(err instanceof Error)) return err;
  const { code, path, syscall } = err as NodeJS.ErrnoException;
  if (typeof code !== 'string' || typeof path !== 'string' || !inside(path, root)) return err;
  // Node's recursive mkdir says ENOENT when a parent could not be made: ask the file system why.
  const cause = code === 'ENOENT' && syscall === 'mkdir' ? writeBlocker(path, root) ?? code : code;
  return storeErrorFor(cause, `${syscall ?? 'writing'} ${path}`) ?? err;
}

/** The StoreError for a full or read-only store (`what`: the operation and place), or null for other codes. */
export function storeErrorFor(code: string | undefined, what: string): StoreError | null {
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StoreError(
      `the disk holding the atom store is full (${what})`,
      'free some space on it and run the command again; nothing was half-written (`git panini gc --prune=now` deletes the atoms of a failed command)',
    );
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new StoreError(`the atom store is not writable (${what}: ${code})`, 'check the permissions of the store directory and whether its file system is mounted read-only, or set panini.storage to a writable place');
  }
  return null;
}

function inside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Why the nearest existing directory above `path` (up to the store root's parent) cannot be written, if it cannot. */
function writeBlocker(path: string, root: string): string | undefined {
  let dir = dirname(path);
  while (!existsSync(dir) && inside(dir, root) && dir !== dirname(dir)) dir = dirname(dir);
  try {
    accessSync(dir, constants.W_OK);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}
