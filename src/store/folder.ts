/**
 * A shared folder as a remote store (`file:///path`): the local store's layout, `<root>/atoms/ab/cd/<hash>`.
 * Uploads go to a temp file beside their destination and are renamed into place, so an interrupted
 * upload never leaves an object under its final name; temp names start with `.tmp-` and are never listed.
 */
import * as fs from 'node:fs';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { PaniniError } from '../errors.js';
import { checkKey, RemoteError, statsFromListing, type Backend, type BackendStats, type ByteRange, type RemoteObject, type UploadBody } from './backend.js';

// The callback API, promisified: node:fs/promises costs ~1 ms of Node's modules to load, in the
// filter process of every clone from a folder.
const close = promisify(fs.close);
const copyFile = promisify(fs.copyFile);
const fstat = promisify(fs.fstat);
const link = promisify(fs.link);
const mkdir = promisify(fs.mkdir);
const open = promisify(fs.open);
const read = promisify(fs.read);
const readdir = promisify(fs.readdir);
const rename = promisify(fs.rename);
const stat = promisify(fs.stat);
const unlink = promisify(fs.unlink);
const utimes = promisify(fs.utimes);
const writeFile = promisify(fs.writeFile);

const TEMP_PREFIX = '.tmp-';
/** Keys are at most a few levels deep (atoms/ab/cd/<hash>); deeper trees are not ours. */
const MAX_LIST_DEPTH = 8;

/**
 * A hard link, or where there can be none (another file system, another user's file, a file system
 * without links) a copy made by the kernel: a clone of the blocks where the file system can. Its
 * time is set to now: it arrives now, for gc's grace period (a link keeps the file's time).
 */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    await copyFile(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  }
  const now = new Date();
  await utimes(to, now, now);
}

export class FolderBackend implements Backend {
  /** A stat takes ~0.1 ms, a listing ~0.3 ms per key: per-atom checks always win. */
  readonly listPageCost = Infinity;

  /** Directories known to exist: most uploads go to a shard directory made earlier. */
  private readonly knownDirs = new Set<string>();

  constructor(readonly root: string, readonly url = `file://${root}`) {}

  async upload(key: string, body: UploadBody): Promise<void> {
    await this.writeAtomically(key, async (tmp) => {
      // Bytes in memory (an index, a layout) are written at once: a stream costs Node's stream
      // modules (~10 ms to load) in a push that otherwise moves whole pack files.
      if (body.bytes) await writeFile(tmp, body.bytes, { flag: 'wx', mode: 0o444 });
      else await pipeline(body.open(), createWriteStream(tmp, { flags: 'wx', mode: 0o444 }));
      const written = (await stat(tmp)).size;
      if (written !== body.size) throw new RemoteError(`upload of ${key} to ${this.url} wrote ${written} bytes instead of ${body.size}`, 'the local file changed while it was sent; run the command again', true);
    });
  }

  async copyFrom(path: string, key: string): Promise<void> {
    await this.writeAtomically(key, (tmp) => linkOrCopy(path, tmp));
  }

