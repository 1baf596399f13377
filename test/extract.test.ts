/**
 * Partial reconstruction through the built CLI (`get-content`) in real temporary Git repositories:
 * every MP4/M4A fixture's audio, video and keyframes decode with ffmpeg without an error and keep
 * the source's duration and packet counts (ffprobe as the oracle); metadata matches ffprobe; only
 * the component's atoms are read, and only they are fetched from a remote folder store. Also the
 * streaming API (file order, one component, read-ahead) and whole-file output.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConcept, type Concept } from '../src/concept/concept.js';
import { expandTrackRefs } from '../src/concept/manifest.js';
import { extractComponent, type ComponentName } from '../src/reconstruct/extract.js';
import { leafRefs } from '../src/reconstruct/reconstruct.js';
import { componentAtoms, fileAtoms, findComponent, StoredSource, streamAtoms } from '../src/reconstruct/stream.js';
import { LocalStore } from '../src/store/local.js';
import { fixturesDir, readFixture } from './helpers/fixtures.js';
import { runCli, tempDir, tempRepo, type RunResult, type TempRepo } from './helpers/cli.js';

const MEDIA = ['course-a.mp4', 'course-b.mp4', 'course-a-moov-last.mp4', 'course-a-retitled.mp4', 'course-a-fragmented.mp4', 'tone.m4a', 'truncated.mp4'];
/** Seconds: container rounding (the movie timescale is often 1/1000). */
const DURATION_TOLERANCE = 0.05;

function ok(r: RunResult, what: string): Buffer {
  assert.equal(r.status, 0, `${what} failed: ${r.stderr}`);
  return r.stdout;
}

