/**
 * Where atoms travel: a remote object store (a shared folder, S3 or any S3-compatible service),
 * in the spirit of the seed's StorageBackend (upload, download, delete, exists, list, stats), with
 * streams in both directions so no object is held whole by the backend.
 *
 * Keys are relative to the store's root (a folder, or an S3 bucket + prefix):
 *   atoms/ab/cd/<sha256>   one atom, as in the local store
 *   packs/<id>.pack        many atoms back to back, as a local pack; its index packs/<id>.idx is
 *                          uploaded after it, so an index names only a complete pack
 *   lfs/<oid>              the concept of a Git LFS object (see src/cli/transfer.ts)
 *   gc-epoch               written by the first push, changed by a remote gc before it deletes anything (see src/transfer/inventory.ts)
 */
import { Readable } from 'node:stream';
import { isAtomHash } from '../atom.js';
import { PaniniError } from '../errors.js';

export interface RemoteObject {
  key: string;
  size: number;
  /** Last written (epoch ms), when the store says: gc --remote keeps recent objects by it. */
  modifiedMs?: number;
}

export interface BackendStats {
  objects: number;
  bytes: number;
}

/** Bytes to upload; `open` is called again for each attempt, so a retry starts from the first byte. */
export interface UploadBody {
  size: number;
  open(): Readable;
  /** All of them, when they are in memory: a store may write them at once. */
  bytes?: Buffer;
}

export function bufferBody(bytes: Buffer): UploadBody {
  return { size: bytes.length, open: () => Readable.from([bytes], { objectMode: false }), bytes };
}

export interface Backend {
  /** The store's address as configured (for messages). */
  readonly url: string;
  /**
   * What listing one page of 1,000 keys costs, in HEAD requests (measured by bench/inventory.ts);
   * Infinity where checking one object is so cheap that listing never pays.
   */
  readonly listPageCost: number;
  /**
   * Stores the body under `key`. Atomic: a reader sees the whole object or none (temp + rename in a
   * folder; one PUT, or a multipart upload completed only after its last part, in S3). A failing
   * body stream fails the upload and leaves nothing under `key`.
   */
  upload(key: string, body: UploadBody): Promise<void>;
  /**
   * The object's bytes as a stream, or null if there is no such object; with `range`, only those
   * bytes (a stream that ends early if the object is shorter).
   */
  download(key: string, range?: ByteRange): Promise<Readable | null>;
  /**
   * Optional: a range of the object read into memory at once, where the store does that cheaper
   * than a stream (a folder: one read call instead of 64 KiB chunks and a copy); null if there is
   * no such object, fewer bytes if it is shorter.
   */
  readRange?(key: string, range: ByteRange): Promise<Buffer | null>;
  /**
   * Optional: the whole object read into memory at once, where the store does that cheaper than a
   * stream (a folder: layouts, indexes and the gc epoch in one read each); null if there is no such
   * object. At most `maxBytes + 1` bytes are read: more than `maxBytes` says the object is too large.
   */
  readWhole?(key: string, maxBytes: number): Promise<Buffer | null>;
  /**
   * Optional: the keys among `keys` that are certainly absent, found for less than an `exists`
   * each (a folder: those whose directory does not exist); the others may or may not exist.
   */
  absentAmong?(keys: readonly string[]): Promise<Set<string>>;
  /**
   * Optional: puts the object at `path` (a new local file) without passing its bytes through this
   * process: a hard link where the store is on the same file system (as `git clone` of a local path
   * links objects), else a copy made by the kernel; its time set to now. False if there is no such
   * object.
   */
  copyTo?(key: string, path: string): Promise<boolean>;
  /**
   * Optional, the other way: stores the local file at `path` under `key` the same way (a hard link
   * or a kernel copy), atomically, its time set to now.
   */
  copyFrom?(path: string, key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  /** Removes the object; removing an absent one is not an error. */
  delete(key: string): Promise<void>;
  /** Objects whose key starts with `prefix`, in ascending key order (partial-upload leftovers excluded). */
  list(prefix: string): AsyncGenerator<RemoteObject>;
  stats(prefix?: string): Promise<BackendStats>;
  /** Releases connections; the backend is not used afterwards. */
  close(): void;
}

/** `length` bytes from `start` (length ≥ 1). */
export interface ByteRange {
  start: number;
  length: number;
}

export const ATOMS_PREFIX = 'atoms/';
export const PACKS_PREFIX = 'packs/';
export const LFS_PREFIX = 'lfs/';
export const GC_EPOCH_KEY = 'gc-epoch';
export const LAYOUTS_PREFIX = 'layouts/';

export function atomKey(hash: string): string {
  if (!isAtomHash(hash)) throw new PaniniError(`invalid atom name ${JSON.stringify(hash)}`, 'atom names are 64 lowercase hex digits');
  return `${ATOMS_PREFIX}${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`;
}

/** The atom a key names, or null for any other key (temp files, foreign objects). */
export function atomOfKey(key: string): string | null {
  const m = /^atoms\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[3]!.startsWith(m[1]! + m[2]!) ? m[3]! : null;
}

/** Where file `oid`'s layout in the remote store's packs lies (docs/remote-stores.md, "Layouts"). */
export function layoutKey(oid: string): string {
  if (!isAtomHash(oid)) throw new PaniniError(`invalid file oid ${JSON.stringify(oid)}`, 'oids are 64 lowercase hex digits');
  return `${LAYOUTS_PREFIX}${oid.slice(0, 2)}/${oid}`;
}

/** The file a layout key names, or null for any other key. */
export function layoutOfKey(key: string): string | null {
  const m = /^layouts\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[2]!.startsWith(m[1]!) ? m[2]! : null;
}

export type PackPart = 'pack' | 'idx';

export function packKey(id: string, part: PackPart): string {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new PaniniError(`invalid pack name ${JSON.stringify(id)}`, 'pack names are 64 lowercase hex digits');
  return `${PACKS_PREFIX}${id}.${part}`;
}

/** The pack a key names, and which part of it, or null for any other key. */
export function packOfKey(key: string): { id: string; part: PackPart } | null {
  const m = /^packs\/([0-9a-f]{64})\.(pack|idx)$/.exec(key);
  return m ? { id: m[1]!, part: m[2] as PackPart } : null;
}

/**
 * Keys we write: lowercase, no leading slash, and each name starting with a letter or digit (so
 * no name is `.` or `..`, and a key can never leave the store's root).
 */
export function checkKey(key: string): string {
  if (!/^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/.test(key)) {
    throw new PaniniError(`invalid remote key ${JSON.stringify(key)}`, 'this is a bug in git-panini; please report it');
  }
  return key;
}

/**
 * A remote operation failed. `retryable` marks what may succeed if tried again (5xx, timeouts,
 * connection resets); anything else (no credentials, no such bucket, access denied) fails at once.
 */
export class RemoteError extends PaniniError {
  constructor(message: string, hint: string | undefined, readonly retryable: boolean) {
    super(message, hint);
    this.name = 'RemoteError';
  }
}

/** Network failures worth another try; everything else is taken as final. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ECONNREFUSED', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

export function isTransientNetworkError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && TRANSIENT_CODES.has(code);
}

/** Object count and bytes under a prefix, from a listing (shared by the backends). */
export async function statsFromListing(backend: Pick<Backend, 'list'>, prefix: string): Promise<BackendStats> {
  let objects = 0;
  let bytes = 0;
  for await (const o of backend.list(prefix)) {
    objects++;
    bytes += o.size;
  }
  return { objects, bytes };
}
