/**
 * The checks every remote store must pass, run against each backend by its own test file
 * (remote-folder.test.ts, remote-s3.test.ts): the Backend contract itself, then push and fetch
 * through src/transfer with the store named by panini.url.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { ContentRef } from '../../src/atom.js';
import type { Concept } from '../../src/concept/concept.js';
import { buildManifestTree, buildTrackManifest, decodeTrackManifest, encodeTrackManifest, expandRefs, TRACK_MANIFEST_FANOUT } from '../../src/concept/manifest.js';
import { componentLeaves } from '../../src/reconstruct/extract.js';
import { PackWriter } from '../../src/store/pack-writer.js';
import { PaniniError } from '../../src/errors.js';
import { sha256Hex } from '../../src/hash.js';
import { atomKey, bufferBody, GC_EPOCH_KEY, LAYOUTS_PREFIX, layoutKey, packOfKey, type Backend } from '../../src/store/backend.js';
import { decodeLayout, encodeLayout, LayoutBuilder } from '../../src/store/layout.js';
import { LocalStore, type AtomLocation } from '../../src/store/local.js';
import { missingAtoms, reconstruct } from '../../src/reconstruct/reconstruct.js';
import { openRemote } from '../../src/store/remote.js';
import { RemoteInventory } from '../../src/transfer/inventory.js';
import { RemotePacks } from '../../src/transfer/remote-packs.js';
import { readObject } from '../../src/transfer/atoms.js';
import { downloadLayout } from '../../src/transfer/remote-layouts.js';
import { fetchAtoms, fetchConcepts } from '../../src/transfer/fetch.js';
import { pushConcepts } from '../../src/transfer/push.js';
import { tempDir } from './cli.js';
import { addBytes, addFixtures, assertRebuilds, assertRemoteSound, remoteAtoms, storeAtoms, storeContext, subdir, type BuiltFile } from './remote.js';

export const FIXTURES = ['course-a.mp4', 'course-b.mp4', 'photo.png', 'photo-tagged.png', 'bundle-v1.zip', 'bundle-v2.zip', 'random.bin'];

export interface RemoteUnderTest {
  /** Settings naming a fresh, empty remote store (panini.url and what it needs). */
  freshSettings(): Promise<Record<string, string>>;
}

async function listAll(backend: Backend, prefix: string): Promise<{ key: string; size: number }[]> {
  const out = [];
  for await (const o of backend.list(prefix)) out.push(o);
  return out;
}

/** A body that sends `good` bytes, then fails: an upload interrupted half-way. */
function failingBody(size: number, good: number) {
  return {
    size,
    open: () => Readable.from((async function* () {
      yield randomBytes(good);
      throw new Error('connection to the source lost');
    })(), { objectMode: false }),
  };
}

