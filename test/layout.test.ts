/**
 * Layouts (store/layout.ts): a file of many atoms rebuilt through real Git records where its bytes
 * lie in the packs; its next rebuild reads those runs without decoding a manifest or looking up an
 * atom, and comes out byte for byte. A damaged, foreign or stale layout is ignored and recorded
 * again; gc drops the layouts of files nothing reaches and of packs that are gone. Small packs a
 * file needs much of are read whole, once per process.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConcept, type Concept } from '../src/concept/concept.js';
import { reconstruct } from '../src/reconstruct/reconstruct.js';
import { decodeLayout, encodeLayout } from '../src/store/layout.js';
import { LocalStore, type AtomLocation } from '../src/store/local.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { seededBytes } from './helpers/stress.js';
import { flipByte } from './helpers/store-files.js';

/** Counts what a rebuild looks up: atoms by name (packedAt) and verified reads (manifests included). */
class CountingStore extends LocalStore {
  lookups = 0;
  reads = 0;
  override packedAt(hash: string): AtomLocation | null {
    this.lookups++;
    return super.packedAt(hash);
  }
  override get(hash: string): Buffer {
    this.reads++;
    return super.get(hash);
  }
}

/** Rebuilds the file as the filter process does (output discarded on error, read through pack windows). */
function rebuild(concept: Concept, store: LocalStore): Buffer {
  const out: Buffer[] = [];
  reconstruct(concept, store, (bytes) => out.push(Buffer.from(bytes)), { discardedOnError: true, release: () => undefined });
  return Buffer.concat(out);
}

/** A repository whose big.bin (two versions sharing their first half: two packs, as files from 8 MiB are packed) is committed. */
function setup(t: { after: (fn: () => void) => void }): { sb: GitSandbox; repo: string; root: string; file: string; bytes: Buffer; concept: Concept; layoutFile: string } {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('repo');
  sb.panini(repo, ['track', '*.bin']);
  const file = path.join(repo, 'big.bin');
  const first = seededBytes('layout-v1', 12 * 1024 * 1024);
  writeFileSync(file, first);
  sb.git(repo, ['add', '.']);
  sb.git(repo, ['commit', '-q', '-m', 'v1']);
  const bytes = Buffer.concat([first.subarray(0, 6 * 1024 * 1024), seededBytes('layout-v2', 6 * 1024 * 1024)]);
  writeFileSync(file, bytes);
  sb.git(repo, ['commit', '-q', '-am', 'v2']);
  const concept = parseConcept(Buffer.from(sb.git(repo, ['cat-file', 'blob', 'HEAD:big.bin'])));
  const root = path.join(repo, '.git', 'panini');
  return { sb, repo, root, file, bytes, concept, layoutFile: path.join(root, 'layouts', concept.oid.slice(0, 2), concept.oid) };
}

test('a layout is written as the format says, offsets past 4 GiB included, and reads back the same', () => {
  const oid = 'ab'.repeat(32);
  const [p1, p2] = ['11'.repeat(32), '22'.repeat(32)];
  const runs = [
    { pack: p1, offset: 16, size: 100 },
    { pack: p2, offset: 2 ** 32 + 16, size: 2 ** 32 - 1 },
    { pack: p1, offset: 3 * 2 ** 32 + 0x01020304, size: 7 },
  ];
  const size = runs.reduce((n, r) => n + r.size, 0);
  const raw = encodeLayout(oid, size, runs);
  const at = 16 + 32 + 8 + 8 + 2 * 32; // magic, oid, size, counts, pack ids
  assert.equal(raw.subarray(at + 16, at + 32).toString('hex'), '00000001' + '0000000100000010' + 'ffffffff', 'the second run: pack 1, offset and length big-endian');
  assert.equal(raw.subarray(at + 32, at + 48).toString('hex'), '00000000' + '0000000301020304' + '00000007');
  assert.deepEqual(decodeLayout(raw, oid, size), runs);
  assert.equal(decodeLayout(raw, oid, size + 1), null, 'runs that do not cover the size');
});

test('a file of many atoms checked out again is read through its layout: no manifest or atom looked up, the same bytes', { timeout: 60_000 }, (t) => {
  const { sb, repo, root, file, bytes, concept, layoutFile } = setup(t);
  assert.equal(existsSync(layoutFile), false, 'cleaning records no layout');
  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  assert.equal(sha256(readFileSync(file)), sha256(bytes), 'rebuilt from atoms, byte for byte');
  assert.ok(existsSync(layoutFile), 'the checkout recorded its layout');
  const recorded = readFileSync(layoutFile);

  const store = new CountingStore(root);
  const located = store.layoutOf(concept.oid, concept.size);
  assert.ok(located, 'the layout is whole and its packs are there');
  assert.equal(new Set(located.map((r) => r.pack!.id)).size, 2, 'its runs lie in both versions\' packs');
  assert.ok(located.length < 8, `a few runs for ${concept.size} bytes (${located.length})`);
  assert.equal(sha256(rebuild(concept, store)), concept.oid, 'rebuilt through the layout, byte for byte');
  assert.deepEqual([store.lookups, store.reads], [0, 0], 'without a lookup or a manifest read');

  store.forgetLayout(concept.oid);
  assert.equal(sha256(rebuild(concept, store)), concept.oid);
  assert.ok(store.lookups >= 64 && store.reads > 0, `without it, every atom is looked up (${store.lookups}) and the manifests read`);
  assert.deepEqual(readFileSync(layoutFile), recorded, 'and the same layout is recorded again');

  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  assert.equal(sha256(readFileSync(file)), sha256(bytes), 'Git checks it out through the layout, byte for byte');
});

