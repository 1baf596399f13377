/**
 * Packs in the remote store: a push of many atoms uploads packs, a fetch reads them by ranges
 * (few requests, about the bytes needed), a pack that vanishes mid-fetch (a remote gc) falls back
 * to where the atoms went, and `gc --remote` deletes dead packs, rewrites mostly dead ones and
 * keeps mostly live ones whole.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { atomKey, bufferBody, packOfKey } from '../src/store/backend.js';
import { FolderBackend } from '../src/store/folder.js';
import { leafRefs } from '../src/reconstruct/reconstruct.js';
import { downloadAll, fetchConcepts, fetchConceptsWith } from '../src/transfer/fetch.js';
import { Progress } from '../src/transfer/progress.js';
import { pushConcepts } from '../src/transfer/push.js';
import { closeSession, openSession } from '../src/transfer/session.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { addBytes, addFixtures, assertRebuilds, readRemote, remoteAtoms, storeAtoms, storeContext, subdir } from './helpers/remote.js';
import { useS3Suite } from './helpers/s3-server.js';
import { flipByte } from './helpers/store-files.js';
import { interruptedWrites } from './helpers/stress.js';

const suite = useS3Suite('panini-packs-');
const root = suite.root;

test('s3: a fetch reads packed atoms by ranges, in a few requests and about the bytes it needs', async () => {
  const settings = { 'panini.url': `s3://${suite.s3.bucket}/ranges`, 'panini.s3.endpoint': suite.s3.proxyEndpoint, 'panini.s3.forcePathStyle': 'true' };
  const here = storeContext(subdir(root, 'ranges-here'), settings);
  const files = [...addFixtures(here, ['course-a.mp4', 'photo.png']), addBytes(here, 'noise.bin', randomBytes(12 * 1024 * 1024))];
  const atoms = storeAtoms(here);
  assert.ok(atoms.length > 200, `many atoms (${atoms.length})`);
  await suite.s3.stats(true);
  const pushed = await pushConcepts(here, files.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
  const push = await suite.s3.stats(true);
  assert.equal(pushed.uploaded, atoms.length);
  assert.ok(push.requests < 20, `push: ${push.requests} requests for ${atoms.length} atoms (${JSON.stringify(push.byMethod)})`);

  // Only one file: the ranges skip the other files' atoms.
  const there = storeContext(subdir(root, 'ranges-there'), settings);
  const noise = files[2]!;
  const r = await fetchConcepts(there, [noise.concept], { quiet: true });
  const fetch = await suite.s3.stats(true);
  assertRebuilds(there, noise);
  assert.ok(r.downloaded > 150);
  assert.ok(fetch.requests < 12, `fetch: ${fetch.requests} requests for ${r.downloaded} atoms`);
  assert.ok(fetch.bytesOut < noise.bytes.length * 1.05 + 256 * 1024, `fetch moved ${fetch.bytesOut} bytes for a ${noise.bytes.length}-byte file`);

  // The rest, then everything again: nothing more moves.
  await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
  for (const f of files) assertRebuilds(there, f);
  assert.deepEqual(storeAtoms(there), atoms);
  assert.equal((await fetchConcepts(there, files.map((f) => f.concept), { quiet: true })).downloaded, 0);
});

test('s3: a fetch of every other atom of a pack skips the atoms between (no gap of a whole atom is read)', async () => {
  const settings = { 'panini.url': `s3://${suite.s3.bucket}/gaps`, 'panini.s3.endpoint': suite.s3.proxyEndpoint, 'panini.s3.forcePathStyle': 'true' };
  const here = storeContext(subdir(root, 'gaps-here'), settings);
  const file = addBytes(here, 'noise.bin', randomBytes(4 * 1024 * 1024));
  await pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true });
  // Every other chunk but the last (the file's remainder, which may be shorter than the gap).
  const leaves = leafRefs(file.concept, here.store).slice(0, -1);
  assert.ok(leaves.length > 20 && leaves.every((l) => l.size > 4096), `content-defined chunks, each more than the 4 KiB gap (${leaves.length})`);
  const wanted = leaves.filter((_, i) => i % 2 === 0);
  const wantedBytes = wanted.reduce((n, l) => n + l.size, 0);

  const there = storeContext(subdir(root, 'gaps-there'), settings);
  const s = await openSession(there, new Progress('test', false));
  try {
    await s.packs.list();
    await suite.s3.stats(true);
    const r = await downloadAll(s, wanted.map((l) => ({ hash: l.hash, size: l.size })));
    const moved = await suite.s3.stats(true);
    assert.equal(r.bytes, wantedBytes);
    assert.ok(moved.bytesOut < wantedBytes + moved.requests * 1024, `moved ${moved.bytesOut} bytes in ${moved.requests} requests for ${wantedBytes} bytes of atoms`);
  } finally {
    await closeSession(s);
  }
});

/** A store holding one file of `size` random bytes, pushed to a new folder store. */
async function pushedToFolder(name: string, size: number): Promise<{ remoteDir: string; settings: Record<string, string>; here: ReturnType<typeof storeContext>; file: ReturnType<typeof addBytes> }> {
  const remoteDir = subdir(root, `${name}-remote`);
  const settings = { 'panini.url': pathToFileURL(remoteDir).href };
  const here = storeContext(subdir(root, `${name}-here`), settings);
  const file = addBytes(here, 'clip.bin', randomBytes(size));
  await pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true });
  return { remoteDir, settings, here, file };
}

