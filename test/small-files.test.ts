/**
 * The atoms of many small files cleaned by one filter process go into one journaled pack
 * (src/store/small-files.ts, journal.ts): named when Git closes the pipe or asks for anything but a
 * clean, and named from its journal by the next reader if the process dies first.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { LocalStore } from '../src/store/local.js';
import { PackWriter } from '../src/store/pack-writer.js';
import { SmallFileAtoms } from '../src/store/small-files.js';
import { cliPath, fastTmpdir, tempDir } from './helpers/cli.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { flipByte } from './helpers/store-files.js';

/** Distinct small atoms, the same in every process. */
function atomBytes(i: number): Buffer {
  const block = createHash('sha256').update(`small file ${i}`).digest();
  return Buffer.concat(Array.from({ length: 16 + (i % 7) }, () => block));
}

const storeModule = (name: string): string => pathToFileURL(path.join(import.meta.dirname, '..', 'src', 'store', name)).href;

/**
 * A writer in a child process puts atomBytes(0..199) through SmallFileAtoms into the store at `root`
 * (the last 72 into a journaled pack), runs `lastSteps` (with `packs`, the packs directory), then
 * is SIGKILLed: a filter process dying with its pack unnamed.
 */
function killedBatchWriter(root: string, lastSteps = ''): void {
  const script = `
    import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
    import { linkSync, readdirSync } from 'node:fs';
    const { LocalStore } = await import(${JSON.stringify(storeModule('local.js'))});
    const { SmallFileAtoms } = await import(${JSON.stringify(storeModule('small-files.js'))});
    const { readJournal, journaledPack } = await import(${JSON.stringify(storeModule('journal.js'))});
    const { encodeIndex } = await import(${JSON.stringify(storeModule('pack.js'))});
    const packs = ${JSON.stringify(path.join(root, 'packs'))};
    const writer = new SmallFileAtoms(new LocalStore(${JSON.stringify(root)}));
    for (let i = 0; i < 200; i++) {
      const block = createHash('sha256').update('small file ' + i).digest();
      const bytes = Buffer.concat(Array.from({ length: 16 + (i % 7) }, () => block));
      writer.put(createHash('sha256').update(bytes).digest('hex'), bytes);
    }
    ${lastSteps}
    process.kill(process.pid, 'SIGKILL');
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.signal, 'SIGKILL', child.stderr);
}

const packsOf = (root: string): string[] => (existsSync(path.join(root, 'packs')) ? readdirSync(path.join(root, 'packs')).sort() : []);
const looseCount = (root: string): number => (existsSync(path.join(root, 'atoms')) ? readdirSync(path.join(root, 'atoms'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length : 0);

test('git add of many small files: the first 128 new atoms loose, the rest in one pack, and a checkout gives every file back', { timeout: 120_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const repo = sandbox.initRepo('work');
  sandbox.panini(repo, ['track', '*.bin']);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) files.set(`f${i}.bin`, atomBytes(i));
  for (const [name, bytes] of files) writeFileSync(path.join(repo, name), bytes);
  sandbox.git(repo, ['add', '.']);
  const store = path.join(repo, '.git', 'panini');
  assert.equal(looseCount(store), 128);
  const packs = packsOf(store);
  assert.equal(packs.length, 2, `one pack and its index, no temp file or journal left: ${packs.join(', ')}`);
  assert.equal(new LocalStore(store).packIndexes()[0]!.count, 300 - 128);
  sandbox.git(repo, ['commit', '-q', '-m', 'small files']);
  for (const name of files.keys()) rmSync(path.join(repo, name));
  const checkout = sandbox.tryGit(repo, ['checkout', '--', '.'], { env: { PANINI_TRACE: '1' } });
  assert.equal(checkout.status, 0, checkout.stderr);
  for (const [name, bytes] of files) assert.ok(readFileSync(path.join(repo, name)).equals(bytes), name);
  // Git asks in index order, the order the pack holds them in: the filter reads ahead (with a core
  // to spare for it) and guesses right.
  const ahead = /(\d+) small files sent as read ahead, (\d+) read ahead for nothing/.exec(checkout.stderr);
  assert.ok(ahead, checkout.stderr);
  if (availableParallelism() > 1) assert.ok(Number(ahead[1]) > 0, checkout.stderr);
  assert.ok(Number(ahead[2]) <= Number(ahead[1]), checkout.stderr);
  sandbox.panini(repo, ['fsck']); // fails on any problem
});

test('a clone of many small files from a folder store: their atoms fetched in one batch, most then sent read ahead, every file exact', { timeout: 120_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const work = sandbox.initRepo('work');
  sandbox.panini(work, ['track', '*.bin']);
  writeFileSync(path.join(work, '.paniniconfig'), `[panini]\n\turl = ${pathToFileURL(sandbox.path('store')).href}\n`);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) files.set(`f${i}.bin`, atomBytes(2000 + i));
  for (const [name, bytes] of files) writeFileSync(path.join(work, name), bytes);
  sandbox.git(work, ['add', '.']);
  sandbox.git(work, ['commit', '-q', '-m', 'small files']);
  const origin = sandbox.initRepo('origin.git', { bare: true });
  sandbox.git(work, ['push', '-q', origin, 'main']);
  const { dir, checkout } = sandbox.clone(origin, 'clone', { env: { PANINI_TRACE: '1' } });
  assert.equal(checkout.status, 0, checkout.stderr);
  for (const [name, bytes] of files) assert.ok(readFileSync(path.join(dir, name)).equals(bytes), name);
  const ahead = /(\d+) small files sent as read ahead/.exec(checkout.stderr);
  assert.ok(ahead, checkout.stderr);
  if (availableParallelism() > 1) assert.ok(Number(ahead[1]) > 0, `the fetched files are served as a checkout's are: ${checkout.stderr}`);
  assert.equal(sandbox.git(dir, ['status', '--porcelain']), '');
});

