/**
 * Concurrency, with real Git and real processes:
 *  - two repositories sharing one store (panini.storage), and two worktrees of one repository,
 *    `git add`-ing at the same moment files that share most of their atoms;
 *  - several single-shot `git panini clean` processes racing on identical content;
 *  - `git panini gc --prune=now` (reflogs not counted: the most aggressive collection) running in a
 *    loop beside a `git add` of large files and the commit after it, in the same repository.
 * Afterwards no atom may be lost, truncated or corrupt: every atom (loose file or pack entry)
 * hashes to its name, fsck is clean, and a fresh checkout gives back every file bit for bit.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fastTmpdir, tempDir } from './helpers/cli.js';
import { prng } from './helpers/fixtures.js';
import { GitSandbox, listFiles, sha256, sha256File } from './helpers/git.js';
import { ageFiles, atomFiles, atomNames, difference } from './helpers/store-files.js';
import { checkStore, edited, filesIn, gitAsync, initRepoAt, seededBytes, sleep, spawnAsync, storeAtomNames, type AsyncRun } from './helpers/stress.js';

const MiB = 1024 * 1024;
const SEED = 0xc0c0a;

type Files = Map<string, Buffer>;

/** A few large files (8–32 MiB: packs, by the worker thread from 32 MiB) and many small ones (loose atoms). */
function dataset(label: string, rand: (n: number) => number, bigMiB: readonly number[] = [8, 16, 32]): Files {
  const files: Files = new Map();
  for (const [i, mib] of bigMiB.entries()) files.set(`big${i}.bin`, seededBytes(`${label} big${i}`, mib * MiB));
  for (let i = 0; i < 40; i++) files.set(`small/s${String(i).padStart(2, '0')}.bin`, seededBytes(`${label} small${i}`, 4096 + rand(256 * 1024)));
  return files;
}

/** The same files with small seeded edits: a few bytes in each large file, every third small file. */
function variant(files: Files, rand: (n: number) => number): Files {
  const out: Files = new Map();
  let i = 0;
  for (const [name, bytes] of files) {
    if (name.startsWith('big')) out.set(name, edited(bytes, rand, 2 + rand(3)));
    else out.set(name, i++ % 3 === 0 ? edited(bytes, rand, 1) : bytes);
  }
  return out;
}

/**
 * Writes the files, dated a minute back: not "racily clean" to Git, so `git commit` after `git add`
 * does not clean them all a second time.
 */
function writeFiles(dir: string, files: Files): void {
  const past = new Date(Date.now() - 60_000);
  for (const [name, bytes] of files) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, bytes);
    utimesSync(file, past, past);
  }
}

/** Deletes the tracked files from the worktree, checks them out again from the atoms, compares. */
function assertFreshCheckout(sb: GitSandbox, dir: string, files: Files, label: string): void {
  for (const name of files.keys()) rmSync(path.join(dir, name));
  sb.git(dir, ['checkout', '--', '.'], { timeoutMs: 60_000 });
  for (const [name, bytes] of files) assert.equal(sha256File(path.join(dir, name)), sha256(bytes), `${label}: ${name} checks out bit for bit`);
}

function assertFsckClean(sb: GitSandbox, dir: string, label: string, args: string[] = []): number {
  const r = sb.tryGit(dir, ['panini', 'fsck', '--json', ...args]);
  assert.equal(r.status, 0, `${label}: fsck ${args.join(' ')}: ${r.stdout.toString()}${r.stderr}`);
  const out = JSON.parse(r.stdout.toString()) as { atoms: number; problems: unknown[] };
  assert.deepEqual(out.problems, []);
  return out.atoms;
}

/** Every atom (loose or packed) hashes to its name, no interrupted write is left, nothing was moved aside. */
function assertStoreSound(store: string, label: string): { atoms: number; bytes: number } {
  const check = checkStore(store);
  assert.deepEqual(check.corrupt, [], `${label}: every atom, loose or packed, hashes to its name`);
  assert.deepEqual(check.tempFiles, [], `${label}: no temp file left in the shard directories or packs/`);
  assert.deepEqual(check.orphanPacks, [], `${label}: no pack without its index`);
  assert.deepEqual(filesIn(path.join(store, 'tmp')), [], `${label}: no spooled input left`);
  assert.ok(!existsSync(path.join(store, 'bad')), `${label}: nothing moved aside as corrupt`);
  return { atoms: check.atoms, bytes: check.bytes };
}

