/**
 * How the max atom size (panini.maxAtomSize) trades atom count, memory and dedup: a large JPEG
 * whose single scan is far above the bound, a copy with edited metadata, and a copy with a few
 * bytes changed near the end of the scan, are ingested with several bounds. Structured atoms
 * above the bound are chunked; below it they stay whole (and are held whole in memory when read).
 * Input: PANINI_BENCH_JPEG (default: a 5000×5000 noise JPEG made with ffmpeg).
 * Run: `node dist/bench/max-atom-size.js`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decompose } from '../src/decompose/index.js';
import { BufferSource } from '../src/source.js';
import { ingest } from '../src/store/ingest.js';
import { LocalStore } from '../src/store/local.js';
import { formatBytes, formatMs, tempDir } from './lib.js';

const SIZES_MIB = [1, 4, 16, 64];

function main(): void {
  const work = tempDir('panini-bench-maxatom-');
  try {
    let file = process.env.PANINI_BENCH_JPEG;
    if (!file) {
      file = path.join(work.dir, 'big.jpg');
      const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'nullsrc=s=5000x5000,geq=random(1)*255:128:128', '-frames:v', '1', '-q:v', '2', '-y', file]);
      if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr}`);
    }
    const original = readFileSync(file);
    // The same picture with a comment segment after SOI: a metadata-only edit.
    const edited = Buffer.concat([original.subarray(0, 2), Buffer.from([0xff, 0xfe, 0x00, 0x0a]), Buffer.from('retitled'), original.subarray(2)]);
    // The same picture with a few scan bytes changed 95% of the way in (no 0xFF, so still a valid scan).
    const touched = Buffer.from(original);
    for (let i = Math.floor(original.length * 0.95); i < Math.floor(original.length * 0.95) + 16; i++) touched[i] = touched[i] === 0x11 ? 0x22 : 0x11;
    const largest = Math.max(...decompose(new BufferSource(original)).segments.map((s) => s.size));
    const lines = [`## max atom size: ${formatBytes(original.length)} JPEG, largest structured atom ${formatBytes(largest)}`, '',
      '| max atom size | atoms | largest atom (held whole in memory when read) | ingest time (3 files) | shared after a metadata edit | shared after a 16-byte scan edit |', '|---|---|---|---|---|---|'];
    for (const mib of SIZES_MIB) {
      const store = new LocalStore(path.join(work.dir, `store-${mib}`));
      const started = process.hrtime.bigint();
      const [a, b, c] = [original, edited, touched].map((bytes) => ingest(new BufferSource(bytes), store, { maxAtomSize: mib * 1024 * 1024 }));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const inA = new Set(a!.leaves.map((l) => l.hash));
      const sharedPct = (r: typeof a): string => ((r!.leaves.filter((l) => inA.has(l.hash)).reduce((n, l) => n + l.size, 0) / r!.size) * 100).toFixed(1) + '%';
      lines.push(`| ${mib} MiB | ${a!.leaves.length} | ${formatBytes(Math.max(...a!.leaves.map((l) => l.size)))} | ${formatMs(ms)} | ${sharedPct(b)} | ${sharedPct(c)} |`);
    }
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    work.dispose();
  }
}

main();
