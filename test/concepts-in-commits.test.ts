/**
 * The concepts a range of commits brings (what a push sends and `fetch --all` gets): `git rev-list`
 * leaves out blobs too large to be concepts, and one `git cat-file --batch` reads the rest.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readConceptBlobs } from '../src/git/concepts.js';
import { conceptsInCommits } from '../src/transfer/commits.js';
import { GitSandbox, sha256 } from './helpers/git.js';

test('the concepts of a range of commits, with their paths; large blobs, trees, plain files, a broken concept and a missing object passed over', (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('repo');
  sb.panini(repo, ['track', '*.bin']);
  const put = (file: string, bytes: Buffer | string): void => {
    mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
    writeFileSync(path.join(repo, file), bytes);
  };
  const commit = (message: string): string => {
    sb.git(repo, ['add', '.']);
    sb.git(repo, ['commit', '-q', '-m', message]);
    return sb.git(repo, ['rev-parse', 'HEAD']).trim();
  };
  const a = randomBytes(300_000);
  const b = randomBytes(200_000);
  put('media/deep/a.bin', a);
  put('big.dat', randomBytes(2 * 1024 * 1024)); // not tracked, larger than any concept
  put('notes.txt', 'plain text\n');
  const first = commit('one');
  put('media/b.bin', b);
  put('broken.md', '---\npanini: 1\noid: nonsense\n---\n'); // looks like a concept, is not one
  commit('two');

  const warnings: string[] = [];
  const all = conceptsInCommits(repo, ['HEAD'], [], (line) => warnings.push(line));
  assert.deepEqual(all.map((c) => [c.path, c.concept.oid]).sort(), [['media/b.bin', sha256(b)], ['media/deep/a.bin', sha256(a)]]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /broken\.md .*looks like a concept but is not valid/);
  assert.deepEqual(conceptsInCommits(repo, ['HEAD'], [first], () => undefined).map((c) => c.path), ['media/b.bin'], 'only what the second commit brings');

  // Read directly, as a caller that listed no large blob: whatever is not a small blob is skipped.
  const object = (spec: string): string => sb.git(repo, ['rev-parse', spec]).trim();
  const { concepts } = readConceptBlobs(repo, ['f'.repeat(40), object('HEAD:media'), object('HEAD:big.dat'), object('HEAD:notes.txt'), object('HEAD:media/b.bin')], { small: true });
  assert.deepEqual([...concepts.keys()], [object('HEAD:media/b.bin')]);
});