  /** `write` fills a temp file beside the key's place, which is then renamed there (or removed). */
  private async writeAtomically(key: string, write: (tmp: string) => Promise<void>): Promise<void> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true }).catch((err: unknown) => { throw this.fsError(err, `creating ${dir}`); });
      this.knownDirs.add(dir);
    }
    const tmp = join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await write(tmp);
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // The shard directory vanished (a concurrent gc emptied it): make it again on the retry.
        this.knownDirs.delete(dir);
        throw new RemoteError(`remote store ${this.url}: ${dir} disappeared while writing ${key}`, undefined, true);
      }
      throw err instanceof PaniniError ? err : this.fsError(err, `writing ${key}`);
    }
  }

  async download(key: string, range?: ByteRange): Promise<Readable | null> {
    const fd = await this.openOrNull(key);
    return fd === null ? null : createReadStream('', { fd, ...(range ? { start: range.start, end: range.start + range.length - 1 } : {}) });
  }

  async readRange(key: string, range: ByteRange): Promise<Buffer | null> {
    const fd = await this.openOrNull(key);
    return fd === null ? null : this.readAndClose(fd, key, range.start, range.length);
  }

  async readWhole(key: string, maxBytes: number): Promise<Buffer | null> {
    const fd = await this.openOrNull(key);
    if (fd === null) return null;
    let size;
    try {
      size = (await fstat(fd)).size;
    } catch (err) {
      await close(fd).catch(() => undefined);
      throw this.fsError(err, `reading ${key}`);
    }
    return this.readAndClose(fd, key, 0, Math.min(size, maxBytes + 1));
  }

  /** The open file of `key`, or null if there is none. */
  private async openOrNull(key: string): Promise<number | null> {
    try {
      return await open(this.pathOf(key), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.fsError(err, `reading ${key}`);
    }
  }

  /** Up to `length` bytes from `start` (fewer if the file is shorter); closes `fd`. */
  private async readAndClose(fd: number, key: string, start: number, length: number): Promise<Buffer> {
    try {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await read(fd, buf, done, length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf.subarray(0, done);
    } catch (err) {
      throw this.fsError(err, `reading ${key}`);
    } finally {
      await close(fd).catch(() => undefined);
    }
  }

  async copyTo(key: string, path: string): Promise<boolean> {
    try {
      await linkOrCopy(this.pathOf(key), path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw this.fsError(err, `copying ${key}`);
    }
  }


  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(key))).isFile();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw this.fsError(err, `looking for ${key}`);
    }
  }

  /**
   * One listing per directory on the way to the keys (the root, atoms/, atoms/ab/), not a stat per
   * key: a push to a new folder store learns that it holds none of its atoms at the cost of a few
   * listings. The leaf directories, which can be large, are not listed.
   */
  async absentAmong(keys: readonly string[]): Promise<Set<string>> {
    const listed = new Map<string, Set<string> | null>(); // directory key → its names, or null if there is none
    const list = async (dirKey: string): Promise<Set<string> | null> => {
      let names: Set<string> | null;
      try {
        names = new Set(await readdir(join(this.root, dirKey)));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw this.fsError(err, `listing ${dirKey || '/'}`);
        names = null;
      }
      listed.set(dirKey, names);
      return names;
    };
    const absent = new Set<string>();
    for (const key of keys) {
      const dirs = checkKey(key).split('/').slice(0, -1);
      let dirKey = '';
      for (const dir of dirs) {
        // Awaited only for a directory not listed yet: thousands of atoms share a few hundred.
        const names = listed.get(dirKey);
        if (!(names === undefined ? await list(dirKey) : names)?.has(dir)) {
          absent.add(key);
          break;
        }
        dirKey += dir + '/';
      }
    }
    return absent;
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.fsError(err, `deleting ${key}`);
    }
  }

  async *list(prefix: string): AsyncGenerator<RemoteObject> {
    // Walk from the deepest directory the prefix names, in sorted order, filtering on the full key.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash + 1);
    yield* this.walk(base, prefix, 0);
  }

  stats(prefix = ''): Promise<BackendStats> {
    return statsFromListing(this, prefix);
  }

  close(): void {
    // nothing held open between calls
  }

  private async *walk(dirKey: string, prefix: string, depth: number): AsyncGenerator<RemoteObject> {
    if (depth > MAX_LIST_DEPTH) return;
    let names: string[];
    try {
      names = (await readdir(join(this.root, dirKey))).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.fsError(err, `listing ${dirKey || '/'}`);
    }
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX)) continue;
      const key = dirKey + name;
      if (!key.startsWith(prefix) && !prefix.startsWith(key + '/')) continue;
      let st;
      try {
        st = await stat(join(this.root, key));
      } catch {
        continue; // removed while listing
      }
      if (st.isDirectory()) yield* this.walk(key + '/', prefix, depth + 1);
      else if (st.isFile() && key.startsWith(prefix)) yield { key, size: st.size, modifiedMs: st.mtimeMs };
    }
  }

  private pathOf(key: string): string {
    return join(this.root, checkKey(key));
  }

  private fsError(err: unknown, doing: string): Error {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code ?? (err as Error).message;
    const hint = code === 'ENOSPC' ? 'free space on the shared folder\'s disk, then run the command again; nothing was half-written'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? `check that you can write to ${this.root}`
      : code === 'ENOENT' ? `check that ${this.root} exists and is mounted (panini.url)` : undefined;
    return new RemoteError(`remote store ${this.url}: ${doing} failed (${why})`, hint, code === 'EAGAIN' || code === 'EBUSY' || code === 'EIO');
  }
}
