/**
 * Crash safety: `git add` of large files with the filter process (`git-panini filter-process`, the
 * child Git starts) killed with SIGKILL at seeded random moments. After every kill: the add failed
 * (or had already finished), the index is as it was, `git panini fsck --all` is clean and every atom
 * in the store, loose file or pack entry, hashes to its name (checked directly, not through
 * git-panini). Then a retry of
 * the same add and a commit succeed on top of the debris, and a fresh checkout gives back every
 * file bit for bit.
 *
 * The data covers the three ways atoms are written: two files of 48 MiB (a pack written by the
 * worker thread), one of 24 MiB (a pack written on the main thread) and one of 6 MiB (loose atom
 * files), sharing blocks with each other and with a committed file (so the add also re-uses
 * existing atoms). Each round has new content, so every round writes atoms
 * afresh. Kills are spread over the writing: by the bytes the filter process has written, against
 * what an uninterrupted add of the same data wrote (measured first on a copy of the store).
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fastTmpdir, tempDir } from './helpers/cli.js';
import { prng } from './helpers/fixtures.js';
import { GitSandbox, sha256, sha256File } from './helpers/git.js';
import { difference } from './helpers/store-files.js';
import { bytesWritten, checkStore, descendantProcesses, dirBytes, filesIn, gitAsync, initRepoAt, interruptedWrites, isFilterProcess, seededBytes, sleep, storeAtomNames } from './helpers/stress.js';

const SEED = 0x5a11ed;
const ROUNDS = 5;
const MiB = 1024 * 1024;
const FILES = ['big1.bin', 'big2.bin', 'big3.bin', 'small.bin'];
/** The whole test stops starting new rounds after this long (each round is bounded on its own too). */
const BUDGET_MS = 70_000;

/** The files of one round, by name; `shared` is the block also in the committed base file. */
function roundData(round: number, shared: Buffer): Map<string, Buffer> {
  const block = (name: string, size: number): Buffer => seededBytes(`crash ${SEED} round ${round} ${name}`, size);
  const a = block('A', 24 * MiB);
  const b = block('B', 16 * MiB);
  const c = block('C', 16 * MiB);
  const e = block('E', 2 * MiB);
  return new Map([
    ['big1.bin', Buffer.concat([shared, a, b])], // 48 MiB
    ['big2.bin', Buffer.concat([a, c, b.subarray(0, 8 * MiB)])], // 48 MiB, shares A and half of B with big1
    ['big3.bin', Buffer.concat([c, shared])], // 24 MiB, shares C with big2 and the base block
    ['small.bin', Buffer.concat([b.subarray(4 * MiB, 8 * MiB), e])], // 6 MiB
  ]);
}

/**
 * Writes the files into the worktree, dated a minute back (not "racily clean": `git commit` does not
 * clean them again); returns their SHA-256 by name.
 */
function writeRound(repo: string, data: Map<string, Buffer>): Map<string, string> {
  const hashes = new Map<string, string>();
  const past = new Date(Date.now() - 60_000);
  for (const [name, bytes] of data) {
    writeFileSync(path.join(repo, name), bytes);
    utimesSync(path.join(repo, name), past, past);
    hashes.set(name, sha256(bytes));
  }
  return hashes;
}

