/**
 * End to end under real Git, for each kind of remote store: `git push` to a bare origin uploads the
 * atoms through the pre-push hook; a fresh clone elsewhere, with nothing configured by hand beyond
 * the committed .paniniconfig, checks out every file byte-exact (atoms fetched through the filter's
 * delay capability), older versions too; `git panini fetch`/`pull` fill a clone made without
 * smudging; and a push whose atoms exist nowhere is refused.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConcept } from '../../src/concept/concept.js';
import { LocalStore } from '../../src/store/local.js';
import { fixturesDir, readFixture } from './fixtures.js';
import { GitSandbox, sha256, sha256File } from './git.js';

export interface GitRemoteUnderTest {
  /** The body of a .paniniconfig naming a fresh, empty store. */
  freshConfig(): Promise<string>;
  /** Environment every git child needs to reach the store (credentials). */
  env: NodeJS.ProcessEnv;
  /** How many atom objects the store holds. */
  countAtoms(config: string): Promise<number>;
}

const V1: Record<string, string> = {
  'clip.mp4': 'course-a.mp4',
  'photo.png': 'photo.png',
  'bundle.zip': 'bundle-v1.zip',
  'data/random.bin': 'random.bin',
};
const V2: Record<string, string> = { ...V1, 'clip.mp4': 'course-b.mp4', 'photo.png': 'photo-tagged.png', 'bundle.zip': 'bundle-v2.zip' };

