/**
 * Transfers through a proxy that breaks a seeded share of requests in front of a real S3 server:
 * connections dropped before forwarding, responses cut half-way, 500 answers, and stalls past the
 * client's timeout. Pushes and fetches must either finish with every file exact, or fail with a
 * clear message; either way nothing corrupt may be left in the remote store or the local one. Last,
 * the same through real Git: a push through the pre-push hook and a fresh clone.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PaniniError } from '../src/errors.js';
import { openRemote } from '../src/store/remote.js';
import { fetchConcepts } from '../src/transfer/fetch.js';
import { pushConcepts } from '../src/transfer/push.js';
import { fixturesDir, readFixture } from './helpers/fixtures.js';
import { GitSandbox, sha256, sha256File } from './helpers/git.js';
import { addBytes, addFixtures, assertRebuilds, assertRemoteSound, storeAtoms, storeContext, subdir, type BuiltFile } from './helpers/remote.js';
import { S3_CREDENTIALS, type FaultKind, useS3Suite } from './helpers/s3-server.js';

const ALL_FAULTS: FaultKind[] = ['drop', 'cut', 'error500', 'stall'];
const FAULT_SHARE = 0.15;
const suite = useS3Suite('panini-faults-');
const root = suite.root;

function settings(prefix: string, retries: number): Record<string, string> {
  return {
    'panini.url': `s3://${suite.s3.bucket}/${prefix}`,
    'panini.s3.endpoint': suite.s3.proxyEndpoint,
    'panini.s3.forcePathStyle': 'true',
    'panini.timeout': '1500',
    'panini.retries': String(retries),
  };
}

/** Every atom in a local store hashes to its name (LocalStore.get verifies). */
function assertLocalSound(ctx: ReturnType<typeof storeContext>): void {
  for (const h of storeAtoms(ctx)) ctx.store.get(h);
}

function acceptFailure(err: unknown): void {
  assert.ok(err instanceof PaniniError, `a PaniniError, not ${String(err)}`);
  assert.match(err.message, /failed|not in the remote store/);
  assert.ok(err.hint, 'says what to do');
}

test('push and fetch through dropped, cut, failing and stalled requests stay correct', { timeout: 120_000 }, async () => {
  const prefix = 'faults-mixed';
  const here = storeContext(subdir(root, 'mixed-here'), settings(prefix, 8));
  const files: BuiltFile[] = [...addFixtures(here, ['course-a.mp4', 'photo.png', 'bundle-v1.zip']), addBytes(here, 'noise.bin', randomBytes(24 * 1024 * 1024))];
  const items = files.map((f) => ({ concept: f.concept, path: f.name }));

  // 24 MiB of noise: pushed as two packs in multipart uploads, fetched in several ranges, so the
  // faults hit part uploads and ranged downloads too.
  await suite.s3.setFaults({ share: FAULT_SHARE, kinds: ALL_FAULTS, seed: 222 });
  await suite.s3.stats(true);
  let pushed = false;
  try {
    await pushConcepts(here, items, { quiet: true });
    pushed = true;
  } catch (err) {
    acceptFailure(err);
  }
  const pushStats = await suite.s3.stats(true);
  const injected = Object.values(pushStats.faults).reduce((a, b) => a + b, 0);
  assert.ok(injected >= 3, `faults were injected during the push (${JSON.stringify(pushStats)})`);

  await suite.s3.setFaults({ share: 0, kinds: [], seed: 1 });
  const probe = (await openRemote(storeContext(subdir(root, 'mixed-probe'), settings(prefix, 0))))!;
  try {
    const onRemote = await assertRemoteSound(probe);
    if (pushed) assert.equal(onRemote, storeAtoms(here).length, 'a push that succeeded sent every atom');
    else await pushConcepts(here, items, { quiet: true }); // finish it calmly, for the fetch below
  } finally {
    probe.close();
  }

  await suite.s3.setFaults({ share: FAULT_SHARE, kinds: ALL_FAULTS, seed: 777 });
  const there = storeContext(subdir(root, 'mixed-there'), settings(prefix, 8));
  let fetched = false;
  try {
    await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
    fetched = true;
  } catch (err) {
    acceptFailure(err);
  }
  const fetchStats = await suite.s3.stats(true);
  assert.ok(Object.values(fetchStats.faults).reduce((a, b) => a + b, 0) >= 3, `faults were injected during the fetch (${JSON.stringify(fetchStats.faults)})`);
  await suite.s3.setFaults({ share: 0, kinds: [], seed: 1 });
  assertLocalSound(there);
  if (!fetched) await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
  for (const f of files) assertRebuilds(there, f);
  // With eight retries and 15% faults, both transfers are expected to have finished on their own.
  assert.ok(pushed && fetched, `push ${pushed ? 'finished' : 'failed'}, fetch ${fetched ? 'finished' : 'failed'}`);
});

