/**
 * Related files share atoms: the same pixels under different metadata, an archive with one entry
 * changed, a large file with bytes inserted in the middle.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContentRef } from '../src/atom.js';
import { BufferSource } from '../src/source.js';
import { ingest, type IngestResult } from '../src/store/ingest.js';
import { LocalStore } from '../src/store/local.js';
import { prng, readFixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/cli.js';

function freshStore(): LocalStore {
  const { dir, dispose } = tempDir('panini-dedup-');
  after(dispose);
  return new LocalStore(dir);
}

function ingestBytes(store: LocalStore, bytes: Buffer): IngestResult {
  const result = ingest(new BufferSource(bytes), store);
  assert.equal(result.size, bytes.length);
  return result;
}

const hashesOf = (refs: readonly ContentRef[], type?: ContentRef['type']): Set<string> =>
  new Set(refs.filter((r) => type === undefined || r.type === type).map((r) => r.hash));

/** Bytes of `refs` held in atoms that `other` also has. */
function sharedBytes(refs: readonly ContentRef[], other: readonly ContentRef[]): number {
  const theirs = hashesOf(other);
  return refs.filter((r) => theirs.has(r.hash)).reduce((n, r) => n + r.size, 0);
}

/** Seeded pseudo-random bytes, so a failure can be replayed. */
function seededBytes(size: number, seed: number): Buffer {
  const rand = prng(seed);
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = rand(256);
  return buf;
}

describe('same pixels, different metadata', () => {
  test('photo.png and photo-tagged.png share their IDAT atoms', () => {
    const store = freshStore();
    const a = ingestBytes(store, readFixture('photo.png'));
    const b = ingestBytes(store, readFixture('photo-tagged.png'));
    assert.equal(a.format, 'png');
    const idatA = hashesOf(a.leaves, 'ImageData');
    assert.ok(idatA.size > 0, 'photo.png has no ImageData atoms');
    assert.deepEqual(hashesOf(b.leaves, 'ImageData'), idatA);
    assert.notDeepEqual(hashesOf(b.leaves, 'Metadata'), hashesOf(a.leaves, 'Metadata'), 'the added text chunk should be a new atom');
    assert.ok(b.written <= 2, `photo-tagged.png wrote ${b.written} new atoms; only its text chunk (and shifted neighbours) should be new`);
  });

  test('photo.jpg and photo-edited-exif.jpg share their scan atoms', () => {
    const store = freshStore();
    const a = ingestBytes(store, readFixture('photo.jpg'));
    const b = ingestBytes(store, readFixture('photo-edited-exif.jpg'));
    assert.equal(a.format, 'jpeg');
    const scansA = hashesOf(a.leaves, 'ImageData');
    assert.ok(scansA.size > 0, 'photo.jpg has no ImageData (scan) atoms');
    assert.deepEqual(hashesOf(b.leaves, 'ImageData'), scansA);
    assert.notDeepEqual(hashesOf(b.leaves, 'Metadata'), hashesOf(a.leaves, 'Metadata'), 'the EXIF edit should change a Metadata atom');
    const scanBytes = a.leaves.filter((r) => r.type === 'ImageData').reduce((n, r) => n + r.size, 0);
    assert.ok(scanBytes > a.size / 2, 'the scan should be most of the file');
  });
});

describe('archives', () => {
  test('bundle-v1.zip and bundle-v2.zip share every compressed entry but the changed one', () => {
    const store = freshStore();
    const a = ingestBytes(store, readFixture('bundle-v1.zip'));
    const b = ingestBytes(store, readFixture('bundle-v2.zip'));
    assert.equal(a.format, 'zip');
    const entriesA = a.leaves.filter((r) => r.type === 'Compressed');
    const entriesB = b.leaves.filter((r) => r.type === 'Compressed');
    assert.ok(entriesA.length >= 3, `expected several entries, found ${entriesA.length}`);
    assert.equal(entriesB.length, entriesA.length);
    const inB = hashesOf(entriesB);
    const inA = hashesOf(entriesA);
    assert.equal(entriesA.filter((r) => !inB.has(r.hash)).length, 1, 'exactly one entry of v1 should be missing from v2');
    assert.equal(entriesB.filter((r) => !inA.has(r.hash)).length, 1, 'exactly one entry of v2 should be new');
    // The changed entry is the same one in both (same position in the archive).
    const changedAt = entriesA.findIndex((r) => !inB.has(r.hash));
    assert.equal(entriesB.findIndex((r) => !inA.has(r.hash)), changedAt);
  });
});

describe('content-defined chunking', () => {
  test('20 MB of random bytes with 100 bytes inserted in the middle shares at least 95% of its bytes', () => {
    const store = freshStore();
    const original = seededBytes(20_000_000, 20);
    const mid = original.length >> 1;
    const edited = Buffer.concat([original.subarray(0, mid), seededBytes(100, 100), original.subarray(mid)]);
    const a = ingestBytes(store, original);
    const b = ingestBytes(store, edited);
    assert.equal(a.format, 'binary');
    assert.ok(a.leaves.length > 100, `only ${a.leaves.length} chunks`);
    const shared = sharedBytes(b.leaves, a.leaves);
    const ratio = shared / edited.length;
    assert.ok(ratio >= 0.95, `only ${(ratio * 100).toFixed(2)}% of the edited file's bytes are in shared atoms`);
    // Content-defined: only the chunks around the insertion change (a fixed-size chunker would lose half).
    const fresh = b.leaves.filter((r) => !hashesOf(a.leaves).has(r.hash));
    assert.ok(fresh.length <= 3, `${fresh.length} new chunks for one 100-byte insertion`);
    assert.equal(b.written, fresh.length);
  });
});
