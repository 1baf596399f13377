/**
 * FastCDC cut points are part of the storage format (docs/store-format.md): they must depend on
 * the bytes only, never on how the bytes were read, and must not change between versions.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CDC_AVG_SIZE, CDC_MAX_SIZE, CDC_MIN_SIZE, cutPoint, gearTable, MASK_LARGE, MASK_SMALL } from '../src/decompose/cdc.js';
import { BufferSource } from '../src/source.js';
import { DEFAULT_MAX_ATOM_SIZE, ingest } from '../src/store/ingest.js';
import { LocalStore, type AtomWriter } from '../src/store/local.js';
import { tempDir } from './helpers/cli.js';
import { prng } from './helpers/fixtures.js';

/** Seeded pseudo-random bytes, 32 bits of mulberry32 at a time (little-endian). */
function seededBytes(size: number, seed: number): Buffer {
  const rand = prng(seed);
  const buf = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) buf.writeUInt32LE(rand(2 ** 32), i);
  for (let i = size & ~3; i < size; i++) buf[i] = rand(256);
  return buf;
}

/** Chunk lengths with the whole input in memory at once. */
function chunkAll(buf: Buffer): number[] {
  const lengths: number[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const cut = cutPoint(buf, pos, buf.length - pos, true);
    assert.ok(cut > 0, `no progress at ${pos}`);
    lengths.push(cut);
    pos += cut;
  }
  return lengths;
}

/** Chunk lengths when the input arrives in windows of random sizes (the streaming contract of cutPoint). */
function chunkStreaming(input: Buffer, nextWindow: () => number): number[] {
  const lengths: number[] = [];
  let buf = Buffer.alloc(0);
  let fed = 0;
  while (fed < input.length || buf.length > 0) {
    const final = fed >= input.length;
    const cut = cutPoint(buf, 0, buf.length, final);
    if (cut === 0) {
      assert.ok(!final, 'cutPoint asked for more bytes at the end of the input');
      const n = Math.min(nextWindow(), input.length - fed);
      buf = Buffer.concat([buf, input.subarray(fed, fed + n)]);
      fed += n;
      continue;
    }
    lengths.push(cut);
    buf = buf.subarray(cut);
  }
  return lengths;
}

/** A writer that keeps nothing: chunking tests need the refs, not the atoms. */
const discard: AtomWriter = { put: () => true };

function assertSizeBounds(lengths: readonly number[], what: string): void {
  lengths.forEach((n, i) => {
    assert.ok(n <= CDC_MAX_SIZE, `${what}: chunk ${i} is ${n} bytes, above the maximum`);
    if (i < lengths.length - 1) assert.ok(n >= CDC_MIN_SIZE, `${what}: chunk ${i} is ${n} bytes, below the minimum`);
    else assert.ok(n > 0);
  });
}

describe('parameters', () => {
  test('sizes are 16 KiB / 64 KiB / 256 KiB', () => {
    assert.equal(CDC_MIN_SIZE, 16 * 1024);
    assert.equal(CDC_AVG_SIZE, 64 * 1024);
    assert.equal(CDC_MAX_SIZE, 256 * 1024);
  });

  test('the gear table is its documented derivation', () => {
    // gear[i] = first 4 bytes, big-endian, of SHA-256("git-panini gear v1 " + i), as a signed 32-bit integer.
    assert.equal(gearTable().length, 256);
    for (let i = 0; i < 256; i++) {
      const expected = createHash('sha256').update(`git-panini gear v1 ${i}`, 'utf8').digest().readInt32BE(0);
      assert.equal(gearTable()[i], expected, `gear[${i}]`);
    }
    assert.equal(new Set(gearTable()).size, 256, 'gear values should be distinct');
    // The digest docs/store-format.md gives for the whole table (1,024 bytes, big-endian).
    const table = Buffer.alloc(1024);
    gearTable().forEach((g, i) => table.writeInt32BE(g, i * 4));
    assert.equal(createHash('sha256').update(table).digest('hex'), '5bcd80ae6451bb024940b748543a2f6ee6c2f39087772ff7900aacb92a584375');
  });

  test('masks use the top bits: 18 before the average size, 14 after (normalized chunking level 2)', () => {
    const topBits = (n: number): number => (0xffffffff << (32 - n)) >>> 0;
    assert.equal(MASK_SMALL >>> 0, topBits(18));
    assert.equal(MASK_LARGE >>> 0, topBits(14));
  });
});