test('folder: a fetch session lists the packs while it opens, once for every caller', async () => {
  const { settings, file } = await pushedToFolder('listing', 8 * 1024 * 1024);

  const there = storeContext(subdir(root, 'listing-there'), settings);
  const s = await openSession(there, new Progress('test', false), { listPacks: true });
  try {
    const list = s.backend.list.bind(s.backend);
    let listings = 0;
    s.backend.list = (prefix) => {
      listings++;
      return list(prefix);
    };
    const [a, b] = await Promise.all([s.packs.list(), s.packs.list()]);
    assert.equal(a, b);
    assert.equal(a.length, 1);
    assert.equal(listings, 0, 'the listing begun with the session served both');
    await fetchConceptsWith(s, [file.concept]);
    assert.equal(listings, 0);
  } finally {
    await closeSession(s);
  }
  assertRebuilds(there, file);
});

test('folder: a pack that vanishes between listing and download is looked for again, and found loose', async () => {
  const { remoteDir, settings, file } = await pushedToFolder('vanish', 3 * 1024 * 1024);
  const backend = new FolderBackend(remoteDir);
  const placed = await remoteAtoms(backend);
  assert.ok([...placed.values()].every((p) => packOfKey(p.key)?.part === 'pack'), 'pushed as a pack');

  const there = storeContext(subdir(root, 'vanish-there'), settings);
  const s = await openSession(there, new Progress('test', false));
  try {
    await s.packs.list(); // this session now believes in the pack ...
    // ... which a remote gc replaces meanwhile: here by loose copies of its atoms.
    for (const [hash, at] of placed) {
      const bytes = at.size === 0 ? Buffer.alloc(0) : await readRemote(backend, at.key, { start: at.offset, length: at.size });
      await backend.upload(atomKey(hash), bufferBody(bytes));
    }
    for (const name of readdirSync(path.join(remoteDir, 'packs'))) await backend.delete(`packs/${name}`);
    const r = await downloadAll(s, [...placed.keys()].map((hash) => ({ hash })));
    assert.equal(r.count, placed.size);
  } finally {
    await closeSession(s);
  }
  assertRebuilds(there, file);
});

/** The local store's packs: each pack file's inode, and the atoms its index names. */
function localPacks(ctx: ReturnType<typeof storeContext>): { ino: number; hashes: string[] }[] {
  return ctx.store.packIndexes().map((p) => ({ ino: statSync(p.packPath).ino, hashes: [...p.entries()].map((e) => e.hash).sort() }));
}

