/**
 * `git panini gc` on a real repository with branches, tags, a deleted branch, an amended and a
 * rebased commit, stashes (one with untracked files), staged-only files, a linked worktree with
 * its own staged file, a remote-tracking ref, a Git LFS pointer and files added then unstaged.
 * The expected deletions are computed by the test itself: every version's atoms are the atom files
 * that appeared in the store when Git cleaned it (contents are random, so no two versions share
 * an atom), and whether a version is still reachable is known from how the repository was built.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseExpiry } from '../src/gc/expiry.js';
import { readFixture } from './helpers/fixtures.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { ageFiles, atomFiles, atomNames, conceptRegistryFiles, difference, packFiles, sorted } from './helpers/store-files.js';

interface Version {
  label: string;
  /** Where the bytes can be read back from Git: a tree-ish path like `v1:a.bin` (checked out or smudged). */
  bytes: Buffer;
  atoms: Set<string>;
  /** Reachable when reflogs count / when they do not. */
  withReflog: boolean;
  withoutReflog: boolean;
}

interface GcJson {
  dryRun: boolean;
  deleted: { atoms: { hash: string; size: number }[]; count: number; bytes: number };
  keptRecent: { atoms: number; bytes: number };
  stored: number;
  tempFiles: { count: number };
  registryEntries: number;
  warnings: string[];
}

