/**
 * The shared-folder remote store (`panini.url = file:///path`): the common remote checks, plus
 * what is particular to a folder (its layout on disk, temp files never visible).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { atomKey } from '../src/store/backend.js';
import { FolderBackend } from '../src/store/folder.js';
import { parseRemoteUrl } from '../src/store/remote.js';
import { pushConcepts } from '../src/transfer/push.js';
import { tempDir } from './helpers/cli.js';
import { addFixtures, storeAtoms, storeContext, subdir } from './helpers/remote.js';
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

test('folder: atoms land in the local store\'s own layout, and stray temp files stay invisible', async () => {
  const remoteDir = subdir(root, 'layout');
  const ctx = storeContext(subdir(root, 'layout-local'), { 'panini.url': pathToFileURL(remoteDir).href });
  const files = addFixtures(ctx, ['photo.png', 'course-a.mp4']);
  await pushConcepts(ctx, files.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
  for (const h of storeAtoms(ctx)) assert.ok(existsSync(path.join(remoteDir, atomKey(h))), `${h} at atoms/ab/cd/<hash>`);
  const shard = path.dirname(path.join(remoteDir, atomKey(storeAtoms(ctx)[0]!)));
  writeFileSync(path.join(shard, '.tmp-12345-abcdef'), 'half an upload');
  const backend = new FolderBackend(remoteDir);
  let listed = 0;
  for await (const o of backend.list('atoms/')) {
    assert.ok(!o.key.includes('.tmp-'));
    listed++;
  }
  assert.equal(listed, storeAtoms(ctx).length);
  assert.ok(readdirSync(shard).some((n) => n.startsWith('.tmp-')));
});

test('folder: panini.url forms', () => {
  assert.deepEqual(parseRemoteUrl('file:///srv/atoms'), { kind: 'folder', path: '/srv/atoms' });
  assert.deepEqual(parseRemoteUrl('s3://bucket/team/project/'), { kind: 's3', bucket: 'bucket', prefix: 'team/project' });
  assert.deepEqual(parseRemoteUrl('s3://bucket'), { kind: 's3', bucket: 'bucket', prefix: '' });
  assert.throws(() => parseRemoteUrl('https://example.invalid/x'), /not a store git-panini can use/);
  assert.throws(() => parseRemoteUrl('s3://Bad_Bucket/x'), /not a valid bucket name/);
  assert.throws(() => parseRemoteUrl('s3://bucket/a/../b'), /not usable/);
});
