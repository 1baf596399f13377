/**
 * MP4 at frame level. ffprobe is the oracle: every packet it demuxes must be one atom at the same
 * offset with the same bytes (its SHA-256), and every video frame's picture type must be the atom's
 * type. Files that carry the same streams must share their sample atoms, through the built CLI in
 * real temporary Git repositories; malformed sample tables must neither crash nor allocate wildly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ATOM_TYPES } from '../src/atom.js';
import { MAX_COMPONENTS, MAX_INLINE_REFS, parseConcept, renderConcept } from '../src/concept/concept.js';
import { buildTrackManifest, expandRefs, expandTrackRefs } from '../src/concept/manifest.js';
import { mp4 } from '../src/decompose/mp4.js';
import { MAX_SAMPLES } from '../src/decompose/mp4/samples.js';
import { BufferSource, FileSource } from '../src/source.js';
import { ingest } from '../src/store/ingest.js';
import { LocalStore } from '../src/store/local.js';
import { fixturesDir, assertDecomposerSound, mutants, readFixture } from './helpers/fixtures.js';
import { runCli, tempDir, tempRepo, type RunResult, type TempRepo } from './helpers/cli.js';
import { mp4Box, writeSyntheticMp4 } from './helpers/mp4.js';

const SAMPLE_TYPES = new Set(['IFrame', 'PFrame', 'BFrame', 'AudioChunk']);
const MEDIA = ['course-a.mp4', 'course-b.mp4', 'course-a-moov-last.mp4', 'course-a-retitled.mp4', 'course-a-fragmented.mp4', 'tone.m4a', 'truncated.mp4'];

interface Atom { hash: string; type: string; offset: number; size: number }
interface Packet { stream_index: number; pos: string; size: string; pts_time?: string; data_hash: string; flags: string }

function ok(r: RunResult, what: string): Buffer {
  assert.equal(r.status, 0, `${what} failed: ${r.stderr}`);
  return r.stdout;
}

function ffprobe(args: string[], file: string): Record<string, unknown> {
  const r = spawnSync('ffprobe', ['-v', 'error', ...args, '-of', 'json', file], { maxBuffer: 64 * 1024 * 1024 });
  assert.ok(!r.error, 'ffprobe is needed (Debian: apt-get install ffmpeg; .ci/run installs it)');
  assert.equal(r.status, 0, `ffprobe ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as Record<string, unknown>;
}

function packets(file: string): Packet[] {
  return (ffprobe(['-show_packets', '-show_data_hash', 'sha256', '-show_entries', 'packet=stream_index,pos,size,pts_time,data_hash,flags'], file).packets ?? []) as Packet[];
}

/** Clean a file into the repo's store, keep its concept beside it, and list its atoms from the concept. */
function cleanAndList(repo: TempRepo, name: string, file = path.join(fixturesDir, name)): Atom[] {
  const concept = ok(runCli(['clean', name], { cwd: repo.dir, stdinFile: file }), `clean ${name}`);
  const conceptPath = path.join(repo.dir, `${name}.md`);
  writeFileSync(conceptPath, concept);
  const listed = JSON.parse(ok(runCli(['list-atoms', conceptPath, '--json'], { cwd: repo.dir }), `list-atoms ${name}`).toString()) as { atoms: (Atom & { present: boolean })[] };
  assert.ok(listed.atoms.every((a) => a.present), `${name}: every atom is in the store`);
  return listed.atoms;
}

function sampleHashes(atoms: Atom[]): Set<string> {
  return new Set(atoms.filter((a) => SAMPLE_TYPES.has(a.type)).map((a) => a.hash));
}

