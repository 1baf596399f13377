/**
 * A large packed file checked out by real Git, through a real pipe: the filter process writes it
 * while Git reads, hashing the bytes it has written whenever the pipe is full (PktWriter.whileBlocked),
 * so the file's hash runs behind its output. The bytes must come out exact; a damaged atom must
 * still fail the checkout, name the atom, and leave no file behind, also when the file is read
 * through its layout (store/layout.ts), which is then dropped.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConcept } from '../src/concept/concept.js';
import { expandRefs } from '../src/concept/manifest.js';
import { LocalStore } from '../src/store/local.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { seededBytes } from './helpers/stress.js';
import { flipByte } from './helpers/store-files.js';

test('a 24 MiB packed file through real Git pipes: exact bytes; a damaged atom fails the checkout and names it', { timeout: 120_000 }, (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('repo');
  sb.panini(repo, ['track', '*.bin']);
  const bytes = seededBytes('checkout-large', 24 * 1024 * 1024);
  const file = path.join(repo, 'big.bin');
  writeFileSync(file, bytes);
  sb.git(repo, ['add', 'big.bin']);
  sb.git(repo, ['commit', '-q', '-m', 'big']);

  rmSync(file);
  sb.git(repo, ['checkout', '--', 'big.bin']);
  assert.equal(sha256(readFileSync(file)), sha256(bytes), 'checked out byte for byte');

  const concept = parseConcept(Buffer.from(sb.git(repo, ['cat-file', 'blob', 'HEAD:big.bin'])));
  const store = new LocalStore(path.join(repo, '.git', 'panini'));
  assert.ok(store.layoutOf(concept.oid, concept.size), 'the checkout recorded its layout: the next one reads through it');
  const leaves = [...expandRefs(concept.refs, store)];
  assert.ok(leaves.length > 100, 'the file is many atoms');
  const victim = leaves[Math.floor(leaves.length * 0.6)]!;
  const at = store.packedAt(victim.hash);
  assert.ok(at, 'its atoms are packed');
  flipByte(at.path, at.offset + (victim.size >> 1));
  rmSync(file);
  const damaged = sb.tryGit(repo, ['checkout', '--', 'big.bin']);
  assert.notEqual(damaged.status, 0, 'the checkout fails');
  assert.match(damaged.stderr, new RegExp(`${victim.hash}.*corrupt`), 'naming the damaged atom');
  assert.equal(existsSync(file), false, 'Git kept none of the bytes it received');
  assert.equal(store.layoutOf(concept.oid, concept.size), null, 'the layout was dropped');

  flipByte(at.path, at.offset + (victim.size >> 1));
  sb.git(repo, ['checkout', '--', 'big.bin']);
  assert.equal(sha256(readFileSync(file)), sha256(bytes), 'repaired, it checks out again');
  assert.ok(store.layoutOf(concept.oid, concept.size), 'and its layout is recorded again');
});