describe('cut points', () => {
  const random = seededBytes(20 * 1024 * 1024 + 12345, 7);
  const randomChunks = chunkAll(random);

  test('are the same however the input is split into windows', () => {
    const part = random.subarray(0, 6 * 1024 * 1024);
    const whole = chunkAll(part);
    const sizes = prng(99);
    for (const [label, next] of [
      ['1-byte-ish windows near the minimum', () => 1 + sizes(4096)],
      ['random windows up to 300 KiB', () => 1 + sizes(300 * 1024)],
      ['exact 64 KiB windows', () => 64 * 1024],
      ['windows of the maximum chunk size', () => CDC_MAX_SIZE],
    ] as [string, () => number][]) {
      assert.deepEqual(chunkStreaming(part, next), whole, label);
    }
  });

  test("are the same through ingest's windowed read path (8 MiB windows) as all at once", () => {
    const result = ingest(new BufferSource(random), discard);
    assert.equal(result.format, 'binary');
    assert.deepEqual(result.leaves.map((r) => r.size), randomChunks);
    let offset = 0;
    for (const leaf of result.leaves) {
      assert.equal(leaf.offset, offset);
      assert.equal(leaf.type, 'Raw');
      offset += leaf.size;
    }
  });

  test('are relative to the start of the chunked range, not of the file', () => {
    // A PNG with 5 MiB of random bytes after IEND: the trailer is chunked as if it were a file of its own.
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000049454e44ae426082', 'hex');
    const trailer = random.subarray(1000, 1000 + 5 * 1024 * 1024);
    const result = ingest(new BufferSource(Buffer.concat([png, trailer])), discard);
    assert.equal(result.format, 'png');
    const raw = result.leaves.filter((r) => r.offset >= png.length);
    assert.equal(raw[0]!.offset, png.length);
    assert.deepEqual(raw.map((r) => r.size), chunkAll(trailer));
  });

  test('obey the minimum and maximum sizes', () => {
    assertSizeBounds(randomChunks, 'random');
    const zeros = chunkAll(Buffer.alloc(3 * 1024 * 1024 + 5));
    assertSizeBounds(zeros, 'zeros');
    assert.ok(zeros.slice(0, -1).every((n) => n === CDC_MAX_SIZE), 'constant bytes never match a mask: maximum-size chunks');
    const text = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(60_000));
    assertSizeBounds(chunkAll(text), 'repetitive text');
    assertSizeBounds(chunkAll(random.subarray(0, CDC_MIN_SIZE - 1)), 'shorter than the minimum');
    assert.deepEqual(chunkAll(random.subarray(0, CDC_MIN_SIZE)), [CDC_MIN_SIZE]);
  });

  test('average near the target size on random data', () => {
    const mean = random.length / randomChunks.length;
    assert.ok(mean > CDC_AVG_SIZE * 0.8 && mean < CDC_AVG_SIZE * 1.5, `mean chunk ${mean.toFixed(0)} bytes`);
  });

  test('golden: the chunk lengths of a seeded 2 MiB input never change', () => {
    // Recorded from this implementation; a change here changes every stored chunked atom.
    const golden = [
      72445, 80446, 85565, 21351, 92740, 34147, 30341, 87637, 87574, 74897, 65609, 72207, 83611, 88400, 66337,
      82291, 71249, 83560, 67900, 38651, 65863, 117491, 70473, 92044, 66393, 68807, 85164, 69109, 69397, 5453,
    ];
    const input = seededBytes(2 * 1024 * 1024, 0x5eed);
    // Pins the input too, so a change in the generator is not mistaken for a change in the chunker.
    assert.equal(createHash('sha256').update(input).digest('hex'), 'b0e31cf32f701017d75e640f312748880ead03e7c765a51f376300d32bdf24fe');
    assert.deepEqual(chunkAll(input), golden);
  });

  test('the unrolled loop cuts where the one-byte-per-turn definition does, at every offset and length', () => {
    // The definition (docs/store-format.md), written plainly.
    const gear = gearTable();
    const reference = (buf: Uint8Array, start: number, available: number, final: boolean): number => {
      if (available <= CDC_MIN_SIZE) return final ? available : 0;
      const limit = Math.min(available, CDC_MAX_SIZE);
      let h = 0;
      for (let n = CDC_MIN_SIZE; n < limit; n++) {
        h = ((h << 1) + gear[buf[start + n]!]!) | 0;
        if ((h & (n < CDC_AVG_SIZE ? MASK_SMALL : MASK_LARGE)) === 0) return n + 1;
      }
      return limit === CDC_MAX_SIZE || final ? limit : 0;
    };
    const input = seededBytes(3 * 1024 * 1024, 0xc0de);
    const next = prng(7);
    for (let k = 0; k < 400; k++) {
      const start = next(input.length);
      const available = Math.min(input.length - start, next(CDC_MAX_SIZE + 4096));
      const final = next(2) === 0;
      assert.equal(cutPoint(input, start, available, final), reference(input, start, available, final), `start ${start}, ${available} bytes, final ${final}`);
    }
  });
});