async function allSucceed(runs: AsyncRun[], label: string): Promise<void> {
  const results = await Promise.all(runs.map((r) => r.done));
  for (const [i, r] of results.entries()) assert.equal(r.status, 0, `${label} #${i}: ${r.stderr}`);
  // They really ran side by side: each started before any ended.
  const starts = runs.map((r) => r.startedAt);
  const ends = results.map((r) => r.endedAt);
  assert.ok(Math.max(...starts) < Math.min(...ends), `${label}: the runs overlapped`);
}

const totalBytes = (files: Files): number => [...files.values()].reduce((n, b) => n + b.length, 0);

describe('concurrency', () => {
  test('two repositories sharing one store add files with shared atoms at the same time', { timeout: 120_000 }, async (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const work = tempDir('panini-conc-', fastTmpdir());
    t.after(work.dispose);
    const store = path.join(work.dir, 'shared-store');
    const repos = ['a', 'b'].map((name) => initRepoAt(sb, path.join(work.dir, name), { 'panini.storage': store }));
    for (const repo of repos) {
      sb.panini(repo, ['track', '*.bin']);
      sb.git(repo, ['add', '.gitattributes']);
      sb.git(repo, ['commit', '-q', '-m', 'track']);
    }
    const rand = prng(SEED);
    const a = dataset(`shared-store ${SEED}`, rand);
    const versions = [a, variant(a, rand)];
    versions.forEach((files, i) => writeFiles(repos[i]!, files));
    await allSucceed(repos.map((repo) => gitAsync(sb, repo, ['add', '-A'], { timeoutMs: 60_000 })), 'git add in both repositories');
    const sound = assertStoreSound(store, 'shared store');
    const used: number[] = [];
    for (const [i, repo] of repos.entries()) {
      sb.git(repo, ['commit', '-q', '-m', 'concurrent add']);
      used.push(assertFsckClean(sb, repo, `repo ${i}`));
      assertFreshCheckout(sb, repo, versions[i]!, `repo ${i}`);
    }
    // The two versions share most atoms: far fewer distinct atoms than the two need together.
    // (Two adds packing the same new atoms at once may each store a copy: bytes are not compared.)
    assert.ok(sound.atoms < 0.75 * (used[0]! + used[1]!), `atoms are shared: ${sound.atoms} distinct for ${used.join(' + ')}`);
    t.diagnostic(`${sound.atoms} distinct atoms for ${used.join(' + ')} used; ${(sound.bytes / MiB).toFixed(1)} MiB stored (duplicates included) for 2 × ${(totalBytes(a) / MiB).toFixed(1)} MiB added`);
  });

  test('two worktrees of one repository add files with shared atoms at the same time', { timeout: 120_000 }, async (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const work = tempDir('panini-conc-', fastTmpdir());
    t.after(work.dispose);
    const main = initRepoAt(sb, path.join(work.dir, 'main'));
    const store = path.join(main, '.git', 'panini');
    sb.panini(main, ['track', '*.bin']);
    sb.git(main, ['add', '.gitattributes']);
    sb.git(main, ['commit', '-q', '-m', 'track']);
    const linked = path.join(work.dir, 'linked');
    sb.git(main, ['worktree', 'add', '-q', '-b', 'side', linked]);
    const rand = prng(SEED + 1);
    const base = dataset(`worktrees ${SEED}`, rand, [8, 32]);
    const versions = [base, variant(base, rand)];
    const dirs = [main, linked];
    versions.forEach((files, i) => writeFiles(dirs[i]!, files));
    await allSucceed(dirs.map((dir) => gitAsync(sb, dir, ['add', '-A'], { timeoutMs: 60_000 })), 'git add in both worktrees');
    assertStoreSound(store, 'worktrees');
    for (const [i, dir] of dirs.entries()) {
      sb.git(dir, ['commit', '-q', '-m', `worktree ${i}`]);
      assertFsckClean(sb, dir, `worktree ${i}`);
      assertFreshCheckout(sb, dir, versions[i]!, `worktree ${i}`);
    }
    assertFsckClean(sb, main, 'both branches', ['--all']);
  });

  test('single-shot clean processes racing on identical content write each atom whole', { timeout: 60_000 }, async (t) => {
    const sb = new GitSandbox(t.after.bind(t));
    const work = tempDir('panini-conc-', fastTmpdir());
    t.after(work.dispose);
    const repo = initRepoAt(sb, path.join(work.dir, 'repo'));
    const store = path.join(repo, '.git', 'panini');
    // 32 MiB: a pack written by the worker thread; 4 MiB: loose atom files. Three racers each.
    for (const [name, size] of [['race-big.bin', 32 * MiB], ['race-small.bin', 4 * MiB]] as const) {
      const bytes = seededBytes(`clean race ${SEED} ${name}`, size);
      const file = path.join(work.dir, name);
      writeFileSync(file, bytes);
      const runs = [0, 1, 2].map(() => spawnAsync(sb, 'git', ['panini', 'clean', '--', name], { cwd: repo, stdinFile: file, timeoutMs: 60_000 }));
      await allSucceed(runs, `clean ${name}`);
      const concepts = await Promise.all(runs.map(async (r) => (await r.done).stdout.toString()));
      assert.ok(concepts[0]!.startsWith('---'), 'clean printed a concept');
      for (const c of concepts) assert.equal(c, concepts[0], `${name}: every racer produced the same concept`);
      assertStoreSound(store, name);
      const smudged = sb.tryGit(repo, ['panini', 'smudge', '--', name], { input: concepts[0] });
      assert.equal(smudged.status, 0, smudged.stderr);
      assert.equal(sha256(smudged.stdout), sha256(bytes), `${name}: the concept rebuilds the exact bytes`);
    }
  });

  test('gc --prune=now in a loop beside git add of large files and commit loses no atom', { timeout: 150_000 }, async (t) => {
    const started = Date.now();
    const sb = new GitSandbox(t.after.bind(t));
    const work = tempDir('panini-conc-', fastTmpdir());
    t.after(work.dispose);
    const repo = initRepoAt(sb, path.join(work.dir, 'repo'), { 'panini.gc.reflog': 'false' });
    const store = path.join(repo, '.git', 'panini');
    sb.panini(repo, ['track', '*.bin']);
    writeFiles(repo, new Map([['base.bin', seededBytes(`gc race ${SEED} base`, 3 * MiB)]]));
    sb.git(repo, ['add', '.']);
    sb.git(repo, ['commit', '-q', '-m', 'base']);
    const committed: Files = new Map([['base.bin', seededBytes(`gc race ${SEED} base`, 3 * MiB)]]);
    const rand = prng(SEED + 2);
    let overlapping = 0;
    let gcRuns = 0;
    let deletedByGc = 0;

    /** Stages and unstages a file, then ages its atoms by `days`: unreachable, gc's to delete. */
    const makeGarbage = (name: string, bytes: Buffer, days: number): Set<string> => {
      const before = atomNames(store);
      writeFiles(repo, new Map([[name, bytes]]));
      sb.git(repo, ['add', name]);
      sb.git(repo, ['rm', '-q', '--cached', name]);
      rmSync(path.join(repo, name));
      const atoms = difference(atomNames(store), before);
      assert.ok(atoms.size > 0, `${name} was stored as loose atoms`);
      const files = atomFiles(store);
      if (days > 0) ageFiles([...atoms].map((h) => files.get(h)!), days);
      return atoms;
    };

    const ROUNDS = 3;
    for (let round = 1; round <= ROUNDS && Date.now() - started < 80_000; round++) {
      const label = `gc race ${SEED} round ${round}`;
      // Old unreachable atoms that this round's add re-uses: gc and the add race for them.
      const junk = seededBytes(`${label} junk`, 4 * MiB);
      makeGarbage('junk.bin', junk, 1);
      const files: Files = new Map([
        [`r${round}/big1.bin`, Buffer.concat([junk, seededBytes(`${label} big1`, 30 * MiB)])], // 34 MiB: a pack, worker thread
        [`r${round}/big2.bin`, seededBytes(`${label} big2`, 16 * MiB)], // a pack written on the main thread
        [`r${round}/mid.bin`, seededBytes(`${label} mid`, 6 * MiB)], // loose atom files
      ]);
      for (let i = 0; i < 8; i++) files.set(`r${round}/s${i}.bin`, seededBytes(`${label} s${i}`, 1024 + rand(512 * 1024)));
      writeFiles(repo, files);

      let stop = false;
      const gcs: { startedAt: number; endedAt: number; status: number; stderr: string; deleted: number }[] = [];
      const loop = (async () => {
        const until = Date.now() + 60_000;
        while (!stop && Date.now() < until && gcs.length < 200) {
          const run = gitAsync(sb, repo, ['panini', 'gc', '--prune=now', '--json'], { timeoutMs: 60_000 });
          const r = await run.done;
          let deleted = 0;
          try {
            deleted = (JSON.parse(r.stdout.toString()) as { deleted: { count: number } }).deleted.count;
          } catch { /* a failed run prints no report; its status says so */ }
          gcs.push({ startedAt: run.startedAt, endedAt: r.endedAt, status: r.status, stderr: r.stderr, deleted });
        }
      })();
      await sleep(50 + rand(300)); // a gc under way when the add starts, at a seeded point of it
      const add = gitAsync(sb, repo, ['add', '-A'], { timeoutMs: 60_000 });
      const added = await add.done;
      const commit = added.status === 0 ? await gitAsync(sb, repo, ['commit', '-q', '-m', `round ${round}`], { timeoutMs: 60_000 }).done : null;
      stop = true;
      await loop;

      assert.equal(added.status, 0, `round ${round}: git add: ${added.stderr}`);
      assert.equal(commit?.status, 0, `round ${round}: git commit: ${commit?.stderr}`);
      // Nothing the commits need is missing or damaged (all history), and this round's files and the
      // base check out bit for bit.
      const checkStart = Date.now();
      assertFsckClean(sb, repo, `round ${round}`, ['--all']);
      assertStoreSound(store, `round ${round}`);
      assertFreshCheckout(sb, repo, new Map([...files, ['base.bin', committed.get('base.bin')!]]), `round ${round}`);
      for (const g of gcs) assert.equal(g.status, 0, `round ${round}: every gc run succeeds: ${g.stderr}`);
      const during = gcs.filter((g) => g.startedAt < added.endedAt && g.endedAt > add.startedAt).length;
      overlapping += during;
      gcRuns += gcs.length;
      deletedByGc += gcs.reduce((n, g) => n + g.deleted, 0);
      for (const [name, bytes] of files) committed.set(name, bytes);
      t.diagnostic(`round ${round}: add ${added.endedAt - add.startedAt} ms, ${gcs.length} gc run(s), ${during} during the add, ${gcs.reduce((n, g) => n + g.deleted, 0)} atom(s) deleted; checks ${Date.now() - checkStart} ms`);
    }
    assert.ok(overlapping >= 3, `gc ran during the adds (${overlapping} of ${gcRuns} runs overlapped one)`);

    // Once the add that wrote them has ended, --prune=now deletes unreachable atoms however new.
    const garbage = makeGarbage('late-junk.bin', seededBytes(`gc race ${SEED} late junk`, 2 * MiB), 0);
    const r = JSON.parse(sb.panini(repo, ['gc', '--prune=now', '--json'])) as { deleted: { count: number } };
    assert.ok(r.deleted.count >= garbage.size, `gc deletes the unreachable atoms once nothing writes (${r.deleted.count} of ${garbage.size})`);
    const left = storeAtomNames(store);
    assert.deepEqual([...garbage].filter((h) => left.has(h)), [], 'none of them is left');
    assertFsckClean(sb, repo, 'after the last gc', ['--all']);
    assert.deepEqual(listFiles(repo).filter((f) => f.endsWith('.bin')).sort(), [...committed.keys()].sort());
    t.diagnostic(`${gcRuns} gc runs, ${overlapping} overlapping an add, ${deletedByGc} atoms deleted in all; total ${Date.now() - started} ms`);
  });
});
