/**
 * `git panini gc --remote` against a shared-folder remote store under real Git: what no Git
 * remote ref and nothing in the clone reaches goes, exactly; another clone's unfetched branch makes
 * it refuse until fetched, as do an unreachable Git remote and a store not declared exclusive; a
 * fresh clone then gets every remaining branch from the remote store alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { GitSandbox, sha256 } from './helpers/git.js';
import { atomNames, difference, sorted } from './helpers/store-files.js';
import { readFixture } from './helpers/fixtures.js';
import { layoutPacks } from '../src/store/layout.js';

interface GcJson {
  deleted: { atoms: { hash: string; size: number }[]; count: number };
  keptRecent: { atoms: number };
}

/** A clone `work` with a bare Git remote `origin` and a folder remote store, tracking *.bin. */
function remoteSetup(t: { after(fn: () => void): void }) {
  const sb = new GitSandbox(t.after.bind(t));
  const remoteDir = sb.path('remote-store');
  mkdirSync(remoteDir);
  const url = pathToFileURL(remoteDir).href;
  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work');
  const git = (args: string[], cwd = work): string => sb.git(cwd, args);
  git(['remote', 'add', 'origin', origin]);
  git(['config', 'panini.url', url]);
  sb.panini(work, ['track', '*.bin']);
  git(['add', '.gitattributes']);
  return { sb, remoteDir, url, origin, work, git };
}

