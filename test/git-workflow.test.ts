/**
 * git-panini under real Git, one repository taken through a user's whole day: add, commit, branch,
 * checkout, merge (fast-forward and a media conflict), rebase, stash, worktrees, clones (with the
 * store, skipping smudge, and without atoms). After every step each tracked file must be
 * byte-identical to the fixture it should be and `git status --porcelain` must be empty.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fixturesDir, readFixture } from './helpers/fixtures.js';
import { GitSandbox, listFiles, sha256, sha256File, touchAll } from './helpers/git.js';

const PATTERNS = ['*.png', '*.jpg', '*.mp4', '*.zip', '*.bin'];
/** Files that are not stored through git-panini. */
const PLAIN = new Set(['.gitattributes', 'README.md']);

/** Worktree path → the fixture whose bytes it must hold. */
type Tree = Record<string, string>;

const BASE: Tree = {
  'photo.png': 'photo.png',
  'photo.jpg': 'photo.jpg',
  'clip.mp4': 'course-a.mp4',
  'bundle.zip': 'bundle-v1.zip',
  'data/random.bin': 'random.bin',
  'media/my photo.png': 'palette.png',
};
const V2: Tree = { ...BASE, 'photo.png': 'photo-tagged.png', 'clip.mp4': 'course-b.mp4', 'bundle.zip': 'bundle-v2.zip' };

const fixtureHash = new Map<string, string>();
function fixtureSha(name: string): string {
  let h = fixtureHash.get(name);
  if (!h) fixtureHash.set(name, (h = sha256(readFixture(name))));
  return h;
}

function place(dir: string, tree: Tree): void {
  for (const [file, fixture] of Object.entries(tree)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    rmSync(path.join(dir, file), { force: true }); // fixtures are read-only; copies must not be
    copyFileSync(path.join(fixturesDir, fixture), path.join(dir, file));
  }
}

