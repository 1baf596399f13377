/**
 * `git panini fsck` on real repositories: a healthy one passes; a corrupt atom is named, moved to
 * <store>/bad/<hash> and fails the check; a missing one is reported; damage in old history is
 * only seen with --all; a damaged manifest is found too.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GitSandbox } from './helpers/git.js';
import { atomFiles, atomNames, difference } from './helpers/store-files.js';

interface FsckJson {
  atoms: number;
  problems: { kind: string; name: string; path: string; commit: string | null }[];
}

/** A repository whose history has an old version of a.bin, the current one, and a 3 MB big.bin. */
function makeRepo(t: { after: (fn: () => void) => void }): { sb: GitSandbox; repo: string; store: string; oldAtoms: Set<string>; headAtoms: Set<string> } {
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('repo');
  const store = path.join(repo, '.git', 'panini');
  sb.panini(repo, ['track', '*.bin']);
  writeFileSync(path.join(repo, 'a.bin'), randomBytes(40_000));
  sb.git(repo, ['add', '.']);
  sb.git(repo, ['commit', '-q', '-m', 'old']);
  const oldAtoms = atomNames(store);
  writeFileSync(path.join(repo, 'a.bin'), randomBytes(40_000));
  writeFileSync(path.join(repo, 'big.bin'), randomBytes(3 * 1024 * 1024));
  sb.git(repo, ['add', '.']);
  sb.git(repo, ['commit', '-q', '-m', 'new']);
  return { sb, repo, store, oldAtoms, headAtoms: difference(atomNames(store), oldAtoms) };
}

function fsck(sb: GitSandbox, repo: string, args: string[] = []): { status: number; out: FsckJson } {
  const r = sb.tryGit(repo, ['panini', 'fsck', '--json', ...args]);
  return { status: r.status, out: JSON.parse(r.stdout.toString()) as FsckJson };
}

function fsckText(sb: GitSandbox, repo: string, args: string[] = []): { status: number; stdout: string } {
  const r = sb.tryGit(repo, ['panini', 'fsck', ...args]);
  return { status: r.status, stdout: r.stdout.toString() };
}

function damage(file: string): void {
  chmodSync(file, 0o644);
  const bytes = readFileSync(file);
  bytes[bytes.length >> 1] ^= 0x40;
  writeFileSync(file, bytes);
}

describe('git panini fsck', () => {
  test('a healthy repository passes, HEAD and all history', (t) => {
    const { sb, repo, headAtoms, oldAtoms } = makeRepo(t);
    const head = fsck(sb, repo);
    assert.equal(head.status, 0, JSON.stringify(head.out));
    assert.equal(head.out.atoms, headAtoms.size);
    const text = fsckText(sb, repo);
    assert.equal(text.status, 0);
    assert.match(text.stdout, /no problems/);
    const all = fsck(sb, repo, ['--all']);
    assert.equal(all.status, 0, JSON.stringify(all.out));
    assert.equal(all.out.atoms, headAtoms.size + oldAtoms.size);
  });

  test('a corrupt atom is named, moved to bad/, and fails the check; then it is missing', (t) => {
    const { sb, repo, store, headAtoms } = makeRepo(t);
    const files = atomFiles(store);
    const leaf = [...headAtoms].find((h) => !readFileSync(files.get(h)!).subarray(0, 17).equals(Buffer.from('panini-manifest 1')))!;
    damage(files.get(leaf)!);
    const r = fsckText(sb, repo);
    assert.equal(r.status, 1);
    assert.match(r.stdout, new RegExp(`corrupt: atom ${leaf} \\((big|a)\\.bin in commit [0-9a-f]{12}\\): .*moved to`));
    assert.match(r.stdout, /1 problem/);
    assert.ok(existsSync(path.join(store, 'bad', leaf)), 'moved aside to bad/');
    assert.ok(!atomNames(store).has(leaf), 'no longer in the store');
    const again = fsck(sb, repo);
    assert.equal(again.status, 1);
    assert.deepEqual(again.out.problems.map((p) => [p.kind, p.name]), [['missing', leaf]]);
  });

  test('a missing atom in old history is seen only with --all', (t) => {
    const { sb, repo, store, oldAtoms } = makeRepo(t);
    const [gone] = oldAtoms;
    rmSync(atomFiles(store).get(gone!)!);
    assert.equal(fsck(sb, repo).status, 0);
    const all = fsck(sb, repo, ['--all']);
    assert.equal(all.status, 1);
    assert.deepEqual(all.out.problems.map((p) => [p.kind, p.name, p.path]), [['missing', gone, 'a.bin']]);
    assert.match(fsckText(sb, repo, ['--all']).stdout, /missing: atom [0-9a-f]{64} \(a\.bin in commit/);
  });

  test('a damaged manifest is found and moved aside', (t) => {
    const { sb, repo, store } = makeRepo(t);
    const [manifest, file] = [...atomFiles(store)].find(([, p]) => readFileSync(p).subarray(0, 17).toString() === 'panini-manifest 1')!;
    damage(file);
    const r = fsck(sb, repo);
    assert.equal(r.status, 1);
    assert.deepEqual(r.out.problems.map((p) => [p.kind, p.name, p.path]), [['corrupt', manifest, 'big.bin']]);
    assert.ok(existsSync(path.join(store, 'bad', manifest)));
  });

  test('a staged file whose atom is missing fails the default check', (t) => {
    const { sb, repo, store } = makeRepo(t);
    const before = atomNames(store);
    writeFileSync(path.join(repo, 'staged.bin'), randomBytes(10_000));
    sb.git(repo, ['add', 'staged.bin']);
    const [atom] = difference(atomNames(store), before);
    rmSync(atomFiles(store).get(atom!)!);
    const r = fsck(sb, repo);
    assert.equal(r.status, 1);
    assert.deepEqual(r.out.problems.map((p) => [p.kind, p.name, p.path, p.commit]), [['missing', atom, 'staged.bin', null]]);
  });
});
