/**
 * What compressing atoms at rest and on the wire would save, by atom type: the bytes of every
 * distinct atom of a corpus, as stored now and compressed with zlib's deflate (levels 1 and 6)
 * and brotli (quality 5), both in Node (Node 20 has no zstd), with the speed of each. The corpus:
 * the media fixtures (encoded video and audio, PNG, JPEG, ZIP, random data); with ffmpeg, a
 * 20 s PCM WAV; then data that is not media: generated CSV text and float32 arrays (model
 * weights). This is the measurement behind not compressing yet (BENCHMARKS.md).
 * Run: `node dist/bench/compression.js`. Prints tables; makes no assertions.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { brotliCompressSync, constants, deflateRawSync } from 'node:zlib';
import type { AtomType } from '../src/atom.js';
import { MAX_INLINE_REFS } from '../src/concept/concept.js';
import { buildManifestTree } from '../src/concept/manifest.js';
import { BufferSource } from '../src/source.js';
import { ingest } from '../src/store/ingest.js';
import type { AtomWriter } from '../src/store/local.js';
import { fixturesDir } from '../test/helpers/fixtures.js';
import { cores, formatBytes, randomBytesStream, tempDir } from './lib.js';

interface Codec {
  name: string;
  compress(bytes: Buffer): Buffer;
}

const CODECS: Codec[] = [
  { name: 'deflate-1', compress: (b) => deflateRawSync(b, { level: 1 }) },
  { name: 'deflate-6', compress: (b) => deflateRawSync(b, { level: 6 }) },
  { name: 'brotli-5', compress: (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_SIZE_HINT]: b.length } }) },
];

/** The distinct atoms of the files, with their types, as clean stores them (manifests included). */
function atomsOf(files: readonly Buffer[]): Map<string, { type: AtomType; bytes: Buffer }> {
  const atoms = new Map<string, { type: AtomType; bytes: Buffer }>();
  let type: AtomType = 'Raw'; // leaves are typed from the refs ingest returns
  const writer: AtomWriter = {
    put(hash, bytes) {
      if (atoms.has(hash)) return false;
      atoms.set(hash, { type, bytes: Buffer.from(bytes) });
      return true;
    },
  };
  for (const file of files) {
    const result = ingest(new BufferSource(file), writer);
    for (const leaf of result.leaves) atoms.get(leaf.hash)!.type = leaf.type;
    type = 'Manifest';
    buildManifestTree(result.leaves, writer, MAX_INLINE_REFS);
    type = 'Raw';
  }
  return atoms;
}

/** One table: per atom type, stored bytes and each codec's share of them, then the total. */
function report(title: string, files: readonly Buffer[]): string {
  const atoms = atomsOf(files);
  const byType = new Map<string, { atoms: number; bytes: number; packed: number[] }>();
  const speeds = CODECS.map(() => ({ bytes: 0, ms: 0 }));
  for (const { type, bytes } of atoms.values()) {
    const row = byType.get(type) ?? { atoms: 0, bytes: 0, packed: CODECS.map(() => 0) };
    row.atoms++;
    row.bytes += bytes.length;
    CODECS.forEach((codec, i) => {
      const start = performance.now();
      const packed = codec.compress(bytes).length;
      speeds[i]!.ms += performance.now() - start;
      speeds[i]!.bytes += bytes.length;
      row.packed[i]! += Math.min(packed, bytes.length); // stored as is when compression does not pay
    });
    byType.set(type, row);
  }
  const share = (packed: number, bytes: number): string => (bytes === 0 ? '-' : `${(packed / bytes).toFixed(3)}`);
  const lines = [
    `\n## ${title}`,
    '',
    `| atom type | atoms | stored | ${CODECS.map((c) => `${c.name} ÷ stored`).join(' | ')} |`,
    `|---|---|---|${CODECS.map(() => '---').join('|')}|`,
  ];
  const total = { atoms: 0, bytes: 0, packed: CODECS.map(() => 0) };
  for (const [type, row] of [...byType].sort(([a], [b]) => (a < b ? -1 : 1))) {
    lines.push(`| ${type} | ${row.atoms} | ${formatBytes(row.bytes)} | ${row.packed.map((p) => share(p, row.bytes)).join(' | ')} |`);
    total.atoms += row.atoms;
    total.bytes += row.bytes;
    row.packed.forEach((p, i) => (total.packed[i]! += p));
  }
  lines.push(`| **all** | ${total.atoms} | ${formatBytes(total.bytes)} | ${total.packed.map((p) => `**${share(p, total.bytes)}**`).join(' | ')} |`);
  lines.push('', `Compression speed, one core: ${CODECS.map((c, i) => `${c.name} ${(speeds[i]!.bytes / 1e6 / (speeds[i]!.ms / 1000)).toFixed(0)} MB/s`).join(', ')}.`);
  return lines.join('\n');
}

/** CSV rows: a timestamp, a category, a few measurements (as logs and datasets look). */
function csvText(rows: number): Buffer {
  const next = randomBytesStream(11);
  const noise = next(Buffer.alloc(rows * 4));
  const lines = ['time,sensor,temperature,humidity,status'];
  for (let i = 0; i < rows; i++) {
    const r = noise.readUInt32LE(i * 4);
    lines.push(`2026-11-${String(1 + (i % 28)).padStart(2, '0')}T${String(i % 24).padStart(2, '0')}:00:00Z,sensor-${r % 40},${(15 + (r % 1500) / 100).toFixed(2)},${(30 + (r % 6000) / 100).toFixed(2)},${r % 17 === 0 ? 'alarm' : 'ok'}`);
  }
  return Buffer.from(lines.join('\n') + '\n');
}

/** float32 weights drawn from a normal distribution (Box–Muller), as a checkpoint holds them. */
function float32Weights(count: number): Buffer {
  const next = randomBytesStream(12);
  const noise = next(Buffer.alloc(count * 8));
  const out = Buffer.alloc(count * 4);
  for (let i = 0; i < count; i++) {
    const u = (noise.readUInt32LE(i * 8) + 1) / 4294967297;
    const v = noise.readUInt32LE(i * 8 + 4) / 4294967296;
    out.writeFloatLE(0.02 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v), i * 4);
  }
  return out;
}

function main(): void {
  const work = tempDir('panini-bench-compression-');
  try {
    process.stdout.write(`compression: ${cores} cores, node ${process.version}\n`);
    const fixtures = readdirSync(fixturesDir).filter((n) => n !== 'README.md').map((n) => readFileSync(path.join(fixturesDir, n)));
    process.stdout.write(report(`Media fixtures: encoded video and audio, PNG, JPEG, ZIP, random data (${fixtures.length} files)`, fixtures) + '\n');
    // Pink noise under a tone: PCM that compresses about as music does (a pure tone would not).
    const wav = path.join(work.dir, 'audio.wav');
    const ffmpeg = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'anoisesrc=d=20:c=pink:a=0.2', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=20', '-filter_complex', 'amix=inputs=2', '-ac', '2', wav]);
    if (ffmpeg.status === 0) process.stdout.write(report('Uncompressed audio: a 20 s 16-bit PCM WAV (pink noise and a tone)', [readFileSync(wav)]) + '\n');
    process.stdout.write(report('Text data: CSV rows (timestamps, sensor names, readings)', [csvText(200_000)]) + '\n');
    process.stdout.write(report('Model weights: float32, normally distributed', [float32Weights(4 * 1024 * 1024)]) + '\n');
  } finally {
    work.dispose();
  }
}

main();