test('git add whose filter process is killed once Git has written the index: the next command names the pack from its journal, and every file checks out', { timeout: 120_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const repo = sandbox.initRepo('work');
  sandbox.panini(repo, ['track', '*.bin']);
  // The filter process behind a relay that, when Git closes the pipe at its exit (the index is
  // written by then), kills it instead of letting it name its pack: the worst moment to die.
  const relay = sandbox.path('relay.mjs');
  writeFileSync(relay, `
    import { spawn } from 'node:child_process';
    const filter = spawn(process.execPath, [${JSON.stringify(cliPath)}, 'filter-process'], { stdio: ['pipe', 'inherit', 'inherit'] });
    process.stdin.pipe(filter.stdin, { end: false });
    process.stdin.on('end', () => filter.kill('SIGKILL'));
    filter.on('exit', () => process.exit(0));
  `);
  sandbox.git(repo, ['config', 'filter.panini.process', `${JSON.stringify(process.execPath)} ${JSON.stringify(relay)}`]);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 200; i++) files.set(`f${i}.bin`, atomBytes(1000 + i));
  for (const [name, bytes] of files) writeFileSync(path.join(repo, name), bytes);
  sandbox.git(repo, ['add', '.']);
  const store = path.join(repo, '.git', 'panini');
  assert.ok(packsOf(store).some((n) => n.endsWith('.journal')), `the pack was left unnamed: ${packsOf(store).join(', ')}`);
  sandbox.git(repo, ['config', '--unset', 'filter.panini.process']);
  sandbox.git(repo, ['config', 'filter.panini.process', 'git-panini filter-process']);
  sandbox.git(repo, ['commit', '-q', '-m', 'small files']);
  sandbox.panini(repo, ['fsck']); // names the pack first: a clean report
  assert.deepEqual(packsOf(store).filter((n) => n.startsWith('.tmp-')), []);
  for (const name of files.keys()) rmSync(path.join(repo, name));
  sandbox.git(repo, ['checkout', '--', '.']);
  for (const [name, bytes] of files) assert.ok(readFileSync(path.join(repo, name)).equals(bytes), name);
});

