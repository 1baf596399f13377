/**
 * Resource faults, end to end with real Git on real file systems: a store on a small tmpfs that
 * fills up, a store remounted read-only, and a worktree on a small tmpfs that fills up during a
 * checkout. Each must fail with a clear message saying what to do; no partial atom, no temp file
 * left in the store; Git's index and the worktree as they were; and once the fault is gone the same
 * command succeeds. Mounting needs root (as on CI); elsewhere the tests are skipped, saying why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { sha256Hex } from '../src/hash.js';
import { LocalStore } from '../src/store/local.js';
import { PackWriter } from '../src/store/pack-writer.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { assertStoreClean } from './helpers/store-check.js';

const MiB = 1024 * 1024;

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() };
}

/**
 * A tmpfs of `size` at `dir`, unmounted by the returned function (lazily if busy). Null, with the
 * test skipped and the reason given, where mounting is not allowed.
 */
interface Tmpfs {
  remount(options: string): void;
  unmount(): void;
}

function mountTmpfs(t: TestContext, dir: string, size: string): Tmpfs | null {
  mkdirSync(dir, { recursive: true });
  const r = run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  if (!r.ok) {
    t.skip(`cannot mount a tmpfs here (${process.getuid?.() === 0 ? 'root, but' : 'not root:'} ${r.out}); run as root (as CI does) to test resource faults`);
    return null;
  }
  let mounted = true;
  return {
    remount(options) {
      const again = run('mount', ['-o', `remount,${options}`, dir]);
      assert.ok(again.ok, `remount ${options}: ${again.out}`);
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      if (!run('umount', [dir]).ok) run('umount', ['-l', dir]);
    },
  };
}

/**
 * Runs `body` with a tmpfs of `size` mounted at `sb.path(name)`, unmounted after whatever happens;
 * the test is skipped where mounting is not allowed.
 */
async function onTmpfs(t: TestContext, sb: GitSandbox, name: string, size: string, body: (disk: Tmpfs) => void | Promise<void>): Promise<void> {
  const disk = mountTmpfs(t, sb.path(name), size);
  if (!disk) return;
  try {
    await body(disk);
  } finally {
    disk.unmount();
  }
}

/** A PNG signature and header, then random bytes: structured by its head (not chunked as it arrives). */
function pngLike(size: number): Buffer {
  const head = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55', 'hex');
  return Buffer.concat([head, randomBytes(size - head.length)]);
}

function trackedRepo(sb: GitSandbox, name: string): string {
  const repo = sb.initRepo(name);
  sb.panini(repo, ['track', '*.bin']);
  return repo;
}

/** A repository tracking *.bin whose store (panini.storage) is `<disk>/store`, on the mounted disk. */
function repoStoringOn(sb: GitSandbox, disk: string): { repo: string; storeRoot: string } {
  const repo = trackedRepo(sb, 'repo');
  const storeRoot = path.join(sb.path(disk), 'store');
  sb.git(repo, ['config', 'panini.storage', storeRoot]);
  return { repo, storeRoot };
}

/** What must not move when a command fails: the index file itself, its entries, and the named worktree files. */
function stateOf(sb: GitSandbox, repo: string, files: string[]): Record<string, string> {
  const state: Record<string, string> = {
    'index file': sha256(readFileSync(path.join(repo, '.git', 'index'))),
    'ls-files': sb.git(repo, ['ls-files', '-s']),
  };
  for (const f of files) state[f] = existsSync(path.join(repo, f)) ? sha256(readFileSync(path.join(repo, f))) : 'absent';
  return state;
}