describe('every sample of every track is an atom (ffprobe as the oracle)', () => {
  let repo: TempRepo;
  const listed = new Map<string, Atom[]>();
  before(() => {
    repo = tempRepo();
  });
  after(() => repo.dispose());

  for (const name of MEDIA) {
    test(name, () => {
      const file = path.join(fixturesDir, name);
      const atoms = cleanAndList(repo, name);
      listed.set(name, atoms);
      const byOffset = new Map(atoms.map((a) => [a.offset, a]));
      const size = statSync(file).size;
      const pkts = packets(file);
      assert.ok(pkts.length > 0);
      for (const p of pkts) {
        const atom = byOffset.get(Number(p.pos));
        assert.ok(atom, `${name}: no atom starts at packet offset ${p.pos}`);
        assert.equal(atom.hash, p.data_hash.replace(/^SHA256:/, ''), `${name}: atom at ${p.pos} holds other bytes than the packet`);
        assert.equal(atom.size, Number(p.size));
        // truncated.mp4's last packet is cut short by the end of the file: its bytes are kept as Raw.
        const cutShort = name === 'truncated.mp4' && Number(p.pos) + Number(p.size) === size;
        assert.equal(SAMPLE_TYPES.has(atom.type), !cutShort, `${name}: packet at ${p.pos} is a ${atom.type} atom`);
      }
      assert.equal(atoms.filter((a) => SAMPLE_TYPES.has(a.type)).length, pkts.length - (name === 'truncated.mp4' ? 1 : 0), 'no sample atoms beyond the packets');
      const frames = (ffprobe(['-select_streams', 'v', '-show_frames', '-show_entries', 'frame=pict_type,pkt_pos'], file).frames ?? []) as { pict_type: string; pkt_pos: string }[];
      for (const f of frames) {
        assert.equal(byOffset.get(Number(f.pkt_pos))?.type, `${f.pict_type}Frame`, `${name}: frame at ${f.pkt_pos} is ${f.pict_type}`);
      }
    });
  }

  test('re-muxes and metadata edits share every video and audio sample with course-a', () => {
    const base = sampleHashes(listed.get('course-a.mp4')!);
    assert.ok(base.size > 100);
    for (const name of ['course-a-moov-last.mp4', 'course-a-retitled.mp4', 'course-a-fragmented.mp4']) {
      assert.deepEqual(sampleHashes(listed.get(name)!), base, `${name} has other sample atoms than course-a.mp4`);
    }
  });

  test('course-a and course-b share the intro samples (the first 2 s, stream-copied)', () => {
    const b = sampleHashes(listed.get('course-b.mp4')!);
    const aAtoms = new Map(listed.get('course-a.mp4')!.map((x) => [x.offset, x]));
    const intro = packets(path.join(fixturesDir, 'course-a.mp4')).filter((p) => Number(p.pts_time) < 2);
    assert.ok(intro.length > 100, 'the intro has video and audio packets');
    for (const p of intro) assert.ok(b.has(aAtoms.get(Number(p.pos))!.hash), `intro packet at ${p.pos} of course-a is not an atom of course-b`);
    const bodyA = [...sampleHashes(listed.get('course-a.mp4')!)].filter((h) => !b.has(h));
    assert.ok(bodyA.length > 100, 'the bodies differ');
  });

  test('the concept lists one track manifest per track, holding exactly that track\'s sample atoms', () => {
    const text = readFileSync(path.join(repo.dir, 'course-a-fragmented.mp4.md'), 'utf8');
    assert.ok(Buffer.byteLength(text) < 8 * 1024);
    const concept = parseConcept(text);
    const store = new LocalStore(repo.store);
    const atoms = listed.get('course-a-fragmented.mp4')!;
    assert.deepEqual(concept.components!.map((c) => [c.type, c.kind, c.track, c.codec]), [['VideoStream', 'video', 1, 'avc1'], ['AudioStream', 'audio', 2, 'mp4a']]);
    for (const c of concept.components!) {
      const want = atoms.filter((a) => (c.kind === 'video' ? /Frame$/.test(a.type) : a.type === 'AudioChunk'));
      const got = [...expandTrackRefs(c, store)];
      assert.deepEqual(got.map((a) => [a.hash, a.type, a.offset, a.size]), want.map((a) => [a.hash, a.type, a.offset, a.size]));
      assert.equal(c.samples, want.length);
      assert.equal(c.size, want.reduce((n, a) => n + a.size, 0));
    }
    // The two manifest kinds never mix: the file-order walk refuses a track manifest.
    const video = concept.components![0]!;
    assert.throws(() => [...expandRefs([{ hash: video.hash, type: 'Manifest', offset: 0, size: video.size }], store)], /unknown header/);
    assert.throws(() => [...expandTrackRefs({ hash: concept.refs[0]!.hash, type: 'VideoStream', size: concept.size }, store)], /unknown header/);
  });
});