describe('git panini gc --remote', () => {
  test('deletes from the remote store exactly what no remote ref and nothing local reaches; refuses when unsure', { timeout: 120_000 }, (t) => {
    const { sb, remoteDir, url, origin, work, git } = remoteSetup(t);
    git(['config', 'panini.gc.reflog', 'false']);
    /** The atoms that reached the remote store during `action`. */
    const uploaded = (action: () => void): Set<string> => {
      const before = atomNames(remoteDir);
      action();
      return difference(atomNames(remoteDir), before);
    };
    const put = (cwd: string, file: string, bytes: Buffer): void => {
      writeFileSync(path.join(cwd, file), bytes);
      git(['add', file], cwd);
    };

    put(work, 'a.bin', randomBytes(30_000));
    git(['commit', '-q', '-m', 'v1']);
    const v1 = uploaded(() => git(['push', '-q', 'origin', 'main']));
    git(['checkout', '-q', '-b', 'other']);
    put(work, 'o.bin', randomBytes(20_000));
    git(['commit', '-q', '-m', 'other']);
    const other = uploaded(() => git(['push', '-q', 'origin', 'other']));
    git(['checkout', '-q', 'main']);
    git(['push', '-q', 'origin', '--delete', 'other']);
    git(['branch', '-q', '-D', 'other']);
    const a2 = randomBytes(31_000);
    put(work, 'a.bin', a2);
    git(['commit', '-q', '--amend', '-m', 'v2']);
    uploaded(() => git(['push', '-q', '--force', 'origin', 'main']));
    assert.ok(v1.size > 0 && other.size > 0);

    // Someone else pushes a branch this clone has not fetched yet.
    const { dir: peer, checkout } = sb.clone(origin, 'peer', { config: { 'panini.url': url } });
    assert.equal(checkout.status, 0, checkout.stderr);
    git(['checkout', '-q', '-b', 'peer-branch'], peer);
    const b1 = randomBytes(22_000);
    put(peer, 'b.bin', b1);
    git(['commit', '-q', '-m', 'peer'], peer);
    git(['push', '-q', 'origin', 'peer-branch'], peer);

    const gcRemote = (args: string[]): GcJson => JSON.parse(sb.panini(work, ['gc', '--remote', '--json', ...args])) as GcJson;
    const refuse = (pattern: RegExp): void => {
      const before = atomNames(remoteDir);
      const r = sb.tryGit(work, ['panini', 'gc', '--remote', '--prune=now']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, pattern);
      assert.deepEqual(sorted(atomNames(remoteDir)), sorted(before));
    };
    refuse(/only this repository's remotes use the store/);
    git(['config', 'panini.gc.exclusiveRemote', 'true']);
    refuse(/this clone does not have \(origin refs\/heads\/peer-branch\)/);
    git(['fetch', '-q', 'origin']);
    git(['remote', 'add', 'gone', sb.path('no-such-repo')]);
    refuse(/cannot list the refs of the Git remote 'gone'/);
    git(['remote', 'remove', 'gone']);

    const expected = new Set([...v1, ...other]);
    const fresh = gcRemote([]);
    assert.equal(fresh.deleted.count, 0, 'everything is within the default grace period');
    assert.equal(fresh.keptRecent.atoms, expected.size);
    const before = atomNames(remoteDir);
    const dry = gcRemote(['--dry-run', '--prune=now']);
    assert.deepEqual(sorted(dry.deleted.atoms.map((a) => a.hash)), sorted(expected));
    assert.deepEqual(sorted(atomNames(remoteDir)), sorted(before), 'a dry run must not delete');
    const epochBefore = readFileSync(path.join(remoteDir, 'gc-epoch'), 'utf8'); // written by the first push
    const real = gcRemote(['--prune=now']);
    assert.deepEqual(sorted(real.deleted.atoms.map((a) => a.hash)), sorted(expected));
    assert.deepEqual(sorted(atomNames(remoteDir)), sorted(difference(before, expected)));
    assert.notEqual(readFileSync(path.join(remoteDir, 'gc-epoch'), 'utf8'), epochBefore, 'clones are told their caches are stale');

    // A fresh clone gets every remaining branch from the remote store alone.
    const { dir: fresh2, checkout: co } = sb.clone(origin, 'fresh', { config: { 'panini.url': url } });
    assert.equal(co.status, 0, co.stderr);
    assert.equal(sha256(readFileSync(path.join(fresh2, 'a.bin'))), sha256(a2));
    git(['checkout', '-q', 'peer-branch'], fresh2);
    assert.equal(sha256(readFileSync(path.join(fresh2, 'b.bin'))), sha256(b1));
  });

  test('more than 16 remote packs: the small ones are merged, and a fresh clone gets every version from the merged packs', { timeout: 120_000 }, (t) => {
    const { sb, remoteDir, url, origin, work, git } = remoteSetup(t);
    git(['config', 'panini.gc.exclusiveRemote', 'true']);
    const versions: Buffer[] = [];
    for (let i = 0; i < 18; i++) {
      // At least 17 content-defined chunks (each at most 256 KiB): more than the 16 a push packs, so
      // each push uploads one pack (1.5 MB gave fewer now and then: a push of loose atoms).
      const bytes = randomBytes(4_300_000);
      versions.push(bytes);
      writeFileSync(path.join(work, `f${i}.bin`), bytes);
      git(['add', `f${i}.bin`]);
      git(['commit', '-q', '-m', `v${i}`]);
      git(['push', '-q', 'origin', 'main']);
    }
    const packs = (): string[] => readdirSync(path.join(remoteDir, 'packs')).filter((n) => n.endsWith('.pack'));
    assert.equal(packs().length, 18);
    const atomsBefore = atomNames(remoteDir);
    const r = JSON.parse(sb.panini(work, ['gc', '--remote', '--json', '--prune=now'])) as GcJson & { packs: { merged: number } };
    assert.equal(r.deleted.count, 0, 'every atom is reachable');
    assert.equal(r.packs.merged, 18);
    assert.ok(packs().length < 18, `merged into fewer packs: ${packs().length}`);
    assert.deepEqual(sorted(atomNames(remoteDir)), sorted(atomsBefore), 'the same atoms, in fewer packs');
    const { dir: fresh, checkout } = sb.clone(origin, 'fresh', { config: { 'panini.url': url } });
    assert.equal(checkout.status, 0, checkout.stderr);
    versions.forEach((bytes, i) => assert.ok(readFileSync(path.join(fresh, `f${i}.bin`)).equals(bytes), `f${i}.bin`));
  });

  test('the layouts of files nothing reaches go, and none is left naming a pack gc deleted; a fresh clone still gets every file', { timeout: 120_000 }, (t) => {
    const { sb, remoteDir, url, origin, work, git } = remoteSetup(t);
    git(['config', 'panini.gc.exclusiveRemote', 'true']);
    git(['config', 'panini.gc.reflog', 'false']);
    const layoutsDir = path.join(remoteDir, 'layouts');
    const layouts = (): string[] => sorted(readdirSync(layoutsDir).flatMap((a) => readdirSync(path.join(layoutsDir, a))));
    const oidOf = (bytes: Buffer): string => sha256(bytes);
    // Videos of hundreds of atoms each (layouts are for files of 64 and more), the second replacing the first.
    const first = readFixture('course-a.mp4');
    writeFileSync(path.join(work, 'video.bin'), first);
    git(['add', 'video.bin']);
    git(['commit', '-q', '-m', 'v1']);
    git(['push', '-q', 'origin', 'main']);
    const second = readFixture('course-a-retitled.mp4');
    writeFileSync(path.join(work, 'video.bin'), second);
    git(['commit', '-q', '--amend', '-am', 'v2']);
    git(['push', '-q', '--force', 'origin', 'main']);
    assert.deepEqual(layouts(), sorted([oidOf(first), oidOf(second)]), 'each push wrote its file\'s layout');

    sb.panini(work, ['gc', '--remote', '--json', '--prune=now']);
    const left = layouts();
    assert.ok(!left.includes(oidOf(first)), 'the layout of the file nothing reaches is gone');
    const packs = new Set(readdirSync(path.join(remoteDir, 'packs')).filter((n) => n.endsWith('.pack')).map((n) => n.slice(0, -5)));
    for (const oid of left) {
      const named = layoutPacks(readFileSync(path.join(layoutsDir, oid.slice(0, 2), oid)));
      assert.ok(named?.every((id) => packs.has(id)), `the layout of ${oid} names only packs that are there`);
    }
    const { dir: fresh, checkout } = sb.clone(origin, 'fresh', { config: { 'panini.url': url } });
    assert.equal(checkout.status, 0, checkout.stderr);
    assert.equal(sha256(readFileSync(path.join(fresh, 'video.bin'))), oidOf(second));
  });

  test('a file still reached whose pack gc rewrites gets its layout written again, in the new pack', { timeout: 120_000 }, (t) => {
    const { sb, remoteDir, url, origin, work, git } = remoteSetup(t);
    git(['config', 'panini.gc.exclusiveRemote', 'true']);
    git(['config', 'panini.gc.reflog', 'false']);
    // One push, one pack: a video that stays, and more bytes that go.
    const video = readFixture('course-b.mp4');
    writeFileSync(path.join(work, 'video.bin'), video);
    writeFileSync(path.join(work, 'dead.bin'), randomBytes(1_000_000));
    git(['add', 'video.bin', 'dead.bin']);
    git(['commit', '-q', '-m', 'v1']);
    git(['push', '-q', 'origin', 'main']);
    const layoutFile = path.join(remoteDir, 'layouts', sha256(video).slice(0, 2), sha256(video));
    const packsNamed = (): string[] | null => layoutPacks(readFileSync(layoutFile));
    const before = packsNamed();
    assert.ok(before, 'the push wrote the video\'s layout');
    git(['rm', '-q', 'dead.bin']);
    git(['commit', '-q', '--amend', '-m', 'v1 without dead.bin']);
    git(['push', '-q', '--force', 'origin', 'main']);

    const r = JSON.parse(sb.panini(work, ['gc', '--remote', '--json', '--prune=now'])) as GcJson & { packs: { rewritten: number } };
    assert.ok(r.packs.rewritten >= 1, 'the mostly dead pack was rewritten');
    const after = packsNamed();
    assert.ok(after, 'the layout was written again');
    const packs = new Set(readdirSync(path.join(remoteDir, 'packs')).filter((n) => n.endsWith('.pack')).map((n) => n.slice(0, -5)));
    assert.ok(after.every((id) => packs.has(id)) && !before.every((id) => packs.has(id)), 'it names the new pack, not the old one');

    const { dir: fresh, checkout } = sb.clone(origin, 'fresh', { config: { 'panini.url': url } });
    assert.equal(checkout.status, 0, checkout.stderr);
    assert.equal(sha256(readFileSync(path.join(fresh, 'video.bin'))), sha256(video));
  });
});