test('git commit -a of many small files: their pack is named once Git goes quiet, so its hooks find every atom', { timeout: 120_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const repo = sandbox.initRepo('work');
  sandbox.panini(repo, ['track', '*.bin']);
  for (let i = 0; i < 200; i++) writeFileSync(path.join(repo, `f${i}.bin`), atomBytes(3000 + i));
  sandbox.git(repo, ['add', '.']);
  sandbox.git(repo, ['commit', '-q', '-m', 'first versions']);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 200; i++) files.set(`f${i}.bin`, atomBytes(4000 + i));
  for (const [name, bytes] of files) writeFileSync(path.join(repo, name), bytes);
  // The hook runs inside `git commit`, whose filter process is still up: it waits (bounded) for the
  // pack to be named, then checks every atom of the new commit.
  const report = sandbox.path('hook-report');
  const hook = path.join(repo, '.git', 'hooks', 'post-commit');
  writeFileSync(hook, `#!/bin/sh
i=0
while ls .git/panini/packs | grep -q '\\.journal$'; do
  i=$((i + 1)); [ $i -gt 500 ] && { echo "still unnamed" > "${report}"; exit 0; }
  sleep 0.02
done
git panini fsck > "${report}" 2>&1 && echo ok >> "${report}"
`, { mode: 0o755 });
  sandbox.git(repo, ['commit', '-q', '-a', '-m', 'second versions']);
  assert.match(readFileSync(report, 'utf8'), /ok\n$/, readFileSync(report, 'utf8'));
});

test('git stash of many small files (cleaned, then the worktree smudged back, in one filter process) and stash pop give every version back', { timeout: 120_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const repo = sandbox.initRepo('work');
  sandbox.panini(repo, ['track', '*.bin']);
  const committed = new Map<string, Buffer>();
  for (let i = 0; i < 200; i++) committed.set(`f${i}.bin`, atomBytes(5000 + i));
  for (const [name, bytes] of committed) writeFileSync(path.join(repo, name), bytes);
  sandbox.git(repo, ['add', '.']);
  sandbox.git(repo, ['commit', '-q', '-m', 'committed versions']);
  const edited = new Map<string, Buffer>();
  for (let i = 0; i < 200; i++) edited.set(`f${i}.bin`, atomBytes(6000 + i));
  for (const [name, bytes] of edited) writeFileSync(path.join(repo, name), bytes);
  sandbox.git(repo, ['stash', '-q']);
  for (const [name, bytes] of committed) assert.ok(readFileSync(path.join(repo, name)).equals(bytes), `${name}: the committed version back`);
  sandbox.git(repo, ['stash', 'pop', '-q']);
  for (const [name, bytes] of edited) assert.ok(readFileSync(path.join(repo, name)).equals(bytes), `${name}: the stashed version back`);
  sandbox.panini(repo, ['fsck']);
});

test('a store with more than 50 packs: the filter process merges the small ones as it ends, and every file still checks out', { timeout: 60_000 }, (t) => {
  const sandbox = new GitSandbox(t.after.bind(t));
  const repo = sandbox.initRepo('work');
  sandbox.panini(repo, ['track', '*.bin']);
  const root = path.join(repo, '.git', 'panini');
  const store = new LocalStore(root);
  const files = new Map<string, Buffer>();
  for (let p = 0; p < 51; p++) {
    // Each file's atom in a pack of its own, as 51 bulk adds would leave them.
    const name = `p${p}.bin`;
    const bytes = atomBytes(7000 + p);
    files.set(name, bytes);
    const writer = new PackWriter(store);
    writer.put(sha256(bytes), bytes);
    writer.finish();
    writeFileSync(path.join(repo, name), bytes);
  }
  assert.equal(new LocalStore(root).packIndexes().length, 51);
  const added = sandbox.tryGit(repo, ['add', '.']);
  assert.equal(added.status, 0, added.stderr);
  assert.match(added.stderr, /git-panini: merged 51 small packs into 1/);
  assert.equal(new LocalStore(root).packIndexes().length, 1);
  sandbox.git(repo, ['commit', '-q', '-m', 'files']);
  for (const name of files.keys()) rmSync(path.join(repo, name));
  sandbox.git(repo, ['checkout', '--', '.']);
  for (const [name, bytes] of files) assert.ok(readFileSync(path.join(repo, name)).equals(bytes), name);
});