describe('concepts with components', () => {
  test('stay under 8 KiB with every field at its largest, and parse back', () => {
    const hash = 'f'.repeat(64);
    const span = 2 ** 42;
    const refs = Array.from({ length: MAX_INLINE_REFS }, (_, i) => ({ hash, type: 'Container' as const, offset: i * span, size: span }));
    const size = MAX_INLINE_REFS * span;
    const components = Array.from({ length: MAX_COMPONENTS }, (_, i) => ({ hash, type: 'Manifest' as const, kind: 'subtitle' as const, track: 0xffffffff - i, codec: '\\"\\"', samples: MAX_SAMPLES, size }));
    // info as the MP4 decomposer bounds it: brand, 16 box types, the capped track summary, numbers.
    const info = { brand: '\\"\\"', boxes: Array(16).fill('\\"\\"').join(' '), tracks: 'x'.repeat(240), duration_s: 2 ** 64, samples: MAX_SAMPLES, fragmented: 'yes' };
    const counts = Object.fromEntries(ATOM_TYPES.map((t) => [t, 10 ** 15]));
    const text = renderConcept({ oid: hash, size, format: 'mp4', info, refs, components }, counts);
    assert.ok(Buffer.byteLength(text) < 8 * 1024, `worst-case concept is ${Buffer.byteLength(text)} bytes`);
    assert.deepEqual(parseConcept(text).components, components);
  });

  test('components are validated like refs', () => {
    const good = readFileSync(path.join(fixturesDir, 'course-a.mp4')).length;
    const concept = (line: string): string => `---\npanini: 1\noid: sha256:${'a'.repeat(64)}\nsize: ${good}\nformat: "mp4"\ncontent_refs:\n  - {uri: "atom://sha256:${'b'.repeat(64)}", type: Raw, offset: 0, size: ${good}}\ncomponents:\n${line}\n---\n`;
    const uri = `atom://sha256:${'c'.repeat(64)}`;
    assert.equal(parseConcept(concept(`  - {uri: "${uri}", type: AudioStream, kind: audio, track: 2, codec: "mp4a", samples: 3, size: 900}`)).components![0]!.track, 2);
    for (const [bad, why] of [
      [`  - {uri: "${uri}", type: IFrame, kind: audio, track: 2, codec: "mp4a", samples: 3, size: 900}`, /type must be/],
      [`  - {uri: "${uri}", type: AudioStream, kind: sound, track: 2, codec: "mp4a", samples: 3, size: 900}`, /kind must be/],
      [`  - {uri: "${uri}", type: AudioStream, kind: audio, track: -1, codec: "mp4a", samples: 3, size: 900}`, /track must be/],
      [`  - {uri: "${uri}", type: AudioStream, kind: audio, track: 2, codec: "mp4a", samples: 3, size: ${good + 1}}`, /size must be/],
      [`  - {uri: "${uri}", type: AudioStream, kind: audio, track: 2, codec: "mp4a", samples: 901, size: 900}`, /samples must be/],
      [`  - {uri: "atom://md5:${'c'.repeat(32)}", type: AudioStream, kind: audio, track: 2, codec: "mp4a", samples: 3, size: 900}`, /uri must be/],
      [Array(65).fill(`  - {uri: "${uri}", type: AudioStream, kind: audio, track: 2, codec: "mp4a", samples: 3, size: 900}`).join('\n'), /more than 64 components/],
    ] as const) {
      assert.throws(() => parseConcept(concept(bad)), why);
    }
  });
});

