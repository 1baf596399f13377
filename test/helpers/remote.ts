/**
 * Helpers for the remote-store tests: a Context on a bare store directory with given settings (no
 * repository needed), concepts built from fixtures, and checks that a store rebuilds files exactly.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../../src/cli/context.js';
import { buildConcept } from '../../src/concept/build.js';
import { parseConcept, type Concept } from '../../src/concept/concept.js';
import { Config, type Setting } from '../../src/git/config.js';
import { reconstruct } from '../../src/reconstruct/reconstruct.js';
import { BufferSource } from '../../src/source.js';
import { DEFAULT_MAX_ATOM_SIZE } from '../../src/store/ingest.js';
import { atomOfKey, packKey, packOfKey, type Backend } from '../../src/store/backend.js';
import { LocalStore } from '../../src/store/local.js';
import { PackIndex } from '../../src/store/pack.js';
import { readFixture } from './fixtures.js';
import { sha256 } from './git.js';

export function storeContext(root: string, settings: Record<string, string>): Context {
  mkdirSync(root, { recursive: true });
  const map = new Map<string, Setting>(Object.entries(settings).map(([k, value]) => [k.toLowerCase(), { value, origin: 'test' }]));
  return { repo: null, config: new Config(map), store: new LocalStore(root), maxAtomSize: DEFAULT_MAX_ATOM_SIZE };
}

export interface BuiltFile {
  name: string;
  bytes: Buffer;
  concept: Concept;
}

/** Cleans bytes into the context's store, as `git add` would; returns the parsed concept. */
export function addBytes(ctx: Context, name: string, bytes: Buffer): BuiltFile {
  return { name, bytes, concept: parseConcept(buildConcept(new BufferSource(bytes), ctx.store, { maxAtomSize: ctx.maxAtomSize }).text) };
}

export function addFixtures(ctx: Context, names: readonly string[]): BuiltFile[] {
  return names.map((n) => addBytes(ctx, n, readFixture(n)));
}

/** Rebuilds the file from the context's store and checks it is byte-exact. */
export function assertRebuilds(ctx: Context, file: BuiltFile): void {
  const chunks: Buffer[] = [];
  reconstruct(file.concept, ctx.store, (b) => chunks.push(Buffer.from(b)));
  const out = Buffer.concat(chunks);
  assert.equal(out.length, file.bytes.length, `${file.name}: size`);
  assert.equal(sha256(out), sha256(file.bytes), `${file.name}: bytes`);
}

/** Every atom file in a local store. */
export function storeAtoms(ctx: Context): string[] {
  return [...ctx.store.list()].map((a) => a.hash).sort();
}

export function subdir(root: string, name: string): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Where an atom's bytes are in a remote store: a whole loose object, or a range of a pack. */
export interface RemotePlace {
  key: string;
  offset: number;
  size: number;
}

/** Every atom a remote store holds, loose (atoms/) or in a complete pack (packs/), and where. */
export async function remoteAtoms(backend: Backend): Promise<Map<string, RemotePlace>> {
  const found = new Map<string, RemotePlace>();
  for await (const o of backend.list('atoms/')) {
    const hash = atomOfKey(o.key);
    if (hash) found.set(hash, { key: o.key, offset: 0, size: o.size });
  }
  const packSizes = new Map<string, number>();
  const indexes: string[] = [];
  for await (const o of backend.list('packs/')) {
    const named = packOfKey(o.key);
    if (named?.part === 'pack') packSizes.set(named.id, o.size);
    else if (named) indexes.push(named.id);
  }
  for (const id of indexes) {
    if (!packSizes.has(id)) continue;
    const index = PackIndex.parse(await readRemote(backend, packKey(id, 'idx')), id, packSizes.get(id)!, packKey(id, 'pack'), packKey(id, 'idx'));
    assert.ok(index, `${packKey(id, 'idx')} is a valid index`);
    for (const e of index.entries()) found.set(e.hash, { key: packKey(id, 'pack'), offset: e.offset, size: e.size });
  }
  return found;
}

/** An object's bytes, or a range of them. */
export async function readRemote(backend: Backend, key: string, range?: { start: number; length: number }): Promise<Buffer> {
  const stream = await backend.download(key, range);
  assert.ok(stream, `${key} is in the remote store`);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every atom in the remote store hashes to its name; returns how many there are. */
export async function assertRemoteSound(backend: Backend): Promise<number> {
  const atoms = await remoteAtoms(backend);
  for (const [hash, at] of atoms) {
    const bytes = at.size === 0 ? Buffer.alloc(0) : await readRemote(backend, at.key, at.key.startsWith('packs/') ? { start: at.offset, length: at.size } : undefined);
    assert.equal(sha256(bytes), hash, `${at.key}@${at.offset} holds the bytes of ${hash}`);
  }
  return atoms.size;
}
