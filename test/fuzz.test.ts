/**
 * The fuzz run of bench/fuzz.ts, small enough for CI: about 300 seeded mutants of the fixtures per
 * decomposer (the first 300 of the long run's 10,000: same seed, same check, test/helpers/fuzz.ts),
 * each of which must decompose soundly and round-trip exactly, within a time and a memory bound.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FUZZ_SEED, FUZZ_TARGETS, fuzzDecomposer } from './helpers/fuzz.js';

const N = 300;
/** A loaded machine checks fewer inputs rather than running forever; this many per decomposer at least. */
const TIME_BUDGET_MS = 60_000;
const MIN_INPUTS = 100;

const deadline = Date.now() + TIME_BUDGET_MS;
for (const [decomposer, fixtures] of FUZZ_TARGETS) {
  test(`fuzz ${decomposer.format}: ${N} seeded mutants of ${fixtures.length} fixtures decompose soundly and round-trip exactly`, (t) => {
    const r = fuzzDecomposer(decomposer, fixtures, N, FUZZ_SEED, { deadline, keep: 10 });
    const shown = r.failures.map((f) => `${f.fixture} mutant ${f.mutant} (seed ${FUZZ_SEED}): ${f.message}`).join('\n');
    assert.equal(r.failed, 0, `${r.failed} of ${r.inputs} inputs failed:\n${shown}`);
    if (r.cutShort) t.diagnostic(`time budget reached: ${r.inputs} inputs checked`);
    assert.ok(r.inputs >= Math.min(N, MIN_INPUTS), `only ${r.inputs} inputs checked`);
    t.diagnostic(`${r.inputs} inputs in ${r.ms} ms, slowest ${r.slowestMs} ms, peak RSS ${(r.peakRss / 1048576).toFixed(0)} MiB`);
  });
}