describe('frame types from slice headers, and long tracks', () => {
  test('I, P and B slices of a synthetic H.264 track (moov first and last)', () => {
    const tmp = tempDir();
    try {
      for (const moovLast of [false, true]) {
        const file = path.join(tmp.dir, `s-${moovLast}.mp4`);
        const made = writeSyntheticMp4(file, { samples: 300, sampleSize: (i) => 200 + ((i * 37) % 500), moovLast });
        const buf = readFileSync(file);
        const { segments, tracks } = mp4.decompose(new BufferSource(buf), 0, buf.length, { nested: () => [] });
        const samples = segments.filter((s) => s.track !== undefined);
        assert.deepEqual(samples.map((s) => s.offset), made.offsets);
        assert.deepEqual(samples.map((s) => s.type), made.types);
        assert.deepEqual(tracks, [{ id: 1, kind: 'video', codec: 'avc1' }]);
      }
    } finally {
      tmp.dispose();
    }
  });

  test('a track of 9,000 samples: its track manifest is a tree, no manifest over 1 MiB', () => {
    const tmp = tempDir();
    try {
      const file = path.join(tmp.dir, 'long.mp4');
      const made = writeSyntheticMp4(file, { samples: 9000, sampleSize: (i) => 40 + (i % 50) }); // > 8192 lines per manifest
      const src = FileSource.open(file);
      const result = ingest(src, { put: () => false });
      src.close();
      const store = new MemoryStore();
      const root = buildTrackManifest(result.tracks![0]!.leaves, store, 'VideoStream');
      const leaves = [...expandTrackRefs(root, store)];
      assert.deepEqual(leaves.map((l) => l.offset), made.offsets);
      assert.deepEqual(leaves.map((l) => l.type), made.types);
      assert.equal(root.size, made.offsets.reduce((n, _, i) => n + 40 + (i % 50), 0), 'the root spans every sample\'s bytes');
      const children = [...store.get(root.hash).toString('latin1').matchAll(/^VideoStream \d+ \d+ ([0-9a-f]{64})$/gm)];
      assert.equal(children.length, 2, 'the root lists two child track manifests');
      for (const bytes of store.atoms.values()) assert.ok(bytes.length <= 1024 * 1024, `a manifest of ${bytes.length} bytes`);
    } finally {
      tmp.dispose();
    }
  });
});

/** Atoms in memory (for manifest tests that need no files). */
class MemoryStore {
  readonly atoms = new Map<string, Buffer>();
  put(hash: string, bytes: Uint8Array): boolean {
    if (this.atoms.has(hash)) return false;
    this.atoms.set(hash, Buffer.from(bytes));
    return true;
  }
  has(hash: string): boolean {
    return this.atoms.has(hash);
  }
  get(hash: string): Buffer {
    const bytes = this.atoms.get(hash);
    assert.ok(bytes, `atom ${hash} was never stored`);
    return bytes;
  }
}

/**
 * Runs a module in a child node (its own heap), returning its stdout: for memory measurements.
 * From a file, not `node -e`: worker threads inherit the parent's -e and would run it again.
 */
