/**
 * Seeded fuzzing of the decomposers, shared by the CI test (test/fuzz.test.ts, a few hundred inputs
 * per decomposer) and the long run (bench/fuzz.ts, 10,000): inputs made from the fixtures by bit
 * flips, truncations, insertions and length fields set to FF FF FF FF. Each input must decompose
 * without the decomposer throwing (called directly: the framework would hide a throw), cover itself
 * exactly through decompose(), and round-trip through ingest, manifests and verified reconstruction.
 * For a given seed the first n inputs are the same in every run, so a short run is a prefix of a long one.
 */
import { isDeepStrictEqual } from 'node:util';
import { MAX_INLINE_REFS } from '../../src/concept/concept.js';
import { buildManifestTree } from '../../src/concept/manifest.js';
import { decompose } from '../../src/decompose/index.js';
import { jpeg } from '../../src/decompose/jpeg.js';
import { mp4 } from '../../src/decompose/mp4.js';
import { png } from '../../src/decompose/png.js';
import type { Decomposer } from '../../src/decompose/types.js';
import { zip } from '../../src/decompose/zip.js';
import { AtomError } from '../../src/errors.js';
import { reconstruct } from '../../src/reconstruct/reconstruct.js';
import { BufferSource } from '../../src/source.js';
import { ingest } from '../../src/store/ingest.js';
import type { AtomReader, AtomWriter } from '../../src/store/local.js';
import { assertCovers, assertDecomposerSound, mutants, readFixture } from './fixtures.js';

export const FUZZ_SEED = 20261123;

/** Each decomposer with the fixtures its mutants are made from. */
export const FUZZ_TARGETS: readonly [Decomposer, string[]][] = [
  [png, ['photo.png', 'photo-tagged.png', 'deep.png', 'palette.png', 'anim.png', 'lying-length.png']],
  [jpeg, ['photo.jpg', 'photo-edited-exif.jpg', 'progressive.jpg', 'truncated.jpg']],
  [zip, ['bundle-v1.zip', 'bundle-v2.zip']],
  [mp4, ['course-a.mp4', 'course-a-fragmented.mp4', 'course-a-moov-last.mp4', 'tone.m4a', 'bad-box.mp4', 'truncated.mp4']],
];

/** Offsets where the fixtures' formats keep length fields (PNG, MP4 box headers …), for the FF FF FF FF mutation. */
const LENGTH_FIELDS = [0, 4, 8, 12, 16, 24, 32, 33];

export interface FuzzFailure {
  fixture: string;
  /** Index of the mutant among those of its fixture (replay: the same seed and index). */
  mutant: number;
  message: string;
}

export interface FuzzReport {
  format: string;
  inputs: number;
  /** How many inputs failed; `failures` keeps the first few. */
  failed: number;
  failures: FuzzFailure[];
  slowestMs: number;
  ms: number;
  /** The process's peak resident memory at the end (bytes). */
  peakRss: number;
  /** True if the time budget ran out before every input was checked. */
  cutShort: boolean;
}

export interface FuzzOptions {
  /** Stop starting new inputs at this time (epoch ms). */
  deadline?: number;
  /** Failures kept in each report (all are counted). */
  keep?: number;
}

/** An in-memory atom store: fuzzing measures the decomposers, not the disk. */
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

/** The check every fuzz input must pass; throws saying what failed. */
export function checkFuzzInput(decomposer: Decomposer, input: Buffer): void {
  assertDecomposerSound(decomposer, input);
  assertCovers(decompose(new BufferSource(input)).segments, input.length);
  roundTrip(input);
}

/**
 * Bounds on one input (fixtures are at most a few MiB): an allocation sized by an untrusted field,
 * or a loop driven by one, shows as a jump of the process's peak memory or as a slow input.
 */
export const INPUT_TIME_LIMIT_MS = 2_000;
export const INPUT_MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;
const peakRss = (): number => process.resourceUsage().maxRSS * 1024;

/** About `n` mutants (split over its fixtures) for one decomposer. */
export function fuzzDecomposer(decomposer: Decomposer, fixtures: readonly string[], n: number, seed = FUZZ_SEED, options: FuzzOptions = {}): FuzzReport {
  const report: FuzzReport = { format: decomposer.format, inputs: 0, failed: 0, failures: [], slowestMs: 0, ms: 0, peakRss: 0, cutShort: false };
  const fail = (fixture: string, mutant: number, message: string): void => {
    report.failed++;
    if (report.failures.length < (options.keep ?? 5)) report.failures.push({ fixture, mutant, message });
  };
  const started = Date.now();
  const count = Math.ceil(n / fixtures.length);
  fixtures.forEach((fixture, i) => {
    let mutant = 0;
    for (const input of mutants(readFixture(fixture), LENGTH_FIELDS, count, seed + i)) {
      if (options.deadline !== undefined && Date.now() > options.deadline) {
        report.cutShort = true;
        return;
      }
      const t = Date.now();
      const peakBefore = peakRss();
      try {
        checkFuzzInput(decomposer, input);
      } catch (err) {
        fail(fixture, mutant, (err as Error).message);
      }
      const ms = Date.now() - t;
      const grew = peakRss() - peakBefore;
      if (ms > INPUT_TIME_LIMIT_MS) fail(fixture, mutant, `took ${ms} ms (bound ${INPUT_TIME_LIMIT_MS} ms)`);
      if (grew > INPUT_MEMORY_LIMIT_BYTES) fail(fixture, mutant, `raised peak memory by ${grew} bytes (bound ${INPUT_MEMORY_LIMIT_BYTES})`);
      report.slowestMs = Math.max(report.slowestMs, ms);
      report.inputs++;
      mutant++;
    }
  });
  report.ms = Date.now() - started;
  report.peakRss = peakRss();
  return report;
}

/** About `n` mutants per decomposer, every decomposer in FUZZ_TARGETS. */
export function fuzzDecomposers(n: number, seed = FUZZ_SEED, options: FuzzOptions = {}): FuzzReport[] {
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`the number of inputs must be a positive whole number, not ${n}`);
  return FUZZ_TARGETS.map(([decomposer, fixtures]) => fuzzDecomposer(decomposer, fixtures, n, seed, options));
}