test('when every request fails, push and fetch stop with a clear message and leave nothing behind', { timeout: 60_000 }, async () => {
  const prefix = 'faults-all';
  const here = storeContext(subdir(root, 'all-here'), settings(prefix, 2));
  const file = addBytes(here, 'clip.bin', randomBytes(300_000));
  await suite.s3.setFaults({ share: 1, kinds: ['error500', 'drop'], seed: 5 });
  await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: 'clip.bin' }], { quiet: true }), (err: Error) => {
    assert.ok(err instanceof PaniniError);
    assert.match(err.message, /s3:\/\/panini-test\/faults-all/);
    assert.match(String(err.hint), /run the command again/);
    return true;
  });
  const there = storeContext(subdir(root, 'all-there'), settings(prefix, 2));
  await assert.rejects(fetchConcepts(there, [file.concept], { quiet: true }), PaniniError);
  assert.deepEqual(storeAtoms(there), [], 'nothing half-downloaded in the local store');
  await suite.s3.setFaults({ share: 0, kinds: [], seed: 1 });
  const probe = (await openRemote(storeContext(subdir(root, 'all-probe'), settings(prefix, 0))))!;
  try {
    assert.equal(await assertRemoteSound(probe), 0, 'nothing reached the remote');
  } finally {
    probe.close();
  }
});

test('git push and a fresh clone through the faulty proxy end with every file exact', { timeout: 90_000 }, async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const env = S3_CREDENTIALS;
  const git = (cwd: string, args: string[]): string => sb.git(cwd, args, { env });
  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work');
  git(work, ['panini', 'track', '*.png', '*.mp4']);
  writeFileSync(path.join(work, '.paniniconfig'), `[panini]\n\turl = s3://${suite.s3.bucket}/faults-git\n\tretries = 8\n\ttimeout = 1500\n[panini "s3"]\n\tendpoint = ${suite.s3.proxyEndpoint}\n\tforcePathStyle = true\n`);
  const files = { 'photo.png': 'photo.png', 'clip.mp4': 'course-a.mp4' };
  for (const [file, fixture] of Object.entries(files)) copyFileSync(path.join(fixturesDir, fixture), path.join(work, file));
  git(work, ['add', '.']);
  git(work, ['commit', '-q', '-m', 'media']);
  git(work, ['remote', 'add', 'origin', origin]);
  await suite.s3.setFaults({ share: FAULT_SHARE, kinds: ALL_FAULTS, seed: 99 });
  await suite.s3.stats(true);
  try {
    git(work, ['push', '-q', 'origin', 'main']);
    const { dir: clone, checkout } = sb.clone(origin, 'clone', { env });
    assert.equal(checkout.status, 0, checkout.stderr);
    for (const [file, fixture] of Object.entries(files)) assert.equal(sha256File(path.join(clone, file)), sha256(readFixture(fixture)), file);
    const seen = await suite.s3.stats();
    assert.ok(Object.values(seen.faults).reduce((a, b) => a + b, 0) >= 2, `faults were injected (${JSON.stringify(seen.faults)})`);
  } finally {
    await suite.s3.setFaults({ share: 0, kinds: [], seed: 1 });
  }
});
