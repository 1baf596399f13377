/**
 * End to end through the built CLI in real temporary Git repositories: clean → concept → smudge
 * gives back every byte; concepts are deterministic and small; damage to the store is reported
 * by atom name and never turned into a plausible file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { chmodSync, closeSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { buildConcept } from '../src/concept/build.js';
import { parseConcept } from '../src/concept/concept.js';
import { BufferSource } from '../src/source.js';
import { LocalStore } from '../src/store/local.js';
import { fixturesDir, prng, readFixture } from './helpers/fixtures.js';
import { runCli, tempDir, tempRepo, type RunResult, type TempRepo } from './helpers/cli.js';
import { atomFiles } from './helpers/store-files.js';

const CONCEPT_LIMIT = 8 * 1024;
const fixtureNames = readdirSync(fixturesDir).filter((n) => n !== 'README.md').sort();

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function ok(r: RunResult, what: string): Buffer {
  assert.equal(r.status, 0, `${what} failed: ${r.stderr}`);
  return r.stdout;
}

function clean(repo: TempRepo, file: string): Buffer {
  return ok(runCli(['clean', path.basename(file)], { cwd: repo.dir, stdinFile: file }), `clean ${file}`);
}

function smudge(repo: TempRepo, concept: Buffer): RunResult {
  return runCli(['smudge', 'file'], { cwd: repo.dir, input: concept });
}

function atomFile(repo: TempRepo, hash: string): string {
  return new LocalStore(repo.store).atomPath(hash);
}

interface ListedAtoms {
  oid: string;
  size: number;
  atoms: { hash: string; type: string; offset: number; size: number; present: boolean }[];
}

function listAtoms(repo: TempRepo, target: string): ListedAtoms {
  return JSON.parse(ok(runCli(['list-atoms', target, '--json'], { cwd: repo.dir }), `list-atoms ${target}`).toString()) as ListedAtoms;
}

function overwrite(file: string, bytes: Buffer): void {
  chmodSync(file, 0o644); // atoms are written read-only
  writeFileSync(file, bytes);
}

/** A valid PNG whose image data is split over `chunks` IDAT chunks: one atom each. */
function pngWithManyIdats(chunks: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
    return Buffer.concat([head, data, crc]);
  };
  const width = 256;
  const height = 256;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rand = prng(12345);
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let i = 0; i < raw.length; i++) raw[i] = i % (1 + width * 3) === 0 ? 0 : rand(256); // filter byte 0, then noise
  const data = deflateSync(raw);
  assert.ok(data.length >= chunks, 'not enough image data for that many chunks');
  const idats: Buffer[] = [];
  for (let i = 0; i < chunks; i++) {
    idats.push(chunk('IDAT', data.subarray(Math.floor((i * data.length) / chunks), Math.floor(((i + 1) * data.length) / chunks))));
  }
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr), ...idats, chunk('IEND', Buffer.alloc(0))]);
}

describe('every fixture through clean and smudge', () => {
  let repo: TempRepo;
  let scratch: { dir: string; dispose(): void };
  let otherStore: LocalStore;
  const concepts = new Map<string, Buffer>();
  before(() => {
    repo = tempRepo();
    scratch = tempDir();
    otherStore = new LocalStore(scratch.dir);
  });
  after(() => {
    repo.dispose();
    scratch.dispose();
  });

  for (const name of fixtureNames) {
    test(name, () => {
      const file = path.join(fixturesDir, name);
      const original = readFixture(name);
      const concept = clean(repo, file);
      concepts.set(name, concept);
      assert.ok(concept.length < CONCEPT_LIMIT, `concept of ${name} is ${concept.length} bytes`);
      const parsed = parseConcept(concept);
      assert.equal(parsed.oid, sha256(original));
      assert.equal(parsed.size, original.length);

      const back = ok(smudge(repo, concept), `smudge ${name}`);
      assert.ok(back.equals(original), `${name} did not round-trip (${back.length} of ${original.length} bytes)`);

      // Deterministic across stores: the library, cleaning into a second store, writes the same bytes.
      assert.equal(buildConcept(new BufferSource(original), otherStore).text, concept.toString(), 'another store gives another concept');
    });
  }

  test('an empty file', () => {
    const concept = ok(runCli(['clean', 'empty'], { cwd: repo.dir, input: '' }), 'clean of an empty file');
    assert.equal(parseConcept(concept).size, 0);
    assert.equal(ok(smudge(repo, concept), 'smudge of an empty file').length, 0);
  });

  // A few formats suffice here: these paths do not depend on the decomposer.
  const sample = ['photo.png', 'course-a.mp4', 'bundle-v2.zip', 'random.bin'];

  test('cleaning again with every atom already stored gives the same concept', () => {
    for (const name of sample) {
      assert.ok(clean(repo, path.join(fixturesDir, name)).equals(concepts.get(name)!), `${name}: concepts differ`);
    }
  });

  test('a concept given to clean comes out unchanged', () => {
    for (const name of sample) {
      const concept = concepts.get(name)!;
      const again = ok(runCli(['clean', name], { cwd: repo.dir, input: concept }), `clean of the concept of ${name}`);
      assert.ok(again.equals(concept), `clean changed the concept of ${name}`);
    }
  });
});

