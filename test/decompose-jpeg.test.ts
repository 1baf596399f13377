import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decompose, type Segment } from '../src/decompose/index.js';
import { BufferSource, type Source } from '../src/source.js';
import { sha256Hex } from '../src/hash.js';
import { jpeg } from '../src/decompose/jpeg.js';
import { assertCovers, assertDecomposerSound, mutants, readFixture } from './helpers/fixtures.js';

function bytesOf(buf: Buffer, s: Segment): Buffer {
  return buf.subarray(s.offset, s.offset + s.size);
}

function hashesOf(buf: Buffer, segments: readonly Segment[], type: Segment['type']): string[] {
  return segments.filter((s) => s.type === type).map((s) => sha256Hex(bytesOf(buf, s)));
}

test('photo.jpg: SOI, one atom per marker segment, one scan, EOI', () => {
  const buf = readFixture('photo.jpg');
  const d = decompose(new BufferSource(buf));
  assert.equal(d.format, 'jpeg');
  assertCovers(d.segments, buf.length);
  assert.deepEqual(d.info, { width: 320, height: 240, components: 3, scans: 1 });
  // APP0, APP1, COM, DQT, DHT, SOF0 between SOI and the scan.
  assert.deepEqual(
    d.segments.map((s) => s.type),
    ['Container', 'Metadata', 'Metadata', 'Metadata', 'Metadata', 'Metadata', 'Metadata', 'ImageData', 'Container'],
  );
  const scan = d.segments[7]!;
  assert.deepEqual([...bytesOf(buf, scan).subarray(0, 2)], [0xff, 0xda]);
  assert.deepEqual([...bytesOf(buf, d.segments[8]!)], [0xff, 0xd9]);
});

test('an EXIF edit changes the APP1 atom only, never the scan', () => {
  const a = readFixture('photo.jpg');
  const b = readFixture('photo-edited-exif.jpg');
  const da = decompose(new BufferSource(a));
  const db = decompose(new BufferSource(b));
  assertCovers(db.segments, b.length);
  assert.deepEqual(hashesOf(a, da.segments, 'ImageData'), hashesOf(b, db.segments, 'ImageData'));
  const app1 = (buf: Buffer, segments: readonly Segment[]): string[] =>
    segments.filter((s) => s.type === 'Metadata' && buf[s.offset + 1] === 0xe1).map((s) => sha256Hex(bytesOf(buf, s)));
  const [app1a, app1b] = [app1(a, da.segments), app1(b, db.segments)];
  assert.equal(app1a.length, 1);
  assert.equal(app1b.length, 1);
  assert.notEqual(app1a[0], app1b[0]);
});

test('progressive.jpg: every scan is its own ImageData atom', () => {
  const buf = readFixture('progressive.jpg');
  const d = decompose(new BufferSource(buf));
  assertCovers(d.segments, buf.length);
  // No APP1 (no EXIF thumbnail) and entropy-coded data never holds FF DA, so this counts SOS markers.
  let sos = 0;
  for (let i = buf.indexOf(Buffer.from([0xff, 0xda])); i >= 0; i = buf.indexOf(Buffer.from([0xff, 0xda]), i + 2)) sos++;
  assert.ok(sos > 1);
  const scans = d.segments.filter((s) => s.type === 'ImageData');
  assert.equal(scans.length, sos);
  for (const s of scans) assert.deepEqual([...bytesOf(buf, s).subarray(0, 2)], [0xff, 0xda]);
  assert.equal(d.info.scans, sos);
  assert.equal(d.info.progressive, 1);
});

test('truncated.jpg: the cut scan is left as Raw', () => {
  const buf = readFixture('truncated.jpg');
  const d = decompose(new BufferSource(buf));
  assert.equal(d.format, 'jpeg');
  assertCovers(d.segments, buf.length);
  assert.equal(d.segments.at(-1)!.type, 'Raw');
  assert.equal(d.info.scans, 0);
});

