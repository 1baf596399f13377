/**
 * Media storage and decomposition speed.
 *
 * 1. Stored bytes for media corpora, stored three ways: git-panini (frame-level atoms, manifests
 *    included), plain content-defined chunking of whole files (FastCDC only), and whole files
 *    deduplicated by hash (Git LFS). The fixture corpus: two courses sharing an intro, a re-mux
 *    with the moov last, a fragmented re-mux, a retitled copy, an audio file; with ffmpeg, also a
 *    MOV re-mux, a faststart re-mux with new tags and a fragmented course-b. With ffmpeg, an
 *    encoded corpus too: two 640x360 H.264/AAC courses (PANINI_BENCH_MEDIA_S, 60 s by default)
 *    sharing their first third, and re-muxes and a retag of one.
 * 2. Decompose throughput on a synthetic H.264-like MP4 (PANINI_BENCH_MB, 256 MiB by default):
 *    decomposition alone, and decomposition plus hashing every atom (what clean does before
 *    writing), with peak RSS.
 * Run: `node dist/bench/decompose-media.js`. Prints tables; makes no assertions.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { buildConcept } from '../src/concept/build.js';
import { cutPoint } from '../src/decompose/cdc.js';
import { decompose } from '../src/decompose/index.js';
import { newSha256, sha256Hex } from '../src/hash.js';
import { FileSource } from '../src/source.js';
import { ingest } from '../src/store/ingest.js';
import { LocalStore } from '../src/store/local.js';
import { fixturesDir } from '../test/helpers/fixtures.js';
import { writeSyntheticMp4 } from '../test/helpers/mp4.js';
import { cores, formatBytes, formatMs, selfPeakRssKb, tempDir, timeIt } from './lib.js';
import { encodeCourses, hasFfmpeg, type CorpusFile } from './media-corpus.js';

const SYNTHETIC_MB = Number(process.env.PANINI_BENCH_MB ?? 256);
const WINDOW = 8 * 1024 * 1024;

/** The fixtures, plus re-muxes and tag edits made with ffmpeg (stream copy: the same samples). */
function buildCorpus(dir: string): CorpusFile[] {
  const fixture = (name: string, what: string): CorpusFile => ({ name, path: path.join(fixturesDir, name), what });
  const corpus = [
    fixture('course-a.mp4', 'a course: intro + body'),
    fixture('course-b.mp4', 'another course, same intro'),
    fixture('course-a-moov-last.mp4', 're-mux, moov after mdat'),
    fixture('course-a-fragmented.mp4', 're-mux, fragmented'),
    fixture('course-a-retitled.mp4', 'title tag edited'),
    fixture('tone.m4a', 'audio only'),
  ];
  if (!hasFfmpeg()) return corpus;
  const derive = (name: string, what: string, args: string[]): void => {
    const out = path.join(dir, name);
    const r = spawnSync('ffmpeg', ['-v', 'error', '-y', ...args, out]);
    if (r.status === 0) corpus.push({ name, path: out, what });
  };
  const a = path.join(fixturesDir, 'course-a.mp4');
  const b = path.join(fixturesDir, 'course-b.mp4');
  derive('course-a.mov', 're-mux to QuickTime', ['-i', a, '-map', '0', '-c', 'copy', '-f', 'mov']);
  derive('course-a-tagged.mp4', 'faststart re-mux, new tags', ['-i', a, '-map', '0', '-c', 'copy', '-metadata', 'title=Lecture 1 (final)', '-metadata', 'artist=Panini', '-movflags', '+faststart']);
  derive('course-b-fragmented.mp4', 're-mux of course-b, fragmented', ['-i', b, '-map', '0', '-c', 'copy', '-movflags', 'frag_keyframe+empty_moov']);
  return corpus;
}

/** Distinct bytes when every file is cut by FastCDC alone. */
function cdcOnlyBytes(files: readonly CorpusFile[]): { bytes: number; chunks: number } {
  const seen = new Map<string, number>();
  for (const f of files) {
    const buf = readFileSync(f.path);
    for (let at = 0; at < buf.length; ) {
      const n = cutPoint(buf, at, buf.length - at, true);
      seen.set(sha256Hex(buf.subarray(at, at + n)), n);
      at += n;
    }
  }
  return { bytes: [...seen.values()].reduce((a, b) => a + b, 0), chunks: seen.size };
}

/** Distinct bytes when whole files are stored by hash (Git LFS). */
function wholeFileBytes(files: readonly CorpusFile[]): number {
  const seen = new Map<string, number>();
  for (const f of files) {
    const buf = readFileSync(f.path);
    seen.set(sha256Hex(buf), buf.length);
  }
  return [...seen.values()].reduce((a, b) => a + b, 0);
}

function isManifest(bytes: Buffer): boolean {
  return bytes.subarray(0, 16).toString('latin1').startsWith('panini-manifest');
}