test('a full disk under the store: git add fails clearly, no partial atom, index and worktree unchanged; then it succeeds', { timeout: 120_000 }, (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  return onTmpfs(t, sb, 'store-disk', '8m', (disk) => {
    const { repo, storeRoot } = repoStoringOn(sb, 'store-disk');
    sb.git(repo, ['config', 'panini.gc.exclusiveStore', 'true']); // no other repository uses it: gc may run
    const small: Record<string, Buffer> = { 'a.bin': randomBytes(200_000), 'b.bin': randomBytes(1 * MiB) };
    for (const [f, bytes] of Object.entries(small)) writeFileSync(path.join(repo, f), bytes);
    sb.git(repo, ['add', '.gitattributes', ...Object.keys(small)]);
    sb.git(repo, ['commit', '-q', '-m', 'small files fit']);
    const atomsBefore = assertStoreClean(storeRoot).size;

    // Random content is chunked as Git sends it, its atoms written by the pack writer's thread; a
    // PNG is kept and compared with the worktree file, then decomposed in place.
    const big: Record<string, Buffer> = { 'big.bin': randomBytes(24 * MiB), 'bigger.bin': pngLike(40 * MiB) };
    for (const [f, bytes] of Object.entries(big)) writeFileSync(path.join(repo, f), bytes);
    const files = [...Object.keys(small), ...Object.keys(big)];
    const before = stateOf(sb, repo, files);
    for (const f of Object.keys(big)) {
      const r = sb.tryGit(repo, ['add', f]);
      assert.notEqual(r.status, 0, `git add ${f} cannot succeed on a full disk`);
      assert.match(r.stderr, new RegExp(`git-panini: ${f.replace('.', '\\.')}: the disk holding the atom store is full`), r.stderr);
      assert.match(r.stderr, /hint: free some space/, r.stderr);
      assert.match(r.stderr, new RegExp(`fatal: ${f.replace('.', '\\.')}: clean filter 'panini' failed`), r.stderr);
      assertStoreClean(storeRoot);
      assert.deepEqual(stateOf(sb, repo, files), before, `index and worktree unchanged after git add ${f}`);
    }

    // Structured content that is not a worktree file (here: stdin) is spooled to the store's tmp/ first.
    const piped = sb.tryGit(repo, ['hash-object', '-w', '--stdin', '--path=piped.bin'], { input: big['bigger.bin'] });
    assert.notEqual(piped.status, 0);
    assert.match(piped.stderr, /git-panini: piped\.bin: the disk holding the atom store is full/, piped.stderr);
    assert.match(piped.stderr, /hint: free some space/, piped.stderr);
    assertStoreClean(storeRoot);
    assert.deepEqual(stateOf(sb, repo, files), before);

    // The hint works: gc --prune=now deletes what the failed commands wrote, and keeps the rest.
    sb.panini(repo, ['gc', '--prune=now']);
    assert.equal(assertStoreClean(storeRoot).size, atomsBefore, 'only the committed files\' atoms remain');
    assert.equal(sb.tryGit(repo, ['panini', 'fsck']).status, 0);

    // Space freed: the same commands succeed, and the files come back exact from the store.
    disk.remount('size=160m');
    sb.git(repo, ['add', ...Object.keys(big)]);
    sb.git(repo, ['commit', '-q', '-m', 'big files']);
    const fsck = sb.tryGit(repo, ['panini', 'fsck']);
    assert.equal(fsck.status, 0, fsck.stdout.toString() + fsck.stderr);
    assertStoreClean(storeRoot);
    for (const [f, bytes] of Object.entries(big)) {
      rmSync(path.join(repo, f));
      sb.git(repo, ['checkout', '--', f]);
      assert.equal(sha256(readFileSync(path.join(repo, f))), sha256(bytes), f);
    }
    assert.equal(sb.git(repo, ['status', '--porcelain']), '');
  });
});