function probe(file: string, args: string[]): Record<string, unknown> {
  const r = spawnSync('ffprobe', ['-v', 'error', ...args, '-of', 'json', file], { maxBuffer: 64 * 1024 * 1024 });
  assert.ok(!r.error, 'ffprobe is needed (Debian: apt-get install ffmpeg; .ci/run installs it)');
  assert.equal(r.status, 0, `ffprobe ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as Record<string, unknown>;
}

interface Stream { codec_type: string; codec_tag_string: string; duration?: string; nb_read_packets: string; sample_rate?: string; channels?: number; width?: number; height?: number }

function streams(file: string): Stream[] {
  return probe(file, ['-count_packets', '-show_streams']).streams as Stream[];
}

interface Probed {
  streams: Stream[];
  /** Packets of a kind of stream (key packets only, if asked); of a file cut short, only those wholly inside it. */
  count(kind: string, keyOnly: boolean): number;
}

function probeSource(file: string, cutShort: boolean): Probed {
  const size = statSync(file).size;
  const all = probe(file, ['-count_packets', '-show_streams', '-show_packets', '-show_entries', 'packet=stream_index,pos,size,flags']);
  const packets = all.packets as { stream_index: number; pos: string; size: string; flags: string }[];
  const list = all.streams as Stream[];
  return {
    streams: list,
    count: (kind, keyOnly) => {
      const index = list.findIndex((s) => s.codec_type === kind);
      return packets.filter((p) => p.stream_index === index && (!keyOnly || p.flags.startsWith('K')) && Number(p.pos) + Number(p.size) < size + (cutShort ? 0 : 1)).length;
    },
  };
}

/** ADTS output is checked on a few files (the samples are the same as the M4A's). */
const ADTS_CHECKED = new Set(['course-a-fragmented.mp4', 'tone.m4a', 'truncated.mp4']);

function decodeErrors(file: string): string {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  return r.status === 0 ? r.stderr : `exit ${r.status}: ${r.stderr}`;
}

describe('get-content --component: playable extracts of every MP4/M4A fixture', () => {
  let repo: TempRepo;
  before(() => {
    repo = tempRepo();
  });
  after(() => repo.dispose());

  for (const name of MEDIA) {
    test(name, () => {
      const source = path.join(fixturesDir, name);
      const concept = path.join(repo.dir, `${name}.md`);
      writeFileSync(concept, ok(runCli(['clean', name], { cwd: repo.dir, stdinFile: source }), `clean ${name}`));
      const cut = name === 'truncated.mp4';
      const probed = probeSource(source, cut);
      const sourceStreams = probed.streams;
      const wanted: [ComponentName, string, boolean][] = [['audio', 'audio', false], ['video', 'video', false], ['keyframes', 'video', true]];
      for (const [component, kind, keyOnly] of wanted) {
        const from = sourceStreams.find((s) => s.codec_type === kind);
        const out = path.join(repo.dir, `${name}.${component}.mp4`);
        const r = runCli(['get-content', concept, '--component', component, '-o', out], { cwd: repo.dir });
        if (!from) {
          assert.notEqual(r.status, 0, `${name} has no ${kind} track`);
          assert.match(r.stderr, new RegExp(`no ${kind} track`));
          assert.ok(!existsSync(out), 'no output file on failure');
          continue;
        }
        ok(r, `get-content ${name} --component ${component}`);
        assert.equal(decodeErrors(out), '', `${out} decodes without errors`);
        const got = streams(out);
        assert.deepEqual(got.map((s) => [s.codec_type, s.codec_tag_string]), [[kind, from.codec_tag_string]], `${out}: one ${kind} stream, same codec`);
        assert.equal(Number(got[0]!.nb_read_packets), probed.count(kind, keyOnly), `${out}: packet count`);
        const duration = Number(got[0]!.duration);
        if (cut) assert.ok(duration > 0 && duration < Number(from.duration), `${out}: the part that was stored`);
        else assert.ok(Math.abs(duration - Number(from.duration)) <= DURATION_TOLERANCE, `${out}: duration ${duration} s, source ${from.duration} s`);
        if (kind === 'video') assert.deepEqual([got[0]!.width, got[0]!.height], [from.width, from.height]);
        if (kind === 'audio') assert.deepEqual([got[0]!.sample_rate, got[0]!.channels], [from.sample_rate, from.channels]);
      }
      if (ADTS_CHECKED.has(name)) {
        const adts = path.join(repo.dir, `${name}.aac`);
        ok(runCli(['get-content', concept, '--component', 'audio', '-o', adts], { cwd: repo.dir }), 'ADTS');
        assert.equal(readFileSync(adts).readUInt16BE(0) & 0xfff6, 0xfff0, 'starts with an ADTS sync word');
        assert.equal(decodeErrors(adts), '', `${adts} decodes without errors`);
        assert.equal(Number(streams(adts)[0]!.nb_read_packets), probed.count('audio', false), 'every AAC frame');
      }
    });
  }

  test('metadata: tracks, codecs, durations and tags, as ffprobe sees them', () => {
    const name = 'course-a-retitled.mp4';
    const source = path.join(fixturesDir, name);
    const concept = path.join(repo.dir, 'meta.md');
    writeFileSync(concept, ok(runCli(['clean', name], { cwd: repo.dir, stdinFile: source }), 'clean'));
    const meta = JSON.parse(ok(runCli(['get-content', concept, '--component', 'metadata'], { cwd: repo.dir }), 'metadata').toString()) as {
      file: { size: number; format: string }; tracks: { kind: string; codec: string; duration_s: number; samples: number; width?: number; sample_rate?: number }[]; tags: Record<string, string>;
    };
    assert.equal(meta.file.size, statSync(source).size);
    assert.equal(meta.file.format, 'mp4');
    const probed = streams(source);
    assert.deepEqual(meta.tracks.map((t) => [t.kind, t.codec, t.samples]), probed.map((s) => [s.codec_type, s.codec_tag_string, Number(s.nb_read_packets)]));
    for (const [i, t] of meta.tracks.entries()) assert.ok(Math.abs(t.duration_s - Number(probed[i]!.duration)) <= DURATION_TOLERANCE, `track ${i} duration`);
    const tags = (probe(source, ['-show_entries', 'format_tags']).format as { tags: Record<string, string> }).tags;
    assert.equal(meta.tags.title, tags.title);
    assert.equal(meta.tags.encoder, tags.encoder);
  });

  test('a file that is not MP4: metadata works, media components say why not', () => {
    const concept = path.join(repo.dir, 'photo.md');
    writeFileSync(concept, ok(runCli(['clean', 'photo.png'], { cwd: repo.dir, stdinFile: path.join(fixturesDir, 'photo.png') }), 'clean'));
    const meta = JSON.parse(ok(runCli(['get-content', concept, '--component', 'metadata'], { cwd: repo.dir }), 'metadata').toString()) as { file: { format: string } };
    assert.equal(meta.file.format, 'png');
    const r = runCli(['get-content', concept, '--component', 'video', '-o', path.join(repo.dir, 'x.mp4')], { cwd: repo.dir });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /needs an MP4, MOV or M4A file/);
    assert.match(runCli(['get-content', concept, '--component', 'sound'], { cwd: repo.dir }).stderr, /unknown component "sound"/);
  });
});

describe('get-content without --component rebuilds the whole file', () => {
  test('to stdout and to a file, verified; a missing atom leaves neither FILE nor a temp file', () => {
    const repo = tempRepo();
    try {
      const concept = path.join(repo.dir, 'a.md');
      writeFileSync(concept, ok(runCli(['clean', 'a.mp4'], { cwd: repo.dir, stdinFile: path.join(fixturesDir, 'course-a.mp4') }), 'clean'));
      const original = readFixture('course-a.mp4');
      assert.ok(ok(runCli(['get-content', concept], { cwd: repo.dir }), 'stdout').equals(original));
      ok(runCli(['get-content', concept, '-o', path.join(repo.dir, 'a.mp4')], { cwd: repo.dir }), '-o');
      assert.ok(readFileSync(path.join(repo.dir, 'a.mp4')).equals(original));
      const store = new LocalStore(repo.store);
      const video = findComponent(parseConcept(readFileSync(concept)), { kind: 'video' })!;
      const victim = [...expandTrackRefs(video, store)][10]!.hash;
      const atomPath = store.atomPath(victim);
      chmodSync(atomPath, 0o644);
      unlinkSync(atomPath);
      cpSync(path.join(repo.dir, 'a.mp4'), path.join(repo.dir, 'keep.mp4'));
      const r = runCli(['get-content', concept, '-o', path.join(repo.dir, 'keep.mp4')], { cwd: repo.dir });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /missing/);
      assert.ok(readFileSync(path.join(repo.dir, 'keep.mp4')).equals(original), 'an existing FILE is left untouched');
      assert.deepEqual(readdirSync(repo.dir).filter((n) => n.includes('panini-')), [], 'no temp file left');
      // The audio component does not need that video frame.
      ok(runCli(['get-content', concept, '--component', 'audio', '-o', path.join(repo.dir, 'audio.m4a')], { cwd: repo.dir }), 'audio without the video atom');
    } finally {
      repo.dispose();
    }
  });
});

/** An AtomReader over a LocalStore that records what is read. */
class RecordingStore {
  readonly read = new Set<string>();
  constructor(readonly inner: LocalStore) {}
  has(hash: string): boolean {
    return this.inner.has(hash);
  }
  get(hash: string): Buffer {
    this.read.add(hash);
    return this.inner.get(hash);
  }
}

describe('only the atoms a component needs', () => {
  let repo: TempRepo;
  let concept: Concept;
  before(() => {
    repo = tempRepo();
    concept = parseConcept(ok(runCli(['clean', 'a.mp4'], { cwd: repo.dir, stdinFile: path.join(fixturesDir, 'course-a-fragmented.mp4') }), 'clean'));
  });
  after(() => repo.dispose());

  test('are read from the store: audio reads no video frame, keyframes read only I-frames', async () => {
    const store = new LocalStore(repo.store);
    const video = [...expandTrackRefs(findComponent(concept, { kind: 'video' })!, store)];
    const audio = [...expandTrackRefs(findComponent(concept, { kind: 'audio' })!, store)];
    const videoHashes = new Set(video.map((a) => a.hash));
    const audioHashes = new Set(audio.map((a) => a.hash));
    const manifests = new Set([...concept.refs.map((r) => r.hash), ...concept.components!.map((c) => c.hash)]);
    for (const component of ['audio', 'video', 'keyframes'] as const) {
      const recording = new RecordingStore(store);
      const chunks: Buffer[] = [];
      const summary = await extractComponent(concept, recording, { component }, (b) => chunks.push(Buffer.from(b)));
      const samplesRead = [...recording.read].filter((h) => !manifests.has(h) && (videoHashes.has(h) || audioHashes.has(h)));
      if (component === 'audio') assert.ok(samplesRead.every((h) => audioHashes.has(h) && !videoHashes.has(h)), 'audio: no video frame read');
      else assert.ok(samplesRead.every((h) => videoHashes.has(h) && !audioHashes.has(h)), `${component}: no audio chunk read`);
      if (component === 'keyframes') {
        const iframes = new Set(video.filter((a) => a.type === 'IFrame').map((a) => a.hash));
        assert.deepEqual(new Set(samplesRead), iframes, 'keyframes: exactly the I-frames');
      } else {
        assert.deepEqual(new Set(samplesRead), component === 'audio' ? audioHashes : videoHashes, `${component}: every sample of the track`);
      }
      assert.equal(summary.bytes, chunks.reduce((n, c) => n + c.length, 0));
    }
  });

  test('are fetched from a remote folder store: a fresh clone gets audio without any video frame', () => {
    const remote = tempDir('panini-remote-');
    const other = tempRepo();
    try {
      cpSync(path.join(repo.store, 'atoms'), path.join(remote.dir, 'atoms'), { recursive: true });
      const conceptPath = path.join(other.dir, 'a.md');
      writeFileSync(conceptPath, ok(runCli(['clean', 'a.mp4'], { cwd: repo.dir, stdinFile: path.join(fixturesDir, 'course-a-fragmented.mp4') }), 'concept'));
      spawnSync('git', ['config', 'panini.url', `file://${remote.dir}`], { cwd: other.dir });
      const out = path.join(other.dir, 'a.m4a');
      ok(runCli(['get-content', conceptPath, '--component', 'audio', '-o', out], { cwd: other.dir }), 'get-content from the remote');
      assert.equal(decodeErrors(out), '');
      const local = new LocalStore(other.store);
      const store = new LocalStore(repo.store);
      const video = [...expandTrackRefs(findComponent(concept, { kind: 'video' })!, store)];
      const audio = [...expandTrackRefs(findComponent(concept, { kind: 'audio' })!, store)];
      assert.ok(audio.every((a) => local.has(a.hash)), 'every audio chunk was fetched');
      assert.deepEqual(video.filter((a) => local.has(a.hash) && !audio.some((b) => b.hash === a.hash)), [], 'no video frame was fetched');
    } finally {
      other.dispose();
      remote.dispose();
    }
  });
});

