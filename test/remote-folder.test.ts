/**
 * The shared-folder remote store (`panini.url = file:///path`): the common remote checks, plus
 * what is particular to a folder (its layout on disk, temp files never visible).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { atomKey, bufferBody, checkKey } from '../src/store/backend.js';
import { FolderBackend } from '../src/store/folder.js';
import { parseRemoteUrl } from '../src/store/remote.js';
import { pushConcepts } from '../src/transfer/push.js';
import { tempDir } from './helpers/cli.js';
import { addFixtures, assertRemoteSound, remoteAtoms, storeAtoms, storeContext, subdir } from './helpers/remote.js';
import { defineRemoteSuite } from './helpers/remote-suite.js';

const { dir: root, dispose } = tempDir('panini-folder-remotes-');
after(dispose);
let count = 0;

defineRemoteSuite('folder', {
  async freshSettings() {
    const dir = path.join(root, `remote-${++count}`);
    mkdirSync(dir);
    return { 'panini.url': pathToFileURL(dir).href };
  },
});

test('folder: a few atoms land in the local store\'s own layout, many in a pack, and stray temp files stay invisible', async () => {
  const remoteDir = subdir(root, 'layout');
  const ctx = storeContext(subdir(root, 'layout-local'), { 'panini.url': pathToFileURL(remoteDir).href });
  const few = addFixtures(ctx, ['photo.png']);
  assert.ok(storeAtoms(ctx).length < 16, 'photo.png is a handful of atoms');
  await pushConcepts(ctx, few.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
  for (const h of storeAtoms(ctx)) assert.ok(existsSync(path.join(remoteDir, atomKey(h))), `${h} at atoms/ab/cd/<hash>`);
  const loose = storeAtoms(ctx);
  const many = addFixtures(ctx, ['course-a.mp4']);
  await pushConcepts(ctx, many.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
  const packs = readdirSync(path.join(remoteDir, 'packs')).sort();
  assert.equal(packs.length, 2, `one pack and its index: ${packs.join(', ')}`);
  assert.match(packs[0]!, /^[0-9a-f]{64}\.idx$/);
  assert.equal(packs[1], packs[0]!.replace('.idx', '.pack'));
  const backend = new FolderBackend(remoteDir);
  assert.deepEqual([...(await remoteAtoms(backend)).keys()].sort(), storeAtoms(ctx));
  assert.equal(await assertRemoteSound(backend), storeAtoms(ctx).length);

  const shard = path.dirname(path.join(remoteDir, atomKey(loose[0]!)));
  writeFileSync(path.join(shard, '.tmp-12345-abcdef'), 'half an upload');
  let listed = 0;
  for await (const o of backend.list('atoms/')) {
    assert.ok(!o.key.includes('.tmp-'));
    listed++;
  }
  assert.equal(listed, loose.length);
  assert.ok(readdirSync(shard).some((n) => n.startsWith('.tmp-')));
});

test('folder: the atoms a push would otherwise stat one by one are ruled out by listing their directories', async () => {
  const backend = new FolderBackend(subdir(root, 'absent'));
  const key = (hex: string): string => atomKey(hex.repeat(64 / hex.length));
  assert.deepEqual(await backend.absentAmong([key('ab'), key('cd')]), new Set([key('ab'), key('cd')]), 'no atoms/ at all');
  await backend.upload(key('ab'), bufferBody(Buffer.from('x')));
  const present = key('ab');
  const sameShard = atomKey('abab' + 'f'.repeat(60)); // atoms/ab/ab/ exists: only a stat can tell
  const otherSecond = atomKey('abcd' + 'f'.repeat(60)); // atoms/ab/ exists, atoms/ab/cd/ does not
  const otherFirst = key('cd'); // atoms/cd/ does not exist
  assert.deepEqual(await backend.absentAmong([present, sameShard, otherSecond, otherFirst]), new Set([otherSecond, otherFirst]));
});

test('folder: panini.url forms', () => {
  assert.deepEqual(parseRemoteUrl('file:///srv/atoms'), { kind: 'folder', path: '/srv/atoms' });
  assert.deepEqual(parseRemoteUrl('s3://bucket/team/project/'), { kind: 's3', bucket: 'bucket', prefix: 'team/project' });
  assert.deepEqual(parseRemoteUrl('s3://bucket'), { kind: 's3', bucket: 'bucket', prefix: '' });
  assert.throws(() => parseRemoteUrl('https://example.invalid/x'), /not a store git-panini can use/);
  assert.throws(() => parseRemoteUrl('s3://Bad_Bucket/x'), /not a valid bucket name/);
  assert.throws(() => parseRemoteUrl('s3://bucket/a/../b'), /not usable/);
});

test('folder: a key that could leave the store\'s root is refused before the file system is touched', async () => {
  const dir = path.join(root, 'keys');
  mkdirSync(dir);
  const backend = new FolderBackend(dir);
  for (const key of ['..', '../x', 'a/../../x', 'atoms/./x', 'atoms/../../x', '/etc/passwd', '.hidden', 'a//b', 'a/', 'A', 'a\\..\\b', '']) {
    assert.throws(() => checkKey(key), /invalid remote key/, key);
    await assert.rejects(backend.upload(key, bufferBody(Buffer.from('x'))), /invalid remote key/, key);
  }
  for (const key of ['gc-epoch', atomKey('a'.repeat(64)), 'packs/x.pack', 'a..b/c.d']) assert.equal(checkKey(key), key);
  assert.deepEqual(readdirSync(dir), [], 'nothing written');
});