test('a pack of small files is invisible to other processes until sealed, while its writer runs', (t) => {
  const work = tempDir('panini-small-', fastTmpdir());
  t.after(work.dispose);
  const writer = new SmallFileAtoms(new LocalStore(work.dir));
  for (let i = 0; i < 200; i++) writer.put(sha256(atomBytes(i)), atomBytes(i));
  const late = sha256(atomBytes(199));
  assert.equal(new LocalStore(work.dir).has(late), false, 'not named yet');
  assert.ok(packsOf(work.dir).some((n) => n.endsWith('.journal')), 'the journal of a live writer stays');
  const strays: string[] = [];
  new LocalStore(work.dir).packIndexes((p) => strays.push(p));
  assert.deepEqual(strays, [], 'a batch is never a stray for gc');
  writer.seal();
  assert.ok(new LocalStore(work.dir).get(late).equals(atomBytes(199)));
  assert.deepEqual(packsOf(work.dir).filter((n) => n.startsWith('.tmp-')), []);
});

test('a batch of small files is named every 65,536 atoms, so its index in memory stays bounded', { timeout: 60_000 }, (t) => {
  const work = tempDir('panini-small-', fastTmpdir());
  t.after(work.dispose);
  const writer = new SmallFileAtoms(new LocalStore(work.dir));
  const total = 128 + 65_536 + 5;
  for (let i = 0; i < total; i++) {
    const bytes = Buffer.from(`tiny atom ${i}`);
    writer.put(sha256(bytes), bytes);
  }
  assert.deepEqual(new LocalStore(work.dir).packIndexes().map((p) => p.count), [65_536], 'the full pack is named already');
  writer.seal();
  assert.deepEqual(new LocalStore(work.dir).packIndexes().map((p) => p.count).sort((a, b) => a - b), [5, 65_536]);
});

test('a filter process killed before naming its pack of small files: the next reader names it from the journal, without the atoms it cannot vouch for', { timeout: 60_000 }, (t) => {
  const work = tempDir('panini-small-', fastTmpdir());
  t.after(work.dispose);
  killedBatchWriter(work.dir);
  const leftovers = packsOf(work.dir);
  const journal = leftovers.find((n) => n.endsWith('.journal'));
  const pack = leftovers.find((n) => n.endsWith('.pack'));
  assert.ok(journal && pack && !leftovers.some((n) => n.endsWith('.idx')), `a journal and its pack, unnamed: ${leftovers.join(', ')}`);
  // The last atom damaged (its bytes end the pack), and a record cut short by the crash.
  flipByte(path.join(work.dir, 'packs', pack), statSync(path.join(work.dir, 'packs', pack)).size - 1);
  appendFileSync(path.join(work.dir, 'packs', journal), Buffer.alloc(20, 0xab));

  const store = new LocalStore(work.dir);
  for (let i = 0; i < 199; i++) assert.ok(store.get(sha256(atomBytes(i))).equals(atomBytes(i)), `atom ${i}`);
  assert.equal(store.has(sha256(atomBytes(199))), false, 'the damaged atom is not named');
  const named = packsOf(work.dir);
  assert.equal(named.filter((n) => n.startsWith('.tmp-')).length, 0, `journal and temp pack gone: ${named.join(', ')}`);
  assert.equal(store.packIndexes().length, 1);
  assert.equal(store.packIndexes()[0]!.count, 200 - 128 - 1);
});

test('a filter process killed between giving its pack of small files a name and writing its index: the next reader completes it', { timeout: 60_000 }, (t) => {
  const work = tempDir('panini-small-', fastTmpdir());
  t.after(work.dispose);
  // The writer's last steps, stopped where namePack links the pack under its id: the index never comes.
  killedBatchWriter(work.dir, `
    const journal = packs + '/' + readdirSync(packs).find((n) => n.endsWith('.journal'));
    linkSync(journaledPack(journal), packs + '/' + encodeIndex(readJournal(journal).entries).id + '.pack');
  `);
  assert.equal(packsOf(work.dir).filter((n) => n.endsWith('.idx')).length, 0, 'no index yet');
  const store = new LocalStore(work.dir);
  for (let i = 0; i < 200; i++) assert.ok(store.get(sha256(atomBytes(i))).equals(atomBytes(i)), `atom ${i}`);
  const left = packsOf(work.dir);
  assert.equal(left.length, 2, `the pack and its index, nothing else: ${left.join(', ')}`);
  assert.equal(store.packIndexes()[0]!.count, 200 - 128);
});