describe('smudge passes through what is not a concept', () => {
  let repo: TempRepo;
  before(() => void (repo = tempRepo()));
  after(() => repo.dispose());

  const inputs: [string, Buffer][] = [
    ['empty input', Buffer.alloc(0)],
    ['plain text', Buffer.from('hello, world\n')],
    ['Markdown with other front matter', Buffer.from('---\ntitle: notes\ntags: [a, b]\n---\n# Notes\n')],
    ['random bytes', readFixture('random.bin')],
    ['a PNG', readFixture('photo.png')],
  ];
  for (const [label, bytes] of inputs) {
    test(label, () => {
      const out = ok(smudge(repo, bytes), `smudge of ${label}`);
      assert.ok(out.equals(bytes), `${label} was changed by smudge`);
    });
  }
});

describe('concepts stay under 8 KiB', () => {
  let repo: TempRepo;
  let scratch: { dir: string; dispose(): void };
  before(() => {
    repo = tempRepo();
    scratch = tempDir();
  });
  after(() => {
    repo.dispose();
    scratch.dispose();
  });

  test('a 64 MiB random file', () => {
    const file = path.join(scratch.dir, 'big.bin');
    const whole = createHash('sha256');
    const fd = openSync(file, 'w');
    const block = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < 8; i++) {
      randomFillSync(block);
      whole.update(block);
      writeSync(fd, block);
    }
    closeSync(fd);
    const oid = whole.digest('hex');

    const concept = clean(repo, file);
    assert.ok(concept.length < CONCEPT_LIMIT, `concept is ${concept.length} bytes`);
    const parsed = parseConcept(concept);
    assert.equal(parsed.oid, oid);
    assert.ok(parsed.refs.some((r) => r.type === 'Manifest'), 'a file of ~1000 chunks should use a manifest');

    const out = path.join(scratch.dir, 'big.out');
    const r = runCli(['smudge', 'big.bin'], { cwd: repo.dir, input: concept, stdoutFile: out });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(out).size, 64 * 1024 * 1024);
    assert.equal(sha256(readFileSync(out)), oid);
  });

  test('a file of more than 2000 atoms uses a manifest tree', () => {
    const bytes = pngWithManyIdats(2500);
    const file = path.join(scratch.dir, 'many.png');
    writeFileSync(file, bytes);
    const concept = clean(repo, file);
    assert.ok(concept.length < CONCEPT_LIMIT, `concept is ${concept.length} bytes`);
    const parsed = parseConcept(concept);
    const manifests = parsed.refs.filter((r) => r.type === 'Manifest');
    assert.ok(manifests.length > 0, 'expected Manifest refs in the concept');

    // list-atoms expands the tree: signature, IHDR, every IDAT, IEND.
    writeFileSync(path.join(repo.dir, 'many.png.md'), concept);
    const listed = listAtoms(repo, 'many.png.md');
    assert.equal(listed.atoms.length, 2 + 2500 + 1);
    assert.equal(listed.atoms.filter((a) => a.type === 'ImageData').length, 2500);

    const back = ok(smudge(repo, concept), 'smudge');
    assert.ok(back.equals(bytes));

    // A missing manifest is named like any other atom.
    unlinkSync(atomFile(repo, manifests[0]!.hash));
    const r = smudge(repo, concept);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(manifests[0]!.hash));
  });
});