test('folder: a fetch that wants most of a pack takes the pack file itself (a hard link), its index naming every atom it holds', async () => {
  const { remoteDir, settings, here, file } = await pushedToFolder('adopt', 6 * 1024 * 1024);
  const backend = new FolderBackend(remoteDir);
  const placed = await remoteAtoms(backend);
  const packKeys = new Set([...placed.values()].map((p) => p.key));
  assert.equal(packKeys.size, 1, 'pushed as one pack');
  const remotePack = path.join(remoteDir, [...packKeys][0]!);

  // All but the last leaf: more than 3/4 of the pack, not all of it.
  const leaves = leafRefs(file.concept, here.store);
  const wanted = leaves.slice(0, -1);
  const there = storeContext(subdir(root, 'adopt-there'), settings);
  const s = await openSession(there, new Progress('test', false));
  try {
    const r = await downloadAll(s, wanted.map((l) => ({ hash: l.hash, size: l.size })));
    assert.equal(r.count, wanted.length);
  } finally {
    await closeSession(s);
  }
  const packs = localPacks(there);
  assert.equal(packs.length, 1);
  assert.equal(packs[0]!.ino, statSync(remotePack).ino, 'the remote pack file, linked');
  assert.deepEqual(packs[0]!.hashes, [...placed.keys()].sort(), 'named: every atom of the pack, those not wanted included (their bytes are there, verified)');
  const remoteIdx = remotePack.replace(/\.pack$/, '.idx');
  assert.ok(readFileSync(there.store.packIndexes()[0]!.idxPath).equals(readFileSync(remoteIdx)), 'every atom held: the index is the remote pack\'s, byte for byte');
  for (const l of leaves) assert.equal(sha256(there.store.get(l.hash)), l.hash);
  assert.ok(Date.now() - statSync(remotePack).mtimeMs < 60_000, 'its time is its arrival (gc grace period)');

  // The file rebuilds, and fetching it moves nothing more.
  await fetchConcepts(there, [file.concept], { quiet: true });
  assertRebuilds(there, file);
  assert.equal(localPacks(there).length, 1, 'no second pack');
  assert.deepEqual(interruptedWrites(there.store.root).tempFiles, [], 'no temp file left');
});

