/**
 * Packs (docs/store-format.md, "Packs"): a large file's atoms go into one pack named by its index;
 * damaged indexes and interrupted writes are never read; gc rewrites packs without unreachable
 * atoms but leaves a pack an add refreshed; fsck moves a corrupt packed atom aside.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ContentRef } from '../src/atom.js';
import { buildConcept } from '../src/concept/build.js';
import { parseConcept } from '../src/concept/concept.js';
import { executePrune, planPrune } from '../src/gc/prune.js';
import { sha256Hex } from '../src/hash.js';
import { leafRefs, reconstruct } from '../src/reconstruct/reconstruct.js';
import { BufferSource } from '../src/source.js';
import { ingest, ingestStream } from '../src/store/ingest.js';
import { LocalStore } from '../src/store/local.js';
import * as packModule from '../src/store/pack.js';
import { PackWriter, rewritePacks } from '../src/store/pack-writer.js';
import { tempDir } from './helpers/cli.js';
import { prng } from './helpers/fixtures.js';

const MiB = 1024 * 1024;

function freshStore(): LocalStore {
  const { dir, dispose } = tempDir('panini-pack-');
  after(dispose);
  return new LocalStore(path.join(dir, 'store'));
}

function randomBytes(size: number, seed: number): Buffer {
  const next = prng(seed);
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) buf.writeUInt32LE(next(0x1_0000_0000) >>> 0, i);
  return buf;
}

function rebuild(store: LocalStore, text: string): Buffer {
  const parts: Buffer[] = [];
  reconstruct(parseConcept(text), store, (b) => parts.push(Buffer.from(b)));
  return Buffer.concat(parts);
}

const packFiles = (store: LocalStore): string[] => (existsSync(store.packsDir) ? readdirSync(store.packsDir).sort() : []);
const looseCount = (store: LocalStore): number => [...store.listLooseNames()].length;
const age = (file: string, days: number): void => {
  const t = new Date(Date.now() - days * 86_400_000);
  utimesSync(file, t, t);
};

describe('packs', () => {
  test('a large file is stored as one pack and rebuilt exactly; a small one stays loose', () => {
    const store = freshStore();
    const big = randomBytes(12 * MiB, 1);
    const built = buildConcept(new BufferSource(big), store);
    const files = packFiles(store);
    assert.equal(files.length, 2, files.join());
    const id = files[0]!.slice(0, -4);
    assert.deepEqual(files, [`${id}.idx`, `${id}.pack`]);
    assert.equal(looseCount(store), 0, 'no loose atom for a packed file');
    assert.deepEqual(rebuild(store, built.text), big);
    for (const leaf of leafRefs(parseConcept(built.text), store)) assert.equal(store.locate(leaf.hash)?.pack?.id, id);

    const small = randomBytes(300_000, 2);
    const builtSmall = buildConcept(new BufferSource(small), store);
    assert.ok(looseCount(store) > 0);
    assert.equal(packFiles(store).length, 2);
    assert.deepEqual(rebuild(store, builtSmall.text), small);
    // A second process sees both.
    const other = new LocalStore(store.root);
    assert.deepEqual(rebuild(other, built.text), big);
    assert.equal(new Set(other.listNames()).size, [...other.listNames()].length, 'each atom listed once');
  });

  test('pieces hashed by the writer\'s thread are named right, stored once, and make up the file\'s hash in order', () => {
    const store = freshStore();
    const known = randomBytes(70_000, 41); // already in the store: named, not written again
    store.put(sha256Hex(known), known);
    const pieces: Buffer[] = [];
    const next = prng(42);
    for (let i = 0; i < 600; i++) {
      const pick = next(10);
      if (pick === 0) pieces.push(known);
      else if (pick === 1 && pieces.length > 0) pieces.push(pieces[next(pieces.length)]!); // a repeat within the file
      else if (pick === 2) pieces.push(Buffer.from([i & 0xff, 0xee])); // tiny
      else pieces.push(randomBytes(4 * (1 + next(75_000)), 1000 + i)); // up to 300 KB
    }
    pieces.push(randomBytes(5 * MiB, 7)); // larger than a ring slot: hashed by the caller
    const writer = new PackWriter(store, { background: true, hashFile: true });
    const named: { hash: string; fresh: boolean }[] = [];
    const freshCount = new Map<string, number>(); // per atom: how many of its puts wrote it
    const counted = (hash: string, fresh: boolean): void => {
      freshCount.set(hash, (freshCount.get(hash) ?? 0) + (fresh ? 1 : 0));
    };
    const scratch = Buffer.alloc(6 * MiB); // reused for every piece, as ingest's window is
    try {
      pieces.forEach((bytes, i) => {
        bytes.copy(scratch);
        writer.putUnnamed(scratch.subarray(0, bytes.length), (hash, fresh) => {
          named[i] = { hash, fresh };
          counted(hash, fresh);
        });
        if (i % 97 === 0) counted(sha256Hex(bytes), writer.put(sha256Hex(bytes), bytes)); // the same atom, named by the caller
      });
      assert.equal(writer.fileDigest!(), sha256Hex(Buffer.concat(pieces.flatMap((b, i) => (i % 97 === 0 ? [b, b] : [b])))));
      assert.equal(named.filter(Boolean).length, pieces.length, 'every piece is named once fileDigest returns');
      writer.finish();
    } finally {
      writer.abort();
    }
    pieces.forEach((bytes, i) => {
      const hash = sha256Hex(bytes);
      assert.equal(named[i]!.hash, hash, `piece ${i}`);
      assert.equal(freshCount.get(hash), hash === sha256Hex(known) ? 0 : 1, `piece ${i}: written once, unless the store had it`);
      assert.ok(store.get(hash).equals(bytes));
    });
    assert.equal(packFiles(store).length, 2, 'one pack and its index');
  });

  test('chunked in the writer\'s own ring (no copy): the same atoms and file hash as chunking elsewhere, across slots and wraps', () => {
    // 72 MiB, read in pieces of odd sizes: windows end mid-chunk, tails move, the ring wraps.
    const input = Buffer.concat([randomBytes(40 * MiB, 51), randomBytes(4 * MiB, 52), randomBytes(40 * MiB, 51).subarray(0, 28 * MiB)]);
    const expected = ingest(new BufferSource(input), new LocalStore(freshStore().root));
    const store = freshStore();
    const writer = new PackWriter(store, { background: true, hashFile: true });
    assert.ok(writer.chunkWindows(), 'the worker runs: its ring lends windows');
    const next = prng(53);
    let pos = 0;
    const fill = (into: Buffer, at: number, max: number): number => {
      const n = Math.min(max, input.length - pos, 1 + next(300_000));
      input.copy(into, at, pos, pos + n);
      pos += n;
      return n;
    };
    let result;
    try {
      result = ingestStream(fill, writer);
      writer.finish();
    } finally {
      writer.abort();
    }
    assert.equal(result.oid, sha256Hex(input));
    assert.deepEqual(result.leaves.map((l) => [l.hash, l.offset, l.size]), expected.leaves.map((l) => [l.hash, l.offset, l.size]));
    const reader = new LocalStore(store.root);
    for (const l of result.leaves) assert.ok(reader.get(l.hash).equals(input.subarray(l.offset, l.offset + l.size)), `atom at ${l.offset}`);
  });

  test('the writer thread kept from file to file: a file dropped half-way leaves nothing in the next one\'s hash', () => {
    const store = freshStore();
    const a = randomBytes(3 * MiB, 61);
    const b = randomBytes(5 * MiB, 62);
    const dropped = new PackWriter(store, { background: true, hashFile: true });
    for (let at = 0; at < a.length; at += 300_000) dropped.putUnnamed(a.subarray(at, at + 300_000), () => undefined);
    dropped.abort(); // no digest asked: its worker has hashed part of a file
    for (const bytes of [b, a]) {
      const writer = new PackWriter(store, { background: true, hashFile: true });
      try {
        for (let at = 0; at < bytes.length; at += 200_000) writer.putUnnamed(bytes.subarray(at, at + 200_000), () => undefined);
        assert.equal(writer.fileDigest!(), sha256Hex(bytes), 'the hash of this file alone');
        writer.finish();
      } finally {
        writer.abort();
      }
    }
  });

  test('a new version re-uses packed atoms, refreshing the pack, and packs only what is new', () => {
    const store = freshStore();
    const v1 = randomBytes(10 * MiB, 3);
    buildConcept(new BufferSource(v1), store);
    const [idx1, pack1] = packFiles(store);
    age(path.join(store.packsDir, pack1!), 30);
    const v2 = Buffer.concat([v1.subarray(0, 5 * MiB), randomBytes(64 * 1024, 4), v1.subarray(5 * MiB)]);
    const built = buildConcept(new BufferSource(v2), new LocalStore(store.root));
    assert.ok(Date.now() - statSync(path.join(store.packsDir, pack1!)).mtimeMs < 60_000, 'the re-used pack was refreshed');
    const second = packFiles(store).filter((f) => f !== idx1 && f !== pack1 && f.endsWith('.pack'));
    assert.equal(second.length, 1);
    assert.ok(statSync(path.join(store.packsDir, second[0]!)).size < 2 * MiB, 'only new atoms and manifests in the new pack');
    assert.deepEqual(rebuild(new LocalStore(store.root), built.text), v2);
  });

  test('rebuilding for a consumer that discards on error: runs of packed atoms read at once, across packs; a damaged atom is named', () => {
    const store = freshStore();
    const v1 = randomBytes(12 * MiB, 51);
    const v2 = Buffer.concat([v1.subarray(0, 5 * MiB), randomBytes(64 * 1024, 52), v1.subarray(5 * MiB), randomBytes(3 * MiB, 53)]);
    buildConcept(new BufferSource(v1), store);
    const text = buildConcept(new BufferSource(v2), store).text; // its atoms: in two packs, out of order
    assert.equal(packFiles(store).length, 4);
    const rebuildReleased = (): { bytes: Buffer; releases: number } => {
      const parts: Buffer[] = [];
      let releases = 0;
      reconstruct(parseConcept(text), store, (b) => parts.push(Buffer.from(b)), { discardedOnError: true, release: () => void releases++ });
      return { bytes: Buffer.concat(parts), releases };
    };
    const { bytes, releases } = rebuildReleased();
    assert.ok(bytes.equals(v2));
    assert.ok(releases > 0 && releases < leafRefs(parseConcept(text), store).length / 4, `${releases} reads for the runs`);

    const leaf = leafRefs(parseConcept(text), store)[3]!;
    const pack = store.packIndexes().find((p) => [...p.entries()].some((e) => e.hash === leaf.hash))!;
    const entry = [...pack.entries()].find((e) => e.hash === leaf.hash)!;
    const packBytes = readFileSync(pack.packPath);
    packBytes[entry.offset + 10]! ^= 0xff;
    writeFileSync(pack.packPath, packBytes);
    assert.throws(() => rebuildReleased(), (err: Error) => err.message.includes(leaf.hash));
  });

  test('rebuilding through pack windows: forward gaps, atoms used again, more packs than windows, an atom larger than a window; no window read into before release', () => {
    const store = freshStore();
    // Six packs of atoms of 1–300 KB, and a 5 MiB atom (larger than a 4 MiB window) in the last.
    const packs: Buffer[][] = [];
    for (let p = 0; p < 6; p++) {
      const writer = new PackWriter(store, {});
      const atoms = Array.from({ length: 8 }, (_, i) => randomBytes(1024 * (1 + ((p * 37 + i * 91) % 300)), 700 + p * 10 + i));
      if (p === 5) atoms.push(randomBytes(5 * MiB, 799));
      for (const a of atoms) writer.put(sha256Hex(a), a);
      assert.ok(writer.finish());
      packs.push(atoms);
    }
    assert.equal(packFiles(store).filter((f) => f.endsWith('.pack')).length, 6);
    const order: [number, number][] = [
      [0, 0], [0, 1], [0, 3], [0, 2], [1, 0], [0, 0], [2, 5], [2, 1], [3, 0], [4, 4], [1, 7], // forward, gaps, back, five packs
      [0, 0], [5, 8], [5, 0], [0, 7], [4, 4], [4, 5], [3, 7], [2, 2], [0, 0], [5, 8], [1, 1], [1, 2],
    ];
    const atoms = order.map(([p, i]) => packs[p]![i]!);
    const file = Buffer.concat(atoms);
    let offset = 0;
    const refs: ContentRef[] = atoms.map((a) => {
      const ref: ContentRef = { hash: sha256Hex(a), type: 'Raw', offset, size: a.length };
      offset += a.length;
      return ref;
    });
    const concept = { refs, oid: sha256Hex(file), size: file.length };
    // A writer that keeps what it is given until release(), as the filter's output does: a window
    // read into too early would change bytes still waiting to be written.
    const held: Buffer[] = [];
    const out: Buffer[] = [];
    const copyHeld = (): void => {
      for (const b of held.splice(0)) out.push(Buffer.from(b));
    };
    let releases = 0;
    reconstruct(concept, new LocalStore(store.root), (b) => held.push(b), {
      discardedOnError: true, release: () => (releases++, copyHeld()), whileBlocked: () => undefined,
    });
    copyHeld();
    assert.ok(Buffer.concat(out).equals(file), 'the file, byte-exact');
    assert.ok(releases < order.length, `${releases} window reads for ${order.length} atoms`);
  });

  test('a damaged index is ignored: its atoms are missing, never read from the wrong place', () => {
    const store = freshStore();
    const built = buildConcept(new BufferSource(randomBytes(9 * MiB, 5)), store);
    const idx = packFiles(store).find((f) => f.endsWith('.idx'))!;
    const file = path.join(store.packsDir, idx);
    const bytes = readFileSync(file);
    bytes[40] = bytes[40]! ^ 1; // a hash byte: the checksum no longer matches
    writeFileSync(file, bytes);
    const fresh = new LocalStore(store.root);
    const leaf = leafRefs(parseConcept(built.text), store)[0]!;
    assert.equal(fresh.has(leaf.hash), false);
    assert.throws(() => fresh.get(leaf.hash), /missing/);
    const strays: string[] = [];
    fresh.packIndexes((p) => strays.push(path.basename(p)));
    assert.ok(strays.some((s) => s.endsWith('.pack')), 'the unindexed pack is reported as a stray');
  });

  test('write-behind (downloads): atoms written by the thread pool are named once written; an abort mid-write leaves nothing', async () => {
    const store = freshStore();
    const atoms = Array.from({ length: 48 }, (_, i) => randomBytes(96_000 + 4 * i, 40 + i));
    const writer = new PackWriter(store, { writeBehind: true });
    for (const a of atoms) assert.equal(writer.put(sha256Hex(a), a), true);
    assert.throws(() => writer.finish(), /before written\(\)/, 'naming the pack waits for its writes');
    const again = new PackWriter(store, { writeBehind: true });
    for (const a of atoms) again.put(sha256Hex(a), a);
    await again.written();
    const id = again.finish();
    assert.ok(id);
    const reader = new LocalStore(store.root);
    for (const a of atoms) assert.ok(reader.get(sha256Hex(a)).equals(a));

    // Dropped while its writes are in flight: the temp file goes once they are done, never before.
    const other = freshStore();
    const dropped = new PackWriter(other, { writeBehind: true });
    for (const a of atoms) dropped.put(sha256Hex(a), a);
    dropped.abort();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(packFiles(other), []);
    assert.deepEqual(packFiles(store).filter((f) => f.startsWith('.tmp-')), [], 'finish() left no temp file either');
  });

  test('write-behind joins atoms cut one after another from one buffer (a downloaded range) into one write; every atom reads back, an abort writes none', async () => {
    const store = freshStore();
    const range = randomBytes(600_000, 91);
    const present = range.subarray(250_000, 260_000);
    assert.equal(store.put(sha256Hex(present), present), true, 'an atom the store has: skipped, so the next one starts a write of its own');
    const cuts = [0, 16, 1000, 50_000, 250_000, 260_000, 400_000, 600_000];
    const pieces = cuts.slice(1).map((end, i) => range.subarray(cuts[i], end));
    const elsewhere = randomBytes(7000, 92);
    const writer = new PackWriter(store, { writeBehind: true });
    const put = (bytes: Buffer): boolean => writer.put(sha256Hex(bytes), bytes);
    for (const piece of pieces.slice(0, 3)) assert.equal(put(piece), true);
    assert.equal(put(elsewhere), true, 'from another buffer, between two cuts of the range');
    for (const piece of pieces.slice(3)) assert.equal(put(piece), !piece.equals(present));
    await writer.written();
    assert.ok(writer.finish());
    const reader = new LocalStore(store.root);
    for (const bytes of [...pieces, elsewhere]) assert.ok(reader.get(sha256Hex(bytes)).equals(bytes));

    const other = freshStore();
    const joinedOnly = new PackWriter(other, { writeBehind: true });
    for (const piece of pieces.slice(1, 3)) joinedOnly.put(sha256Hex(piece), piece);
    assert.throws(() => joinedOnly.finish(), /before written\(\)/, 'bytes still joined count as unwritten');
    const dropped = new PackWriter(other, { writeBehind: true });
    for (const piece of pieces) dropped.put(sha256Hex(piece), piece);
    dropped.abort();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(packFiles(other), [], 'joined bytes are dropped with the pack');
  });

  test('an interrupted write leaves only a temp file, which is never listed and which gc removes once old', () => {
    const store = freshStore();
    const writer = new PackWriter(store);
    const atom = randomBytes(100_000, 6);
    assert.equal(writer.put(sha256Hex(atom), atom), true);
    // Dropped without finish (as if killed): nothing named.
    const temps = readdirSync(store.packsDir);
    assert.equal(temps.length, 1);
    assert.match(temps[0]!, /^\.tmp-.*\.pack$/);
    assert.equal(new LocalStore(store.root).has(sha256Hex(atom)), false);
    assert.deepEqual([...new LocalStore(store.root).listNames()], []);
    age(path.join(store.packsDir, temps[0]!), 2);
    const plan = planPrune(store, new Set(), new Set(), Date.now(), Date.now());
    assert.deepEqual(plan.temps.map((t) => path.basename(t.path)), temps);
    executePrune(store, plan, Date.now());
    assert.deepEqual(readdirSync(store.packsDir), []);
    writer.abort();
  });

  test('gc rewrites an old pack without its unreachable atoms, and leaves a refreshed pack whole', () => {
    const store = freshStore();
    const a = buildConcept(new BufferSource(randomBytes(9 * MiB, 7)), store);
    const live = new Set(store.listNames()); // a's atoms and manifests
    const b = buildConcept(new BufferSource(randomBytes(9 * MiB, 8)), store);
    const deadLeaves = leafRefs(parseConcept(b.text), store);
    const dead = [...new LocalStore(store.root).listNames()].filter((h) => !live.has(h));
    assert.ok(dead.length > deadLeaves.length, 'b\'s leaves and manifests');
    for (const f of packFiles(store)) age(path.join(store.packsDir, f), 30);
    // A writer refreshing b's pack (an add re-using its atoms) just before gc: b survives whole.
    new LocalStore(store.root).presentForWrite(deadLeaves[0]!.hash, new Set());
    const cutoff = Date.now() - 14 * 86_400_000;
    let plan = planPrune(store, live, new Set(), cutoff, Date.now());
    assert.equal(plan.atoms.length, 0, 'the refreshed pack is recent: nothing to prune');
    assert.equal(plan.recent.count, dead.length);

    for (const f of packFiles(store)) age(path.join(store.packsDir, f), 30);
    plan = planPrune(store, live, new Set(), cutoff, Date.now());
    assert.equal(plan.atoms.length, dead.length);
    const result = executePrune(store, plan, cutoff);
    assert.equal(result.atoms.length, plan.atoms.length);
    const after = new LocalStore(store.root);
    for (const hash of dead) assert.equal(after.has(hash), false);
    assert.deepEqual(rebuild(after, a.text), rebuild(store, a.text));
    assert.equal(packFiles(store).length, 2, 'one pack left: a\'s');
  });

  test('gc keeps one copy of an atom stored twice (two packs, or packed and loose), with the newest time', () => {
    const store = freshStore();
    const data = randomBytes(9 * MiB, 11);
    const built = buildConcept(new BufferSource(data), store);
    // A second writer that did not see the first pack (two adds at once) packs the same atoms again.
    const twin = new PackWriter(store, { dedup: false });
    const leaves = leafRefs(parseConcept(built.text), store);
    for (const leaf of leaves) twin.put(leaf.hash, store.get(leaf.hash));
    twin.finish();
    const extra = leaves[0]!;
    const looseBytes = store.get(extra.hash);
    const looseDir = path.dirname(store.atomPath(extra.hash));
    store.ensureDir(store.atomPath(extra.hash));
    writeFileSync(store.atomPath(extra.hash), looseBytes);
    assert.equal(packFiles(store).length, 4);
    for (const f of packFiles(store)) age(path.join(store.packsDir, f), 30);
    const live = new Set(store.listNames());
    const plan = planPrune(store, live, new Set(), Date.now() - 86_400_000, Date.now());
    const result = executePrune(store, plan, Date.now() - 86_400_000);
    assert.equal(result.atoms.length, 0, 'nothing reachable deleted');
    assert.equal(result.duplicates.count, leaves.length + 1);
    assert.deepEqual(readdirSync(looseDir), [], 'the loose copy is gone');
    const after = new LocalStore(store.root);
    const copies = after.packIndexes().reduce((n, p) => n + p.count, 0);
    assert.equal(copies, live.size, 'each atom stored once');
    assert.deepEqual(rebuild(after, built.text), data);
    const holder = after.locate(extra.hash)!.path;
    assert.ok(Date.now() - statSync(holder).mtimeMs < 60_000, 'the kept copy took the loose copy\'s recent time');
  });

  test('a reader holding an index from before a rewrite finds the atoms in the new pack', () => {
    const store = freshStore();
    const data = randomBytes(9 * MiB, 9);
    const built = buildConcept(new BufferSource(data), store);
    const leaves = leafRefs(parseConcept(built.text), store);
    const reader = new LocalStore(store.root);
    assert.equal(reader.has(leaves[0]!.hash), true); // indexes loaded, pack not yet opened
    const gone = leaves[leaves.length - 1]!.hash;
    rewritePacks(new LocalStore(store.root), (h) => h === gone);
    for (const leaf of leaves.slice(0, -1)) assert.equal(sha256Hex(reader.get(leaf.hash)), leaf.hash);
    assert.throws(() => reader.get(gone), /missing/);
  });

  test('fsck\'s move aside: a corrupt packed atom leaves its pack, the others stay readable', () => {
    const store = freshStore();
    const built = buildConcept(new BufferSource(randomBytes(9 * MiB, 10)), store);
    const leaves = leafRefs(parseConcept(built.text), store);
    const victim = leaves[3]!;
    const at = store.locate(victim.hash)!;
    const pack = readFileSync(at.path);
    pack[at.offset + 10] = pack[at.offset + 10]! ^ 0xff;
    writeFileSync(at.path, pack);
    const reader = new LocalStore(store.root);
    assert.throws(() => reader.get(victim.hash), /corrupt/);
    rewritePacks(reader, (h) => h === victim.hash);
    assert.equal(reader.has(victim.hash), false);
    for (const leaf of leaves) if (leaf.hash !== victim.hash) assert.equal(reader.get(leaf.hash).length, leaf.size);
  });
});

test('the atom written after another: found from its pack index whatever the hash order, none after the last one or across a gap', () => {
  const store = freshStore();
  const atoms = [5000, 0, 124, 70_000, 4].map((size, i) => randomBytes(size, 600 + i));
  const writer = new PackWriter(store);
  for (const bytes of atoms) writer.put(sha256Hex(bytes), bytes);
  writer.finish();
  const hashes = atoms.map((a) => sha256Hex(a));
  // The empty atom starts where the next one does: after atom 0 comes one of the two.
  assert.ok([hashes[1], hashes[2]].includes(store.packedAfter(hashes[0]!)?.hash ?? ''));
  for (const i of [2, 3]) {
    const next = store.packedAfter(hashes[i]!);
    assert.equal(next?.hash, hashes[i + 1]);
    assert.equal(next?.size, atoms[i + 1]!.length);
    assert.ok(store.readPackRange(next!, next!.size, Buffer.alloc(next!.size))!.equals(atoms[i + 1]!));
  }
  assert.equal(store.packedAfter(hashes[4]!), null, 'the last atom of the pack');
  assert.equal(store.packedAfter(sha256Hex(Buffer.from('not stored'))), null);

  const { encodeIndex, PackIndex } = packModule;
  const entries = [{ hash: 'a'.repeat(64), offset: 16, size: 10 }, { hash: 'b'.repeat(64), offset: 40, size: 5 }, { hash: '0'.repeat(64), offset: 26, size: 14 }];
  const { id, bytes } = encodeIndex(entries);
  const index = PackIndex.parse(bytes, id, 45, 'p', 'i')!;
  const at = (hash: string): number => index.find(hash);
  assert.equal(index.following(at('a'.repeat(64))), at('0'.repeat(64)));
  assert.equal(index.following(at('0'.repeat(64))), at('b'.repeat(64)));
  assert.equal(index.following(at('b'.repeat(64))), -1);
  const gap = encodeIndex([{ hash: 'a'.repeat(64), offset: 16, size: 10 }, { hash: 'b'.repeat(64), offset: 27, size: 5 }]);
  assert.equal(PackIndex.parse(gap.bytes, gap.id, 32, 'p', 'i')!.following(0), -1, 'bytes between them: not the next atom');
});

test('an adopted pack is checked atom by atom against its index: a flag per position, a damaged or cut atom not held; positions in pack order', () => {
  const { atomsHeld, encodeIndex, PackIndex, PACK_MAGIC } = packModule;
  const { dir, dispose } = tempDir('panini-held-');
  after(dispose);
  const atoms = [3000, 0, 16, 5 * MiB, 900].map((size, i) => randomBytes(size, 700 + i));
  let offset = PACK_MAGIC.length;
  const entries = atoms.map((a) => {
    const e = { hash: sha256Hex(a), offset, size: a.length };
    offset += a.length;
    return e;
  });
  const packBytes = Buffer.concat([PACK_MAGIC, ...atoms]);
  const { id, bytes } = encodeIndex(entries);
  const index = PackIndex.parse(bytes, id, packBytes.length, 'p', 'i')!;
  const positions = [...index.positionsByOffset()];
  assert.deepEqual(positions.map((i) => index.offsetOf(i)), entries.map((e) => e.offset).sort((a, b) => a - b));
  assert.deepEqual([...positions].sort((a, b) => a - b), [0, 1, 2, 3, 4], 'each position once');

  const file = path.join(dir, 'x.pack');
  const heldIn = (pack: Buffer): number[] => {
    writeFileSync(file, pack);
    const fd = openSync(file, 'r');
    try {
      const held = atomsHeld(fd, index);
      return entries.filter((e) => held[index.find(e.hash)] === 1).map((e) => atoms.findIndex((a) => sha256Hex(a) === e.hash));
    } finally {
      closeSync(fd);
    }
  };
  assert.deepEqual(heldIn(packBytes), [0, 1, 2, 3, 4]);
  const damaged = Buffer.from(packBytes);
  damaged[entries[3]!.offset + 4 * MiB]! ^= 1; // inside the atom larger than one read
  damaged[entries[0]!.offset]! ^= 1;
  assert.deepEqual(heldIn(damaged), [1, 2, 4]);
  assert.deepEqual(heldIn(packBytes.subarray(0, entries[4]!.offset + 10)), [0, 1, 2, 3], 'the last atom cut short');

  // Packs of more than 65,536 atoms or past 4 GiB are ordered by comparing offsets instead.
  const many = Array.from({ length: 70_000 }, (_, i) => ({ hash: sha256Hex(Buffer.from(String(i))), offset: 16 + 3 * ((i * 7919) % 70_000), size: 3 }));
  const large = encodeIndex(many);
  const manyIndex = PackIndex.parse(large.bytes, large.id, 16 + 3 * 70_000, 'p', 'i')!;
  const order = [...manyIndex.positionsByOffset()].map((i) => manyIndex.offsetOf(i));
  assert.deepEqual(order, many.map((e) => e.offset).sort((a, b) => a - b));
  const far = encodeIndex([{ hash: 'a'.repeat(64), offset: 2 ** 32 + 16, size: 4 }, { hash: 'b'.repeat(64), offset: 16, size: 4 }]);
  const farIndex = PackIndex.parse(far.bytes, far.id, 2 ** 32 + 20, 'p', 'i')!;
  assert.deepEqual([...farIndex.positionsByOffset()].map((i) => farIndex.offsetOf(i)), [16, 2 ** 32 + 16]);
  assert.equal(farIndex.following(farIndex.find('b'.repeat(64))), -1, 'no following atom past 4 GiB');

  // Such a pack is checked too (its names are compared one by one, not made hex all at once).
  const threeBytes = (i: number): Buffer => Buffer.from([i >> 16, (i >> 8) & 0xff, i & 0xff]);
  const bigEntries = Array.from({ length: 70_000 }, (_, i) => ({ hash: sha256Hex(threeBytes(i)), offset: 16 + 3 * i, size: 3 }));
  const big = encodeIndex(bigEntries);
  const bigIndex = PackIndex.parse(big.bytes, big.id, 16 + 3 * 70_000, 'p', 'i')!;
  const bigPack = Buffer.concat([PACK_MAGIC, ...bigEntries.map((_, i) => threeBytes(i))]);
  bigPack[16 + 3 * 69_999]! ^= 1;
  writeFileSync(file, bigPack);
  const fd = openSync(file, 'r');
  try {
    const held = atomsHeld(fd, bigIndex);
    assert.equal(held.reduce((n, h) => n + h, 0), 69_999);
    assert.equal(held[bigIndex.find(bigEntries[69_999]!.hash)], 0, 'the damaged atom');
  } finally {
    closeSync(fd);
  }
});

test('more than 16 packs: gc merges the small ones into one, every atom still there, with the newest time of those it replaced', () => {
  const store = freshStore();
  const atoms: Buffer[] = [];
  for (let p = 0; p < 20; p++) {
    const writer = new PackWriter(store);
    for (let i = 0; i < 10; i++) {
      const bytes = randomBytes(3000 + 4 * i, p * 100 + i);
      atoms.push(bytes);
      writer.put(sha256Hex(bytes), bytes);
    }
    const id = writer.finish()!;
    const when = new Date(Date.UTC(2026, 0, 1 + p));
    utimesSync(path.join(store.packsDir, `${id}.pack`), when, when);
  }
  assert.equal(store.packIndexes().length, 20);
  for (const a of atoms) store.get(sha256Hex(a)); // where each lies is remembered...
  const plan = planPrune(store, new Set(atoms.map((a) => sha256Hex(a))), new Set(), 0, Date.now());
  const result = executePrune(store, plan, 0);
  assert.deepEqual(result.merged, { packs: 20, into: 1 });
  for (const a of atoms) assert.ok(store.get(sha256Hex(a)).equals(a), '...and forgotten once the packs are rewritten');
  const after = new LocalStore(store.root);
  const [merged] = after.packIndexes();
  assert.equal(after.packIndexes().length, 1);
  assert.equal(merged!.count, 200);
  for (const a of atoms) assert.ok(after.get(sha256Hex(a)).equals(a));
  assert.equal(statSync(merged!.packPath).mtimeMs, Date.UTC(2026, 0, 20), 'the newest time of the merged packs');
  assert.deepEqual(readdirSync(store.packsDir).sort(), [`${merged!.id}.idx`, `${merged!.id}.pack`]);
  // 16 packs or fewer: left as they are.
  assert.deepEqual(executePrune(after, planPrune(after, new Set(atoms.map((a) => sha256Hex(a))), new Set(), 0, Date.now()), 0).merged, { packs: 0, into: 0 });
});