function storageTable(title: string, corpus: readonly CorpusFile[], storeDir: string): void {
  const store = new LocalStore(storeDir);
  const known = new Set<string>();
  let conceptBytes = 0;
  let contentTotal = 0;
  let manifestTotal = 0;
  const rows: string[][] = [];
  for (const f of corpus) {
    const src = FileSource.open(f.path);
    try {
      const built = buildConcept(src, store);
      conceptBytes += Buffer.byteLength(built.text);
      let content = 0;
      let manifests = 0;
      for (const a of store.list()) {
        if (known.has(a.hash)) continue;
        known.add(a.hash);
        if (isManifest(store.readRaw(a.hash))) manifests += a.size;
        else content += a.size;
      }
      contentTotal += content;
      manifestTotal += manifests;
      rows.push([f.name, f.what, formatBytes(statSync(f.path).size), String(built.ingest.leaves.length), formatBytes(content), formatBytes(manifests)]);
    } finally {
      src.close();
    }
  }
  const logical = corpus.reduce((n, f) => n + statSync(f.path).size, 0);
  const cdc = cdcOnlyBytes(corpus);
  const whole = wholeFileBytes(corpus);
  const stored = contentTotal + manifestTotal;
  const lines = [
    `\n## ${title}: stored bytes (${corpus.length} files, ${formatBytes(logical)} in all)`,
    '',
    '| file | what | size | atoms | new content atoms | new manifest atoms |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    '| storage | stored bytes | vs logical |',
    '|---|---|---|',
    `| git-panini: frame-level atoms + manifests | ${formatBytes(stored)} | ${(stored / logical).toFixed(3)} |`,
    `| (of which manifests: file order and per track) | ${formatBytes(manifestTotal)} | ${(manifestTotal / logical).toFixed(3)} |`,
    `| FastCDC only (whole files, ${cdc.chunks} distinct chunks) | ${formatBytes(cdc.bytes)} | ${(cdc.bytes / logical).toFixed(3)} |`,
    `| whole files by hash (Git LFS) | ${formatBytes(whole)} | ${(whole / logical).toFixed(3)} |`,
    `| (git-panini concepts, kept in Git) | ${formatBytes(conceptBytes)} | |`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

async function throughputTable(dir: string): Promise<void> {
  const file = path.join(dir, 'synthetic.mp4');
  const sampleSize = (i: number): number => 20_000 + ((i * 7919) % 40_000); // 20–60 kB frames
  const samples = Math.max(1, Math.floor((SYNTHETIC_MB * 1024 * 1024) / 40_000));
  const made = writeSyntheticMp4(file, { samples, sampleSize, moovLast: true }); // just written: in the page cache
  const src = FileSource.open(file);
  try {
    const mb = made.size / 1e6;
    const decomposed = await timeIt(() => decompose(src));
    const hashed = await timeIt(() => ingest(src, { put: () => false }));
    const peakRss = selfPeakRssKb() * 1024;
    const whole = await timeIt(() => {
      const h = newSha256();
      for (let at = 0; at < src.size; at += WINDOW) h.update(src.read(at, WINDOW));
      return h.digest('hex');
    });
    const lines = [
      `\n## Decompose throughput (${formatBytes(made.size)} synthetic MP4, ${samples} samples, moov last; ${cores} cores, node ${process.version})`,
      '',
      '| step | time | MB/s | atoms |',
      '|---|---|---|---|',
      `| decompose (box walk, sample tables, slice headers) | ${formatMs(decomposed.ms)} | ${(mb / (decomposed.ms / 1000)).toFixed(0)} | ${decomposed.value.segments.length} |`,
      `| decompose + SHA-256 of every atom (no store writes) | ${formatMs(hashed.ms)} | ${(mb / (hashed.ms / 1000)).toFixed(0)} | ${hashed.value.leaves.length} |`,
      `| for reference: read + SHA-256 of the whole file | ${formatMs(whole.ms)} | ${(mb / (whole.ms / 1000)).toFixed(0)} | 1 |`,
      '',
      `peak RSS of this process after decomposing and hashing: ${formatBytes(peakRss)}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    src.close();
  }
}

async function main(): Promise<void> {
  if (!Number.isSafeInteger(SYNTHETIC_MB) || SYNTHETIC_MB <= 0) throw new Error(`PANINI_BENCH_MB must be a positive whole number of MiB, not ${process.env.PANINI_BENCH_MB}`);
  const work = tempDir('panini-bench-media-');
  try {
    storageTable('Fixture corpus', buildCorpus(work.dir), path.join(work.dir, 'store-fixtures'));
    if (hasFfmpeg()) {
      const encoded = path.join(work.dir, 'encoded');
      mkdirSync(encoded);
      storageTable('Encoded corpus', encodeCourses(encoded), path.join(work.dir, 'store-encoded'));
    } else {
      process.stdout.write('\n(ffmpeg not installed: the encoded corpus and the derived fixture re-muxes are skipped)\n');
    }
    await throughputTable(work.dir);
  } finally {
    work.dispose();
  }
}

await main();