test('a full disk during a bulk add of small files (their atoms batched in one journaled pack): it fails clearly, loses nothing, and the next add succeeds', { timeout: 120_000 }, (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  return onTmpfs(t, sb, 'store-disk', '6m', (disk) => {
    const { repo, storeRoot } = repoStoringOn(sb, 'store-disk');
    sb.git(repo, ['config', 'panini.gc.exclusiveStore', 'true']);
    sb.git(repo, ['add', '.gitattributes']);
    sb.git(repo, ['commit', '-q', '-m', 'track']);
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 600; i++) files[`f${String(i).padStart(3, '0')}.bin`] = randomBytes(12_000); // 7 MB: past the 128th atom, into the pack
    for (const [f, bytes] of Object.entries(files)) writeFileSync(path.join(repo, f), bytes);
    const before = stateOf(sb, repo, []);
    const r = sb.tryGit(repo, ['add', '.']);
    assert.notEqual(r.status, 0, 'git add cannot succeed on a full disk');
    assert.match(r.stderr, /the disk holding the atom store is full/, r.stderr);
    assert.match(r.stderr, /hint: free some space/, r.stderr);
    assert.deepEqual(stateOf(sb, repo, []), before, 'the index is unchanged');
    // What the batch holds stays, journaled, until it can be named: never a named partial atom.
    const store = new LocalStore(storeRoot);
    for (const { hash } of store.list()) store.get(hash);

    disk.remount('size=64m');
    sb.git(repo, ['add', '.']);
    sb.git(repo, ['commit', '-q', '-m', 'small files']);
    const fsck = sb.tryGit(repo, ['panini', 'fsck']);
    assert.equal(fsck.status, 0, fsck.stdout.toString() + fsck.stderr);
    sb.panini(repo, ['gc', '--prune=now']);
    assertStoreClean(storeRoot);
    for (const f of Object.keys(files)) rmSync(path.join(repo, f));
    sb.git(repo, ['checkout', '--', '.']);
    for (const [f, bytes] of Object.entries(files)) assert.ok(readFileSync(path.join(repo, f)).equals(bytes), f);
  });
});

test('a full disk under a download\'s pack (written behind, by the thread pool): it fails clearly and leaves no temp file', async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  return onTmpfs(t, sb, 'store-disk', '4m', async () => {
    const store = new LocalStore(path.join(sb.path('store-disk'), 'store'));
    const writer = new PackWriter(store, { writeBehind: true });
    for (let i = 0; i < 64; i++) {
      const atom = randomBytes(128 * 1024);
      writer.put(sha256Hex(atom), atom);
    }
    await assert.rejects(writer.written(), /the disk holding the atom store is full/);
    writer.abort();
    assert.deepEqual(readdirSync(store.packsDir), [], 'the partial pack is gone');
  });
});

test('a read-only store: git add fails clearly naming the store, nothing written; reading still works; then it succeeds', { timeout: 90_000 }, (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  return onTmpfs(t, sb, 'store-disk', '64m', (disk) => {
    const { repo, storeRoot } = repoStoringOn(sb, 'store-disk');
    const a = randomBytes(300_000);
    writeFileSync(path.join(repo, 'a.bin'), a);
    sb.git(repo, ['add', '.gitattributes', 'a.bin']);
    sb.git(repo, ['commit', '-q', '-m', 'one']);
    const atomsBefore = assertStoreClean(storeRoot).size;
    disk.remount('ro');
    // chmod would not stop root; a read-only mount does.
    assert.throws(() => writeFileSync(path.join(storeRoot, 'probe'), 'x'), /EROFS/);

    const news: Record<string, Buffer> = { 'c.bin': randomBytes(500_000), 'd.bin': randomBytes(12 * MiB) };
    for (const [f, bytes] of Object.entries(news)) writeFileSync(path.join(repo, f), bytes);
    const files = ['a.bin', ...Object.keys(news)];
    const before = stateOf(sb, repo, files);
    for (const f of Object.keys(news)) {
      const r = sb.tryGit(repo, ['add', f]);
      assert.notEqual(r.status, 0, `git add ${f} cannot succeed on a read-only store`);
      assert.match(r.stderr, new RegExp(`git-panini: ${f.replace('.', '\\.')}: the atom store is not writable \\(.*${storeRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*EROFS\\)`), r.stderr);
      assert.match(r.stderr, /hint: .*panini\.storage/, r.stderr);
      assert.deepEqual(stateOf(sb, repo, files), before, `index and worktree unchanged after git add ${f}`);
    }
    const piped = sb.tryGit(repo, ['hash-object', '-w', '--stdin', '--path=piped.bin'], { input: news['d.bin'] });
    assert.notEqual(piped.status, 0);
    assert.match(piped.stderr, /git-panini: piped\.bin: the atom store is not writable .*EROFS/, piped.stderr);
    assert.equal(assertStoreClean(storeRoot).size, atomsBefore, 'nothing was added to the store');

    // A read-only store still serves what it has: content already stored adds, files check out.
    writeFileSync(path.join(repo, 'a-copy.bin'), a);
    sb.git(repo, ['add', 'a-copy.bin']);
    rmSync(path.join(repo, 'a.bin'));
    sb.git(repo, ['checkout', '--', 'a.bin']);
    assert.equal(sha256(readFileSync(path.join(repo, 'a.bin'))), sha256(a));

    disk.remount('rw');
    sb.git(repo, ['add', ...Object.keys(news)]);
    sb.git(repo, ['commit', '-q', '-m', 'two']);
    const fsck = sb.tryGit(repo, ['panini', 'fsck']);
    assert.equal(fsck.status, 0, fsck.stdout.toString() + fsck.stderr);
    assertStoreClean(storeRoot);
  });
});

