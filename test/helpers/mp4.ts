/**
 * Synthetic MP4 files for tests and benchmarks, of any length: one H.264 video track whose samples
 * are length-prefixed NAL units with real slice headers (IDR, P, B) and random bodies. Written box
 * by box here, independently of the production parser and muxer, so it can check them.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export interface SyntheticMp4Options {
  samples: number;
  /** Bytes of each sample (at least 8). */
  sampleSize: number | ((i: number) => number);
  /** Every `gop`-th sample is an IDR (a sync sample); of the others, every third is P, the rest B. */
  gop?: number;
  /** 'slices': NAL and slice headers then random bytes; 'zeros': nothing written (a sparse file). */
  content?: 'slices' | 'zeros';
  /** moov after mdat instead of before. */
  moovLast?: boolean;
  samplesPerChunk?: number;
}

export interface SyntheticMp4 {
  size: number;
  /** Expected atom type of each sample, in order. */
  types: ('IFrame' | 'PFrame' | 'BFrame')[];
  /** Absolute offset of each sample. */
  offsets: number[];
  timescale: number;
  /** Duration of each sample, in the timescale. */
  sampleDuration: number;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function mp4Box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u32(body.length + 8), Buffer.from(type, 'latin1'), body]);
}

function fullBox(type: string, ...parts: Buffer[]): Buffer {
  return mp4Box(type, u32(0), ...parts);
}

/** An H.264 sample entry (avc1 + avcC with 4-byte NAL lengths and a baseline SPS/PPS). */
function avc1(width: number, height: number): Buffer {
  const sps = Buffer.from('6742c01edb02802dd0800000030080000019078b1650', 'hex');
  const pps = Buffer.from('68ce3c80', 'hex');
  const avcC = mp4Box('avcC', Buffer.from([1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]), Buffer.from([0, sps.length]), sps, Buffer.from([1, 0, pps.length]), pps);
  const fields = Buffer.alloc(78);
  fields.writeUInt16BE(1, 6); // data_reference_index
  fields.writeUInt16BE(width, 24);
  fields.writeUInt16BE(height, 26);
  fields.writeUInt32BE(0x00480000, 28);
  fields.writeUInt32BE(0x00480000, 32);
  fields.writeUInt16BE(1, 40); // frame_count
  fields.writeUInt16BE(0x18, 74); // depth
  fields.writeInt16BE(-1, 76);
  return mp4Box('avc1', fields, avcC);
}

/** The moov of a one-track video; `chunkOffsets` are absolute. */
function moov(o: { count: number; sizes: number[]; chunkOffsets: number[]; perChunk: number; syncs: number[]; timescale: number; delta: number }): Buffer {
  const duration = o.count * o.delta;
  const matrix = Buffer.concat([u32(0x10000), u32(0), u32(0), u32(0), u32(0x10000), u32(0), u32(0), u32(0), u32(0x40000000)]);
  const mvhd = fullBox('mvhd', u32(0), u32(0), u32(o.timescale), u32(duration), u32(0x10000), Buffer.from([1, 0]), Buffer.alloc(10), matrix, Buffer.alloc(24), u32(2));
  const tkhd = mp4Box('tkhd', u32(3), u32(0), u32(0), u32(1), u32(0), u32(duration), Buffer.alloc(8), Buffer.alloc(8), matrix, u32(320 << 16), u32(240 << 16));
  const mdhd = fullBox('mdhd', u32(0), u32(0), u32(o.timescale), u32(duration), Buffer.from([0x55, 0xc4, 0, 0]));
  const hdlr = fullBox('hdlr', u32(0), Buffer.from('vide'), Buffer.alloc(12), Buffer.from('synthetic\0'));
  const sizes = Buffer.alloc(o.count * 4);
  o.sizes.forEach((s, i) => sizes.writeUInt32BE(s, i * 4));
  const stco = Buffer.alloc(o.chunkOffsets.length * 4);
  o.chunkOffsets.forEach((c, i) => stco.writeUInt32BE(c, i * 4));
  const stss = Buffer.alloc(o.syncs.length * 4);
  o.syncs.forEach((s, i) => stss.writeUInt32BE(s + 1, i * 4));
  const stbl = mp4Box('stbl',
    fullBox('stsd', u32(1), avc1(320, 240)),
    fullBox('stts', u32(1), u32(o.count), u32(o.delta)),
    fullBox('stss', u32(o.syncs.length), stss),
    fullBox('stsc', u32(1), u32(1), u32(o.perChunk), u32(1)),
    fullBox('stsz', u32(0), u32(o.count), sizes),
    fullBox('stco', u32(o.chunkOffsets.length), stco));
  const minf = mp4Box('minf', fullBox('vmhd', Buffer.alloc(8)), mp4Box('dinf', fullBox('dref', u32(1), mp4Box('url ', u32(1)))), stbl);
  return mp4Box('moov', mvhd, mp4Box('trak', tkhd, mp4Box('mdia', mdhd, hdlr, minf)));
}

