/**
 * Fuzzing with a fixed seed: PANINI_FUZZ_N mutated inputs (default 10,000) per decomposer, made
 * from the fixtures by bit flips, truncations, insertions and length fields set to FF FF FF FF.
 * Each input must decompose without the decomposer throwing, cover itself exactly, and round-trip
 * through ingest, manifests and verified reconstruction; the check itself is test/helpers/fuzz.ts,
 * which CI runs on a few hundred inputs per decomposer (test/fuzz.test.ts); an input over 2 s or
 * raising the peak memory by 256 MiB fails too. Prints counts, the slowest input, the peak RSS, and
 * exits non-zero on any failure. Run: `node dist/bench/fuzz.js` (fixtures from
 * PANINI_FIXTURES or ../shared/fixtures).
 */
import { FUZZ_SEED, fuzzDecomposers } from '../test/helpers/fuzz.js';

function main(): void {
  const N = Number(process.env.PANINI_FUZZ_N ?? 10_000);
  if (!Number.isSafeInteger(N) || N <= 0) throw new Error(`PANINI_FUZZ_N must be a positive whole number, not ${process.env.PANINI_FUZZ_N}`);
  const started = Date.now();
  const reports = fuzzDecomposers(N, FUZZ_SEED);
  const lines = ['| decomposer | inputs | failures | slowest input | time | peak RSS after |', '|---|---|---|---|---|---|'];
  for (const r of reports) {
    for (const f of r.failures) process.stderr.write(`${r.format} ${f.fixture} mutant ${f.mutant}: ${f.message}\n`);
    lines.push(`| ${r.format} | ${r.inputs} | ${r.failed} | ${r.slowestMs} ms | ${(r.ms / 1000).toFixed(1)} s | ${(r.peakRss / 1048576).toFixed(0)} MiB |`);
  }
  process.stdout.write(`\n## fuzz: ${N} mutated inputs per decomposer, seed ${FUZZ_SEED} (${((Date.now() - started) / 1000).toFixed(1)} s)\n\n${lines.join('\n')}\n`);
  process.exitCode = reports.every((r) => r.failed === 0) ? 0 : 1;
}

main();