test('a full disk under the worktree during checkout: Git fails clearly, no file passes for complete, the store is intact; then it succeeds', { timeout: 90_000 }, (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const source = trackedRepo(sb, 'source');
  const files: Record<string, Buffer> = { 'a.bin': randomBytes(100_000), 'big.bin': randomBytes(24 * MiB), 'z.bin': randomBytes(1000) };
  for (const [f, bytes] of Object.entries(files)) writeFileSync(path.join(source, f), bytes);
  sb.git(source, ['add', '.']);
  sb.git(source, ['commit', '-q', '-m', 'files']);
  const storeRoot = path.join(source, '.git', 'panini');

  return onTmpfs(t, sb, 'worktree-disk', '8m', (disk) => {
    // Worktree on the small disk; its git dir and the store (the source's) on the big one.
    const wt = path.join(sb.path('worktree-disk'), 'wt');
    sb.git(sb.root, ['clone', '-q', '--no-checkout', `--separate-git-dir=${sb.path('victim.git')}`, source, wt]);
    sb.panini(wt, ['install', '--local']);
    sb.git(wt, ['config', 'panini.storage', storeRoot]);
    const r = sb.tryGit(wt, ['checkout', '-f', 'main']);
    assert.notEqual(r.status, 0, 'the checkout reports the failure');
    assert.match(r.stderr, /unable to write file big\.bin/, r.stderr);
    assert.doesNotMatch(r.stderr, /git-panini:/, 'git-panini did its part; the failure is the worktree\'s');
    // Whatever Git left behind is not taken for the file: status lists it as changed.
    const status = sb.git(wt, ['status', '--porcelain']);
    assert.match(status, /^ [MD] big\.bin$/m, status);
    for (const f of Object.keys(files)) {
      const full = path.join(wt, f);
      const clean = !new RegExp(`^.. ${f.replace('.', '\\.')}$`, 'm').test(status);
      if (clean) assert.equal(sha256(readFileSync(full)), sha256(files[f]!), `${f} is called clean, so it must be exact`);
    }
    const fsck = sb.tryGit(wt, ['panini', 'fsck']);
    assert.equal(fsck.status, 0, fsck.stdout.toString() + fsck.stderr);
    assertStoreClean(storeRoot);

    disk.remount('size=64m');
    sb.git(wt, ['checkout', '-f', 'main']);
    for (const [f, bytes] of Object.entries(files)) assert.equal(sha256(readFileSync(path.join(wt, f))), sha256(bytes), f);
    assert.equal(sb.git(wt, ['status', '--porcelain']), '');
  });
});
