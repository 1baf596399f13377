/**
 * The pkt-line writer: content handed over in pieces of any size (a media file's atoms, often a
 * few hundred bytes) goes out in packets of the maximum size, text and flush packets close the
 * packet being filled, and the bytes are exact.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { MAX_PAYLOAD, PktWriter } from '../src/git/pktline.js';
import { tempDir } from './helpers/cli.js';
import { prng } from './helpers/fixtures.js';

/** The packets of a pkt-line stream: payloads, and null for flush packets. */
function packets(stream: Buffer): (Buffer | null)[] {
  const out: (Buffer | null)[] = [];
  for (let at = 0; at < stream.length; ) {
    const len = parseInt(stream.toString('latin1', at, at + 4), 16);
    assert.ok(len === 0 || (len > 4 && len <= MAX_PAYLOAD + 4), `packet length ${len} at ${at}`);
    out.push(len === 0 ? null : stream.subarray(at + 4, at + len));
    at += len === 0 ? 4 : len;
  }
  return out;
}

test('content in small pieces goes out in maximum-size packets; text and flush close the packet being filled', (t) => {
  const dir = tempDir('panini-pkt-');
  t.after(dir.dispose);
  const file = path.join(dir.dir, 'stream');
  const fd = openSync(file, 'w');
  const next = prng(7);
  // Pieces of 1 byte to 100 KB, some cut from one buffer one after another (as slices of a pack window are).
  const window = Buffer.alloc(300_000, 0x61);
  const pieces: Buffer[] = [];
  for (let i = 0, w = 0; i < 400; i++) {
    const size = 1 + next(i % 10 === 0 ? 100_000 : 700);
    if (i % 3 === 0 && w + size <= window.length) {
      pieces.push(window.subarray(w, w + size));
      w += size;
    } else {
      pieces.push(Buffer.alloc(size, i & 0xff));
    }
  }
  const content = Buffer.concat(pieces);
  try {
    const writer = new PktWriter(fd);
    writer.text('status=success');
    writer.flushPkt();
    for (const p of pieces.slice(0, 200)) writer.data(p);
    writer.send(); // a send between pieces closes the packet too
    for (const p of pieces.slice(200)) writer.data(p);
    writer.flushPkt();
    writer.flushPkt();
    writer.send();
  } finally {
    closeSync(fd);
  }
  const got = packets(readFileSync(file));
  assert.equal(got[0]!.toString(), 'status=success\n');
  assert.equal(got[1], null);
  assert.deepEqual(got.slice(-2), [null, null]);
  const data = got.slice(2, -2) as Buffer[];
  assert.ok(data.every((p) => p !== null));
  assert.ok(Buffer.concat(data).equals(content), 'the content, byte-exact');
  // Every packet full but the one the send closed and the last.
  const short = data.filter((p) => p.length < MAX_PAYLOAD).length;
  assert.ok(short <= 2, `${short} packets below the maximum size, of ${data.length}`);
  const before = pieces.slice(0, 200).reduce((n, p) => n + p.length, 0);
  assert.equal(data.length, Math.ceil(before / MAX_PAYLOAD) + Math.ceil((content.length - before) / MAX_PAYLOAD));
});