describe('the max atom size rule', () => {
  /** A PNG with one IDAT chunk of `size` data bytes (CRC not checked by the decomposer). */
  function pngWithIdat(size: number): Buffer {
    const head = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55', 'hex');
    const len = Buffer.alloc(8);
    len.writeUInt32BE(size, 0);
    len.write('IDAT', 4, 'latin1');
    const iend = Buffer.from('0000000049454e44ae426082', 'hex');
    return Buffer.concat([head, len, seededBytes(size, 3), Buffer.alloc(4), iend]);
  }

  test(`a structured atom above the bound (default ${DEFAULT_MAX_ATOM_SIZE} bytes) is chunked, keeping its type`, () => {
    const big = pngWithIdat(DEFAULT_MAX_ATOM_SIZE + 1);
    const leaves = ingest(new BufferSource(big), discard).leaves.filter((r) => r.type === 'ImageData');
    assert.ok(leaves.length > 1, 'the oversized IDAT was stored whole');
    assertSizeBounds(leaves.map((r) => r.size), 'chunked IDAT');

    const atBound = pngWithIdat(DEFAULT_MAX_ATOM_SIZE - 12);
    assert.equal(ingest(new BufferSource(atBound), discard).leaves.filter((r) => r.type === 'ImageData').length, 1);
  });

  test('panini.maxAtomSize raises the bound; it never goes below the largest chunk', () => {
    const big = pngWithIdat(DEFAULT_MAX_ATOM_SIZE + 1);
    assert.equal(ingest(new BufferSource(big), discard, { maxAtomSize: 8 * 1024 * 1024 }).leaves.filter((r) => r.type === 'ImageData').length, 1);
    const small = pngWithIdat(200 * 1024);
    assert.equal(ingest(new BufferSource(small), discard, { maxAtomSize: 1 }).leaves.filter((r) => r.type === 'ImageData').length, 1);
  });

  test('Raw data is always chunked, whatever the bound', () => {
    const scratch = tempDir('panini-cdc-');
    after(scratch.dispose);
    const store = new LocalStore(scratch.dir);
    const bytes = seededBytes(3 * 1024 * 1024, 11);
    const leaves = ingest(new BufferSource(bytes), store, { maxAtomSize: 64 * 1024 * 1024 }).leaves;
    assert.deepEqual(leaves.map((r) => r.size), chunkAll(bytes));
    for (const leaf of leaves) assert.ok(store.get(leaf.hash).equals(bytes.subarray(leaf.offset, leaf.offset + leaf.size)));
  });
});
