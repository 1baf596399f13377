/**
 * Moving one atom between the local store and a remote store, with retries. Uploads stream from
 * the atom's file and re-hash it on the way, so a local atom damaged on disk fails its upload
 * instead of poisoning the remote. Downloads are hashed before they enter the local store.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { AtomError, PaniniError } from '../errors.js';
import { nowMs } from '../io.js';
import { newSha256, sha256Hex } from '../hash.js';
import { atomKey, RemoteError, type Backend, type UploadBody } from '../store/backend.js';
import { MAX_ATOM_BYTES, type AtomWriter, type LocalStore } from '../store/local.js';
import type { TransferSettings } from '../store/remote.js';
import { withRetries } from './retry.js';

/** What every transfer needs: both stores and the settings. */
export interface Transfer {
  backend: Backend;
  store: LocalStore;
  settings: TransferSettings;
}

/** Where this clone keeps what it knows of the remote store (`<store>/remotes/<16 hex of its URL>` + suffix). */
export function remoteCachePath(t: Transfer, suffix: string): string {
  return join(t.store.root, 'remotes', `${sha256Hex(Buffer.from(t.backend.url)).slice(0, 16)}${suffix}`);
}

/** The remote store has no object for this atom (an item failure: the others still transfer). */
export class AtomNotOnRemote extends PaniniError {
  constructor(readonly hash: string, url: string) {
    super(`atom ${hash} is not in the remote store ${url}`, 'push it from a clone that has it (git panini push), or check that panini.url names the right store');
    this.name = 'AtomNotOnRemote';
  }
}

/** Uploads a local atom; returns its size. */
export async function uploadAtom(t: Transfer, hash: string): Promise<number> {
  const size = t.store.sizeOf(hash);
  if (size < 0) throw new AtomError(hash, 'missing');
  await withRetries(t.settings.attempts, () => t.backend.upload(atomKey(hash), verifiedAtomBody(t.store, hash, size)));
  return size;
}

/** Downloads an atom into the local store (through `into`, a pack, if given) after checking its hash; returns its size. */
export async function downloadAtom(t: Transfer, hash: string, maxBytes = MAX_ATOM_BYTES, into: AtomWriter = t.store): Promise<number> {
  return withRetries(t.settings.attempts, async () => {
    const bytes = await readObject(t, atomKey(hash), maxBytes, `downloading atom ${hash} from ${t.backend.url}`);
    if (!bytes) throw new AtomNotOnRemote(hash, t.backend.url);
    const actual = sha256Hex(bytes);
    if (actual !== hash) {
      throw new RemoteError(
        `the remote store ${t.backend.url} served ${bytes.length} bytes for atom ${hash} that hash to ${actual}; they were not stored`,
        `if this repeats, the remote copy is damaged: delete ${atomKey(hash)} from the remote store and push again from a clone that has the file`,
        true,
      );
    }
    into.put(hash, bytes);
    return bytes.length;
  });
}

/** The atom's file as a stream that fails at its end if the bytes do not hash to the atom's name. */
function verifiedAtomBody(store: LocalStore, hash: string, size: number): UploadBody {
  return {
    size,
    open(): Readable {
      const hasher = newSha256();
      const verify = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hasher.update(chunk);
          done(null, chunk);
        },
        flush(done) {
          done(hasher.digest('hex') === hash ? null : new AtomError(hash, 'corrupt'));
        },
      });
      const at = store.locate(hash);
      // A packed atom is a range of its pack; a vanished one fails like a missing file.
      const file = at?.pack && at.size === 0 ? Readable.from([]) : createReadStream(at?.path ?? store.atomPath(hash), at?.pack ? { start: at.offset, end: at.offset + at.size - 1 } : {});
      file.on('error', (err: Error) => verify.destroy((err as NodeJS.ErrnoException).code === 'ENOENT' ? new AtomError(hash, 'missing') : err));
      verify.on('close', () => file.destroy());
      return file.pipe(verify);
    },
  };
}

/**
 * The whole object `key` (at most `maxBytes`), or null if the store has none: in one read where the
 * backend can (a folder), else from a download stream, with readAll's checks.
 */
export async function readObject(t: { backend: Backend; settings: Pick<TransferSettings, 'timeoutMs'> }, key: string, maxBytes: number, what: string): Promise<Buffer | null> {
  if (t.backend.readWhole) {
    const bytes = await t.backend.readWhole(key, maxBytes);
    if (bytes && bytes.length > maxBytes) throw tooLarge(what, maxBytes);
    return bytes;
  }
  const stream = await t.backend.download(key);
  return stream && readAll(stream, maxBytes, t.settings.timeoutMs, what);
}

/**
 * A whole object from a stream, at most `maxBytes`; fails (retryably) if no data arrives for
 * `idleMs` or the connection breaks. With `exact`, `maxBytes` are expected: they are copied into
 * one buffer as they arrive (a range of a pack: tens of MiB), not kept as chunks and joined at the
 * end, which costs a second pass and keeps the chunks alive long enough for the GC to move them.
 */
export function readAll(stream: Readable, maxBytes: number, idleMs: number, what: string, exact = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const whole = exact ? Buffer.allocUnsafe(maxBytes) : null;
    let total = 0;
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    let lastData = nowMs();
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.destroy();
      reject(err);
    };
    // One timer that looks at the time of the last chunk, not one new timer per chunk (thousands per range).
    const watch = (): void => {
      const idle = nowMs() - lastData;
      if (idle >= idleMs) fail(new RemoteError(`${what}: no data for ${idleMs} ms`, 'the network or the service is stalling; run the command again (panini.timeout sets the limit)', true));
      else timer = setTimeout(watch, idleMs - idle);
    };
    stream.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        fail(tooLarge(what, maxBytes));
        return;
      }
      if (whole) chunk.copy(whole, total - chunk.length);
      else chunks.push(chunk);
      lastData = nowMs();
    });
    stream.on('end', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(whole ? whole.subarray(0, total) : Buffer.concat(chunks, total));
    });
    stream.on('close', () => fail(new RemoteError(`${what}: the connection closed before the end`, 'run the command again', true)));
    stream.on('error', (err) => fail(err instanceof PaniniError ? err : new RemoteError(`${what}: ${err.message}`, 'the connection broke; run the command again', true)));
    timer = setTimeout(watch, idleMs);
  });
}

const tooLarge = (what: string, maxBytes: number): RemoteError =>
  new RemoteError(`${what}: the object is larger than the ${maxBytes} bytes expected`, 'the remote object is not what its name says; delete it from the remote store and push again', false);
