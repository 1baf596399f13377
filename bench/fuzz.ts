/**
 * Fuzzing with a fixed seed: PANINI_FUZZ_N mutated inputs (default 10,000) per decomposer, made
 * from the fixtures by bit flips, truncations, insertions and length fields set to FF FF FF FF.
 * Each input must: decompose without the decomposer throwing (called directly: the framework would
 * hide a throw), cover itself exactly through decompose(), and round-trip through ingest,
 * manifests and verified reconstruction. Prints counts, the slowest input, and exits non-zero on
 * any failure. Run: `node dist/bench/fuzz.js` (fixtures from PANINI_FIXTURES or ../shared/fixtures).
 */
import { isDeepStrictEqual } from 'node:util';
import { MAX_INLINE_REFS } from '../src/concept/concept.js';
import { buildManifestTree } from '../src/concept/manifest.js';
import { decompose } from '../src/decompose/index.js';
import { jpeg } from '../src/decompose/jpeg.js';
import { mp4 } from '../src/decompose/mp4.js';
import { png } from '../src/decompose/png.js';
import type { Decomposer } from '../src/decompose/types.js';
import { zip } from '../src/decompose/zip.js';
import { AtomError } from '../src/errors.js';
import { reconstruct } from '../src/reconstruct/reconstruct.js';
import { BufferSource } from '../src/source.js';
import { ingest } from '../src/store/ingest.js';
import type { AtomReader, AtomWriter } from '../src/store/local.js';
import { assertCovers, assertDecomposerSound, mutants, readFixture } from '../test/helpers/fixtures.js';

const N = Number(process.env.PANINI_FUZZ_N ?? 10_000);
const SEED = 20261123;

const TARGETS: [Decomposer, string[]][] = [
  [png, ['photo.png', 'photo-tagged.png', 'deep.png', 'palette.png', 'anim.png', 'lying-length.png']],
  [jpeg, ['photo.jpg', 'photo-edited-exif.jpg', 'progressive.jpg', 'truncated.jpg']],
  [zip, ['bundle-v1.zip', 'bundle-v2.zip']],
  [mp4, ['course-a.mp4', 'course-a-fragmented.mp4', 'course-a-moov-last.mp4', 'tone.m4a', 'bad-box.mp4', 'truncated.mp4']],
];

/** An in-memory atom store: the fuzz loop measures the decomposers, not the disk. */
function memoryStore(): AtomReader & AtomWriter {
  const atoms = new Map<string, Buffer>();
  return {
    has: (hash) => atoms.has(hash),
    get(hash) {
      const bytes = atoms.get(hash);
      if (!bytes) throw new AtomError(hash, 'missing');
      return bytes;
    },
    put(hash, bytes) {
      if (atoms.has(hash)) return false;
      atoms.set(hash, Buffer.from(bytes));
      return true;
    },
  };
}

function roundTrip(input: Buffer): void {
  const store = memoryStore();
  const result = ingest(new BufferSource(input), store);
  const refs = buildManifestTree(result.leaves, store, MAX_INLINE_REFS);
  const out: Buffer[] = [];
  reconstruct({ refs, oid: result.oid, size: result.size }, store, (b) => out.push(b));
  if (!isDeepStrictEqual(Buffer.concat(out), input)) throw new Error('reconstruction differs from the input');
}

function main(): void {
  if (!Number.isSafeInteger(N) || N <= 0) throw new Error(`PANINI_FUZZ_N must be a positive whole number, not ${process.env.PANINI_FUZZ_N}`);
  let failures = 0;
  const started = Date.now();
  const lines = ['| decomposer | inputs | failures | slowest input | time |', '|---|---|---|---|---|'];
  for (const [decomposer, names] of TARGETS) {
    const t0 = Date.now();
    let done = 0;
    let slowest = 0;
    let failed = 0;
    names.forEach((name, i) => {
      const seedInput = readFixture(name);
      const count = Math.ceil(N / names.length);
      for (const input of mutants(seedInput, [0, 4, 8, 12, 16, 24, 32, 33], count, SEED + i)) {
        const t = Date.now();
        try {
          assertDecomposerSound(decomposer, input);
          assertCovers(decompose(new BufferSource(input)).segments, input.length);
          roundTrip(input);
        } catch (err) {
          failed++;
          if (failed <= 5) process.stderr.write(`${decomposer.format} ${name} mutant ${done}: ${(err as Error).message}\n`);
        }
        slowest = Math.max(slowest, Date.now() - t);
        done++;
      }
    });
    failures += failed;
    lines.push(`| ${decomposer.format} | ${done} | ${failed} | ${slowest} ms | ${((Date.now() - t0) / 1000).toFixed(1)} s |`);
  }
  process.stdout.write(`\n## fuzz: ${N} mutated inputs per decomposer, seed ${SEED} (${((Date.now() - started) / 1000).toFixed(1)} s)\n\n${lines.join('\n')}\n`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main();