describe('git panini gc', () => {
  const sb = new GitSandbox(after);
  let repo: string;
  let store: string;
  const versions: Version[] = [];
  /** Checks to run after gc: a Git object name whose smudged bytes must be `bytes`. */
  const kept: { object: string; cwd: string; bytes: Buffer }[] = [];
  /** Branch/tag name → file → bytes, for byte-exact checkouts. */
  const trees = new Map<string, Map<string, Buffer>>();

  const git = (args: string[], cwd = repo): string => sb.git(cwd, args);
  const random = (n: number): Buffer => randomBytes(n);

  /** Runs `action` (which makes Git clean `bytes`) and records the atoms that appeared as this version's. */
  function capture(label: string, bytes: Buffer, reach: [boolean, boolean], action: () => void): Version {
    const before = atomNames(store);
    action();
    const atoms = difference(atomNames(store), before);
    assert.ok(atoms.size > 0, `${label}: cleaning should have written atoms`);
    const v = { label, bytes, atoms, withReflog: reach[0], withoutReflog: reach[1] };
    versions.push(v);
    return v;
  }

  function stage(label: string, file: string, bytes: Buffer, reach: [boolean, boolean], cwd = repo): Version {
    return capture(label, bytes, reach, () => {
      writeFileSync(path.join(cwd, file), bytes);
      git(['add', file], cwd);
    });
  }

  function snapshotTree(name: string, files: Record<string, Buffer>): void {
    trees.set(name, new Map(Object.entries(files)));
  }

  function gc(args: string[], env: NodeJS.ProcessEnv = {}): GcJson {
    return JSON.parse(sb.panini(repo, ['gc', '--json', ...args], { env })) as GcJson;
  }

  /** Atoms of the versions that are not reachable, minus any atom a reachable version also uses. */
  function expectedGarbage(reflog: boolean, among: readonly Version[] = versions): Set<string> {
    const live = new Set(versions.filter((v) => (reflog ? v.withReflog : v.withoutReflog)).flatMap((v) => [...v.atoms]));
    return difference(among.filter((v) => !(reflog ? v.withReflog : v.withoutReflog)).flatMap((v) => [...v.atoms]), live);
  }

  before(() => {
    const origin = sb.initRepo('origin.git', { bare: true });
    repo = sb.initRepo('repo');
    store = path.join(repo, '.git', 'panini');
    git(['remote', 'add', 'origin', origin]);
    sb.panini(repo, ['track', '*.bin', '*.mp4']);
    git(['add', '.gitattributes']);

    // main, tagged v1: a small file, a 3 MB file (its refs go through manifest atoms), a video.
    const a1 = random(40_000);
    const big = random(3 * 1024 * 1024);
    const video = readFixture('course-a.mp4');
    stage('a1', 'a.bin', a1, [true, true]);
    stage('big', 'big.bin', big, [true, true]);
    stage('video', 'clip.mp4', video, [true, true]);
    git(['commit', '-q', '-m', 'c1']);
    git(['tag', 'v1']);
    snapshotTree('v1', { 'a.bin': a1, 'big.bin': big, 'clip.mp4': video });
    const a2 = random(30_000);
    stage('a2', 'a.bin', a2, [true, true]);
    git(['commit', '-q', '-m', 'c2']);

    // A branch deleted after one commit: its file is only in reflogs now.
    git(['checkout', '-q', '-b', 'feature']);
    stage('feature', 'f.bin', random(20_000), [true, false]);
    git(['commit', '-q', '-m', 'feature']);
    git(['checkout', '-q', 'main']);
    git(['branch', '-q', '-D', 'feature']);

    // An amended commit: the first version is only in reflogs.
    stage('amended-away', 'a.bin', random(25_000), [true, false]);
    git(['commit', '-q', '-m', 'c3']);
    const a3 = random(26_000);
    stage('amended', 'a.bin', a3, [true, true]);
    git(['commit', '-q', '--amend', '-m', 'c3 amended']);

    // A rebase that drops a commit: its file is only in reflogs; the rebased one's blob is shared.
    git(['checkout', '-q', '-b', 'topic', 'HEAD~1']);
    stage('rebase-dropped', 't0.bin', random(22_000), [true, false]);
    git(['commit', '-q', '-m', 't0']);
    const t1 = random(23_000);
    stage('rebased', 't1.bin', t1, [true, true]);
    git(['commit', '-q', '-m', 't1']);
    git(['rebase', '-q', '--onto', 'main', 'topic~1', 'topic']);
    snapshotTree('topic', { 'a.bin': a3, 'big.bin': big, 'clip.mp4': video, 't1.bin': t1 });
    git(['checkout', '-q', 'main']);
    snapshotTree('main', { 'a.bin': a3, 'big.bin': big, 'clip.mp4': video });

    // Pushed, then the local branch deleted: the remote-tracking ref keeps it.
    git(['checkout', '-q', '-b', 'pub']);
    const p1 = random(21_000);
    stage('remote-tracking', 'p.bin', p1, [true, true]);
    git(['commit', '-q', '-m', 'pub']);
    git(['push', '-q', '--no-verify', 'origin', 'pub']);
    git(['checkout', '-q', 'main']);
    git(['branch', '-q', '-D', 'pub']);
    snapshotTree('origin/pub', { 'a.bin': a3, 'big.bin': big, 'clip.mp4': video, 'p.bin': p1 });

    // Two stash entries (the older one lives only in refs/stash's reflog), one with an untracked file.
    const s1 = random(24_000);
    capture('stash-older', s1, [true, true], () => {
      writeFileSync(path.join(repo, 'a.bin'), s1);
      git(['stash', '-q']);
    });
    const s2 = random(24_500);
    const u1 = random(19_000);
    const untracked = capture('stash-newer+untracked', Buffer.alloc(0), [true, true], () => {
      writeFileSync(path.join(repo, 'a.bin'), s2);
      writeFileSync(path.join(repo, 'u.bin'), u1);
      git(['stash', '-q', '-u']);
    });
    assert.ok(untracked.atoms.size >= 2, 'both stashed files were cleaned');
    kept.push({ object: 'stash@{1}:a.bin', cwd: repo, bytes: s1 }, { object: 'stash@{0}:a.bin', cwd: repo, bytes: s2 }, { object: 'stash@{0}^3:u.bin', cwd: repo, bytes: u1 });

    // A linked worktree with a commit of its own and a file staged there only.
    const wt = sb.path('wt');
    git(['worktree', 'add', '-q', '-b', 'wtbranch', wt, 'main']);
    const w1 = random(18_000);
    stage('worktree-commit', 'w1.bin', w1, [true, true], wt);
    git(['commit', '-q', '-m', 'w1'], wt);
    snapshotTree('wtbranch', { 'a.bin': a3, 'big.bin': big, 'clip.mp4': video, 'w1.bin': w1 });
    const w2 = random(17_000);
    stage('worktree-staged', 'w2.bin', w2, [true, true], wt);
    kept.push({ object: ':w2.bin', cwd: wt, bytes: w2 });

    // Staged in the main worktree, never committed.
    const i1 = random(16_500);
    stage('staged', 'a.bin', i1, [true, true]);
    kept.push({ object: ':a.bin', cwd: repo, bytes: i1 });

    // Added, then unstaged and deleted: nothing reaches it, reflogs or not.
    stage('unstaged', 'junk.bin', random(15_000), [false, false]);
    git(['rm', '-q', '--cached', 'junk.bin']);
    rmSync(path.join(repo, 'junk.bin'));

    // A tag naming a concept blob directly (no commit holds it).
    const tagged = random(12_500);
    capture('tag-on-blob', tagged, [true, true], () => {
      const concept = sb.panini(repo, ['clean', 'tagged.bin'], { input: tagged });
      const blob = sb.git(repo, ['hash-object', '-w', '--stdin'], { input: concept }).trim();
      git(['tag', '-a', '-m', 'a blob', 'blob-tag', blob]);
    });
    kept.push({ object: 'blob-tag', cwd: repo, bytes: tagged });

    // A Git LFS pointer whose object was stored as atoms (the concept registry maps its oid).
    const lfsBytes = random(50_000);
    const lfsFile = sb.path('lfs-object');
    writeFileSync(lfsFile, lfsBytes);
    const lfs = capture('lfs-object', lfsBytes, [true, true], () => sb.panini(repo, ['clean', 'x.lfs'], { input: lfsBytes }));
    writeFileSync(path.join(repo, 'x.lfs'), `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(lfsBytes)}\nsize ${lfsBytes.length}\n`);
    git(['add', 'x.lfs']);
    assert.ok(lfs.atoms.size > 0);

    ageFiles([...atomFiles(store).values(), ...packFiles(store).map((p) => p.pack), ...conceptRegistryFiles(store)], 30);
  });

  test('with reflogs, --dry-run lists exactly the atoms nothing reaches, and deletes nothing', () => {
    const before = atomNames(store);
    const r = gc(['--dry-run']);
    assert.equal(r.dryRun, true);
    assert.deepEqual(sorted(r.deleted.atoms.map((a) => a.hash)), sorted(expectedGarbage(true)));
    assert.ok(r.deleted.count > 0 && r.deleted.bytes > 0);
    assert.deepEqual(sorted(atomNames(store)), sorted(before), 'a dry run must not delete');
  });

  test('without reflogs (panini.gc.reflog=false), --dry-run adds the deleted branch, the amended and the dropped commits', () => {
    const before = atomNames(store);
    git(['config', 'panini.gc.reflog', 'false']);
    const r = gc(['--dry-run']);
    const expected = expectedGarbage(false);
    for (const label of ['feature', 'amended-away', 'rebase-dropped', 'unstaged']) {
      const v = versions.find((x) => x.label === label)!;
      for (const atom of v.atoms) assert.ok(expected.has(atom), `${label} should be garbage`);
    }
    assert.deepEqual(sorted(r.deleted.atoms.map((a) => a.hash)), sorted(expected));
    assert.deepEqual(sorted(atomNames(store)), sorted(before));
  });

  test('gc deletes exactly the unreachable atoms past the grace period and keeps fresh ones', () => {
    // Unreachable but written just now: the default grace period (2 weeks) keeps it.
    const fresh = stage('fresh-unstaged', 'fresh.bin', random(14_000), [false, false]);
    git(['rm', '-q', '--cached', 'fresh.bin']);
    rmSync(path.join(repo, 'fresh.bin'));
    const before = atomNames(store);
    const r = JSON.parse(sb.panini(repo, ['gc-atoms', '--json'])) as GcJson;
    const expected = expectedGarbage(false, versions.filter((v) => v !== fresh));
    assert.deepEqual(sorted(r.deleted.atoms.map((a) => a.hash)), sorted(expected));
    assert.deepEqual(sorted(atomNames(store)), sorted(difference(before, expected)), 'exactly those atoms are gone');
    for (const atom of fresh.atoms) assert.ok(atomNames(store).has(atom), 'fresh atoms are kept');
    assert.equal(r.keptRecent.atoms, fresh.atoms.size);
    assert.ok(r.registryEntries > 0, 'registry entries of unreachable files are pruned');
  });

  test('every kept version checks out byte-exact', () => {
    for (const [ref, files] of trees) {
      const dir = sb.path(`check-${ref.replace(/\W/g, '-')}`);
      git(['worktree', 'add', '-q', '--detach', dir, ref]);
      for (const [file, bytes] of files) assert.equal(sha256(readFileSync(path.join(dir, file))), sha256(bytes), `${ref}:${file}`);
      git(['worktree', 'remove', '--force', dir]);
    }
    for (const k of kept) {
      const concept = sb.tryGit(k.cwd, ['cat-file', 'blob', k.object]).stdout;
      const r = sb.tryGit(k.cwd, ['panini', 'smudge', 'x'], { input: concept });
      assert.equal(r.status, 0, `${k.object}: ${r.stderr}`);
      assert.equal(sha256(r.stdout), sha256(k.bytes), k.object);
    }
    const lfs = versions.find((v) => v.label === 'lfs-object')!;
    for (const atom of lfs.atoms) assert.ok(atomNames(store).has(atom), 'atoms of a reachable LFS object stay');
    assert.ok(existsSync(path.join(store, 'concepts', sha256(lfs.bytes).slice(0, 2), sha256(lfs.bytes))));
  });

  test('--prune=now deletes unreachable atoms whatever their age; a second run finds nothing', () => {
    const fresh = versions.find((v) => v.label === 'fresh-unstaged')!;
    const r = gc(['--prune=now']);
    assert.deepEqual(sorted(r.deleted.atoms.map((a) => a.hash)), sorted(fresh.atoms));
    const again = gc(['--prune=now']);
    assert.equal(again.deleted.count, 0);
  });

  test('the walk cache gives the same answer, and a damaged cache is ignored', () => {
    const cacheFile = path.join(store, 'cache', 'walk-v1');
    assert.ok(existsSync(cacheFile), 'gc leaves a walk cache');
    git(['config', 'panini.gc.reflog', 'true']); // reflog entries now count again: different roots, same cache
    const stray = stage('stray', 'stray.bin', random(13_000), [false, false]);
    git(['rm', '-q', '--cached', 'stray.bin']);
    const warm = gc(['--dry-run', '--prune=now']);
    writeFileSync(cacheFile, readFileSync(cacheFile).subarray(0, 200));
    const cold = gc(['--dry-run', '--prune=now']);
    assert.deepEqual(sorted(warm.deleted.atoms.map((a) => a.hash)), sorted(stray.atoms));
    assert.deepEqual(cold.deleted.atoms, warm.deleted.atoms);
  });

  test('stale temp files go, recent ones stay', () => {
    const tmpDir = path.join(store, 'tmp');
    mkdirSync(tmpDir, { recursive: true });
    const [someAtom] = atomFiles(store).values();
    const shard = path.dirname(someAtom!);
    const files = {
      oldSpool: path.join(tmpDir, 'spool-1-aaaa'),
      newSpool: path.join(tmpDir, 'spool-2-bbbb'),
      oldShard: path.join(shard, '.tmp-3-cccc'),
      newShard: path.join(shard, '.tmp-4-dddd'),
    };
    for (const f of Object.values(files)) writeFileSync(f, 'partial');
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(files.oldSpool, twoDaysAgo, twoDaysAgo);
    utimesSync(files.oldShard, twoDaysAgo, twoDaysAgo);
    const r = gc([]);
    assert.equal(r.tempFiles.count, 2);
    assert.ok(!existsSync(files.oldSpool) && !existsSync(files.oldShard));
    assert.ok(existsSync(files.newSpool) && existsSync(files.newShard));
  });

  test('an unreadable date is refused before anything is deleted', () => {
    const before = atomNames(store);
    const r = sb.tryGit(repo, ['panini', 'gc', '--prune=2.weks.ago']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot read the expiry date/);
    assert.deepEqual(sorted(atomNames(store)), sorted(before));
  });
});

