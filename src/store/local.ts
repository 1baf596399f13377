/**
 * The local atom store: `<root>/atoms/ab/cd/<sha256>`, one file per atom, named by the SHA-256 of
 * its bytes. Beside it: `tmp/` for spooled input and `concepts/` (every file cleaned into this
 * store, by oid: what `stats` and the Git LFS agent read).
 */
import {
  closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync,
  renameSync, statSync, unlinkSync, utimesSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAtomHash } from '../atom.js';
import { AtomError, PaniniError, StoreError } from '../errors.js';
import { sha256Hex } from '../hash.js';

/** No atom this program writes is larger; a bigger file under an atom's name is not one of ours. */
export const MAX_ATOM_BYTES = 256 * 1024 * 1024;

export interface AtomReader {
  has(hash: string): boolean;
  /** The atom's bytes, verified against its name; throws AtomError if missing or corrupt. */
  get(hash: string): Buffer;
}

export interface AtomWriter {
  /** Stores bytes whose SHA-256 is `hash`; returns true if written, false if already present. */
  put(hash: string, bytes: Uint8Array): boolean;
}

export interface StoredAtom {
  hash: string;
  size: number;
  mtimeMs: number;
}

function shardPath(dir: string, hash: string): string {
  return join(dir, hash.slice(0, 2), hash.slice(2, 4), hash);
}

export class LocalStore implements AtomReader, AtomWriter {
  readonly atomsDir: string;
  readonly conceptsDir: string;
  readonly tmpDir: string;
  private readonly knownDirs = new Set<string>();

  constructor(readonly root: string) {
    this.atomsDir = join(root, 'atoms');
    this.conceptsDir = join(root, 'concepts');
    this.tmpDir = join(root, 'tmp');
  }

  atomPath(hash: string): string {
    if (!isAtomHash(hash)) throw new PaniniError(`invalid atom name ${JSON.stringify(hash)}`, 'atom names are 64 lowercase hex digits');
    return shardPath(this.atomsDir, hash);
  }

  has(hash: string): boolean {
    return existsSync(this.atomPath(hash));
  }

  put(hash: string, bytes: Uint8Array): boolean {
    const path = this.atomPath(hash);
    if (freshen(path)) return false;
    writeAtomically(this.ensureDir(path), path, bytes);
    return true;
  }

  get(hash: string): Buffer {
    const bytes = this.readRaw(hash);
    if (sha256Hex(bytes) !== hash) throw new AtomError(hash, 'corrupt');
    return bytes;
  }

  /** The stored bytes without verification (for fsck, which reports rather than throws). */
  readRaw(hash: string): Buffer {
    const path = this.atomPath(hash);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new AtomError(hash, 'missing');
      throw err;
    }
    try {
      const size = fstatSync(fd).size;
      if (size > MAX_ATOM_BYTES) throw new AtomError(hash, 'corrupt');
      const buf = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const n = readSync(fd, buf, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return done === size ? buf : buf.subarray(0, done);
    } finally {
      closeSync(fd);
    }
  }

  /** Size on disk, or -1 if absent. */
  sizeOf(hash: string): number {
    try {
      return statSync(this.atomPath(hash)).size;
    } catch {
      return -1;
    }
  }

  delete(hash: string): boolean {
    try {
      unlinkSync(this.atomPath(hash));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Every atom file; other names in the shard directories (temp files) go to `onOther`. */
  *list(onOther?: (path: string) => void): Generator<StoredAtom> {
    for (const hash of this.listNames(onOther)) {
      try {
        const st = statSync(shardPath(this.atomsDir, hash));
        yield { hash, size: st.size, mtimeMs: st.mtimeMs };
      } catch {
        // deleted while listing (a concurrent gc): not an atom any more
      }
    }
  }

  /** The names of every atom, without a stat each (gc needs sizes and times only of a few). */
  *listNames(onOther?: (path: string) => void): Generator<string> {
    for (const a of listDir(this.atomsDir)) {
      if (a.length !== 2) continue;
      for (const b of listDir(join(this.atomsDir, a))) {
        if (b.length !== 2) continue;
        const dir = join(this.atomsDir, a, b);
        for (const name of listDir(dir)) {
          if (isAtomHash(name) && name.startsWith(a + b)) yield name;
          else onOther?.(join(dir, name));
        }
      }
    }
  }

  /** Records the concept of a file cleaned into this store, by the file's oid. */
  putConcept(oid: string, text: string): void {
    const path = this.conceptPath(oid);
    if (freshen(path)) return;
    writeAtomically(this.ensureDir(path), path, Buffer.from(text));
  }

  conceptPath(oid: string): string {
    return shardPath(this.conceptsDir, oid);
  }

  getConcept(oid: string): string | null {
    if (!isAtomHash(oid)) return null;
    try {
      return readFileSync(shardPath(this.conceptsDir, oid), 'utf8');
    } catch {
      return null;
    }
  }

  *listConcepts(): Generator<string> {
    for (const a of listDir(this.conceptsDir)) {
      for (const b of listDir(join(this.conceptsDir, a))) {
        for (const name of listDir(join(this.conceptsDir, a, b))) if (isAtomHash(name)) yield name;
      }
    }
  }

  /** A fresh path for a temporary file inside the store (same filesystem as the atoms). */
  tempPath(label: string): string {
    mkdirSync(this.tmpDir, { recursive: true });
    return join(this.tmpDir, `${label}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Creates (once per process) the shard directory of an atom path; returns it. */
  ensureDir(path: string): string {
    const dir = path.slice(0, path.lastIndexOf('/'));
    if (!this.knownDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.knownDirs.add(dir);
    }
    return dir;
  }
}

/**
 * True if the file exists, its mtime then set to now: like Git freshening an object it was about
 * to write, this tells a concurrent `git panini gc` that the file is in use again (its grace
 * period starts over), so an atom re-used by an `add` is not deleted before the index names it.
 */
export function freshen(path: string): boolean {
  try {
    const now = new Date();
    utimesSync(path, now, now);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return existsSync(path); // not ours to touch (another user's store): it exists all the same
  }
}

// Unique per process and write; the random part guards against a dead process's leftovers with a reused pid.
const TEMP_PREFIX = `${process.pid}-${randomBytes(4).toString('hex')}`;
let tempCounter = 0;

/**
 * Temp file in the destination's own directory, then rename: a reader sees the whole atom under
 * its name or nothing. Two writers of the same atom both rename identical bytes; either wins.
 */
export function writeAtomically(dir: string, path: string, bytes: Uint8Array): void {
  const tmp = join(dir, `.tmp-${TEMP_PREFIX}-${tempCounter++}`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o444);
  } catch (err) {
    throw storeWriteError(err, dir);
  }
  try {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw storeWriteError(err, dir);
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw storeWriteError(err, dir);
  }
}

function storeWriteError(err: unknown, dir: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new StoreError(`the disk holding the atom store is full (writing in ${dir})`, 'free some space (git panini gc removes unreachable atoms) and run the command again; nothing was half-written');
  if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') return new StoreError(`the atom store is not writable (${dir}: ${code})`, 'check the permissions of the store directory, or set panini.storage to a writable place');
  return err as Error;
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
