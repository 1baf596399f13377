/**
 * The share of a remote pack that a fetch's layouts need decides whether the pack is taken whole
 * (src/transfer/remote-layouts.ts): the bytes its runs cover together, overlaps counted once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { coveredBytes } from '../src/transfer/remote-layouts.js';

test('the bytes runs cover together: overlapping, nested, adjacent and repeated runs counted once', () => {
  assert.equal(coveredBytes([]), 0);
  assert.equal(coveredBytes([{ offset: 8, size: 10 }]), 10);
  assert.equal(coveredBytes([{ offset: 8, size: 10 }, { offset: 8, size: 10 }]), 10, 'the same run twice (a shared intro)');
  assert.equal(coveredBytes([{ offset: 8, size: 10 }, { offset: 18, size: 5 }]), 15, 'adjacent');
  assert.equal(coveredBytes([{ offset: 8, size: 100 }, { offset: 20, size: 5 }]), 100, 'nested');
  assert.equal(coveredBytes([{ offset: 30, size: 10 }, { offset: 8, size: 25 }]), 32, 'overlapping, out of order');
  // Against counting each byte, on random runs.
  let seed = 7;
  const next = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let round = 0; round < 200; round++) {
    const runs = Array.from({ length: 1 + next(30) }, () => ({ offset: 8 + next(500), size: 1 + next(60) }));
    const bytes = new Set<number>();
    for (const r of runs) for (let b = r.offset; b < r.offset + r.size; b++) bytes.add(b);
    assert.equal(coveredBytes(runs), bytes.size, JSON.stringify(runs));
  }
});