export function defineGitEndToEnd(name: string, remote: GitRemoteUnderTest): void {
  test(`${name}: git push through the hook, fresh clone with only .paniniconfig, history, fetch and pull`, { timeout: 120_000 }, async (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const git = (cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): string => sb.git(cwd, args, { env: { ...remote.env, ...env } });
    const config = await remote.freshConfig();
    const origin = sb.initRepo('origin.git', { bare: true });
    const work = sb.initRepo('work');
    git(work, ['panini', 'track', '*.mp4', '*.png', '*.zip', '*.bin']);
    writeFileSync(path.join(work, '.paniniconfig'), config);
    const place = (tree: Record<string, string>): void => {
      for (const [file, fixture] of Object.entries(tree)) {
        mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
        rmSync(path.join(work, file), { force: true });
        copyFileSync(path.join(fixturesDir, fixture), path.join(work, file));
      }
    };
    place(V1);
    git(work, ['add', '.']);
    git(work, ['commit', '-q', '-m', 'v1']);
    place(V2);
    git(work, ['commit', '-q', '-am', 'v2']);
    git(work, ['remote', 'add', 'origin', origin]);
    git(work, ['push', '-q', 'origin', 'main']);
    const uploaded = await remote.countAtoms(config);
    assert.ok(uploaded > 0, 'the pre-push hook uploaded atoms');

    const expect = (dir: string, tree: Record<string, string>, label: string): void => {
      for (const [file, fixture] of Object.entries(tree)) assert.equal(sha256File(path.join(dir, file)), sha256(readFixture(fixture)), `${label}: ${file}`);
      assert.equal(git(dir, ['status', '--porcelain']), '', `${label}: clean status`);
    };
    const { dir: clone, checkout } = sb.clone(origin, 'clone', { env: remote.env });
    assert.equal(checkout.status, 0, checkout.stderr);
    // The clone cleaned nothing; stats know its files from the index.
    const stats = JSON.parse(git(clone, ['panini', 'stats', '--json'])) as { files: number; logicalBytes: number };
    assert.equal(stats.files, Object.keys(V2).length, 'stats count the checked-out files');
    assert.equal(stats.logicalBytes, Object.values(V2).reduce((n, f) => n + readFixture(f).length, 0));
    // The checkout fetched what rebuilds the files, not the track manifests of the video's
    // components; extracting a track fetches them then. (Looked at before `git status`, whose
    // clean of a racily clean file would store them.)
    const video = parseConcept(Buffer.from(git(clone, ['cat-file', 'blob', 'HEAD:clip.mp4']))).components?.find((c) => c.kind === 'video');
    assert.ok(video, 'the concept of clip.mp4 lists its video track');
    const cloneStore = new LocalStore(path.join(clone, '.git', 'panini'));
    assert.equal(cloneStore.has(video.hash), false, 'the checkout left the track manifest on the remote');
    const fsck = sb.tryGit(clone, ['panini', 'fsck', '--json']);
    assert.equal(fsck.status, 0, `fsck of the fresh clone: no problems\n${fsck.stdout}${fsck.stderr}`);
    assert.ok((JSON.parse(fsck.stdout.toString()) as { unfetchedTrackManifests: string[] }).unfetchedTrackManifests.includes(video.hash), 'fsck names the track manifest not fetched');
    const extract = sb.tryGit(clone, ['panini', 'get-content', 'clip.mp4', '--component', 'video', '-o', path.join(clone, '..', 'video.mp4')], { env: remote.env });
    assert.equal(extract.status, 0, extract.stderr);
    assert.equal(new LocalStore(cloneStore.root).has(video.hash), true, 'get-content fetched the track manifest');
    expect(clone, V2, 'fresh clone');
    git(clone, ['checkout', '-q', 'HEAD~1']);
    expect(clone, V1, 'older version');
    git(clone, ['checkout', '-q', 'main']);

    // Pushing again from the clone (a new commit with one new file) sends only the new atoms.
    copyFileSync(path.join(fixturesDir, 'palette.png'), path.join(clone, 'palette.png'));
    git(clone, ['add', 'palette.png']);
    git(clone, ['commit', '-q', '-m', 'palette']);
    git(clone, ['push', '-q', 'origin', 'main']);
    assert.ok(await remote.countAtoms(config) > uploaded);

    // A clone that skipped smudging holds concepts; fetch + pull turn them into the files.
    const { dir: lazy, checkout: lazyCheckout } = sb.clone(origin, 'lazy', { env: { ...remote.env, PANINI_SKIP_SMUDGE: '1' } });
    assert.equal(lazyCheckout.status, 0, lazyCheckout.stderr);
    assert.match(readFileSync(path.join(lazy, 'clip.mp4'), 'utf8'), /^---\npanini: 1/, 'the worktree holds the concept');
    // Single-shot smudge (no filter process) fetches what it lacks too.
    const concept = sb.tryGit(lazy, ['cat-file', 'blob', 'HEAD:photo.png']).stdout;
    const smudged = sb.tryGit(lazy, ['panini', 'smudge', 'photo.png'], { input: concept, env: remote.env });
    assert.equal(smudged.status, 0, smudged.stderr);
    assert.equal(sha256(smudged.stdout), sha256(readFixture('photo-tagged.png')));
    git(lazy, ['panini', 'fetch', '--all', '--quiet']);
    git(lazy, ['panini', 'pull', '--quiet']);
    expect(lazy, { ...V2, 'palette.png': 'palette.png' }, 'after pull');
  });

  test(`${name}: a push whose atoms are in neither store is refused and the ref not sent`, { timeout: 60_000 }, async (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const git = (cwd: string, args: string[]): string => sb.git(cwd, args, { env: remote.env });
    const origin = sb.initRepo('origin.git', { bare: true });
    const work = sb.initRepo('work');
    git(work, ['panini', 'track', '*.bin']);
    writeFileSync(path.join(work, '.paniniconfig'), await remote.freshConfig());
    copyFileSync(path.join(fixturesDir, 'random.bin'), path.join(work, 'random.bin'));
    git(work, ['add', '.']);
    git(work, ['commit', '-q', '-m', 'one']);
    git(work, ['remote', 'add', 'origin', origin]);
    rmSync(path.join(work, '.git', 'panini', 'atoms'), { recursive: true, force: true });
    const r = sb.tryGit(work, ['push', 'origin', 'main'], { env: remote.env });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /refusing to push: \d+ atoms? needed by random\.bin/);
    assert.equal(sb.tryGit(origin, ['rev-parse', '--verify', '--quiet', 'refs/heads/main']).status, 1, 'the branch did not reach origin');
  });
}