test('folder on another file system: the pack file is copied whole (no link possible), every atom named', async (t) => {
  // /dev/shm (tmpfs) and the temp directory are two file systems on most Linux machines, CI's too.
  const other = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(root).dev ? mkdtempSync('/dev/shm/panini-xfs-') : null;
  if (!other) return t.skip('no second file system to put the remote store on');
  try {
    const settings = { 'panini.url': pathToFileURL(other).href };
    const here = storeContext(subdir(root, 'xfs-here'), settings);
    const file = addBytes(here, 'clip.bin', randomBytes(6 * 1024 * 1024));
    await pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true });
    const remotePacks = readdirSync(path.join(other, 'packs')).filter((n) => n.endsWith('.pack'));
    assert.equal(remotePacks.length, 1, 'pushed as one pack');
    const leaves = leafRefs(file.concept, here.store);
    const wanted = leaves.slice(0, -1);
    const there = storeContext(subdir(root, 'xfs-there'), settings);
    const s = await openSession(there, new Progress('test', false));
    try {
      await downloadAll(s, wanted.map((l) => ({ hash: l.hash, size: l.size })));
    } finally {
      await closeSession(s);
    }
    const [pack] = there.store.packIndexes();
    assert.ok(pack && there.store.packIndexes().length === 1);
    const local = statSync(pack.packPath);
    assert.equal(local.nlink, 1, 'a copy, not a link');
    assert.equal(local.size, statSync(path.join(other, 'packs', remotePacks[0]!)).size, 'the whole file, the atom not wanted included');
    assert.deepEqual([...pack.entries()].map((e) => e.hash).sort(), [...(await remoteAtoms(new FolderBackend(other))).keys()].sort(), 'named: every atom of the pack');
    for (const l of leaves) assert.equal(sha256(there.store.get(l.hash)), l.hash);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

test('folder: a pack taken whole with a damaged atom not wanted: its index leaves that atom out', async () => {
  const { remoteDir, settings, here, file } = await pushedToFolder('adopt-bad-unwanted', 6 * 1024 * 1024);
  const placed = await remoteAtoms(new FolderBackend(remoteDir));
  const leaves = leafRefs(file.concept, here.store);
  const unwanted = leaves.at(-1)!;
  const at = placed.get(unwanted.hash)!;
  flipByte(path.join(remoteDir, at.key), at.offset + Math.floor(at.size / 2));

  const there = storeContext(subdir(root, 'adopt-bad-unwanted-there'), settings);
  const s = await openSession(there, new Progress('test', false));
  try {
    await downloadAll(s, leaves.slice(0, -1).map((l) => ({ hash: l.hash, size: l.size })));
  } finally {
    await closeSession(s);
  }
  const packs = localPacks(there);
  assert.equal(packs.length, 1, 'the pack file taken');
  assert.ok(!packs[0]!.hashes.includes(unwanted.hash), 'the damaged atom is not named');
  assert.ok(!readdirSync(path.join(remoteDir, 'packs')).includes(path.basename(there.store.packIndexes()[0]!.idxPath)), 'an index of its own, not the remote one');
  assert.equal(there.store.has(unwanted.hash), false);
  for (const l of leaves.slice(0, -1)) assert.equal(sha256(there.store.get(l.hash)), l.hash);
});

test('folder: a pack whose wanted atom is damaged is not taken: the download names the atom, the store gets nothing of it', async () => {
  const { remoteDir, settings, file } = await pushedToFolder('adopt-bad', 4 * 1024 * 1024);
  const placed = await remoteAtoms(new FolderBackend(remoteDir));
  const [victim, at] = [...placed].find(([, p]) => p.size > 100)!;
  const packFile = path.join(remoteDir, at.key);
  flipByte(packFile, at.offset + 50);

  const there = storeContext(subdir(root, 'adopt-bad-there'), settings);
  await assert.rejects(fetchConcepts(there, [file.concept], { quiet: true }), (err: Error) => err.message.includes(victim));
  assert.equal(there.store.has(victim), false);
  assert.ok(localPacks(there).every((p) => p.ino !== statSync(packFile).ino), 'the damaged pack file is not in the store');
  assert.deepEqual(interruptedWrites(there.store.root).tempFiles, [], 'no temp file left');
});

test('folder: a push of a packed file places the local pack file itself (a hard link), its index naming the atoms pushed', async () => {
  const remoteDir = subdir(root, 'place-remote');
  const settings = { 'panini.url': pathToFileURL(remoteDir).href };
  const here = storeContext(subdir(root, 'place-here'), settings);
  const file = addBytes(here, 'clip.bin', randomBytes(10 * 1024 * 1024)); // 8 MiB and more: one local pack
  const [local] = localPacks(here);
  assert.ok(local && here.store.packIndexes().length === 1, 'the file was added as one pack');
  const pushed = await pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true });
  assert.equal(pushed.uploaded, storeAtoms(here).length);

  const placed = await remoteAtoms(new FolderBackend(remoteDir));
  const remotePacks = new Set([...placed.values()].map((p) => p.key));
  const linked = [...remotePacks].filter((key) => statSync(path.join(remoteDir, key)).ino === local.ino);
  assert.equal(linked.length, 1, 'the local pack file is a remote pack');
  assert.deepEqual(local.hashes.filter((h) => placed.get(h)?.key !== linked[0]), [], 'named there: every atom of it pushed');
  assert.ok(Date.now() - statSync(path.join(remoteDir, linked[0]!)).mtimeMs < 60_000, 'its time is its arrival (remote gc grace period)');

  const there = storeContext(subdir(root, 'place-there'), settings);
  await fetchConcepts(there, [file.concept], { quiet: true });
  assertRebuilds(there, file);
  assert.deepEqual(interruptedWrites(remoteDir).tempFiles, [], 'no temp file left');
});

