import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { decompose, type Segment } from '../src/decompose/index.js';
import { zip } from '../src/decompose/zip.js';
import { BufferSource } from '../src/source.js';
import { sha256Hex } from '../src/hash.js';
import { assertCovers, assertDecomposerSound, mutants, readFixture } from './helpers/fixtures.js';

const LOCAL_SIG = 0x04034b50;
const CENTRAL_SIG = 0x02014b50;
const EOCD_SIG = 0x06054b50;
const ONES = 0xffffffff;

const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

interface EntrySpec {
  name: string;
  data: Buffer;
  /** A data descriptor after the data (flag bit 3), with or without its optional signature. */
  descriptor?: 'signed' | 'unsigned';
  /** Sizes (and the central offset) only in ZIP64 extra fields; 64-bit sizes in the descriptor. */
  zip64?: boolean;
}

/** A stored-method archive built byte by byte; `beforeCentral` lands between the last entry and the central directory. */
function buildZip(entries: EntrySpec[], opts: { zip64End?: boolean; comment?: string; beforeCentral?: Buffer } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  for (const e of entries) {
    const crc = crc32(e.data);
    const size = e.data.length;
    const name = Buffer.from(e.name);
    const flags = e.descriptor ? 0x0008 : 0;
    const version = e.zip64 ? 45 : 20;
    const localAt = offset;
    const localSize = e.zip64 ? ONES : e.descriptor ? 0 : size;
    const localExtra = e.zip64 ? Buffer.concat([u16(1), u16(16), u64(size), u64(size)]) : Buffer.alloc(0);
    push(Buffer.concat([
      u32(LOCAL_SIG), u16(version), u16(flags), u16(0), u32(0), u32(e.descriptor ? 0 : crc),
      u32(localSize), u32(localSize), u16(name.length), u16(localExtra.length), name, localExtra,
    ]));
    push(e.data);
    if (e.descriptor) {
      const sizes = e.zip64 ? [u64(size), u64(size)] : [u32(size), u32(size)];
      push(Buffer.concat([...(e.descriptor === 'signed' ? [u32(0x08074b50)] : []), u32(crc), ...sizes]));
    }
    const centralExtra = e.zip64 ? Buffer.concat([u16(1), u16(24), u64(size), u64(size), u64(localAt)]) : Buffer.alloc(0);
    central.push(Buffer.concat([
      u32(CENTRAL_SIG), u16(version), u16(version), u16(flags), u16(0), u32(0), u32(crc),
      u32(e.zip64 ? ONES : size), u32(e.zip64 ? ONES : size), u16(name.length), u16(centralExtra.length),
      u16(0), u16(0), u16(0), u32(0), u32(e.zip64 ? ONES : localAt), name, centralExtra,
    ]));
  }
  if (opts.beforeCentral) push(opts.beforeCentral);
  const cd = Buffer.concat(central);
  const cdAt = offset;
  push(cd);
  const n = entries.length;
  if (opts.zip64End) {
    const recordAt = offset;
    push(Buffer.concat([u32(0x06064b50), u64(44), u16(45), u16(45), u32(0), u32(0), u64(n), u64(n), u64(cd.length), u64(cdAt)]));
    push(Buffer.concat([u32(0x07064b50), u32(0), u64(recordAt), u32(1)]));
  }
  const comment = Buffer.from(opts.comment ?? '');
  const z = opts.zip64End === true;
  push(Buffer.concat([
    u32(EOCD_SIG), u16(0), u16(0), u16(z ? 0xffff : n), u16(z ? 0xffff : n),
    u32(z ? ONES : cd.length), u32(z ? ONES : cdAt), u16(comment.length), comment,
  ]));
  return Buffer.concat(parts);
}

function compressedHashes(buf: Buffer, segments: readonly Segment[]): Set<string> {
  return new Set(segments.filter((s) => s.type === 'Compressed').map((s) => sha256Hex(buf.subarray(s.offset, s.offset + s.size))));
}

function decomposeBuf(buf: Buffer) {
  const d = decompose(new BufferSource(buf));
  assertCovers(d.segments, buf.length);
  return d;
}

test('bundle-v1.zip: header and data per entry, then central directory and end record', () => {
  const buf = readFixture('bundle-v1.zip');
  const d = decomposeBuf(buf);
  assert.equal(d.format, 'zip');
  assert.deepEqual(d.info, { entries: 6 });
  // The directory entry has no data; the five files do.
  assert.deepEqual(
    d.segments.map((s) => s.type),
    ['Metadata', ...Array(5).fill(['Metadata', 'Compressed']).flat(), 'Container', 'Container'],
  );
  assert.equal(d.segments.at(-1)!.size, 22);
});

test('bundle-v1 vs bundle-v2: exactly one entry differs on each side', () => {
  const a = readFixture('bundle-v1.zip');
  const b = readFixture('bundle-v2.zip');
  const ha = compressedHashes(a, decomposeBuf(a).segments);
  const hb = compressedHashes(b, decomposeBuf(b).segments);
  assert.equal([...ha].filter((h) => !hb.has(h)).length, 1);
  assert.equal([...hb].filter((h) => !ha.has(h)).length, 1);
});