function nodeScript(source: string, args: string[], timeoutMs = 60_000): string {
  const tmp = tempDir('panini-script-');
  try {
    const script = path.join(tmp.dir, 'script.mjs');
    writeFileSync(script, source);
    const r = spawnSync(process.execPath, [script, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    assert.equal(r.status, 0, `child failed (${r.signal ?? 'exit ' + r.status}): ${r.stderr}`);
    return r.stdout.toString();
  } finally {
    tmp.dispose();
  }
}

const distSrc = (p: string): string => fileURLToPath(new URL(`../src/${p}`, import.meta.url));

/** buildConcept in a fresh process; prints samples, concept size and peak RSS (MiB). */
const BUILD_AND_MEASURE = `
  const { FileSource } = await import(${JSON.stringify(distSrc('source.js'))});
  const { buildConcept } = await import(${JSON.stringify(distSrc('concept/build.js'))});
  const { LocalStore } = await import(${JSON.stringify(distSrc('store/local.js'))});
  const src = FileSource.open(process.argv[2]);
  const built = buildConcept(src, new LocalStore(process.argv[3]));
  const samples = built.ingest.leaves.filter((l) => /Frame$|AudioChunk/.test(l.type)).length;
  console.log(JSON.stringify({ samples, conceptBytes: Buffer.byteLength(built.text), rssMiB: process.resourceUsage().maxRSS / 1024 }));
`;

describe('bounded memory and malformed sample tables', () => {
  test('a 2 GB MP4 with 110,000 samples is stored in under 500 MiB RSS, with a concept under 8 KiB', () => {
    const tmp = tempDir();
    try {
      const file = path.join(tmp.dir, 'big.mp4');
      const made = writeSyntheticMp4(file, { samples: 110_000, sampleSize: 19_000, content: 'zeros' }); // sparse: no disk used
      assert.ok(made.size > 2_000_000_000);
      // ~6 s on an idle machine; the timeout is generous for a loaded CI machine.
      const r = JSON.parse(nodeScript(BUILD_AND_MEASURE, [file, path.join(tmp.dir, 'store')], 180_000)) as { samples: number; conceptBytes: number; rssMiB: number };
      assert.equal(r.samples, 110_000);
      assert.ok(r.conceptBytes < 8 * 1024, `concept is ${r.conceptBytes} bytes`);
      assert.ok(r.rssMiB < 500, `peak RSS ${r.rssMiB} MiB`);
    } finally {
      tmp.dispose();
    }
  });

  /** course-a with its video stsz count set to 2^31 and some chunk offsets past the end. */
  function hostileTables(buf: Buffer): Buffer {
    const m = Buffer.from(buf);
    const find = (type: string, from = 0): number => m.indexOf(Buffer.from(type), from) - 4;
    const stsz = find('stsz');
    m.writeUInt32BE(2 ** 31, stsz + 16); // sample_count; sample_size stays 0, so sizes come from the table
    const stco = find('stco');
    for (let i = 3; i < 20; i++) m.writeUInt32BE(0xfffffff0 - i, stco + 16 + i * 4);
    // The audio track's first chunks point into the video samples: overlaps, to be dropped.
    const audioStco = find('stco', stco + 8);
    m.writeUInt32BE(m.readUInt32BE(stco + 16) + 10, audioStco + 16);
    return m;
  }

  /** One sample size for all, with 2^31 samples: no table bounds the count, only the file does. */
  function hugeConstantCount(buf: Buffer): Buffer {
    const m = Buffer.from(buf);
    const stsz = m.indexOf(Buffer.from('stsz')) - 4;
    m.writeUInt32BE(1024, stsz + 12);
    m.writeUInt32BE(2 ** 31, stsz + 16);
    const stsc = m.indexOf(Buffer.from('stsc')) - 4;
    m.writeUInt32BE(0xffffffff, stsc + 20); // samples per chunk
    return m;
  }

  /** The fragmented file with its first trun claiming 2^31 samples. */
  function hugeTrun(buf: Buffer): Buffer {
    const m = Buffer.from(buf);
    const trun = m.indexOf(Buffer.from('trun')) - 4;
    m.writeUInt32BE(2 ** 31, trun + 12);
    return m;
  }

  const cases: [string, () => Buffer][] = [
    ['stsz count 2^31, stco past the end, overlapping tracks', () => hostileTables(readFixture('course-a.mp4'))],
    ['constant sample size with 2^31 samples and 2^32-1 per chunk', () => hugeConstantCount(readFixture('course-a.mp4'))],
    ['trun sample count 2^31', () => hugeTrun(readFixture('course-a-fragmented.mp4'))],
  ];
  for (const [label, make] of cases) {
    test(`${label}: round-trips through clean and smudge, in bounded memory`, () => {
      const repo = tempRepo();
      try {
        const bytes = make();
        const file = path.join(repo.dir, 'hostile.mp4');
        writeFileSync(file, bytes);
        const concept = ok(runCli(['clean', 'hostile.mp4'], { cwd: repo.dir, stdinFile: file }), 'clean');
        assert.equal(parseConcept(concept).format, 'mp4', 'still decomposed as MP4, not given up');
        const back = ok(runCli(['smudge', 'hostile.mp4'], { cwd: repo.dir, input: concept }), 'smudge');
        assert.ok(back.equals(bytes), 'round-trip');
        const r = JSON.parse(nodeScript(BUILD_AND_MEASURE, [file, path.join(repo.dir, 'store2')])) as { samples: number; rssMiB: number };
        assert.ok(r.rssMiB < 200, `peak RSS ${r.rssMiB} MiB`);
        assert.ok(r.samples > 0 && r.samples <= 344, `${r.samples} samples kept`);
      } finally {
        repo.dispose();
      }
    });
  }

  test('overlapping samples are dropped, never duplicated: the concept covers each byte once', () => {
    const repo = tempRepo();
    try {
      const bytes = hostileTables(readFixture('course-a.mp4'));
      const file = path.join(repo.dir, 'hostile.mp4');
      writeFileSync(file, bytes);
      const atoms = cleanAndList(repo, 'hostile.mp4', file);
      let pos = 0;
      for (const a of atoms) {
        assert.equal(a.offset, pos);
        pos += a.size;
      }
      assert.equal(pos, bytes.length);
      const base = sampleHashes(atoms);
      assert.ok(base.size > 300, 'the valid samples are still atoms');
    } finally {
      repo.dispose();
    }
  });

  test('truncated.mp4 and bad-box.mp4 round-trip; the truncated one keeps the samples that made it', () => {
    const repo = tempRepo();
    try {
      for (const name of ['truncated.mp4', 'bad-box.mp4']) {
        const concept = ok(runCli(['clean', name], { cwd: repo.dir, stdinFile: path.join(fixturesDir, name) }), `clean ${name}`);
        assert.ok(ok(runCli(['smudge', name], { cwd: repo.dir, input: concept }), `smudge ${name}`).equals(readFixture(name)));
      }
      const truncated = sampleHashes(cleanAndList(repo, 'truncated.mp4'));
      const whole = sampleHashes(cleanAndList(repo, 'course-a.mp4'));
      assert.ok(truncated.size > 50 && [...truncated].every((h) => whole.has(h)), 'its samples are course-a\'s');
    } finally {
      repo.dispose();
    }
  });

  test('the decomposer never throws and stays contiguous on 400 mutants of plain and fragmented files', () => {
    for (const name of ['course-a.mp4', 'course-a-fragmented.mp4', 'tone.m4a', 'course-a-moov-last.mp4']) {
      const buf = readFixture(name);
      const boxStarts: number[] = [];
      for (const type of ['moov', 'trak', 'stsz', 'stco', 'stsc', 'stts', 'moof', 'traf', 'trun', 'tfhd', 'mdat', 'esds', 'avcC']) {
        for (let at = buf.indexOf(type); at >= 4; at = buf.indexOf(type, at + 1)) boxStarts.push(at - 4, at + 8, at + 12);
      }
      for (const m of mutants(buf, boxStarts, 100, name.length)) assertDecomposerSound(mp4, m);
    }
  });

  test('a box-level fallback when the moov is missing: mdat payload kept as Raw, file intact', () => {
    const payload = Buffer.alloc(50_000, 7);
    const file = Buffer.concat([mp4Box('ftyp', Buffer.from('isom'), Buffer.alloc(4)), mp4Box('mdat', payload)]);
    const { segments, tracks } = mp4.decompose(new BufferSource(file), 0, file.length, { nested: () => [] });
    assert.deepEqual(segments.map((s) => s.type), ['Container', 'Container', 'Raw']);
    assert.equal(tracks, undefined);
  });
});
