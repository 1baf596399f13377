import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Segment } from '../../src/decompose/index.js';
import type { Decomposer } from '../../src/decompose/types.js';
import { BufferSource } from '../../src/source.js';

/** Shared read-only fixtures: next to the project checkout unless PANINI_FIXTURES points elsewhere. */
export const fixturesDir = process.env.PANINI_FIXTURES ?? path.resolve(process.cwd(), '../shared/fixtures');

export function readFixture(name: string): Buffer {
  return readFileSync(path.join(fixturesDir, name));
}

/** Asserts the segments cover [0, size) exactly: contiguous, in order, none empty. */
export function assertCovers(segments: readonly Segment[], size: number): void {
  let pos = 0;
  for (const s of segments) {
    assert.equal(s.offset, pos, `segment at ${s.offset} should start at ${pos}`);
    assert.ok(s.size > 0, `empty segment at ${s.offset}`);
    pos += s.size;
  }
  assert.equal(pos, size);
}

/**
 * Runs one decomposer directly (the framework would hide a throw by falling back to Raw) and
 * asserts its segments are contiguous from 0 and inside the buffer; nested ranges count as Raw.
 */
export function assertDecomposerSound(decomposer: Decomposer, buf: Buffer): void {
  const nested = (start: number, end: number): Segment[] => [{ offset: start, size: end - start, type: 'Raw' }];
  const { segments } = decomposer.decompose(new BufferSource(buf), 0, buf.length, { nested });
  const covered = segments.reduce((pos, s) => pos + s.size, 0);
  assert.ok(covered <= buf.length, 'segments overrun the buffer');
  assertCovers([...segments, ...nested(covered, buf.length).filter((s) => s.size > 0)], buf.length);
}

/** mulberry32: a small seeded PRNG, so a failing mutation can be replayed. */
export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/**
 * `count` mutants of `buf`: bit flips, truncations, insertions, and length fields (at the given
 * offsets) or random spots overwritten with FF FF FF FF.
 */
export function* mutants(buf: Buffer, lengthFields: readonly number[], count: number, seed: number): Generator<Buffer> {
  const rand = prng(seed);
  const ones = (b: Buffer, at: number): void => void b.fill(0xff, at, Math.min(b.length, at + 4));
  for (let i = 0; i < count; i++) {
    const m = Buffer.from(buf);
    switch (rand(5)) {
      case 0:
        for (let flips = 1 + rand(4); flips > 0; flips--) {
          const at = rand(m.length);
          m[at] = m[at]! ^ (1 << rand(8));
        }
        yield m;
        break;
      case 1:
        yield m.subarray(0, rand(m.length));
        break;
      case 2: {
        const at = rand(m.length + 1);
        const bytes = Buffer.from(Array.from({ length: 1 + rand(16) }, () => rand(256)));
        yield Buffer.concat([m.subarray(0, at), bytes, m.subarray(at)]);
        break;
      }
      case 3:
        if (lengthFields.length > 0) ones(m, lengthFields[rand(lengthFields.length)]!);
        yield m;
        break;
      default:
        ones(m, rand(m.length));
        yield m;
    }
  }
}