/** Slice header bytes: IDR NAL, or a non-IDR slice with first_mb_in_slice 0 and slice_type P (0) or B (1). */
const SLICE_HEADERS = { IFrame: [0x65, 0x88], PFrame: [0x41, 0xc0], BFrame: [0x01, 0xa0] } as const;

/** Writes the file (never more than one sample in memory); returns what a parser should find. */
export function writeSyntheticMp4(path: string, options: SyntheticMp4Options): SyntheticMp4 {
  const { samples: count, gop = 25, content = 'slices', moovLast = false, samplesPerChunk = 10 } = options;
  const sizeOf = typeof options.sampleSize === 'number' ? () => options.sampleSize as number : options.sampleSize;
  const sizes = Array.from({ length: count }, (_, i) => sizeOf(i));
  const types = sizes.map((_, i) => (i % gop === 0 ? 'IFrame' : i % 3 === 0 ? 'PFrame' : 'BFrame') as SyntheticMp4['types'][number]);
  const syncs = types.flatMap((t, i) => (t === 'IFrame' ? [i] : []));
  const payload = sizes.reduce((a, b) => a + b, 0);
  const ftyp = mp4Box('ftyp', Buffer.from('isom'), u32(0x200), Buffer.from('isomiso2avc1mp41'));
  const timescale = 12800;
  const delta = 512;
  const layout = (moovSize: number): { mdatStart: number; offsets: number[]; chunkOffsets: number[] } => {
    const mdatStart = ftyp.length + (moovLast ? 0 : moovSize);
    const offsets: number[] = [];
    let pos = mdatStart + 8;
    for (const s of sizes) {
      offsets.push(pos);
      pos += s;
    }
    return { mdatStart, offsets, chunkOffsets: offsets.filter((_, i) => i % samplesPerChunk === 0) };
  };
  const build = (chunkOffsets: number[]): Buffer => moov({ count, sizes, chunkOffsets, perChunk: samplesPerChunk, syncs, timescale, delta });
  const moovSize = build(layout(0).chunkOffsets).length; // offsets' values do not change the moov's size
  const { offsets, chunkOffsets } = layout(moovSize);
  const moovBytes = build(chunkOffsets);
  if (payload + 8 > 0xffffffff) throw new RangeError('synthetic files stay under 4 GiB (32-bit mdat size)');
  const mdatHeader = Buffer.concat([u32(payload + 8), Buffer.from('mdat')]);
  const size = ftyp.length + moovBytes.length + 8 + payload;
  const fd = openSync(path, 'w');
  try {
    let at = 0;
    const put = (b: Buffer): void => {
      writeSync(fd, b, 0, b.length, at);
      at += b.length;
    };
    put(ftyp);
    if (!moovLast) put(moovBytes);
    put(mdatHeader);
    if (content === 'zeros') at += payload;
    else {
      for (const [i, s] of sizes.entries()) {
        const sample = Buffer.alloc(s);
        randomFillSync(sample, 6);
        sample.writeUInt32BE(s - 4, 0);
        sample.set(SLICE_HEADERS[types[i]!], 4);
        put(sample);
      }
    }
    if (moovLast) put(moovBytes);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return { size, types, offsets, timescale, sampleDuration: delta };
}