export function defineRemoteSuite(name: string, remote: RemoteUnderTest): void {
  const scratch = (t: { after(fn: () => void): void }): string => {
    const { dir, dispose } = tempDir(`panini-${name}-`);
    t.after(dispose);
    return dir;
  };
  const open = async (settings: Record<string, string>, root: string): Promise<Backend> => {
    const backend = await openRemote(storeContext(root, settings));
    assert.ok(backend);
    return backend;
  };
  /** A fresh remote store and a local store `here`. */
  const layoutStores = async (t: { after(fn: () => void): void }) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const backend = await open(settings, root);
    t.after(() => backend.close());
    return { root, settings, backend, here: storeContext(subdir(root, 'here'), settings) };
  };

  test(`${name}: backend upload, exists, download, list, delete, stats`, async (t) => {
    const backend = await open(await remote.freshSettings(), subdir(scratch(t), 'local'));
    t.after(() => backend.close());
    const atoms = Array.from({ length: 5 }, () => randomBytes(1000 + Math.floor(Math.random() * 5000)));
    const hashes = atoms.map((a) => sha256Hex(a));
    for (const [i, a] of atoms.entries()) await backend.upload(atomKey(hashes[i]!), bufferBody(a));
    await backend.upload('lfs/' + hashes[0], bufferBody(Buffer.from('not an atom')));
    for (const h of hashes) assert.equal(await backend.exists(atomKey(h)), true);
    assert.equal(await backend.exists(atomKey(sha256Hex(Buffer.from('absent')))), false);
    assert.equal(await backend.download(atomKey(sha256Hex(Buffer.from('absent')))), null);
    const stream = await backend.download(atomKey(hashes[2]!));
    assert.ok(stream);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(atoms[2]!));
    // A whole object in one read where the backend can (a folder), else through the stream.
    const t2 = { backend, settings: { timeoutMs: 30_000 } };
    assert.ok((await readObject(t2, atomKey(hashes[3]!), atoms[3]!.length, 'reading'))!.equals(atoms[3]!));
    assert.equal(await readObject(t2, atomKey(sha256Hex(Buffer.from('absent'))), 10, 'reading'), null);
    await assert.rejects(readObject(t2, atomKey(hashes[3]!), atoms[3]!.length - 1, 'reading atom 3'), /reading atom 3: the object is larger than the \d+ bytes expected/);

    const listed = await listAll(backend, 'atoms/');
    assert.deepEqual(listed.map((o) => o.key), hashes.map(atomKey).sort(), 'list: every atom key, sorted, nothing else');
    assert.deepEqual(listed.map((o) => o.size), hashes.map(atomKey).sort().map((k) => atoms[hashes.map(atomKey).indexOf(k)]!.length));
    assert.deepEqual((await listAll(backend, 'lfs/')).map((o) => o.key), ['lfs/' + hashes[0]]);
    assert.deepEqual(await backend.stats('atoms/'), { objects: 5, bytes: atoms.reduce((n, a) => n + a.length, 0) });

    await backend.delete(atomKey(hashes[1]!));
    await backend.delete(atomKey(hashes[1]!)); // absent: not an error
    assert.equal(await backend.exists(atomKey(hashes[1]!)), false);
    assert.equal((await backend.stats()).objects, 5, 'four atoms and the lfs record');
  });

  test(`${name}: an upload whose body fails half-way leaves no object`, async (t) => {
    const backend = await open(await remote.freshSettings(), subdir(scratch(t), 'local'));
    t.after(() => backend.close());
    const key = atomKey(sha256Hex(Buffer.from('never complete')));
    await assert.rejects(backend.upload(key, failingBody(64 * 1024, 16 * 1024)));
    assert.equal(await backend.exists(key), false);
    assert.deepEqual(await listAll(backend, ''), [], 'nothing listed: no partial object, no temp file');
  });

  test(`${name}: push then fetch into a fresh store rebuilds every file exactly; pushing again sends nothing`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const files = addFixtures(here, FIXTURES);
    const items = files.map((f) => ({ concept: f.concept, path: f.name }));
    const first = await pushConcepts(here, items, { quiet: true });
    const local = storeAtoms(here);
    assert.equal(first.uploaded, local.length, 'every atom of the store is one of the files\' and is sent once');
    assert.equal(first.needed, local.length);
    const backend = await open(settings, root);
    t.after(() => backend.close());
    assert.deepEqual([...(await remoteAtoms(backend)).keys()].sort(), local, 'packed: a push of many atoms uploads packs');
    assert.equal(await assertRemoteSound(backend), local.length);

    const again = await pushConcepts(here, items, { quiet: true });
    assert.equal(again.uploaded, 0, 'the inventory knows the remote has them all');

    const there = storeContext(subdir(root, 'there'), settings);
    const fetched = await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
    assert.equal(fetched.downloaded, local.length);
    for (const f of files) assertRebuilds(there, f);
    assert.deepEqual(storeAtoms(there), local, 'fetch brought manifests and track manifests too');
    assert.equal((await fetchConcepts(there, files.map((f) => f.concept), { quiet: true })).downloaded, 0);
  });

  test(`${name}: a track manifest naming an atom the file's manifests do not: a push sends it, a fetch takes the track manifest and leaves its lines unread`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const [file] = addFixtures(here, ['course-a.mp4']);
    const track = file!.concept.components![0]!;
    const samples = decodeTrackManifest(here.store.get(track.hash), track.hash);
    const last = samples[samples.length - 1]!;
    const stray = randomBytes(last.size);
    here.store.put(sha256Hex(stray), stray);
    const crafted = encodeTrackManifest([...samples.slice(0, -1), { ...last, hash: sha256Hex(stray) }]);
    here.store.put(sha256Hex(crafted), crafted);
    const concept = { ...file!.concept, components: [{ ...track, hash: sha256Hex(crafted) }, ...file!.concept.components!.slice(1)] };
    await pushConcepts(here, [{ concept, path: file!.name }], { quiet: true });
    const backend = await open(settings, root);
    t.after(() => backend.close());
    const onRemote = await remoteAtoms(backend);
    assert.ok(onRemote.has(sha256Hex(stray)), 'the push walked the track manifest');
    assert.ok(onRemote.has(sha256Hex(crafted)));

    const thereRoot = subdir(root, 'there');
    const counting = new CountingStore(thereRoot);
    const there = { ...storeContext(thereRoot, settings), store: counting };
    await fetchConcepts(there, [concept], { quiet: true });
    assert.ok(there.store.has(sha256Hex(crafted)), 'the track manifest is fetched');
    assert.ok(!counting.read.has(sha256Hex(crafted)), 'its lines are not read: they name the file\'s leaves when clean writes them');
    // Where whole packs move (a folder), the stray comes with the pack it was pushed in, unasked.
    if (!backend.copyTo) assert.equal(there.store.has(sha256Hex(stray)), false, 'nothing else asks for the stray');
    assertRebuilds(there, { ...file!, concept });
  });

  test(`${name}: a track longer than one track manifest: a fetch brings the manifests below its root, and the track's leaves are all local`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const writer = new PackWriter(here.store);
    const leaves: ContentRef[] = [];
    const parts: Buffer[] = [];
    for (let i = 0, offset = 0; i < TRACK_MANIFEST_FANOUT + 10; i++) {
      const bytes = Buffer.from(`sample ${i}\n`);
      writer.put(sha256Hex(bytes), bytes);
      leaves.push({ hash: sha256Hex(bytes), type: 'AudioChunk', offset, size: bytes.length });
      parts.push(bytes);
      offset += bytes.length;
    }
    const whole = Buffer.concat(parts);
    const refs = buildManifestTree(leaves, writer, 4);
    const track = buildTrackManifest(leaves, writer, 'AudioStream');
    writer.finish();
    const below = decodeTrackManifest(here.store.get(track.hash), track.hash);
    assert.equal(below.length, 2, 'two track manifests under the root');
    const concept: Concept = {
      version: 1, oid: sha256Hex(whole), size: whole.length, format: 'binary', info: {}, refs, body: '', extra: {},
      components: [{ hash: track.hash, type: 'AudioStream', kind: 'audio', track: 1, codec: 'test', samples: leaves.length, size: whole.length }],
    };
    await pushConcepts(here, [{ concept, path: 'long.bin' }], { quiet: true });

    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, [concept], { quiet: true });
    for (const m of [track, ...below]) assert.ok(there.store.has(m.hash), `track manifest ${m.hash} fetched`);
    assert.equal(componentLeaves(concept, there.store, 'audio').length, leaves.length);
  });

  test(`${name}: a store wiped and made again at the same URL gets every atom on the next push`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const files = addFixtures(here, ['photo.png', 'course-a.mp4']);
    const items = files.map((f) => ({ concept: f.concept, path: f.name }));
    await pushConcepts(here, items, { quiet: true });
    const backend = await open(settings, root);
    t.after(() => backend.close());
    for (const o of await listAll(backend, '')) await backend.delete(o.key);
    assert.deepEqual(await listAll(backend, ''), [], 'the store is empty');
    const again = await pushConcepts(here, items, { quiet: true });
    assert.equal(again.uploaded, storeAtoms(here).length, 'the inventory cached for the store that was there is not trusted');
    assert.deepEqual([...(await remoteAtoms(backend)).keys()].sort(), storeAtoms(here));
  });

  test(`${name}: wrong bytes under an atom's name are refused and never stored`, async (t) => {
    const root = scratch(t);
    const settings = { ...(await remote.freshSettings()), 'panini.retries': '1' };
    const backend = await open(settings, root);
    t.after(() => backend.close());
    const real = randomBytes(5000);
    const hash = sha256Hex(real);
    const forged = Buffer.from(real);
    forged[2500] = forged[2500]! ^ 0xff;
    await backend.upload(atomKey(hash), bufferBody(forged));
    const there = storeContext(subdir(root, 'there'), settings);
    await assert.rejects(fetchAtoms(there, [hash], { quiet: true }), (err: Error) => {
      assert.ok(err instanceof PaniniError);
      assert.match(err.message, new RegExp(`atom ${hash} that hash to ${sha256Hex(forged)}`));
      return true;
    });
    assert.equal(there.store.has(hash), false);
    assert.deepEqual(storeAtoms(there), []);
  });

  test(`${name}: fetch names the atoms the remote lacks; push refuses atoms in neither store`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const absent = [sha256Hex(Buffer.from('one')), sha256Hex(Buffer.from('two'))];
    await assert.rejects(fetchAtoms(here, absent, { quiet: true }), (err: Error) => {
      assert.match(err.message, /2 atoms are not in the remote store/);
      for (const h of absent) assert.ok(err.message.includes(h), `names ${h}`);
      return true;
    });

    const file = addBytes(here, 'lost.bin', randomBytes(200_000));
    const victim = storeAtoms(here)[0]!;
    here.store.deleteLoose(victim);
    await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: 'media/lost.bin' }], { quiet: true }), (err: Error) => {
      assert.match(err.message, /refusing to push: 1 atom needed by media\/lost\.bin is neither in the local store nor in the remote store/);
      return true;
    });
  });

  test(`${name}: an atom damaged on local disk is never uploaded`, async (t) => {
    const root = scratch(t);
    const settings = { ...(await remote.freshSettings()), 'panini.retries': '0' };
    const here = storeContext(subdir(root, 'here'), settings);
    const file = addBytes(here, 'photo.bin', randomBytes(50_000));
    const victim = storeAtoms(here)[0]!;
    const atomPath = here.store.atomPath(victim);
    chmodSync(atomPath, 0o644);
    writeFileSync(atomPath, randomBytes(here.store.sizeOf(victim)));
    await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: 'photo.bin' }], { quiet: true }), /corrupt/);
    const backend = await open(settings, root);
    t.after(() => backend.close());
    assert.equal(await backend.exists(atomKey(victim)), false);
  });

  test(`${name}: the inventory decides exactly which atoms the remote lacks, by listing or HEAD`, async (t) => {
    const root = scratch(t);
    // Concurrency 1 gives n unknown atoms a listing budget of n / listPageCost pages where the
    // backend lists (S3: 10 unknown atoms list the first 1,000 keys of the 1,300 present). Of the
    // present atoms asked about, one sorts inside the listed range and one after it (decided by
    // HEAD); the absent ones are decided either way. A folder answers everything by stat.
    const settings = { ...(await remote.freshSettings()), 'panini.concurrency': '1' };
    const backend = await open(settings, root);
    t.after(() => backend.close());
    const present: string[] = [];
    const bodies = Array.from({ length: 1300 }, (_, i) => Buffer.from(`atom ${i}`));
    await Promise.all(Array.from({ length: 16 }, async (_, w) => {
      for (let i = w; i < bodies.length; i += 16) {
        const h = sha256Hex(bodies[i]!);
        present.push(h);
        await backend.upload(atomKey(h), bufferBody(bodies[i]!));
      }
    }));
    present.sort();
    assert.deepEqual((await listAll(backend, 'atoms/')).map((o) => o.key), present.map(atomKey), 'a listing over several pages');
    const absent = Array.from({ length: 8 }, (_, i) => sha256Hex(Buffer.from(`never uploaded ${i}`)));
    const askedPresent = [present[10]!, present[1250]!];
    const asked = [...askedPresent, ...absent];
    const ctx = storeContext(subdir(root, 'here'), settings);
    const transfer = { backend, store: ctx.store, settings: { concurrency: 1, attempts: 2, timeoutMs: 10_000 } };
    const inventory = await RemoteInventory.open(transfer, new RemotePacks(transfer));
    assert.deepEqual((await inventory.missing(asked)).sort(), [...absent].sort());
    // What was learned is kept: asking again costs no request and gives the same answer.
    const again = await RemoteInventory.open(transfer, new RemotePacks(transfer));
    for (const h of askedPresent) assert.equal(again.has(h), true);
    assert.deepEqual((await again.missing(asked)).sort(), [...absent].sort());
    // A remote gc announces itself through gc-epoch: caches recorded before it are dropped.
    await backend.upload(GC_EPOCH_KEY, bufferBody(Buffer.from('a gc ran')));
    const afterGc = await RemoteInventory.open(transfer, new RemotePacks(transfer));
    for (const h of askedPresent) assert.equal(afterGc.has(h), false);
  });

  test(`${name}: files of many atoms get layouts where whole packs move (a folder); a fetch takes their packs and keeps the layouts, and every atom the concepts name is local`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const files = addFixtures(here, ['course-a.mp4', 'course-b.mp4', 'photo.png']);
    await pushConcepts(here, files.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
    const backend = await open(settings, root);
    t.after(() => backend.close());
    const many = files.filter((f) => f.concept.refs.some((r) => r.type === 'Manifest'));
    assert.equal(many.length, 2, 'the two videos are hundreds of atoms, the picture eleven');
    const written = (await listAll(backend, LAYOUTS_PREFIX)).map((o) => o.key).sort();
    assert.deepEqual(written, many.map((f) => layoutKey(f.concept.oid)).sort(), 'a layout per file of many atoms');

    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
    assert.equal((await fetchConcepts(there, files.map((f) => f.concept), { quiet: true })).downloaded, 0, 'a second fetch moves nothing');
    for (const f of files) {
      assert.deepEqual(missingAtoms(f.concept, there.store), [], `${f.name}: every leaf and manifest its concept names is local`);
      assertRebuilds(there, f);
      const layout = there.store.layoutOf(f.concept.oid, f.concept.size);
      assert.equal(layout !== null, many.includes(f), `${f.name}: the fetch kept the remote layout as its own (moved to its packs)`);
      if (!layout) continue;
      const counting = new CountingStore(there.store.root);
      const out: Buffer[] = [];
      reconstruct(f.concept, counting, (b) => out.push(Buffer.from(b)), { discardedOnError: true, release: () => undefined });
      assert.equal(sha256Hex(Buffer.concat(out)), f.concept.oid, `${f.name}: rebuilt through the layout, byte for byte`);
      assert.deepEqual([counting.lookups, counting.reads], [0, 0], `${f.name}: with no atom looked up and no manifest read`);
    }
  });

  test(`${name}: a file whose remote pack is taken whole keeps the remote layout as it is`, async (t) => {
    const { root, settings, backend, here } = await layoutStores(t);
    if (!backend.copyTo) return; // whole packs move from a folder only
    const file = addBytes(here, 'random.bin', randomBytes(8 * 1024 * 1024)); // ~128 chunks and a manifest: one pack
    await pushConcepts(here, [{ concept: file.concept, path: file.name }], { quiet: true });
    const pack = packOfKey((await listAll(backend, 'packs/')).map((o) => o.key).find((k) => k.endsWith('.pack'))!)!;
    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, [file.concept], { quiet: true });
    assert.equal(there.store.holdsPack(pack.id), true, 'the pack was taken whole');
    const oid = file.concept.oid;
    const remoteLayout = await readObject({ backend, settings: { timeoutMs: 30_000 } }, layoutKey(oid), 1 << 24, 'reading the layout');
    assert.ok(readFileSync(join(there.store.root, 'layouts', oid.slice(0, 2), oid)).equals(remoteLayout!), 'the same bytes');
    assertRebuilds(there, file);
  });

  test(`${name}: a later push's layout joins the runs it sent to those already in the store's packs, as a lookup in every pack finds them`, async (t) => {
    const { root, settings, backend, here } = await layoutStores(t);
    const [first, retitled] = addFixtures(here, ['course-a.mp4', 'course-a-retitled.mp4']);
    await pushConcepts(here, [{ concept: first!.concept, path: first!.name }], { quiet: true });
    await pushConcepts(here, [{ concept: retitled!.concept, path: retitled!.name }], { quiet: true });
    const { oid, size } = retitled!.concept;
    const written = await readObject({ backend, settings: { timeoutMs: 30_000 } }, layoutKey(oid), 1 << 24, 'reading the layout');
    const runs = decodeLayout(written!, oid, size)!;
    assert.ok(new Set(runs.map((r) => r.pack)).size >= 2, 'runs in the first push\'s pack and in the one the second push sent');
    // The same runs from a fresh session, every leaf looked up in the listed packs.
    const packs = new RemotePacks({ backend, store: here.store, settings: { concurrency: 2, attempts: 1, timeoutMs: 30_000 } });
    await packs.list();
    const builder = new LayoutBuilder();
    for (const leaf of expandRefs(retitled!.concept.refs, here.store)) {
      const at = packs.find(leaf.hash)!;
      builder.add(at.pack.id, at.entry.offset, leaf.size);
    }
    assert.ok(encodeLayout(oid, size, builder.runs).equals(written!), 'the layout a lookup of every leaf gives');
    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, [retitled!.concept], { quiet: true });
    assert.ok(there.store.layoutOf(oid, size), 'the fetch kept it');
    assertRebuilds(there, retitled!);
  });

  test(`${name}: a fetch leaves alone the files the store rebuilds through layouts of its own (their remote layouts unread), and fetches the others`, async (t) => {
    const { root, settings, backend, here } = await layoutStores(t);
    if (!backend.readWhole) return; // where layouts are read whole (a folder), to count the reads
    const files = addFixtures(here, ['course-a.mp4', 'course-b.mp4', 'course-a-retitled.mp4']);
    const [a, b, c] = files as [BuiltFile, BuiltFile, BuiltFile];
    await pushConcepts(here, files.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, [a.concept, b.concept], { quiet: true });
    for (const f of [a, b]) assert.ok(there.store.layoutOf(f.concept.oid, f.concept.size), `${f.name}: laid out here after the fetch`);
    rmSync(join(there.store.root, 'layouts', b.concept.oid.slice(0, 2), b.concept.oid)); // b: no layout here any more
    const layoutsRead: string[] = [];
    const readWhole = backend.constructor.prototype.readWhole as NonNullable<Backend['readWhole']>;
    backend.constructor.prototype.readWhole = function (this: Backend, key: string, maxBytes: number) {
      if (key.startsWith(LAYOUTS_PREFIX)) layoutsRead.push(key);
      return readWhole.call(this, key, maxBytes);
    };
    t.after(() => (backend.constructor.prototype.readWhole = readWhole));
    await fetchConcepts(there, files.map((f) => f.concept), { quiet: true });
    assert.deepEqual(layoutsRead.sort(), [layoutKey(b.concept.oid), layoutKey(c.concept.oid)].sort(), 'a, laid out here, is left alone');
    for (const f of files) {
      assert.deepEqual(missingAtoms(f.concept, there.store), [], `${f.name}: every atom its concept names is local`);
      assertRebuilds(there, f);
    }
  });

  test(`${name}: a fetch by layouts downloads only the atoms the store lacks, and lays the file out across its packs`, async (t) => {
    const { root, settings, here } = await layoutStores(t);
    const [first, retitled] = addFixtures(here, ['course-a.mp4', 'course-a-retitled.mp4']);
    await pushConcepts(here, [first!, retitled!].map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
    const thereRoot = subdir(root, 'there');
    const there = storeContext(thereRoot, settings);
    await fetchConcepts(there, [first!.concept], { quiet: true });
    const second = await fetchConcepts(there, [retitled!.concept], { quiet: true });
    // Its new atoms and its manifests (in this small fixture, half the size of its frames).
    assert.ok(second.bytes < retitled!.bytes.length * 0.6, `the retitled copy shares all but its title with the first: ${second.bytes} bytes moved`);
    const { oid, size } = retitled!.concept;
    assert.ok(there.store.layoutOf(oid, size), 'its layout kept, moved to the local packs');
    const counting = new CountingStore(thereRoot);
    const out: Buffer[] = [];
    reconstruct(retitled!.concept, counting, (b) => out.push(Buffer.from(b)), { discardedOnError: true, release: () => undefined });
    assert.equal(sha256Hex(Buffer.concat(out)), oid, 'rebuilt through the layout, byte for byte');
    assert.deepEqual([counting.lookups, counting.reads], [0, 0], 'with no atom looked up and no manifest read');
  });

  test(`${name}: a layout's runs asked for ahead, before the packs' indexes, are the very ranges the move then takes`, async (t) => {
    const { root, settings, backend, here } = await layoutStores(t);
    const files = addFixtures(here, ['course-a.mp4', 'course-b.mp4']);
    await pushConcepts(here, files.map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
    const there = storeContext(subdir(root, 'there'), settings);
    const asked: string[] = [];
    const count = (key: string, range?: { start: number; length: number }): void => {
      if (key.startsWith('packs/')) asked.push(range ? `${key} ${range.start}+${range.length}` : key);
    };
    const download = backend.download.bind(backend);
    backend.download = (key, range) => (count(key, range), download(key, range));
    const readRange = backend.readRange?.bind(backend);
    if (readRange) backend.readRange = (key, range) => (count(key, range), readRange(key, range));
    const transfer = { backend, store: there.store, settings: { concurrency: 4, attempts: 1, timeoutMs: 30_000 } };
    const runs = [];
    for (const f of files) {
      const raw = await downloadLayout(transfer, f.concept.oid);
      if (raw) runs.push(...decodeLayout(raw, f.concept.oid, f.concept.size)!);
    }
    assert.ok(runs.length > 0, 'the videos have layouts');
    const packs = new RemotePacks(transfer);
    packs.prefetchRuns(runs);
    await packs.settled();
    const ahead = [...asked];
    assert.ok(ahead.length > 0 && ahead.every((a) => a.endsWith('.pack') === false && a.includes('.pack ')), `ranges of packs only, no index: ${ahead.join(', ')}`);
    const { moved } = await packs.moveRuns(runs, false);
    assert.equal(moved.size, runs.length, 'every run moved');
    assert.deepEqual(asked.filter((a) => a.includes('.pack ')), ahead, 'no range asked for again: the move took those asked for ahead');
  });

  test(`${name}: a damaged atom in a pack a layout reads from is refused, named, and not stored`, async (t) => {
    const { root, settings, backend, here } = await layoutStores(t);
    const [file] = addFixtures(here, ['course-a.mp4']);
    await pushConcepts(here, [{ concept: file!.concept, path: file!.name }], { quiet: true });
    const packs = new RemotePacks({ backend, store: here.store, settings: { concurrency: 2, attempts: 1, timeoutMs: 30_000 } });
    const [pack] = (await packs.list()).filter((p) => p.index);
    const entries = [...pack!.index!.entries()].sort((x, y) => x.offset - y.offset);
    const bad = entries[entries.length >> 1]!;
    const key = `packs/${pack!.id}.pack`;
    const bytes = await readAllOf(await backend.download(key));
    bytes[bad.offset + (bad.size >> 1)]! ^= 0x20;
    await backend.upload(key, bufferBody(bytes));
    const there = storeContext(subdir(root, 'there'), { ...settings, 'panini.retries': '0' });
    await assert.rejects(fetchConcepts(there, [file!.concept], { quiet: true }), (err: Error) => {
      assert.match(err.message, new RegExp(`bytes for atom ${bad.hash} that hash to`));
      return true;
    });
    assert.equal(there.store.has(bad.hash), false, 'the damaged atom is not stored');
  });

  test(`${name}: a remote layout that is damaged, names a pack the store lacks, or lies about the bytes (its runs reordered, or shifted off the atoms) costs its file nothing but a retry`, async (t) => {
    const root = scratch(t);
    const settings = await remote.freshSettings();
    const here = storeContext(subdir(root, 'here'), settings);
    const [a, b, c, d] = addFixtures(here, ['course-a.mp4', 'course-b.mp4', 'course-a-retitled.mp4', 'course-a-fragmented.mp4']);
    await pushConcepts(here, [a!, b!, c!, d!].map((f) => ({ concept: f.concept, path: f.name })), { quiet: true });
    const backend = await open(settings, root);
    t.after(() => backend.close());
    const read = async (f: BuiltFile): Promise<Buffer> => readAllOf(await backend.download(layoutKey(f.concept.oid)));
    // a: one byte flipped; b: a pack id that is not in the store (checksum made right);
    // c: its runs in the opposite order (checksum right, same bytes in all: only the file's hash can tell).
    const damaged = await read(a!);
    damaged[damaged.length - 40]! ^= 1;
    await backend.upload(layoutKey(a!.concept.oid), bufferBody(damaged));
    const runsB = decodeLayout(await read(b!), b!.concept.oid, b!.concept.size)!;
    await backend.upload(layoutKey(b!.concept.oid), bufferBody(encodeLayout(b!.concept.oid, b!.concept.size, runsB.map((r) => ({ ...r, pack: 'f'.repeat(64) })))));
    const runsC = decodeLayout(await read(c!), c!.concept.oid, c!.concept.size)!;
    assert.ok(runsC.length > 1, 'runs to reorder');
    await backend.upload(layoutKey(c!.concept.oid), bufferBody(encodeLayout(c!.concept.oid, c!.concept.size, [...runsC].reverse())));
    // d: its first run one byte later (checksum right): its bytes no longer start on an atom.
    const runsD = decodeLayout(await read(d!), d!.concept.oid, d!.concept.size)!;
    await backend.upload(layoutKey(d!.concept.oid), bufferBody(encodeLayout(d!.concept.oid, d!.concept.size, [{ ...runsD[0]!, offset: runsD[0]!.offset + 1 }, ...runsD.slice(1)])));

    const there = storeContext(subdir(root, 'there'), settings);
    await fetchConcepts(there, [a!, b!, c!, d!].map((f) => f.concept), { quiet: true });
    for (const f of [a!, b!, c!, d!]) assert.deepEqual(missingAtoms(f.concept, there.store), [], `${f.name}: every atom local`);

    assert.equal(there.store.layoutOf(a!.concept.oid, a!.concept.size), null, 'the damaged layout is ignored');
    assert.equal(there.store.layoutOf(b!.concept.oid, b!.concept.size), null, 'the layout naming a missing pack is ignored');
    for (const f of [a!, b!]) assertRebuilds(there, f);
    // The reordered one and the shifted one hold together, so they are kept; the file's hash refuses
    // them, which drops them.
    for (const f of [c!, d!]) {
      const rebuild = (): Buffer => {
        const out: Buffer[] = [];
        reconstruct(f.concept, there.store, (bytes) => out.push(Buffer.from(bytes)), { discardedOnError: true, release: () => undefined });
        return Buffer.concat(out);
      };
      assert.throws(rebuild, /reconstructed bytes do not match the concept/, `${f.name}: refused`);
      assert.equal(there.store.layoutOf(f.concept.oid, f.concept.size), null, `${f.name}: a layout that failed is dropped`);
      assert.equal(sha256Hex(rebuild()), f.concept.oid, `${f.name}: the next rebuild reads the atoms, byte for byte`);
    }
  });
}

/** Counts what a rebuild looks up: atoms by name (packedAt) and verified reads (manifests included). */
class CountingStore extends LocalStore {
  lookups = 0;
  reads = 0;
  readonly read = new Set<string>();
  override packedAt(hash: string): AtomLocation | null {
    this.lookups++;
    return super.packedAt(hash);
  }
  override get(hash: string): Buffer {
    this.reads++;
    this.read.add(hash);
    return super.get(hash);
  }
}

async function readAllOf(stream: Readable | null): Promise<Buffer> {
  assert.ok(stream, 'the object is there');
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