test('fill bytes before a marker belong to that marker, restart markers stay in the scan', () => {
  const buf = readFixture('photo.jpg');
  const d = decompose(new BufferSource(buf));
  const scan = d.segments.find((s) => s.type === 'ImageData')!;
  const scanEnd = scan.offset + scan.size;
  const filled = Buffer.concat([
    buf.subarray(0, scanEnd - 4),
    Buffer.from([0xff, 0xd3]), // a restart marker inside the entropy-coded data
    buf.subarray(scanEnd - 4, scanEnd),
    Buffer.from([0xff, 0xff, 0xff]), // fill before EOI
    buf.subarray(scanEnd),
  ]);
  const f = decompose(new BufferSource(filled));
  assertCovers(f.segments, filled.length);
  const last = f.segments.at(-1)!;
  assert.equal(last.type, 'Container');
  assert.deepEqual([...bytesOf(filled, last)], [0xff, 0xff, 0xff, 0xff, 0xd9]);
  assert.equal(f.segments.at(-2)!.type, 'ImageData');
  assert.equal(f.segments.at(-2)!.size, scan.size + 2);
});

test('scans longer than the read window are found in bounded reads', () => {
  const WINDOW = 1 << 20;
  const jpg = readFixture('photo.jpg');
  const original = decompose(new BufferSource(jpg)).segments.find((s) => s.type === 'ImageData')!;
  const headerEnd = original.offset + 2 + jpg.readUInt16BE(original.offset + 2);
  // Entropy-coded data without FF except where a window ends: a stuffed FF00 then (reads restart at
  // an FF that ends a window) a restart marker and the EOI that ends the scan split across windows.
  const entropyEndingInFf = (length: number): Buffer => {
    const entropy = Buffer.alloc(length, 0x5a);
    if (length > WINDOW) {
      entropy.writeUInt16BE(0xff00, WINDOW - 1);
      entropy.writeUInt16BE(0xffd0, WINDOW + WINDOW / 2);
    }
    entropy[length - 1] = 0xff;
    return entropy;
  };
  for (const length of [WINDOW, 2 * WINDOW - 1]) {
    const buf = Buffer.concat([jpg.subarray(0, headerEnd), entropyEndingInFf(length), Buffer.from([0xd9])]);
    let largestRead = 0;
    const src: Source = {
      size: buf.length,
      read(offset, length) {
        largestRead = Math.max(largestRead, length);
        return buf.subarray(offset, Math.min(buf.length, offset + length));
      },
    };
    const d = decompose(src);
    assertCovers(d.segments, buf.length);
    assert.ok(largestRead <= WINDOW, `read ${largestRead} bytes at once`);
    const scan = d.segments.at(-2)!;
    assert.equal(scan.type, 'ImageData');
    assert.equal(scan.offset, original.offset);
    const eoi = d.segments.at(-1)!;
    assert.equal(eoi.type, 'Container');
    assert.equal(eoi.size, 2);
  }
});

test('an MP4 after EOI (motion photo) is decomposed as MP4', () => {
  const jpg = readFixture('photo.jpg');
  const mp4 = readFixture('course-a.mp4');
  const buf = Buffer.concat([jpg, mp4]);
  const d = decompose(new BufferSource(buf));
  assert.equal(d.format, 'jpeg');
  assertCovers(d.segments, buf.length);
  assert.equal(d.info.trailing_bytes, mp4.length);
  const alone = decompose(new BufferSource(mp4));
  assert.equal(alone.format, 'mp4');
  const trailing = d.segments.filter((s) => s.offset >= jpg.length);
  assert.deepEqual(trailing, alone.segments.map((s) => ({ ...s, offset: s.offset + jpg.length })));
  assert.equal(trailing[0]!.type, 'Container'); // ftyp
});

/** Offsets of marker segments' length fields, by a plain walk up to the first scan. */
function lengthFields(buf: Buffer): number[] {
  const fields: number[] = [];
  for (let p = 2; p + 4 <= buf.length && buf[p] === 0xff; p += 2 + buf.readUInt16BE(p + 2)) {
    fields.push(p + 2);
    if (buf[p + 1] === 0xda) break;
  }
  return fields;
}

test('mutated JPEGs never throw and always cover exactly', () => {
  const names = ['photo.jpg', 'photo-edited-exif.jpg', 'progressive.jpg', 'truncated.jpg'];
  for (const [i, name] of names.entries()) {
    const buf = readFixture(name);
    let n = 0;
    for (const m of mutants(buf, lengthFields(buf), 2000, 0x9e3779b9 + i)) {
      if (jpeg.detect(m.subarray(0, 64))) assertDecomposerSound(jpeg, m);
      assertCovers(decompose(new BufferSource(m)).segments, m.length);
      n++;
    }
    assert.equal(n, 2000);
  }
});