describe('gc refuses when it cannot be sure', () => {
  test('a reachable manifest missing from the store stops gc: nothing is deleted', (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const repo = sb.initRepo('repo');
    const store = path.join(repo, '.git', 'panini');
    sb.panini(repo, ['track', '*.bin']);
    writeFileSync(path.join(repo, 'big.bin'), randomBytes(3 * 1024 * 1024));
    sb.git(repo, ['add', '.']);
    sb.git(repo, ['commit', '-q', '-m', 'big']);
    writeFileSync(path.join(repo, 'junk.bin'), randomBytes(20_000));
    sb.git(repo, ['add', 'junk.bin']);
    sb.git(repo, ['rm', '-q', '--cached', 'junk.bin']);
    const manifests = [...atomFiles(store)].filter(([, p]) => readFileSync(p).subarray(0, 17).toString() === 'panini-manifest 1');
    assert.ok(manifests.length > 0, 'a 3 MB file is listed through manifests');
    rmSync(manifests[0]![1]);
    const before = atomNames(store);
    const r = sb.tryGit(repo, ['panini', 'gc', '--prune=now']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`missing manifest ${manifests[0]![0]}`));
    assert.match(r.stderr, /big\.bin/);
    assert.deepEqual(sorted(atomNames(store)), sorted(before));
  });

  test('a store outside the repository is only collected once declared exclusive', (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const repo = sb.initRepo('repo');
    sb.git(repo, ['config', 'panini.storage', sb.path('shared-store')]);
    sb.panini(repo, ['track', '*.bin']);
    writeFileSync(path.join(repo, 'a.bin'), randomBytes(20_000));
    sb.git(repo, ['add', '.']);
    sb.git(repo, ['commit', '-q', '-m', 'a']);
    const refused = sb.tryGit(repo, ['panini', 'gc', '--dry-run']);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /other repositories may use it/);
    sb.git(repo, ['config', 'panini.gc.exclusiveStore', 'true']);
    const r = JSON.parse(sb.panini(repo, ['gc', '--dry-run', '--json'])) as GcJson;
    assert.equal(r.stored, atomNames(sb.path('shared-store')).size);
    assert.equal(r.deleted.count, 0);
  });
});

describe('expiry dates', () => {
  const now = Date.parse('2024-06-15T12:00:00Z');
  test('Git-style relative and absolute dates', () => {
    assert.equal(parseExpiry('now', now), now);
    assert.equal(parseExpiry('never', now), -Infinity);
    assert.equal(parseExpiry('2.weeks.ago', now), now - 14 * 86_400_000);
    assert.equal(parseExpiry('1 hour ago', now), now - 3_600_000);
    assert.equal(parseExpiry('3.days.ago', now), now - 3 * 86_400_000);
    assert.equal(parseExpiry('2024-06-01T00:00:00Z', now), Date.parse('2024-06-01T00:00:00Z'));
    assert.equal(parseExpiry('2030-01-01T00:00:00Z', now), now, 'a future date means now');
  });
  test('anything else is an error, not "now"', () => {
    for (const bad of ['2.weks.ago', 'yesterday-ish', '', '14', 'two weeks ago', '2024-13-45x']) {
      assert.throws(() => parseExpiry(bad, now), /cannot read the expiry date/, bad);
    }
  });
});
