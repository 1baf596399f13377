/**
 * Property: whatever the bytes, ingest → manifest tree → concept → reconstruct gives them back
 * exactly. Random inputs and thousands of seeded mutations of every fixture, in-process against a
 * temporary LocalStore. Every failure message carries the seed and the mutations to replay it.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { buildConcept } from '../src/concept/build.js';
import { parseConcept } from '../src/concept/concept.js';
import { decompose } from '../src/decompose/index.js';
import { reconstruct } from '../src/reconstruct/reconstruct.js';
import { BufferSource } from '../src/source.js';
import { LocalStore } from '../src/store/local.js';
import { fixturesDir, prng, readFixture } from './helpers/fixtures.js';
import { fastTmpdir, tempDir } from './helpers/cli.js';

const CONCEPT_LIMIT = 8 * 1024;
const TOTAL_MUTATIONS = 3000;
/** Loops stop here whatever happens (a loaded machine runs fewer mutants, never forever). */
const TIME_BUDGET_MS = 50_000;
const MIN_MUTANTS_PER_FIXTURE = 25;

function randomBytes(rand: (n: number) => number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = rand(256);
  return buf;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Stores `bytes`, renders and parses its concept, rebuilds from the parsed concept; asserts identity. */
function assertRoundTrip(store: LocalStore, bytes: Buffer, label: string): void {
  const built = buildConcept(new BufferSource(bytes), store);
  assert.ok(built.text.length < CONCEPT_LIMIT, `${label}: concept is ${built.text.length} bytes`);
  let concept;
  try {
    concept = parseConcept(built.text);
  } catch (err) {
    assert.fail(`${label}: the concept written for it does not parse: ${String(err)}\n${built.text}`);
  }
  assert.equal(concept.oid, sha256(bytes), `${label}: oid`);
  const parts: Buffer[] = [];
  reconstruct(concept, store, (b) => void parts.push(Buffer.from(b)));
  const out = Buffer.concat(parts);
  if (!out.equals(bytes)) assert.fail(`${label}: reconstructed ${out.length} bytes differ from the ${bytes.length} given`);
}

type Mutation = (m: Buffer, rand: (n: number) => number, lengthFields: readonly number[]) => [Buffer, string];

const MUTATIONS: Mutation[] = [
  (m, rand) => {
    const out = Buffer.from(m);
    const flips: number[] = [];
    for (let k = 1 + rand(8); k > 0 && out.length > 0; k--) {
      const at = rand(out.length);
      out[at] = out[at]! ^ (1 << rand(8));
      flips.push(at);
    }
    return [out, `flip bits at ${flips.join(',')}`];
  },
  (m, rand) => {
    const at = rand(m.length + 1);
    return [m.subarray(0, at), `truncate to ${at}`];
  },
  (m, rand) => {
    const at = rand(m.length + 1);
    const n = rand(4) === 0 ? 1 + rand(64 * 1024) : 1 + rand(64);
    return [Buffer.concat([m.subarray(0, at), randomBytes(rand, n), m.subarray(at)]), `insert ${n} bytes at ${at}`];
  },
  (m, rand) => {
    const at = rand(m.length + 1);
    const n = Math.min(m.length - at, 1 + rand(rand(2) ? 64 : 8192));
    return [Buffer.concat([m.subarray(0, at), m.subarray(at + n)]), `delete ${n} bytes at ${at}`];
  },
  (m, rand) => {
    const from = rand(m.length + 1);
    const n = Math.min(m.length - from, 1 + rand(16 * 1024));
    const to = rand(m.length + 1);
    return [Buffer.concat([m.subarray(0, to), m.subarray(from, from + n), m.subarray(to)]), `duplicate ${n} bytes from ${from} at ${to}`];
  },
  (m, rand, lengthFields) => {
    const out = Buffer.from(m);
    const at = lengthFields.length > 0 && rand(4) > 0 ? lengthFields[rand(lengthFields.length)]! : rand(out.length + 1);
    out.fill(0xff, Math.min(at, out.length), Math.min(out.length, at + 4));
    return [out, `FF FF FF FF at ${at}`];
  },
];

/**
 * Where length fields are likely: relative to each segment's start, the offsets at which PNG
 * chunks and MP4 boxes (0), JPEG segments (2), MP4 large sizes (8) and ZIP local headers
 * (18, 22: compressed and uncompressed sizes) keep theirs.
 */
function lengthFieldsOf(bytes: Buffer): number[] {
  const fields = new Set<number>();
  for (const s of decompose(new BufferSource(bytes)).segments) {
    for (const rel of [0, 2, 8, 18, 22]) if (rel < s.size) fields.add(s.offset + rel);
  }
  return [...fields].sort((a, b) => a - b);
}

describe('property: everything round-trips', () => {
  const scratch = tempDir('panini-property-', fastTmpdir());
  after(scratch.dispose);
  const store = new LocalStore(scratch.dir);

  test('seeded random inputs of 0 to 3 MiB', () => {
    const seed = 0x70a1;
    const rand = prng(seed);
    const headers = [
      Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.from('ffd8ffe0', 'hex'), Buffer.from('504b0304', 'hex'),
      Buffer.from('0000001c66747970', 'hex'), Buffer.alloc(0),
    ];
    const fixtures = readdirSync(fixturesDir).filter((n) => n !== 'README.md').sort().map(readFixture);
    const started = Date.now();
    let done = 0;
    for (let i = 0; i < 40 && Date.now() - started < TIME_BUDGET_MS; i++, done++) {
      const size = i < 4 ? [0, 1, 16 * 1024, 16 * 1024 + 1][i]! : rand(8) === 0 ? rand(3 * 1024 * 1024 + 1) : rand(256 * 1024);
      const kind = rand(4);
      let bytes: Buffer;
      if (kind === 0) bytes = randomBytes(rand, size);
      else if (kind === 1) bytes = Buffer.from(Array.from({ length: size }, () => 'ab\n '.charCodeAt(rand(4))));
      else if (kind === 2) bytes = Buffer.concat([headers[rand(headers.length)]!, randomBytes(rand, size)]);
      else {
        // A fixture spliced with random bytes: structure followed by garbage, or the reverse.
        const f = fixtures[rand(fixtures.length)]!;
        bytes = rand(2) ? Buffer.concat([f, randomBytes(rand, size)]) : Buffer.concat([randomBytes(rand, size), f]);
      }
      assertRoundTrip(store, bytes, `random input ${i} (seed ${seed}, kind ${kind}, ${bytes.length} bytes)`);
    }
    assert.equal(done, 40, `only ${done} of 40 inputs ran within ${TIME_BUDGET_MS} ms`);
  });

  test(`${TOTAL_MUTATIONS} seeded mutations of the fixtures`, (t) => {
    const fixtures = readdirSync(fixturesDir).filter((n) => n !== 'README.md').sort().map((name, index) => {
      const original = readFixture(name);
      return { name, original, lengthFields: lengthFieldsOf(original), seed: 1000 + index, rand: prng(1000 + index), done: 0 };
    });
    const perFixture = Math.ceil(TOTAL_MUTATIONS / fixtures.length);
    const started = Date.now();
    // Round-robin, so that if the time budget cuts the run short every fixture had its share.
    for (let i = 0; i < perFixture && Date.now() - started < TIME_BUDGET_MS; i++) {
      for (const f of fixtures) {
        let bytes = f.original;
        const applied: string[] = [];
        for (let k = 1 + (f.rand(3) === 0 ? f.rand(3) : 0); k > 0; k--) {
          const [next, what] = MUTATIONS[f.rand(MUTATIONS.length)]!(bytes, f.rand, f.lengthFields);
          bytes = next;
          applied.push(what);
        }
        assertRoundTrip(store, bytes, `${f.name} mutant ${i} (seed ${f.seed}: ${applied.join('; ')})`);
        f.done++;
      }
    }
    const done = fixtures.reduce((n, f) => n + f.done, 0);
    t.diagnostic(`${done} mutants in ${Date.now() - started} ms`);
    if (done < perFixture * fixtures.length) t.diagnostic(`time budget of ${TIME_BUDGET_MS} ms reached: ${done} of ${perFixture * fixtures.length} mutants ran (a loaded machine?)`);
    // Even on a slow machine, each fixture must have been mutated a meaningful number of times.
    assert.ok(fixtures.every((f) => f.done >= MIN_MUTANTS_PER_FIXTURE), `fewer than ${MIN_MUTANTS_PER_FIXTURE} mutants per fixture ran within ${TIME_BUDGET_MS} ms`);
  });
});