test('ZIP64: sizes and offsets from extra fields, end records from the ZIP64 record', () => {
  const data = Buffer.from('hello, zip64 world');
  const buf = buildZip([{ name: 'big.bin', data, zip64: true }, { name: 'small.txt', data: Buffer.from('small') }], { zip64End: true });
  const d = decomposeBuf(buf);
  assert.equal(d.format, 'zip');
  assert.equal(d.info.zip64, 1);
  assert.equal(d.info.entries, 2);
  const first = d.segments.find((s) => s.type === 'Compressed')!;
  assert.deepEqual(buf.subarray(first.offset, first.offset + first.size), data);
  // Central directory, ZIP64 record + locator, end record.
  assert.deepEqual(d.segments.slice(-3).map((s) => [s.type, s.size]), [['Container', 46 * 2 + 7 + 28 + 9], ['Container', 56 + 20], ['Container', 22]]);
});

test('data descriptors: with and without signature, 32- and 64-bit', () => {
  const specs: EntrySpec[] = [
    { name: 'a', data: Buffer.from('first entry'), descriptor: 'signed' },
    { name: 'b', data: Buffer.from('second entry'), descriptor: 'unsigned' },
    { name: 'c', data: Buffer.from('third entry'), descriptor: 'signed', zip64: true },
    { name: 'd', data: Buffer.from('fourth entry'), descriptor: 'unsigned', zip64: true },
    { name: 'e', data: Buffer.from('plain') },
  ];
  const buf = buildZip(specs, { zip64End: true });
  const d = decomposeBuf(buf);
  assert.equal(d.info.entries, 5);
  const types = d.segments.map((s) => s.type);
  assert.deepEqual(types.slice(0, 14), [...Array(4).fill(['Metadata', 'Compressed', 'Metadata']).flat(), 'Metadata', 'Compressed']);
  const descriptors = [2, 5, 8, 11].map((i) => d.segments[i]!.size);
  assert.deepEqual(descriptors, [16, 12, 24, 20]);
});

test('an empty archive is its end record', () => {
  const buf = buildZip([]);
  const d = decomposeBuf(buf);
  assert.equal(d.format, 'zip');
  assert.deepEqual(d.segments, [{ offset: 0, size: 22, type: 'Container' }]);
  assert.deepEqual(d.info, { entries: 0 });
});

test('a gap before the central directory, a comment and trailing bytes', () => {
  const archive = buildZip([{ name: 'x', data: Buffer.from('payload') }], { comment: 'a comment', beforeCentral: Buffer.alloc(100, 7) });
  const buf = Buffer.concat([archive, Buffer.from('trailing junk')]);
  const d = decomposeBuf(buf);
  assert.deepEqual(d.segments.map((s) => s.type), ['Metadata', 'Compressed', 'Raw', 'Container', 'Container', 'Raw']);
  assert.equal(d.segments[2]!.size, 100);
  assert.equal(d.segments[4]!.size, 22 + 'a comment'.length);
});

test('an inconsistent central directory falls back to walking local headers', () => {
  const buf = Buffer.from(readFixture('bundle-v1.zip'));
  buf.writeUInt32LE(0, buf.indexOf(u32(CENTRAL_SIG)));
  const d = decomposeBuf(buf);
  assert.equal(d.format, 'zip');
  assert.equal(d.info.entries, 6);
  assert.equal(d.segments.filter((s) => s.type === 'Compressed').length, 5);
  assert.equal(d.segments.at(-1)!.type, 'Raw');
  const original = readFixture('bundle-v1.zip');
  assert.deepEqual(compressedHashes(buf, d.segments), compressedHashes(original, decomposeBuf(original).segments));
});

test('the fallback walk stops at the first entry sized only by a data descriptor', () => {
  const buf = buildZip([{ name: 'a', data: Buffer.from('known size') }, { name: 'b', data: Buffer.from('unknown'), descriptor: 'signed' }]);
  buf.writeUInt32LE(0, buf.lastIndexOf(u32(EOCD_SIG)));
  const d = decomposeBuf(buf);
  assert.deepEqual(d.segments.map((s) => s.type), ['Metadata', 'Compressed', 'Raw']);
});

/** Offsets of size, length and offset fields after every signature. */
function lengthFields(buf: Buffer): number[] {
  const fieldsAfter: [number, number[]][] = [
    [LOCAL_SIG, [14, 18, 22, 26, 28]],
    [CENTRAL_SIG, [16, 20, 24, 28, 30, 32, 42]],
    [EOCD_SIG, [8, 10, 12, 16, 20]],
    [0x06064b50, [4, 24, 32, 40, 48]],
    [0x07064b50, [8]],
  ];
  const fields: number[] = [];
  for (const [sig, offsets] of fieldsAfter) {
    for (let i = buf.indexOf(u32(sig)); i >= 0; i = buf.indexOf(u32(sig), i + 1)) fields.push(...offsets.map((o) => i + o));
  }
  return fields;
}

test('mutated ZIPs never throw and always cover exactly', () => {
  const archives = [
    readFixture('bundle-v1.zip'),
    buildZip([{ name: 'big.bin', data: Buffer.from('zip64 entry'), zip64: true }, { name: 'x', data: Buffer.from('x') }], { zip64End: true }),
    buildZip([
      { name: 'a', data: Buffer.from('first entry'), descriptor: 'signed' },
      { name: 'b', data: Buffer.from('second entry'), descriptor: 'unsigned', zip64: true },
    ], { comment: 'comment' }),
  ];
  for (const [i, buf] of archives.entries()) {
    for (const m of mutants(buf, lengthFields(buf), 2000, 0x51ed270b + i)) {
      if (zip.detect(m.subarray(0, 64))) assertDecomposerSound(zip, m);
      assertCovers(decompose(new BufferSource(m)).segments, m.length);
    }
  }
});
