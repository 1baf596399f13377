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
import { LocalStore } from '../../src/store/local.js';
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