test('folder: a push whose packed atom is damaged places nothing of that pack and names the atom', async () => {
  const remoteDir = subdir(root, 'place-bad-remote');
  const settings = { 'panini.url': pathToFileURL(remoteDir).href };
  const here = storeContext(subdir(root, 'place-bad-here'), settings);
  const file = addBytes(here, 'clip.bin', randomBytes(10 * 1024 * 1024));
  const pack = here.store.packIndexes()[0]!;
  const victim = [...pack.entries()].find((e) => e.size > 100)!;
  flipByte(pack.packPath, victim.offset + 50);
  await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true }), (err: Error) => err.message.includes(victim.hash));
  const placed = await remoteAtoms(new FolderBackend(remoteDir));
  assert.equal(placed.has(victim.hash), false, 'the damaged atom is named nowhere in the remote store');
  const packsDir = path.join(remoteDir, 'packs');
  assert.ok(!existsSync(packsDir) || readdirSync(packsDir).every((n) => statSync(path.join(packsDir, n)).ino !== statSync(pack.packPath).ino), 'the damaged pack file is not in the remote store');
});

test('folder: a small pack read into memory before it is sent refuses a damaged local atom the same way, and names it', async () => {
  const remoteDir = subdir(root, 'small-bad-remote');
  const settings = { 'panini.url': pathToFileURL(remoteDir).href };
  const here = storeContext(subdir(root, 'small-bad-here'), settings);
  const file = addBytes(here, 'clip.bin', randomBytes(4 * 1024 * 1024)); // ~64 loose chunks: one pack of 4 MiB to send
  assert.equal(here.store.packIndexes().length, 0, 'loose atoms, sent as a pack built here');
  const victim = storeAtoms(here).find((h) => statSync(here.store.atomPath(h)).size > 100)!;
  flipByte(here.store.atomPath(victim), 50);
  await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true }), (err: Error) => err.message.includes(victim));
  assert.equal((await remoteAtoms(new FolderBackend(remoteDir))).size, 0, 'no pack of them in the remote store');
  assert.deepEqual(interruptedWrites(remoteDir).tempFiles, [], 'no temp file left');
});