describe('streaming API', () => {
  let repo: TempRepo;
  let concept: Concept;
  let store: LocalStore;
  const original = readFixture('course-a.mp4');
  before(() => {
    repo = tempRepo();
    concept = parseConcept(ok(runCli(['clean', 'a.mp4'], { cwd: repo.dir, stdinFile: path.join(fixturesDir, 'course-a.mp4') }), 'clean'));
    store = new LocalStore(repo.store);
  });
  after(() => repo.dispose());

  test('file order: the atoms put together are the file', async () => {
    const parts: Buffer[] = [];
    let offset = 0;
    for await (const atom of fileAtoms(concept, store, 3)) {
      assert.equal(atom.ref.offset, offset);
      offset += atom.bytes.length;
      parts.push(atom.bytes);
    }
    assert.ok(Buffer.concat(parts).equals(original));
  });

  test('one component: its atoms in file order, each the bytes at its offset', async () => {
    for (const kind of ['video', 'audio'] as const) {
      let last = -1;
      let count = 0;
      for await (const atom of componentAtoms(findComponent(concept, { kind })!, store)) {
        assert.ok(atom.ref.offset > last);
        last = atom.ref.offset;
        assert.ok(atom.bytes.equals(original.subarray(atom.ref.offset, atom.ref.offset + atom.ref.size)));
        assert.equal(kind === 'video' ? /Frame$/.test(atom.ref.type) : atom.ref.type === 'AudioChunk', true);
        count++;
      }
      assert.equal(count, findComponent(concept, { kind })!.samples);
    }
  });

  test('read-ahead keeps up to N reads in flight, yields in order, and reports a failure where it happens', async () => {
    const refs = leafRefs(concept, store).slice(0, 40);
    let inFlight = 0;
    let peak = 0;
    const slow = {
      get: async (hash: string): Promise<Buffer> => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 2));
        inFlight--;
        if (hash === refs[30]!.hash) throw new Error('remote store unreachable');
        return store.get(hash);
      },
    };
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const atom of streamAtoms(refs, slow, 4)) seen.push(atom.ref.offset);
    }, /remote store unreachable/);
    assert.equal(peak, 4);
    assert.deepEqual(seen, refs.slice(0, seen.length).map((r) => r.offset));
    assert.ok(seen.length >= 29 && refs.slice(0, seen.length).every((r) => r.hash !== refs[30]!.hash), 'everything before the failing atom was yielded');
  });

  test('random access: any range reads the same bytes as the file, touching only its atoms', () => {
    const leaves = leafRefs(concept, store);
    const src = new StoredSource(leaves, store, concept.size);
    for (const [offset, length] of [[0, 10], [5000, 70_000], [original.length - 3, 10], [119_000, 2000]] as const) {
      assert.ok(src.read(offset, length).equals(original.subarray(offset, offset + length)));
    }
    const fresh = new StoredSource(leaves, store, concept.size);
    fresh.read(40_000, 1);
    assert.equal(fresh.atomsRead.size, 1);
  });
});