describe('a damaged store is reported by atom name', () => {
  let repo: TempRepo;
  let original: Buffer;
  let concept: Buffer;
  let leaves: string[];
  before(() => {
    repo = tempRepo();
    original = readFixture('random.bin');
    concept = clean(repo, path.join(fixturesDir, 'random.bin'));
    leaves = parseConcept(concept).refs.map((r) => r.hash);
    assert.ok(leaves.length >= 3, 'random.bin should be several chunks');
  });
  after(() => repo.dispose());

  test('a deleted atom: smudge fails naming it', () => {
    const victim = leaves[1]!;
    const file = atomFile(repo, victim);
    const saved = readFileSync(file);
    unlinkSync(file);
    try {
      const r = smudge(repo, concept);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(victim));
      assert.ok(r.stdout.length < original.length, 'smudge emitted a complete file without one of its atoms');
    } finally {
      writeFileSync(file, saved, { mode: 0o444 });
    }
    assert.ok(ok(smudge(repo, concept), 'smudge after restore').equals(original));
  });

  test('a corrupted atom: smudge fails naming it and never emits its bytes', () => {
    const ref = parseConcept(concept).refs[1]!;
    const file = atomFile(repo, ref.hash);
    const saved = readFileSync(file);
    const corrupt = Buffer.from(saved);
    corrupt[corrupt.length >> 1]! ^= 0x40;
    overwrite(file, corrupt);
    try {
      const r = smudge(repo, concept);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`${ref.hash}.*corrupt|corrupt.*${ref.hash}`));
      assert.ok(r.stdout.length <= ref.offset, `smudge wrote ${r.stdout.length} bytes, past the corrupt atom at ${ref.offset}`);
      assert.ok(r.stdout.equals(original.subarray(0, r.stdout.length)), 'what smudge wrote before failing is not the file\'s start');

      writeFileSync(path.join(repo.dir, 'random.bin.md'), concept);
      const v = runCli(['verify-content', 'random.bin.md'], { cwd: repo.dir });
      assert.notEqual(v.status, 0);
      assert.match(v.stderr, new RegExp(ref.hash));
    } finally {
      overwrite(file, saved);
    }
    assert.ok(ok(smudge(repo, concept), 'smudge after repair').equals(original));
  });
});

describe('inspecting a concept file', () => {
  let repo: TempRepo;
  before(() => void (repo = tempRepo()));
  after(() => repo.dispose());

  test('list-atoms --json and verify-content', () => {
    const original = readFixture('bundle-v1.zip');
    const concept = clean(repo, path.join(fixturesDir, 'bundle-v1.zip'));
    writeFileSync(path.join(repo.dir, 'bundle.md'), concept);

    const listed = listAtoms(repo, 'bundle.md');
    assert.equal(listed.oid, sha256(original));
    assert.equal(listed.size, original.length);
    let offset = 0;
    const rebuilt = createHash('sha256');
    for (const a of listed.atoms) {
      assert.equal(a.offset, offset, 'atoms are listed in file order, contiguous');
      assert.equal(a.present, true);
      const bytes = readFileSync(atomFile(repo, a.hash));
      assert.equal(bytes.length, a.size);
      assert.ok(bytes.equals(original.subarray(a.offset, a.offset + a.size)), `atom at ${a.offset} does not hold the file's bytes`);
      rebuilt.update(bytes);
      offset += a.size;
    }
    assert.equal(offset, original.length);
    assert.equal(rebuilt.digest('hex'), listed.oid);
    assert.ok(listed.atoms.some((a) => a.type === 'Compressed'));

    const v = runCli(['verify-content', 'bundle.md'], { cwd: repo.dir });
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout.toString(), new RegExp(`^ok bundle\\.md: ${original.length} bytes in ${listed.atoms.length} atoms, sha256:${listed.oid}`));
  });
});

describe('stats --json', () => {
  let repo: TempRepo;
  before(() => void (repo = tempRepo()));
  after(() => repo.dispose());

  test('numbers add up', () => {
    const names = ['photo.png', 'photo-tagged.png', 'bundle-v1.zip', 'bundle-v2.zip', 'random.bin', 'course-a.mp4'];
    for (const n of names) clean(repo, path.join(fixturesDir, n));
    clean(repo, path.join(fixturesDir, 'photo.png')); // the same content again is one file, not two
    const s = JSON.parse(ok(runCli(['stats', '--json'], { cwd: repo.dir }), 'stats').toString()) as {
      store: string; files: number; totalAtoms: number; storedBytes: number; logicalBytes: number;
      sharedAtoms: number; unreferencedAtoms: number; dedupSavings: number; dedupRatio: number;
      byType: Record<string, { atoms: number; storedBytes: number; logicalBytes: number }>;
    };
    const onDisk = [...atomFiles(repo.store).values()].map((f) => statSync(f).size);
    assert.equal(s.store, repo.store);
    assert.equal(s.files, names.length);
    assert.equal(s.totalAtoms, onDisk.length);
    assert.equal(s.storedBytes, onDisk.reduce((n, size) => n + size, 0));
    assert.equal(s.logicalBytes, names.reduce((n, f) => n + statSync(path.join(fixturesDir, f)).size, 0));
    assert.equal(s.dedupSavings, s.logicalBytes - s.storedBytes);
    assert.ok(Math.abs(s.dedupRatio - s.logicalBytes / s.storedBytes) < 1e-9);
    assert.ok(s.sharedAtoms > 0, 'photo.png and photo-tagged.png share atoms');
    assert.equal(s.unreferencedAtoms, 0);
    const types = Object.values(s.byType);
    assert.equal(types.reduce((n, t) => n + t.atoms, 0), s.totalAtoms);
    assert.equal(types.reduce((n, t) => n + t.storedBytes, 0), s.storedBytes);
    assert.equal(types.reduce((n, t) => n + t.logicalBytes, 0), s.logicalBytes);
  });
});
