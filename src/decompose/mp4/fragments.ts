/**
 * Fragmented MP4: samples listed by moof/traf/tfhd/trun, appended to their track's table.
 * Defaults come from tfhd, else from the moov's trex; data offsets from tfhd's base data offset,
 * default-base-is-moof, or (ISO 14496-12 8.8.7) the moof for the first traf and the end of the
 * previous traf's data for the next ones.
 */
import { childBoxes, payload } from './boxes.js';
import { SAMPLE_DISPOSABLE, SAMPLE_SYNC, type SampleBudget } from './samples.js';
import type { Track } from './tracks.js';

const TFHD_BASE_DATA_OFFSET = 0x1;
const TFHD_DESCRIPTION_INDEX = 0x2;
const TFHD_DURATION = 0x8;
const TFHD_SIZE = 0x10;
const TFHD_FLAGS = 0x20;
const TFHD_BASE_IS_MOOF = 0x20000;
const TRUN_DATA_OFFSET = 0x1;
const TRUN_FIRST_FLAGS = 0x4;
const TRUN_DURATION = 0x100;
const TRUN_SIZE = 0x200;
const TRUN_FLAGS = 0x400;
const TRUN_CTS = 0x800;
const NON_SYNC = 0x10000;

/** Sync / disposable bits of ISO sample flags. */
export function sampleFlagBits(flags: number): number {
  return (flags & NON_SYNC ? 0 : SAMPLE_SYNC) | (((flags >>> 22) & 3) === 2 ? SAMPLE_DISPOSABLE : 0);
}

/** Appends the samples of one moof (whole box in `moof`, at absolute `moofOffset`). */
export function readFragment(moof: Buffer, moofOffset: number, fileStart: number, fileSize: number, tracks: ReadonlyMap<number, Track>, budget: SampleBudget): void {
  let previousTrafEnd = moofOffset;
  for (const traf of childBoxes(moof, 8, moof.length).filter((b) => b.type === 'traf')) {
    const children = childBoxes(moof, traf.offset + traf.headerSize, traf.offset + traf.size);
    const tfhdBox = children.find((b) => b.type === 'tfhd');
    if (!tfhdBox) continue;
    const tfhd = payload(moof, tfhdBox);
    if (tfhd.length < 8) continue;
    const track = tracks.get(tfhd.readUInt32BE(4));
    if (!track) continue;
    const flags = tfhd.readUInt32BE(0) & 0xffffff;
    let at = 8;
    const field = (present: boolean, bytes: 4 | 8): number | undefined => {
      if (!present || at + bytes > tfhd.length) return undefined;
      const v = bytes === 8 ? Number(tfhd.readBigUInt64BE(at)) : tfhd.readUInt32BE(at);
      at += bytes;
      return v;
    };
    const baseDataOffset = field((flags & TFHD_BASE_DATA_OFFSET) !== 0, 8);
    field((flags & TFHD_DESCRIPTION_INDEX) !== 0, 4);
    const duration = field((flags & TFHD_DURATION) !== 0, 4) ?? track.defaults.duration;
    const size = field((flags & TFHD_SIZE) !== 0, 4) ?? track.defaults.size;
    const sampleFlags = field((flags & TFHD_FLAGS) !== 0, 4) ?? track.defaults.flags;
    const base = baseDataOffset !== undefined ? fileStart + baseDataOffset : flags & TFHD_BASE_IS_MOOF ? moofOffset : previousTrafEnd;
    let next = base;
    for (const trunBox of children) {
      if (trunBox.type !== 'trun') continue;
      next = readRun(payload(moof, trunBox), base, next, { duration, size, flags: sampleFlags }, track, fileSize, budget);
    }
    previousTrafEnd = next;
  }
}

/** One trun; returns where its data ends (where a following trun without data offset starts). */
function readRun(trun: Buffer, base: number, next: number, defaults: Track['defaults'], track: Track, fileSize: number, budget: SampleBudget): number {
  if (trun.length < 8) return next;
  const version = trun[0]!;
  const flags = trun.readUInt32BE(0) & 0xffffff;
  let at = 8;
  let pos = next;
  if (flags & TRUN_DATA_OFFSET) {
    if (at + 4 > trun.length) return next;
    pos = base + trun.readInt32BE(at);
    at += 4;
  }
  let firstFlags: number | undefined;
  if (flags & TRUN_FIRST_FLAGS) {
    if (at + 4 > trun.length) return next;
    firstFlags = trun.readUInt32BE(at);
    at += 4;
  }
  const fields = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS].filter((f) => flags & f).length;
  const declared = trun.readUInt32BE(4);
  if (fields === 0 && defaults.size === 0) return next;
  // A count is believed only as far as the box holds its entries (or the file holds its bytes).
  const fits = fields > 0 ? Math.floor((trun.length - at) / (fields * 4)) : Math.floor(fileSize / defaults.size);
  const count = track.samples.reserve(Math.min(declared, fits), budget);
  for (let i = 0; i < count; i++) {
    const duration = flags & TRUN_DURATION ? trun.readUInt32BE((at += 4) - 4) : defaults.duration;
    const size = flags & TRUN_SIZE ? trun.readUInt32BE((at += 4) - 4) : defaults.size;
    const sampleFlags = flags & TRUN_FLAGS ? trun.readUInt32BE((at += 4) - 4) : i === 0 && firstFlags !== undefined ? firstFlags : defaults.flags;
    const cts = flags & TRUN_CTS ? (version === 0 ? trun.readUInt32BE((at += 4) - 4) | 0 : trun.readInt32BE((at += 4) - 4)) : 0;
    track.samples.push(pos, size, duration, cts, sampleFlagBits(sampleFlags), budget);
    pos += size;
  }
  return pos;
}