test('a damaged, foreign or stale layout is ignored: the file is rebuilt from its atoms and its layout recorded again', { timeout: 60_000 }, (t) => {
  const { sb, repo, root, file, bytes, concept, layoutFile } = setup(t);
  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  const recorded = readFileSync(layoutFile);
  const runs = decodeLayout(recorded, concept.oid, concept.size)!;
  assert.ok(runs, 'the recorded layout decodes');
  const store = new LocalStore(root);

  const cases: [string, () => void][] = [
    ['a flipped byte', () => flipByte(layoutFile, recorded.length >> 1)],
    ['a cut file', () => writeFileSync(layoutFile, recorded.subarray(0, recorded.length - 1))],
    ['another file\'s layout', () => writeFileSync(layoutFile, encodeLayout('ab'.repeat(32), concept.size, runs))],
    ['runs that miss a byte', () => writeFileSync(layoutFile, encodeLayout(concept.oid, concept.size, [...runs.slice(0, -1), { ...runs.at(-1)!, size: runs.at(-1)!.size - 1 }]))],
    ['a pack the store does not hold', () => writeFileSync(layoutFile, encodeLayout(concept.oid, concept.size, runs.map((r, i) => (i === 0 ? { ...r, pack: '0'.repeat(64) } : r))))],
    ['a run past its pack\'s end', () => writeFileSync(layoutFile, encodeLayout(concept.oid, concept.size, runs.map((r, i) => (i === 0 ? { ...r, offset: r.offset + 1e12 } : r))))],
  ];
  for (const [label, damage] of cases) {
    rmSync(layoutFile, { force: true });
    writeFileSync(layoutFile, recorded);
    damage();
    assert.equal(store.layoutOf(concept.oid, concept.size), null, `${label}: not used`);
    rmSync(file);
    sb.git(repo, ['checkout', '--', 'big.bin']);
    assert.equal(sha256(readFileSync(file)), sha256(bytes), `${label}: the file checks out, byte for byte`);
    assert.deepEqual(readFileSync(layoutFile), recorded, `${label}: its layout is recorded again`);
  }
});

test('gc drops the layouts of files nothing reaches and of packs no longer in the store, and keeps the others', { timeout: 60_000 }, (t) => {
  const { sb, repo, root, file, concept, layoutFile } = setup(t);
  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  const kept = readFileSync(layoutFile);

  // A file committed on a branch then forgotten (branch and reflogs gone), checked out meanwhile.
  sb.git(repo, ['checkout', '-q', '-b', 'scratch']);
  const other = path.join(repo, 'other.bin');
  writeFileSync(other, seededBytes('layout-other', 10 * 1024 * 1024));
  sb.git(repo, ['add', 'other.bin']);
  sb.git(repo, ['commit', '-q', '-m', 'other']);
  const otherOid = parseConcept(Buffer.from(sb.git(repo, ['cat-file', 'blob', 'HEAD:other.bin']))).oid;
  rmSync(other);
  sb.git(repo, ['checkout', '--', 'other.bin']);
  const otherLayout = path.join(root, 'layouts', otherOid.slice(0, 2), otherOid);
  assert.ok(existsSync(otherLayout), 'its layout was recorded');
  sb.git(repo, ['checkout', '-q', 'main']);
  sb.git(repo, ['branch', '-q', '-D', 'scratch']);
  sb.git(repo, ['reflog', 'expire', '--expire=now', '--all']);

  // A reachable file whose layout names a pack that is gone (as after a gc by an older version).
  const staleOid = sb.git(repo, ['cat-file', 'blob', 'HEAD~1:big.bin']).match(/oid: sha256:([0-9a-f]{64})/)![1]!;
  const staleLayout = path.join(root, 'layouts', staleOid.slice(0, 2), staleOid);
  mkdirSync(path.dirname(staleLayout), { recursive: true });
  writeFileSync(staleLayout, encodeLayout(staleOid, 12 * 1024 * 1024, [{ pack: 'f'.repeat(64), offset: 16, size: 12 * 1024 * 1024 }]));

  sb.panini(repo, ['gc', '--prune=now']);
  assert.equal(existsSync(otherLayout), false, 'the layout of a file nothing reaches is removed');
  assert.equal(existsSync(staleLayout), false, 'a layout naming a pack that is gone is removed');
  assert.deepEqual(readFileSync(layoutFile), kept, 'the layout of a reachable file in packs that stay is kept');
  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  assert.equal(sha256(readFileSync(file)), concept.oid, 'and still serves its file');
});

test('a small pack a file needs much of is read whole once per process, and files rebuilt from it come out exact', { timeout: 60_000 }, (t) => {
  const { root, concept } = setup(t);
  const store = new LocalStore(root);
  const packs = store.packIndexes();
  assert.equal(packs.length, 2);
  for (const pack of packs) {
    const bytes = readFileSync(pack.packPath);
    const half = Math.ceil(bytes.length / 2);
    assert.equal(store.wholePack(pack, half - 1), null, 'less than half of it needed: read through windows');
    const whole = store.wholePack(pack, half);
    assert.ok(whole?.equals(bytes), 'half of it needed: read whole');
    assert.equal(store.wholePack(pack, 1), whole, 'then kept: the same bytes, not read again, whatever is needed');
  }
  assert.equal(sha256(rebuild(concept, store)), concept.oid, 'rebuilt from atoms through the whole packs');
  assert.equal(sha256(rebuild(concept, store)), concept.oid, 'and through its layout');
});