test('gc --remote deletes dead packs, rewrites mostly dead ones, keeps mostly live ones whole', { timeout: 120_000 }, async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const remoteDir = sb.path('remote-store');
  mkdirSync(remoteDir);
  const url = pathToFileURL(remoteDir).href;
  const backend = new FolderBackend(remoteDir);
  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work');
  const git = (args: string[], cwd = work): string => sb.git(cwd, args);
  git(['remote', 'add', 'origin', origin]);
  git(['config', 'panini.url', url]);
  git(['config', 'panini.gc.reflog', 'false']);
  git(['config', 'panini.gc.exclusiveRemote', 'true']);
  sb.panini(work, ['track', '*.bin']);
  git(['add', '.gitattributes']);
  const put = (file: string, bytes: Buffer): Buffer => {
    writeFileSync(path.join(work, file), bytes);
    git(['add', file]);
    return bytes;
  };
  const packs = (): string[] => readdirSync(path.join(remoteDir, 'packs')).filter((n) => n.endsWith('.pack')).sort();
  /** The atoms that reached the remote store during `action`. */
  const uploaded = async (action: () => void): Promise<Set<string>> => {
    const before = new Set((await remoteAtoms(backend)).keys());
    action();
    return new Set([...(await remoteAtoms(backend)).keys()].filter((h) => !before.has(h)));
  };

  // One pack for keep.bin (1 MiB) and gone.bin (3 MiB); then gone.bin leaves history: mostly dead.
  const keep = put('keep.bin', randomBytes(1024 * 1024));
  put('gone.bin', randomBytes(3 * 1024 * 1024));
  git(['commit', '-q', '-m', 'v1']);
  const first = await uploaded(() => git(['push', '-q', 'origin', 'main']));
  git(['rm', '-q', 'gone.bin']);
  git(['commit', '-q', '--amend', '-m', 'v1 without gone.bin']);
  // One pack for live.bin (3 MiB) and dead.bin (one atom); then dead.bin goes: mostly live.
  const live = put('live.bin', randomBytes(3 * 1024 * 1024));
  const dead = put('dead.bin', randomBytes(12_000)); // under the 16 KiB minimum chunk: always one atom
  git(['commit', '-q', '-m', 'v2']);
  const second = await uploaded(() => git(['push', '-q', '--force', 'origin', 'main']));
  git(['rm', '-q', 'dead.bin']);
  git(['commit', '-q', '--amend', '-m', 'v2 without dead.bin']);
  git(['push', '-q', '--force', 'origin', 'main']);
  // A branch pushed and deleted: a pack with nothing live.
  git(['checkout', '-q', '-b', 'other']);
  put('other.bin', randomBytes(2 * 1024 * 1024));
  git(['commit', '-q', '-m', 'other']);
  const other = await uploaded(() => git(['push', '-q', 'origin', 'other']));
  git(['checkout', '-q', 'main']);
  git(['push', '-q', 'origin', '--delete', 'other']);
  git(['branch', '-q', '-D', 'other']);
  assert.equal(packs().length, 3, `three pushes, three packs: ${packs().join(', ')}`);

  // What nothing reaches, as the local gc sees it (the same refs): gone.bin, other.bin, dead.bin.
  // A filter process Git started may still be exiting: its writer marker makes gc keep atoms.
  type LocalReport = { deleted: { atoms: { hash: string; size: number }[] }; writers?: { active: number } };
  let local = JSON.parse(sb.panini(work, ['gc', '--json', '--prune=now', '--dry-run'])) as LocalReport;
  for (let i = 0; i < 40 && (local.writers?.active ?? 0) > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    local = JSON.parse(sb.panini(work, ['gc', '--json', '--prune=now', '--dry-run'])) as LocalReport;
  }
  const unreachable = local.deleted.atoms;
  const deadAtom = unreachable.filter((a) => a.size === dead.length).map((a) => a.hash);
  assert.equal(deadAtom.length, 1, `dead.bin is one atom (local gc: ${JSON.stringify({ ...local, deleted: local.deleted.atoms.length })})`);
  assert.ok(second.has(deadAtom[0]!));
  const expected = unreachable.map((a) => a.hash).filter((h) => h !== deadAtom[0]).sort();
  assert.ok(expected.length > 60 && expected.every((h) => first.has(h) || other.has(h)));
  const stored = new Set((await remoteAtoms(backend)).keys());

  interface PackReport { deleted: { atoms: { hash: string }[] }; packs: { rewritten: number; deleted: number; keptUnreachable: { atoms: number } } }
  const gc = (args: string[]): PackReport => JSON.parse(sb.panini(work, ['gc', '--remote', '--json', '--prune=now', ...args])) as PackReport;
  const dry = gc(['--dry-run']);
  assert.deepEqual(dry.deleted.atoms.map((a) => a.hash).sort(), expected);
  assert.equal(packs().length, 3, 'a dry run deletes nothing');
  const real = gc([]);
  assert.deepEqual(real.deleted.atoms.map((a) => a.hash).sort(), expected);
  assert.deepEqual(real.packs, { rewritten: 1, merged: 0, deleted: 2, keptUnreachable: { atoms: 1, bytes: dead.length } });
  const after = await remoteAtoms(backend);
  assert.deepEqual([...after.keys()].sort(), [...stored].filter((h) => !expected.includes(h)).sort());
  assert.ok(after.has(deadAtom[0]!), 'dead.bin\'s atom stays in its mostly live pack');
  assert.equal(packs().length, 2, 'the mostly live pack, and the rewrite of the mostly dead one');

  const { dir: clone, checkout } = sb.clone(origin, 'clone', { config: { 'panini.url': url } });
  assert.equal(checkout.status, 0, checkout.stderr);
  assert.equal(sha256(readFileSync(path.join(clone, 'keep.bin'))), sha256(keep));
  assert.equal(sha256(readFileSync(path.join(clone, 'live.bin'))), sha256(live));
});
