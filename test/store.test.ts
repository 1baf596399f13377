/**
 * The local atom store: atomic, idempotent writes; verified reads; listing that ignores what is
 * not an atom; and where the CLI puts the store (linked worktrees, panini.storage).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AtomError, PaniniError } from '../src/errors.js';
import { sha256Hex } from '../src/hash.js';
import { LocalStore, removeUnlessRefreshed } from '../src/store/local.js';
import { fixturesDir } from './helpers/fixtures.js';
import { git, runCli, tempDir, tempRepo, type TempRepo } from './helpers/cli.js';

function freshStore(): LocalStore {
  const { dir, dispose } = tempDir('panini-store-');
  after(dispose);
  return new LocalStore(path.join(dir, 'store'));
}

/** Every file under a directory, relative paths. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('LocalStore writes', () => {
  test('put stores the atom read-only under ab/cd/<hash>, with no temp file left', () => {
    const store = freshStore();
    const bytes = Buffer.from('an atom of some bytes');
    const hash = sha256Hex(bytes);
    assert.equal(store.put(hash, bytes), true);
    assert.equal(store.atomPath(hash), path.join(store.root, 'atoms', hash.slice(0, 2), hash.slice(2, 4), hash));
    assert.deepEqual(filesUnder(store.atomsDir), [path.join(hash.slice(0, 2), hash.slice(2, 4), hash)]);
    assert.equal(statSync(store.atomPath(hash)).mode & 0o777, 0o444);
    assert.ok(store.get(hash).equals(bytes));
  });

  test('putting an atom that exists writes nothing', () => {
    const store = freshStore();
    const bytes = Buffer.from('stored once');
    const hash = sha256Hex(bytes);
    store.put(hash, bytes);
    const file = store.atomPath(hash);
    const before = statSync(file);
    assert.equal(store.put(hash, bytes), false);
    // Same file, same bytes: not rewritten nor replaced. (Its mtime may be refreshed on purpose, so
    // that gc's grace period protects an atom an add is re-using.)
    const afterPut = statSync(file);
    assert.equal(afterPut.ino, before.ino, 'the atom was replaced');
    assert.equal(afterPut.size, before.size);
    assert.equal(afterPut.mode & 0o777, 0o444);
    assert.deepEqual(filesUnder(store.atomsDir), [path.join(hash.slice(0, 2), hash.slice(2, 4), hash)]);
    // Even with different bytes under the same name, an existing atom is not touched (no second write).
    assert.equal(store.put(hash, Buffer.from('other bytes')), false);
    assert.ok(store.get(hash).equals(bytes));
  });

  test('a reader never sees a half-written atom under its name', async () => {
    const store = freshStore();
    // A 64 MiB atom written by another process while this one watches its final path.
    const size = 64 * 1024 * 1024;
    const script = `
      const { LocalStore } = await import(${JSON.stringify(new URL('../src/store/local.js', import.meta.url).href)});
      const { createHash } = await import('node:crypto');
      const bytes = Buffer.alloc(${size}, 7);
      const hash = createHash('sha256').update(bytes).digest('hex');
      process.stdout.write(hash + '\\n');
      await new Promise((r) => setTimeout(r, 50));
      new LocalStore(${JSON.stringify(store.root)}).put(hash, bytes);
    `;
    const hash = sha256Hex(Buffer.alloc(size, 7));
    const file = store.atomPath(hash);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    let done = false;
    void exited.then(() => (done = true));
    const partial: number[] = [];
    const deadline = Date.now() + 30_000;
    while (!done && Date.now() < deadline) {
      try {
        const seen = statSync(file).size;
        if (seen !== size) partial.push(seen);
      } catch {
        // not there yet
      }
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await exited, 0);
    assert.deepEqual(partial, [], 'the atom was visible under its name before it was complete');
    assert.equal(statSync(file).size, size);
    assert.deepEqual(readdirSync(path.dirname(file)), [hash]);
  });
});

describe('removing what gc decided to delete', () => {
  test('a file refreshed since the cutoff is put back; an old one is removed; nothing is left aside', () => {
    const store = freshStore();
    const bytes = Buffer.from('an atom gc wants to delete');
    const hash = sha256Hex(bytes);
    store.put(hash, bytes);
    const file = store.atomPath(hash);
    const cutoff = Date.now() - 60_000;
    assert.equal(removeUnlessRefreshed(file, cutoff), 'refreshed', 'written just now: newer than the cutoff');
    assert.deepEqual(store.get(hash), bytes);
    const old = new Date(cutoff - 3_600_000);
    utimesSync(file, old, old);
    assert.equal(removeUnlessRefreshed(file, cutoff), 'removed');
    assert.equal(store.has(hash), false);
    assert.equal(removeUnlessRefreshed(file, cutoff), 'absent');
    assert.deepEqual(readdirSync(path.dirname(file)), [], 'no aside file left');
  });
});

describe('LocalStore reads', () => {
  test('a corrupt atom is reported by name, never returned', () => {
    const store = freshStore();
    const bytes = Buffer.from('the real bytes of this atom');
    const hash = sha256Hex(bytes);
    store.put(hash, bytes);
    const file = store.atomPath(hash);
    chmodSync(file, 0o644);
    for (const damaged of [Buffer.from('the real bytes of this atoM'), bytes.subarray(0, 10), Buffer.concat([bytes, Buffer.from('!')])]) {
      writeFileSync(file, damaged);
      assert.throws(() => store.get(hash), (err: unknown) => {
        assert.ok(err instanceof AtomError);
        assert.equal(err.kind, 'corrupt');
        assert.equal(err.hash, hash);
        assert.match(err.message, new RegExp(`atom ${hash} is corrupt`));
        return true;
      });
    }
  });

  test('getInto reads an atom of known size into the caller\'s buffer, or fails as get does', () => {
    const store = freshStore();
    const bytes = Buffer.from('the real bytes of this atom');
    const hash = sha256Hex(bytes);
    store.put(hash, bytes);
    const scratch = Buffer.alloc(1024);
    const read = store.getInto(hash, bytes.length, scratch);
    assert.ok(read.equals(bytes));
    assert.equal(read.buffer, scratch.buffer, 'read into the scratch buffer, not a fresh one');
    assert.ok(store.getInto(hash, bytes.length, Buffer.alloc(bytes.length)).equals(bytes), 'too small a scratch: read like get');

    const file = store.atomPath(hash);
    chmodSync(file, 0o644);
    for (const damaged of [Buffer.from('the real bytes of this atoM'), bytes.subarray(0, 10), Buffer.concat([bytes, Buffer.from('!')])]) {
      writeFileSync(file, damaged);
      assert.throws(() => store.getInto(hash, bytes.length, scratch), (err: unknown) => err instanceof AtomError && err.kind === 'corrupt' && err.hash === hash);
    }
    const absent = sha256Hex(Buffer.from('never stored'));
    assert.throws(() => store.getInto(absent, 12, scratch), (err: unknown) => err instanceof AtomError && err.kind === 'missing' && err.hash === absent);
  });

  test('shard directories are listed once as a hint; atoms this process writes later are still found', () => {
    const store = freshStore();
    // Atoms in different first-level shards, chosen by their hashes.
    const atoms = new Map<string, Buffer>();
    for (let i = 0; atoms.size < 3 && i < 10_000; i++) {
      const bytes = Buffer.from(`atom number ${i}`);
      const hash = sha256Hex(bytes);
      if (![...atoms.keys()].some((h) => h.slice(0, 2) === hash.slice(0, 2))) atoms.set(hash, bytes);
    }
    const [[first, firstBytes], [second, secondBytes], [third, thirdBytes]] = [...atoms];
    store.put(first!, firstBytes!);
    const looked = new LocalStore(store.root);
    assert.equal(looked.mightHave(first!), true, 'a shard that existed is listed');
    assert.equal(looked.mightHave(second!), false, 'a shard absent at the first look: no lookup');
    // Written by this process after its first look, in a first-level shard it has looked at and in one it has not.
    assert.equal(looked.put(second!, secondBytes!), true);
    assert.equal(looked.put(third!, thirdBytes!), true);
    const scratch = Buffer.alloc(64);
    for (const [hash, bytes] of [[second!, secondBytes!], [third!, thirdBytes!]] as const) {
      assert.equal(looked.mightHave(hash), true);
      assert.ok(looked.readUnchecked(hash, bytes.length, scratch)?.equals(bytes));
      assert.equal(looked.presentForWrite(hash, new Set()), true);
    }
    // Written by another process after the first look: the hint says absent, the authoritative answers find it.
    const late = sha256Hex(Buffer.from('written elsewhere'));
    new LocalStore(store.root).put(late, Buffer.from('written elsewhere'));
    assert.equal(looked.has(late), true);
    assert.ok(looked.get(late).equals(Buffer.from('written elsewhere')));
  });

  test('a missing atom is reported by name', () => {
    const store = freshStore();
    const hash = sha256Hex(Buffer.from('never stored'));
    assert.equal(store.has(hash), false);
    assert.throws(() => store.get(hash), (err: unknown) => err instanceof AtomError && err.kind === 'missing' && err.message.includes(hash));
  });

  test('names that are not 64 lowercase hex never reach the file system', () => {
    const store = freshStore();
    for (const name of ['../../etc/passwd', 'A'.repeat(64), 'a'.repeat(63), `${'a'.repeat(62)}/x`, '']) {
      assert.throws(() => store.get(name), PaniniError);
      assert.throws(() => store.has(name), PaniniError);
      assert.throws(() => store.put(name, Buffer.from('x')), PaniniError);
    }
  });

  test('list returns the atoms and skips temp files and strays', () => {
    const store = freshStore();
    const hashes: string[] = [];
    for (let i = 0; i < 20; i++) {
      const bytes = Buffer.from(`atom number ${i}`);
      const hash = sha256Hex(bytes);
      store.put(hash, bytes);
      hashes.push(hash);
    }
    const shard = path.dirname(store.atomPath(hashes[0]!));
    writeFileSync(path.join(shard, `.tmp-123-abcdef012345`), 'an interrupted write');
    writeFileSync(path.join(shard, 'f'.repeat(64)), 'a valid name in the wrong shard');
    writeFileSync(path.join(shard, hashes[0]!.toUpperCase()), 'upper case');
    writeFileSync(path.join(store.atomsDir, 'README'), 'a stray file');
    mkdirSync(path.join(store.atomsDir, 'zz'), { recursive: true });
    writeFileSync(path.join(store.atomsDir, 'zz', 'junk'), 'x');
    const listed = [...store.list()];
    assert.deepEqual(listed.map((a) => a.hash).sort(), [...hashes].sort());
    for (const a of listed) assert.equal(a.size, statSync(store.atomPath(a.hash)).size);
  });
});

describe('where the CLI keeps the store', () => {
  const random = path.join(fixturesDir, 'random.bin');

  function cleanIn(cwd: string): Buffer {
    const r = runCli(['clean', 'random.bin'], { cwd, stdinFile: random });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  }

  function storeOf(cwd: string): string {
    const r = runCli(['stats', '--json'], { cwd });
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout.toString()) as { store: string }).store;
  }

  function leafFilesOf(concept: Buffer): string[] {
    return [...concept.toString().matchAll(/atom:\/\/sha256:([0-9a-f]{64})/g)].map((m) => m[1]!).map((h) => path.join('atoms', h.slice(0, 2), h.slice(2, 4), h));
  }

  function repoWithCommit(): TempRepo {
    const repo = tempRepo(after);
    writeFileSync(path.join(repo.dir, 'README'), 'hello\n');
    git(repo.dir, ['add', 'README']);
    git(repo.dir, ['commit', '-q', '-m', 'init']);
    return repo;
  }

  test('a linked worktree uses the common dir store', () => {
    const repo = repoWithCommit();
    const wtParent = tempDir('panini-wt-');
    after(wtParent.dispose);
    const wt = path.join(wtParent.dir, 'wt');
    git(repo.dir, ['worktree', 'add', '-q', wt]);

    const concept = cleanIn(wt);
    for (const f of leafFilesOf(concept)) assert.ok(existsSync(path.join(repo.store, f)), `${f} is not in the common store`);
    assert.equal(storeOf(wt), repo.store);
    assert.equal(existsSync(path.join(repo.dir, '.git', 'worktrees', 'wt', 'panini')), false);

    // The main worktree reads what the linked one wrote.
    const r = runCli(['smudge', 'random.bin'], { cwd: repo.dir, input: concept });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sha256Hex(r.stdout), sha256Hex(readFileSync(random)));
  });

  test('panini.storage relative to the common dir, also from a linked worktree', () => {
    const repo = repoWithCommit();
    git(repo.dir, ['config', 'panini.storage', 'elsewhere/store']);
    const expected = path.join(repo.dir, '.git', 'elsewhere', 'store');
    const concept = cleanIn(repo.dir);
    for (const f of leafFilesOf(concept)) assert.ok(existsSync(path.join(expected, f)), `${f} is not in ${expected}`);
    assert.equal(existsSync(repo.store), false, 'the default store was used too');
    assert.equal(storeOf(repo.dir), expected);

    const wtParent = tempDir('panini-wt-');
    after(wtParent.dispose);
    const wt = path.join(wtParent.dir, 'wt');
    git(repo.dir, ['worktree', 'add', '-q', wt]);
    assert.equal(storeOf(wt), expected);
  });

  test('panini.storage absolute', () => {
    const repo = repoWithCommit();
    const elsewhere = tempDir('panini-abs-store-');
    after(elsewhere.dispose);
    git(repo.dir, ['config', 'panini.storage', elsewhere.dir]);
    const concept = cleanIn(repo.dir);
    for (const f of leafFilesOf(concept)) assert.ok(existsSync(path.join(elsewhere.dir, f)), `${f} is not in ${elsewhere.dir}`);
    assert.equal(existsSync(repo.store), false, 'the default store was used too');
    assert.equal(storeOf(repo.dir), elsewhere.dir);
  });
});