test('git-panini through a whole Git workflow', { timeout: 180_000 }, async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('origin');
  const git = (args: string[], cwd = repo): string => sb.git(cwd, args);
  const store = path.join(repo, '.git', 'panini');

  /** Every stored file byte-exact, nothing else in the worktree, and Git sees no change. */
  const expectTree = (tree: Tree, dir = repo, label = ''): void => {
    for (const [file, fixture] of Object.entries(tree)) {
      assert.equal(sha256File(path.join(dir, file)), fixtureSha(fixture), `${label}: ${file} should hold the bytes of ${fixture}`);
    }
    assert.deepEqual(listFiles(dir).filter((f) => !PLAIN.has(f)), Object.keys(tree).sort(), `${label}: worktree files`);
    assert.equal(sb.git(dir, ['status', '--porcelain']), '', `${label}: git status should be clean`);
  };
  const show = (spec: string, dir = repo): string => sb.git(dir, ['show', spec]);

  await t.test('add and commit: Git stores concepts, the worktree keeps the files', () => {
    sb.panini(repo, ['track', ...PATTERNS]);
    writeFileSync(path.join(repo, 'README.md'), '# media\n');
    place(repo, BASE);
    git(['add', '.']);
    git(['commit', '-q', '-m', 'media']);
    expectTree(BASE, repo, 'after commit');
    for (const [file, fixture] of Object.entries(BASE)) {
      const concept = show(`HEAD:${file}`);
      assert.match(concept, /^---\n/, `${file}: Git holds a concept`);
      assert.ok(concept.includes(`oid: sha256:${fixtureSha(fixture)}`), `${file}: concept names the file's hash`);
      assert.match(concept, /atom:\/\/sha256:[0-9a-f]{64}/);
      assert.ok(Buffer.byteLength(concept) < 8192, `${file}: concept is small`);
    }
    assert.ok(existsSync(store), 'atoms went to the local store');
  });

  await t.test('git show HEAD:photo.png shows the concept', () => {
    const concept = show('HEAD:photo.png');
    assert.match(concept, /^panini: 1$/m);
    assert.match(concept, /^format: "?png"?$/m);
    assert.match(concept, /^content_refs:$/m);
    assert.match(concept, new RegExp(`^size: ${readFixture('photo.png').length}$`, 'm'));
  });

  await t.test('touch every file: still no modification', () => {
    touchAll(repo);
    expectTree(BASE, repo, 'after touch');
  });

  await t.test('branch with changed media; git diff shows the concept changing', () => {
    git(['checkout', '-q', '-b', 'media-v2']);
    place(repo, { 'photo.png': V2['photo.png']!, 'clip.mp4': V2['clip.mp4']!, 'bundle.zip': V2['bundle.zip']! });
    const diff = git(['diff', '--', 'photo.png']);
    assert.match(diff, new RegExp(`^-oid: sha256:${fixtureSha('photo.png')}$`, 'm'));
    assert.match(diff, new RegExp(`^\\+oid: sha256:${fixtureSha('photo-tagged.png')}$`, 'm'));
    assert.match(diff, /^\+ +- \{uri: "atom:\/\/sha256:[0-9a-f]{64}"/m, 'an added atom ref');
    assert.doesNotMatch(diff, /Binary files/);
    const porcelain = git(['status', '--porcelain']);
    assert.deepEqual(porcelain.split('\n').filter(Boolean).sort(), [' M bundle.zip', ' M clip.mp4', ' M photo.png']);
    git(['commit', '-q', '-am', 'media v2']);
    expectTree(V2, repo, 'v2 committed');
    const stat = git(['diff', '--stat', 'main', 'media-v2']);
    assert.match(stat, /photo\.png/);
    assert.match(stat, /clip\.mp4/);
    assert.match(stat, /bundle\.zip/);
  });

  await t.test('checkout back and forth', () => {
    git(['checkout', '-q', 'main']);
    expectTree(BASE, repo, 'main');
    git(['checkout', '-q', 'media-v2']);
    expectTree(V2, repo, 'media-v2 again');
    git(['checkout', '-q', 'main']);
    expectTree(BASE, repo, 'main again');
  });

  await t.test('fast-forward merge', () => {
    git(['checkout', '-q', '-b', 'ff', 'main']);
    git(['merge', '-q', '--ff-only', 'media-v2']);
    expectTree(V2, repo, 'after fast-forward');
    git(['checkout', '-q', 'main']);
    expectTree(BASE, repo, 'back on main');
  });

  await t.test('true merge with a media conflict: ours kept, conflict marked, resolved', () => {
    git(['checkout', '-q', '-b', 'left', 'main']);
    place(repo, { 'photo.png': 'deep.png', 'photo.jpg': 'photo-edited-exif.jpg' });
    git(['commit', '-q', '-am', 'left: new photo, edited jpeg exif']);
    git(['checkout', '-q', '-b', 'right', 'main']);
    place(repo, { 'photo.png': 'photo-tagged.png', 'bundle.zip': 'bundle-v2.zip' });
    git(['commit', '-q', '-am', 'right: tagged photo, bundle v2']);
    git(['checkout', '-q', 'left']);

    const merge = sb.tryGit(repo, ['merge', '--no-edit', 'right']);
    assert.notEqual(merge.status, 0, 'the merge must stop on the conflict');
    assert.match(merge.stdout.toString() + merge.stderr, /CONFLICT.*photo\.png/);
    assert.equal(git(['status', '--porcelain']), 'M  bundle.zip\nUU photo.png\n', 'photo.png conflicted, bundle.zip merged');
    assert.equal(sha256File(path.join(repo, 'photo.png')), fixtureSha('deep.png'), 'ours stays in the worktree, as the file');
    assert.equal(sha256File(path.join(repo, 'bundle.zip')), fixtureSha('bundle-v2.zip'), 'the clean side merged in');
    assert.doesNotMatch(readFileSync(path.join(repo, 'photo.png'), 'latin1'), /<<<<<<<|>>>>>>>/, 'no conflict markers spliced into media');

    git(['checkout', '--theirs', '--', 'photo.png']);
    assert.equal(sha256File(path.join(repo, 'photo.png')), fixtureSha('photo-tagged.png'));
    git(['add', 'photo.png']);
    git(['commit', '-q', '--no-edit']);
    const merged: Tree = { ...BASE, 'photo.png': 'photo-tagged.png', 'photo.jpg': 'photo-edited-exif.jpg', 'bundle.zip': 'bundle-v2.zip' };
    expectTree(merged, repo, 'merge resolved');
    assert.equal(git(['rev-list', '--count', '--merges', 'HEAD']).trim(), '1');
  });

  await t.test('rebase', () => {
    git(['checkout', '-q', '-b', 'feature', 'main']);
    place(repo, { 'clip.mp4': 'course-b.mp4' });
    git(['commit', '-q', '-am', 'feature: new clip']);
    git(['checkout', '-q', '-b', 'trunk', 'main']);
    place(repo, { 'photo.jpg': 'photo-edited-exif.jpg', 'extra.bin': 'random.bin' });
    git(['add', '.']);
    git(['commit', '-q', '-m', 'trunk: edited jpeg, extra file']);
    git(['checkout', '-q', 'feature']);
    git(['rebase', '-q', 'trunk']);
    const rebased: Tree = { ...BASE, 'clip.mp4': 'course-b.mp4', 'photo.jpg': 'photo-edited-exif.jpg', 'extra.bin': 'random.bin' };
    expectTree(rebased, repo, 'after rebase');
    assert.equal(git(['rev-list', '--count', 'trunk..HEAD']).trim(), '1');
    git(['checkout', '-q', 'main']);
    expectTree(BASE, repo, 'main after rebase');
  });

  await t.test('stash a modified binary and pop it', () => {
    place(repo, { 'clip.mp4': 'course-b.mp4' });
    assert.equal(git(['status', '--porcelain']), ' M clip.mp4\n');
    git(['stash', 'push', '-q', '--', 'clip.mp4']);
    expectTree(BASE, repo, 'stashed');
    git(['stash', 'pop', '-q']);
    assert.equal(sha256File(path.join(repo, 'clip.mp4')), fixtureSha('course-b.mp4'), 'popped bytes');
    assert.equal(git(['status', '--porcelain']), ' M clip.mp4\n');
    git(['checkout', '--', 'clip.mp4']);
    expectTree(BASE, repo, 'stash change discarded');
  });

  await t.test('worktree: files smudged from the shared store', () => {
    const wt = sb.path('wt-v2');
    git(['worktree', 'add', '-q', wt, 'media-v2']);
    expectTree(V2, wt, 'new worktree');
    assert.ok(!existsSync(path.join(sb.git(wt, ['rev-parse', '--absolute-git-dir']).trim(), 'panini')), 'no second store per worktree');
    expectTree(BASE, repo, 'main worktree untouched');
  });

  const bare = sb.path('origin.git');
  await t.test('clone from a bare repository, atoms from the original store', () => {
    // No pushing: the pre-push hook's atom upload belongs to the remote-store work (issue 4).
    git(['clone', '-q', '--bare', repo, bare], sb.root);
    const { dir, checkout } = sb.clone(bare, 'clone', { config: { 'panini.storage': store } });
    assert.equal(checkout.status, 0, checkout.stderr);
    expectTree(BASE, dir, 'clone of main');
    sb.git(dir, ['checkout', '-q', 'media-v2']);
    expectTree(V2, dir, 'clone of media-v2');
    touchAll(dir);
    expectTree(V2, dir, 'clone touched');
  });

  await t.test('PANINI_SKIP_SMUDGE=1 clone leaves concepts, and Git sees them as unmodified', () => {
    const { dir, checkout } = sb.clone(bare, 'clone-skip', { env: { PANINI_SKIP_SMUDGE: '1' } });
    assert.equal(checkout.status, 0, checkout.stderr);
    for (const file of Object.keys(BASE)) {
      assert.equal(readFileSync(path.join(dir, file), 'utf8'), show(`HEAD:${file}`, dir), `${file} is its concept`);
    }
    assert.equal(sb.git(dir, ['status', '--porcelain']), '');
    touchAll(dir);
    assert.equal(sb.git(dir, ['status', '--porcelain']), '', 'touched concepts clean back to themselves');
    assert.ok(!existsSync(path.join(dir, '.git', 'panini', 'atoms')) || listFiles(path.join(dir, '.git', 'panini', 'atoms')).length === 0,
      'cleaning a concept stores no atoms');
  });

  await t.test('missing atoms and no remote: checkout fails naming the file and what to do', () => {
    const { checkout } = sb.clone(bare, 'clone-empty');
    assert.notEqual(checkout.status, 0, 'checkout must fail when the atoms are nowhere');
    const stored = Object.keys(BASE).filter((f) => checkout.stderr.includes(f));
    assert.ok(stored.length > 0, `the error names a file:\n${checkout.stderr}`);
    assert.match(checkout.stderr, /PANINI_SKIP_SMUDGE|panini\.url/, 'the error says what to do');
    assert.match(checkout.stderr, /missing/);
  });
});