test('crash safety: the filter process SIGKILLed at random points of `git add` leaves no corrupt atom, and a retry succeeds', { timeout: 150_000 }, async (t) => {
  const testStart = Date.now();
  const sb = new GitSandbox(t.after.bind(t));
  const work = tempDir('panini-crash-', fastTmpdir());
  t.after(work.dispose);
  const repo = initRepoAt(sb, path.join(work.dir, 'repo'));
  const store = path.join(repo, '.git', 'panini');
  const rand = prng(SEED);

  // A committed base whose 8 MiB block every round's files also hold (its atoms get re-used).
  sb.panini(repo, ['track', '*.bin']);
  const shared = seededBytes(`crash ${SEED} shared`, 8 * MiB);
  writeFileSync(path.join(repo, 'base.bin'), Buffer.concat([shared, seededBytes(`crash ${SEED} base`, 4 * MiB)]));
  sb.git(repo, ['add', '.gitattributes', 'base.bin']);
  sb.git(repo, ['commit', '-q', '-m', 'base']);
  const baseAtoms = storeAtomNames(store);
  assert.ok(baseAtoms.size > 100, 'the base file was stored as atoms');

  // An uninterrupted add of one round's files, into a copy of the store with its own index: how
  // long it takes, and how many bytes of atoms it writes (the base's shared block already there).
  const calibration = path.join(work.dir, 'calibration');
  mkdirSync(calibration);
  const calibrationStore = path.join(calibration, 'store');
  cpSync(store, calibrationStore, { recursive: true });
  const calibrationData = roundData(0, shared);
  const totalMiB = [...calibrationData.values()].reduce((n, b) => n + b.length, 0) / MiB;
  writeRound(repo, calibrationData);
  const storeBytes = (dir: string): number => dirBytes(path.join(dir, 'atoms')) + dirBytes(path.join(dir, 'packs'));
  const bytesBefore = storeBytes(calibrationStore);
  const calibrate = gitAsync(sb, repo, ['-c', `panini.storage=${calibrationStore}`, 'add', '--', ...FILES], {
    env: { GIT_INDEX_FILE: path.join(calibration, 'index') },
  });
  const calibrated = await calibrate.done;
  assert.equal(calibrated.status, 0, calibrated.stderr);
  const addMs = calibrated.endedAt - calibrate.startedAt;
  const writeBytes = storeBytes(calibrationStore) - bytesBefore;
  assert.ok(writeBytes > 32 * MiB, `the add wrote its new atoms (${writeBytes} bytes)`);
  rmSync(calibration, { recursive: true, force: true });
  // Kills are placed by how much the filter has written (its /proc/<pid>/io), which does not depend
  // on how loaded the machine is; by time where the kernel does not count I/O.
  const byBytes = bytesWritten(process.pid) !== null;
  t.diagnostic(`uninterrupted add of ${FILES.length} files (${totalMiB} MiB): ${addMs} ms, ${(writeBytes / MiB).toFixed(1)} MiB of atoms written; kills placed by ${byBytes ? 'bytes written' : 'time'}`);

  const outcomes: { round: number; targetBytes: number; killed: boolean; failed: boolean; newAtoms: number; newDebris: number }[] = [];
  let expected = new Map<string, string>();
  for (let round = 1; round <= ROUNDS && Date.now() - testStart < BUDGET_MS; round++) {
    const roundStart = Date.now();
    expected = writeRound(repo, roundData(round, shared));
    const dataMs = Date.now() - roundStart;
    const indexBefore = sb.git(repo, ['ls-files', '-s']);
    const atomsBefore = storeAtomNames(store);
    const debris = interruptedWrites(store);
    const debrisBefore = debris.tempFiles.length + debris.orphanPacks.length;
    // Spread the kills over the add: round k falls in the k-th fifth of [0%, 90%] of its writing
    // (or of its duration), at a seeded point.
    const fraction = (0.9 * (round - 1 + rand(1000) / 1000)) / ROUNDS;
    const targetBytes = Math.round(writeBytes * fraction);
    const delayMs = Math.round(addMs * fraction);

    const add = gitAsync(sb, repo, ['add', '--', ...FILES], { timeoutMs: 60_000 });
    // Find the filter process Git started (its child: node running the CLI with filter-process).
    let filterPid: number | undefined;
    const findBy = Date.now() + 10_000;
    while (add.running() && filterPid === undefined && Date.now() < findBy) {
      filterPid = descendantProcesses(add.pid, isFilterProcess)[0];
      if (filterPid === undefined) await sleep(5);
    }
    if (byBytes) {
      const giveUp = Date.now() + 60_000;
      while (filterPid !== undefined && add.running() && Date.now() < giveUp) {
        const written = bytesWritten(filterPid);
        if (written === null || written >= targetBytes) break;
        await sleep(2);
      }
    } else {
      const wait = add.startedAt + delayMs - Date.now();
      if (wait > 0) await sleep(wait);
    }
    const writtenAtKill = filterPid === undefined ? null : bytesWritten(filterPid);
    let killed = false;
    if (filterPid !== undefined && add.running() && descendantProcesses(add.pid, isFilterProcess).includes(filterPid)) {
      process.kill(filterPid, 'SIGKILL');
      killed = true;
    }
    const result = await add.done;
    const addDoneMs = result.endedAt - add.startedAt;
    const failed = result.status !== 0;
    if (!killed) assert.equal(result.status, 0, `round ${round}: an add nobody killed must succeed: ${result.stderr}`);
    if (failed) {
      // Git reports the dead filter ("the remote end hung up", "clean filter 'panini' failed"), or
      // is itself ended by SIGPIPE writing to it.
      t.diagnostic(`round ${round}: git add ended with ${result.signal ?? result.status}: ${result.stderr.trim().split('\n').pop() ?? ''}`);
      // Git cleans up its lock when a filter dies; if one is left, take it away as a user would.
      const lock = path.join(repo, '.git', 'index.lock');
      if (existsSync(lock)) {
        t.diagnostic(`round ${round}: git left index.lock behind; removed`);
        rmSync(lock);
      }
      assert.equal(sb.git(repo, ['ls-files', '-s']), indexBefore, `round ${round}: a failed add leaves the index as it was`);
    }

    const checkStart = Date.now();
    // No corrupt atom: fsck (which moves a corrupt atom to bad/) and a direct hash of every atom.
    const fsck = sb.tryGit(repo, ['panini', 'fsck', '--all', '--json']);
    assert.equal(fsck.status, 0, `round ${round}: fsck --all: ${fsck.stdout.toString()}${fsck.stderr}`);
    assert.deepEqual((JSON.parse(fsck.stdout.toString()) as { problems: unknown[] }).problems, []);
    assert.ok(!existsSync(path.join(store, 'bad')), `round ${round}: nothing was moved aside as corrupt`);
    const fsckMs = Date.now() - checkStart;
    const check = checkStore(store);
    assert.deepEqual(check.corrupt, [], `round ${round}: every atom, loose or packed, hashes to its name`);
    assert.deepEqual(difference(baseAtoms, check.names), new Set(), `round ${round}: atoms of the committed base are still there`);
    const newAtoms = difference(check.names, atomsBefore).size;
    // Evidence the kill came while atoms were being written: new atoms, or an interrupted write
    // (a temp atom or pack, or a pack whose index never came).
    const newDebris = check.tempFiles.length + check.orphanPacks.length - debrisBefore;
    outcomes.push({ round, targetBytes, killed, failed, newAtoms, newDebris });
    t.diagnostic(`round ${round}: kill at ${byBytes ? `${((writtenAtKill ?? 0) / MiB).toFixed(1)} MiB written (target ${(targetBytes / MiB).toFixed(1)})` : `${delayMs} ms`} → ${failed ? 'add failed' : 'add had finished'}; ${newAtoms} new atom(s), ${newDebris} new interrupted write(s), ${check.atoms} atoms hashed (${(check.bytes / MiB).toFixed(0)} MiB), ${filesIn(path.join(store, 'tmp')).length} spool file(s) left; data ${dataMs} ms, add ${addDoneMs} ms, fsck ${fsckMs} ms, round ${Date.now() - roundStart} ms`);
  }

  assert.ok(outcomes.length >= 3, `at least 3 rounds ran within the time budget (ran ${outcomes.length})`);
  const midWrite = outcomes.filter((o) => o.killed && o.failed && o.newAtoms + o.newDebris > 0);
  assert.ok(midWrite.length >= 2, `at least two rounds killed the filter while it was writing atoms: ${JSON.stringify(outcomes)}`);

  // The retry: the same add on top of whatever the killed rounds left, then a commit.
  const retry = await gitAsync(sb, repo, ['add', '--', ...FILES], { timeoutMs: 60_000 }).done;
  assert.equal(retry.status, 0, `the retried add succeeds: ${retry.stderr}`);
  sb.git(repo, ['commit', '-q', '-m', 'after the crashes']);
  const fsck = sb.tryGit(repo, ['panini', 'fsck', '--json']);
  assert.equal(fsck.status, 0, `fsck of HEAD after the retry: ${fsck.stdout.toString()}`);
  assert.ok((JSON.parse(fsck.stdout.toString()) as { atoms: number }).atoms > 0);
  assert.deepEqual(checkStore(store).corrupt, []);

  // A fresh checkout of every file from the atoms gives back the exact bytes.
  for (const name of [...FILES, 'base.bin']) rmSync(path.join(repo, name));
  sb.git(repo, ['checkout', '--', '.'], { timeoutMs: 60_000 });
  for (const [name, hash] of expected) assert.equal(sha256File(path.join(repo, name)), hash, `${name} checks out bit for bit`);
  assert.equal(sha256File(path.join(repo, 'base.bin')), sha256(Buffer.concat([shared, seededBytes(`crash ${SEED} base`, 4 * MiB)])));

  // What the killed adds left is garbage, and the killed processes must not keep it alive: after
  // gc --prune=now the store holds exactly the atoms the history reaches.
  // A killed filter process never removed its writer marker (docs/store-format.md, "Writers and
  // gc"): gc must see that its process is gone, keep nothing for it, and remove the marker.
  const markers = filesIn(path.join(store, 'writers'));
  assert.ok(markers.length >= outcomes.filter((o) => o.killed).length, `the killed filter processes left their markers (${markers.length})`);
  const atomsBeforeGc = storeAtomNames(store).size;
  const gc = JSON.parse(sb.panini(repo, ['gc', '--prune=now', '--json'])) as { deleted: { count: number } };
  assert.deepEqual(filesIn(path.join(store, 'writers')), [], 'gc removed the markers of the dead writers');
  const after = sb.tryGit(repo, ['panini', 'fsck', '--all', '--json']);
  assert.equal(after.status, 0, `fsck --all after gc: ${after.stdout.toString()}`);
  const reachable = (JSON.parse(after.stdout.toString()) as { atoms: number }).atoms;
  const final = checkStore(store);
  assert.deepEqual(final.corrupt, []);
  assert.equal(final.atoms, reachable, `gc left only the ${reachable} reachable atoms (of ${atomsBeforeGc}; deleted ${gc.deleted.count})`);
  t.diagnostic(`gc deleted ${gc.deleted.count} atom(s) left by the killed adds, ${reachable} remain; total ${Date.now() - testStart} ms`);
});
