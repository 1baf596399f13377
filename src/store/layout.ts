/**
 * Layouts: where a file's bytes lie in the local store's packs, as runs of pack bytes in file
 * order, recorded the first time the file is rebuilt from its atoms (docs/store-format.md,
 * "Layouts"). A media file is thousands of atoms, and each costs a checkout a manifest line to
 * decode and a lookup; its layout is a few thousand runs read straight from the packs, and the
 * file's own SHA-256 still checks every byte. Packs are immutable and named by their index, so a
 * run stays right for as long as its pack exists; a layout naming a pack that is gone is ignored.
 *
 *   "PANINI-LAYOUT 1\n", the file's oid (32 bytes), its size (u64 BE), the number of packs and of
 *   runs (u32 BE each), the packs' ids (32 bytes each), each run as its pack's number (u32 BE),
 *   its offset in that pack (u64 BE) and its length (u32 BE), then the SHA-256 of all before it.
 */
import { MANIFEST_TYPES, type ContentRef } from '../atom.js';
import { sha256Hex } from '../hash.js';
import { bigEndianWords, getUint64, PACK_MAGIC, putBigEndianWords, setUint64 } from './pack.js';

const MAGIC = Buffer.from('PANINI-LAYOUT 1\n', 'latin1');
const HEADER = MAGIC.length + 32 + 8 + 8;
const RUN_BYTES = 16;
const SUM_BYTES = 32;
/** A file of fewer atoms is rebuilt as fast from them: no layout is recorded. */
export const MIN_LAYOUT_ATOMS = 64;
/** More runs than this (a file of scattered atoms) are not worth a layout... */
export const MAX_LAYOUT_RUNS = 1 << 17;
/** ...nor more packs than this (a layout's packs are all kept open while it is read). */
export const MAX_LAYOUT_PACKS = 16;
/** No whole layout is larger (a remote one is read only up to this). */
export const MAX_LAYOUT_BYTES = HEADER + MAX_LAYOUT_PACKS * 32 + MAX_LAYOUT_RUNS * RUN_BYTES + SUM_BYTES;
/** A run's length is a u32: a longer stretch of one pack (a multi-GiB file) is two runs. */
const MAX_RUN_BYTES = 2 ** 32 - 1;

/** Whether a file of these refs may have a layout: enough atoms listed, or a manifest (which lists more). */
export function mayHaveLayout(refs: readonly Pick<ContentRef, 'type'>[]): boolean {
  return refs.length >= MIN_LAYOUT_ATOMS || refs.some((r) => MANIFEST_TYPES.has(r.type));
}

export interface LayoutRun {
  /** The pack's id. */
  pack: string;
  offset: number;
  size: number;
}

/** Runs in file order, consecutive ones merged where they continue each other in one pack. */
export class LayoutBuilder {
  readonly runs: LayoutRun[] = [];
  private readonly packs = new Set<string>();
  atoms = 0;
  /** False once an atom came from elsewhere (a loose atom) or the runs outgrew the limits. */
  complete = true;

  add(pack: string | null, offset: number, size: number): void {
    this.atoms++;
    if (!this.complete) return;
    if (pack === null) {
      this.complete = false;
      return;
    }
    const last = this.runs[this.runs.length - 1];
    if (last && last.pack === pack && last.offset + last.size === offset && last.size + size <= MAX_RUN_BYTES) {
      last.size += size;
      return;
    }
    this.packs.add(pack);
    this.runs.push({ pack, offset, size });
    if (this.runs.length > MAX_LAYOUT_RUNS || this.packs.size > MAX_LAYOUT_PACKS) this.complete = false;
  }

  /** Whether the runs make a layout worth recording. */
  worthRecording(): boolean {
    return this.complete && this.atoms >= MIN_LAYOUT_ATOMS;
  }
}

export function encodeLayout(oid: string, size: number, runs: readonly LayoutRun[]): Buffer {
  const packs = [...new Set(runs.map((r) => r.pack))];
  const number = new Map(packs.map((id, i) => [id, i]));
  const out = Buffer.alloc(HEADER + packs.length * 32 + runs.length * RUN_BYTES + SUM_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  MAGIC.copy(out, 0);
  out.write(oid, MAGIC.length, 'hex');
  setUint64(view, MAGIC.length + 32, size);
  view.setUint32(MAGIC.length + 40, packs.length);
  view.setUint32(MAGIC.length + 44, runs.length);
  let at = HEADER;
  for (const id of packs) at += out.write(id, at, 'hex');
  // The runs as words (see decodeLayout), written out big-endian at once.
  const words = new Uint32Array(runs.length * (RUN_BYTES / 4));
  for (let k = 0, w = 0; k < runs.length; k++, w += RUN_BYTES / 4) {
    const r = runs[k]!;
    words[w] = number.get(r.pack)!;
    words[w + 1] = Math.floor(r.offset / 2 ** 32);
    words[w + 2] = r.offset % 2 ** 32;
    words[w + 3] = r.size;
  }
  putBigEndianWords(words, out, at);
  at += words.byteLength;
  out.write(sha256Hex(out.subarray(0, at)), at, 'hex');
  return out;
}

/**
 * The runs of the layout in `raw`, if it is a whole layout of file `oid` of `size` bytes (checksum,
 * counts, runs covering exactly `size` bytes); else null. Whether its packs still exist is the
 * store's to check.
 */
export function decodeLayout(raw: Buffer, oid: string, size: number): LayoutRun[] | null {
  if (raw.length < HEADER + SUM_BYTES || !raw.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const body = raw.subarray(0, raw.length - SUM_BYTES);
  if (sha256Hex(body) !== raw.toString('hex', body.length)) return null;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  if (raw.toString('hex', MAGIC.length, MAGIC.length + 32) !== oid || getUint64(view, MAGIC.length + 32) !== size) return null;
  const packCount = view.getUint32(MAGIC.length + 40);
  const runCount = view.getUint32(MAGIC.length + 44);
  if (packCount > MAX_LAYOUT_PACKS || runCount > MAX_LAYOUT_RUNS || body.length !== HEADER + packCount * 32 + runCount * RUN_BYTES) return null;
  const packs: string[] = [];
  for (let i = 0; i < packCount; i++) packs.push(raw.toString('hex', HEADER + i * 32, HEADER + (i + 1) * 32));
  const runs: LayoutRun[] = [];
  let covered = 0;
  // Each run as four words: its pack, its offset's high and low halves, its length.
  const words = bigEndianWords(body.subarray(HEADER + packCount * 32), 4);
  for (let w = 0; w < words.length; w += RUN_BYTES / 4) {
    const pack = packs[words[w]!];
    const offset = words[w + 1]! * 2 ** 32 + words[w + 2]!;
    const length = words[w + 3]!;
    if (pack === undefined || offset < PACK_MAGIC.length || length === 0) return null;
    runs.push({ pack, offset, size: length });
    covered += length;
  }
  return covered === size ? runs : null;
}

/** The pack ids a layout names (for gc), or null if it is not a whole layout. */
export function layoutPacks(raw: Buffer): string[] | null {
  if (raw.length < HEADER) return null;
  // The file's oid and size as the layout states them: decodeLayout checks the rest.
  const runs = decodeLayout(raw, raw.toString('hex', MAGIC.length, MAGIC.length + 32), getUint64(new DataView(raw.buffer, raw.byteOffset, raw.length), MAGIC.length + 32));
  return runs && [...new Set(runs.map((r) => r.pack))];
}
