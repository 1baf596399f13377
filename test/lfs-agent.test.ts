/**
 * `git panini transfer` as a Git LFS custom transfer agent: first spoken to directly (the protocol,
 * per-object errors that do not end the process), then driven by the real git-lfs client: push to a
 * bare repository over a local path, fresh clone, `git lfs pull`, older versions checked out, all
 * byte-exact; and two versions of a large file cost little more than one in the store.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { FolderBackend } from '../src/store/folder.js';
import { cliPath, hermeticEnv } from './helpers/cli.js';
import { fixturesDir } from './helpers/fixtures.js';
import { GitSandbox, sha256, sha256File } from './helpers/git.js';

const lfsVersion = spawnSync('git', ['lfs', 'version']).stdout?.toString() ?? '';
const BIG = 8 * 1024 * 1024;

/** The documented setup (panini.url comes from the committed .paniniconfig). */
const AGENT_CONFIG: [string, string][] = [
  ['lfs.standalonetransferagent', 'panini'],
  ['lfs.customtransfer.panini.path', 'git-panini'],
  ['lfs.customtransfer.panini.args', 'transfer'],
];

test('the agent speaks the protocol; an error with one object does not end it', async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('direct', { install: false });
  const storeDir = sb.path('store');
  mkdirSync(storeDir);
  sb.git(repo, ['config', 'panini.url', pathToFileURL(storeDir).href]);
  const content = randomBytes(300_000);
  const file = sb.path('object.bin');
  writeFileSync(file, content);
  const oid = sha256(content);
  const unknown = sha256(Buffer.from('nobody uploaded this'));
  const send = (lines: object[]): Record<string, unknown>[] => {
    const r = spawnSync(process.execPath, [cliPath, 'transfer'], {
      cwd: repo, input: lines.map((l) => JSON.stringify(l)).join('\n') + '\n', env: hermeticEnv(sb.env), timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr.toString());
    return r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const up = send([
    { event: 'init', operation: 'upload', remote: 'origin', concurrent: true, concurrenttransfers: 3 },
    { event: 'upload', oid: unknown, size: 5, path: sb.path('does-not-exist') },
    { event: 'upload', oid, size: content.length, path: file },
    { event: 'upload', oid: unknown, size: content.length, path: file },
    { event: 'terminate' },
  ]);
  assert.deepEqual(up[0], {});
  const completes = up.filter((m) => m.event === 'complete');
  assert.equal(completes.length, 3);
  assert.ok(completes[0]!.error, 'a missing file is that object\'s error');
  assert.deepEqual(completes[1], { event: 'complete', oid });
  assert.match(String((completes[2]!.error as { message: string }).message), /not the object/, 'a file that does not hash to its oid is refused');
  const progress = up.filter((m) => m.event === 'progress' && m.oid === oid);
  assert.ok(progress.length > 0);
  assert.equal(progress[progress.length - 1]!.bytesSoFar, content.length, 'the last progress reaches the object size');

  // A fresh clone of the store's users: nothing local, everything from the store.
  const other = sb.initRepo('other', { install: false });
  sb.git(other, ['config', 'panini.url', pathToFileURL(storeDir).href]);
  const down = spawnSync(process.execPath, [cliPath, 'transfer'], {
    cwd: other,
    input: [{ event: 'init', operation: 'download', remote: 'origin', concurrent: false, concurrenttransfers: 1 },
      { event: 'download', oid: unknown, size: 10 }, { event: 'download', oid, size: content.length }, { event: 'terminate' }].map((l) => JSON.stringify(l)).join('\n') + '\n',
    env: hermeticEnv(sb.env),
    timeout: 30_000,
  });
  assert.equal(down.status, 0, down.stderr.toString());
  const messages = down.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const done = messages.filter((m) => m.event === 'complete');
  assert.equal((done[0]!.error as { code: number }).code, 404);
  assert.equal(done[1]!.oid, oid);
  assert.ok(readFileSync(String(done[1]!.path)).equals(content), 'the path holds the exact bytes');
});

test('real git-lfs with git-panini as its standalone agent: push, clone, pull, history, dedup', { skip: lfsVersion ? false : 'git-lfs is not installed', timeout: 120_000 }, async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const storeDir = sb.path('atom-store');
  mkdirSync(storeDir);
  const storeUrl = pathToFileURL(storeDir).href;
  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work', { install: false });
  const git = (cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): string => sb.git(cwd, args, { env });
  git(work, ['lfs', 'install', '--local']);
  for (const [k, v] of AGENT_CONFIG) git(work, ['config', k, v]);
  git(work, ['lfs', 'track', '*.bin', '*.mp4']);
  // The store's address travels with the repository, like an .lfsconfig.
  writeFileSync(path.join(work, '.paniniconfig'), `[panini]\n\turl = ${storeUrl}\n`);
  git(work, ['remote', 'add', 'origin', origin]);

  const v1 = randomBytes(BIG);
  const v2 = Buffer.from(v1);
  randomBytes(200).copy(v2, BIG / 2); // a small edit in the middle
  writeFileSync(path.join(work, 'big.bin'), v1);
  copyFileSync(path.join(fixturesDir, 'course-a.mp4'), path.join(work, 'clip.mp4'));
  git(work, ['add', '.']);
  git(work, ['commit', '-q', '-m', 'v1']);
  writeFileSync(path.join(work, 'big.bin'), v2);
  copyFileSync(path.join(fixturesDir, 'course-b.mp4'), path.join(work, 'clip.mp4'));
  git(work, ['commit', '-q', '-am', 'v2']);
  git(work, ['push', '-q', 'origin', 'main']);

  // Stored: both versions of big.bin and both clips, deduplicated.
  const stored = await new FolderBackend(storeDir).stats();
  const clips = ['course-a.mp4', 'course-b.mp4'].reduce((n, f) => n + readFileSync(path.join(fixturesDir, f)).length, 0);
  assert.ok(stored.bytes < BIG * 1.15 + clips, `two versions of an 8 MiB file (and two clips of ${clips} bytes) stored in ${stored.bytes} bytes`);
  assert.ok((await new FolderBackend(storeDir).stats('lfs/')).objects === 4, 'one record per LFS object');

  // A fresh clone: pointers first (no agent configured yet), then `git lfs pull` through the agent.
  const clone = sb.path('clone');
  git(sb.root, ['clone', '-q', origin, clone], { GIT_LFS_SKIP_SMUDGE: '1' });
  assert.match(readFileSync(path.join(clone, 'big.bin'), 'utf8'), /^version https:\/\/git-lfs/);
  git(clone, ['lfs', 'install', '--local']);
  for (const [k, v] of AGENT_CONFIG) git(clone, ['config', k, v]);
  git(clone, ['lfs', 'pull']);
  assert.equal(sha256File(path.join(clone, 'big.bin')), sha256(v2));
  assert.equal(sha256File(path.join(clone, 'clip.mp4')), sha256File(path.join(fixturesDir, 'course-b.mp4')));
  assert.equal(git(clone, ['status', '--porcelain']), '');

  // The older version, fetched on checkout through the same agent.
  git(clone, ['checkout', '-q', 'HEAD~1']);
  assert.equal(sha256File(path.join(clone, 'big.bin')), sha256(v1));
  assert.equal(sha256File(path.join(clone, 'clip.mp4')), sha256File(path.join(fixturesDir, 'course-a.mp4')));
  git(clone, ['checkout', '-q', 'main']);
  assert.equal(sha256File(path.join(clone, 'big.bin')), sha256(v2));
  // git-lfs checks every object it receives; its own fsck agrees.
  git(clone, ['lfs', 'fsck']);
});
