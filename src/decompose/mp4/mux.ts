/**
 * Writing a single-track MP4 (ftyp, moov, mdat) from a source track: the source's sample
 * description, edit list, handler and media header are copied as they are; the sample tables
 * (stts, ctts, stss, stsc, stsz, stco/co64) are written from the chosen samples. Also ADTS
 * headers for raw AAC. Used by partial extraction.
 */
import { PaniniError } from '../../errors.js';
import type { Track } from './tracks.js';

/** Samples chosen from a track, in decode order. */
export interface MuxSamples {
  count: number;
  size: Uint32Array;
  duration: Uint32Array;
  cts: Int32Array;
  sync: Uint8Array;
  /** Where each sample's bytes start inside the output mdat's payload. */
  position: Float64Array;
  /** Bytes of the mdat payload. */
  payloadSize: number;
}

const MAX_CHUNK_SAMPLES = 1024;
const UINT32_MAX = 0xffffffff;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

export function box(type: string, ...parts: Buffer[]): Buffer {
  const size = parts.reduce((n, p) => n + p.length, 8);
  return Buffer.concat([u32(size), Buffer.from(type, 'latin1'), ...parts], size);
}

function fullBox(type: string, version: number, flags: number, ...parts: Buffer[]): Buffer {
  return box(type, u32(((version & 0xff) << 24) | (flags & 0xffffff)), ...parts);
}

/** A table box: entry count then the entries, written into one buffer. */
function tableBox(type: string, version: number, entries: number, entryBytes: number, fill: (body: Buffer) => void): Buffer {
  const body = Buffer.alloc(entries * entryBytes);
  fill(body);
  return fullBox(type, version, 0, u32(entries), body);
}

const IDENTITY_MATRIX = Buffer.concat([u32(0x10000), u32(0), u32(0), u32(0), u32(0x10000), u32(0), u32(0), u32(0), u32(0x40000000)]);

function mvhd(timescale: number, duration: number): Buffer {
  const v1 = duration > UINT32_MAX;
  const times = v1 ? [u64(0), u64(0), u32(timescale), u64(duration)] : [u32(0), u32(0), u32(timescale), u32(duration)];
  return fullBox('mvhd', v1 ? 1 : 0, 0, ...times, u32(0x10000), u16(0x100), Buffer.alloc(10), IDENTITY_MATRIX, Buffer.alloc(24), u32(2));
}

/** The source's tkhd with track id 1 and the new duration (matrix, size and volume kept). */
function tkhd(track: Track, movieDuration: number): Buffer {
  const source = track.boxes.tkhd;
  const v1 = source?.[8] === 1;
  if (!source || source.length < (v1 ? 104 : 92) || (!v1 && movieDuration > UINT32_MAX)) {
    const volume = track.kind === 'audio' ? 0x100 : 0;
    return fullBox('tkhd', 1, 3, u64(0), u64(0), u32(1), u32(0), u64(movieDuration), Buffer.alloc(8), u16(0), u16(0), u16(volume), u16(0), IDENTITY_MATRIX, u32(track.width * 65536), u32(track.height * 65536));
  }
  const out = Buffer.from(source);
  out.writeUInt32BE(out.readUInt32BE(8) | 3, 8); // enabled, in movie
  if (v1) {
    out.writeUInt32BE(1, 28);
    out.writeBigUInt64BE(BigInt(movieDuration), 36);
  } else {
    out.writeUInt32BE(1, 20);
    out.writeUInt32BE(movieDuration, 28);
  }
  return out;
}

function mdhd(track: Track, duration: number): Buffer {
  const source = track.boxes.mdhd;
  const languageAt = source?.[8] === 1 ? 40 : 28;
  const language = source && source.length >= languageAt + 2 ? source.readUInt16BE(languageAt) : 0x55c4; // 'und'
  const v1 = duration > UINT32_MAX;
  const times = v1 ? [u64(0), u64(0), u32(track.timescale), u64(duration)] : [u32(0), u32(0), u32(track.timescale), u32(duration)];
  return fullBox('mdhd', v1 ? 1 : 0, 0, ...times, u16(language), u16(0));
}

function hdlr(track: Track): Buffer {
  return track.boxes.hdlr ?? fullBox('hdlr', 0, 0, u32(0), Buffer.from(track.handler.padEnd(4).slice(0, 4), 'latin1'), Buffer.alloc(12), Buffer.from('git-panini\0'));
}

function mediaHeader(track: Track): Buffer {
  if (track.boxes.mediaHeader) return track.boxes.mediaHeader;
  if (track.kind === 'video') return fullBox('vmhd', 0, 1, Buffer.alloc(8));
  if (track.kind === 'audio') return fullBox('smhd', 0, 0, Buffer.alloc(4));
  return fullBox('nmhd', 0, 0);
}

/** Run-length (count, value) pairs of a sequence. */
function runs(count: number, value: (i: number) => number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const v = value(i);
    const last = out[out.length - 1];
    if (last && last[1] === v) last[0]++;
    else out.push([1, v]);
  }
  return out;
}

function sampleTables(s: MuxSamples, stsd: Buffer, mdatPayloadStart: number, co64: boolean): Buffer {
  const parts: Buffer[] = [stsd];
  const stts = runs(s.count, (i) => s.duration[i]!);
  parts.push(tableBox('stts', 0, stts.length, 8, (b) => stts.forEach(([n, d], i) => { b.writeUInt32BE(n, i * 8); b.writeUInt32BE(d, i * 8 + 4); })));
  let negative = false;
  let anyCts = false;
  for (let i = 0; i < s.count; i++) {
    if (s.cts[i]! !== 0) anyCts = true;
    if (s.cts[i]! < 0) negative = true;
  }
  if (anyCts) {
    const ctts = runs(s.count, (i) => s.cts[i]!);
    parts.push(tableBox('ctts', negative ? 1 : 0, ctts.length, 8, (b) => ctts.forEach(([n, c], i) => { b.writeUInt32BE(n, i * 8); b.writeInt32BE(c, i * 8 + 4); })));
  }
  let syncCount = 0;
  for (let i = 0; i < s.count; i++) syncCount += s.sync[i]!;
  if (syncCount < s.count) {
    parts.push(tableBox('stss', 0, syncCount, 4, (b) => {
      for (let i = 0, n = 0; i < s.count; i++) if (s.sync[i]) b.writeUInt32BE(i + 1, 4 * n++);
    }));
  }
  // Chunks: runs of samples that follow each other in the mdat, at most MAX_CHUNK_SAMPLES each.
  const chunkStart: number[] = [];
  const chunkSamples: number[] = [];
  for (let i = 0; i < s.count; i++) {
    const last = chunkSamples.length - 1;
    const follows = i > 0 && s.position[i] === s.position[i - 1]! + s.size[i - 1]! && chunkSamples[last]! < MAX_CHUNK_SAMPLES;
    if (follows) chunkSamples[last]!++;
    else {
      chunkStart.push(s.position[i]!);
      chunkSamples.push(1);
    }
  }
  const stsc = runs(chunkSamples.length, (i) => chunkSamples[i]!);
  parts.push(tableBox('stsc', 0, stsc.length, 12, (b) => {
    let chunk = 1;
    stsc.forEach(([n, perChunk], i) => {
      b.writeUInt32BE(chunk, i * 12);
      b.writeUInt32BE(perChunk, i * 12 + 4);
      b.writeUInt32BE(1, i * 12 + 8);
      chunk += n;
    });
  }));
  const fixedSize = s.count > 0 && s.size.subarray(0, s.count).every((v) => v === s.size[0]) ? s.size[0]! : 0;
  const sizes = Buffer.alloc(fixedSize ? 0 : s.count * 4);
  for (let i = 0; i < sizes.length / 4; i++) sizes.writeUInt32BE(s.size[i]!, i * 4);
  parts.push(fullBox('stsz', 0, 0, u32(fixedSize), u32(s.count), sizes));
  parts.push(co64
    ? tableBox('co64', 0, chunkStart.length, 8, (b) => chunkStart.forEach((p, i) => b.writeBigUInt64BE(BigInt(mdatPayloadStart + p), i * 8)))
    : tableBox('stco', 0, chunkStart.length, 4, (b) => chunkStart.forEach((p, i) => b.writeUInt32BE(mdatPayloadStart + p, i * 4))));
  return box('stbl', ...parts);
}

export interface MuxPlan {
  /** ftyp + moov + mdat header: write it, then the mdat payload. */
  head: Buffer;
  /** Duration of the output in the track's timescale. */
  duration: number;
}

/**
 * The bytes before the samples of a one-track MP4. `movieTimescale` is the source's (so its edit
 * list stays valid); with `keepsSourceDuration` (the samples last as long as the source track's)
 * the source tkhd's duration, which accounts for the edit list, is kept.
 */
export function muxHead(track: Track, samples: MuxSamples, movieTimescale: number, keepsSourceDuration: boolean): MuxPlan {
  if (!track.boxes.stsd) throw new PaniniError(`track ${track.id} has no sample description (stsd)`, 'the file cannot be remuxed; get the whole file with `git panini get-content` instead');
  let duration = 0;
  for (let i = 0; i < samples.count; i++) duration += samples.duration[i]!;
  const sourceTkhd = track.boxes.tkhd;
  const sourceMovieDuration = sourceTkhd && sourceTkhd.length >= 32 ? (sourceTkhd[8] === 1 ? Number(sourceTkhd.readBigUInt64BE(36)) : sourceTkhd.readUInt32BE(28)) : 0;
  const movieDuration = keepsSourceDuration && sourceMovieDuration > 0 ? sourceMovieDuration : Math.round((duration * movieTimescale) / Math.max(1, track.timescale));
  const brand = track.kind === 'audio' ? 'M4A ' : 'isom';
  const ftyp = box('ftyp', Buffer.from(brand, 'latin1'), u32(0x200), Buffer.from(`${brand}isomiso2mp41`, 'latin1'));
  const mdatHeaderSize = samples.payloadSize + 8 > UINT32_MAX ? 16 : 8;
  const build = (payloadStart: number, co64: boolean): Buffer => {
    const minf = box('minf', mediaHeader(track), box('dinf', fullBox('dref', 0, 0, u32(1), fullBox('url ', 0, 1))), sampleTables(samples, track.boxes.stsd!, payloadStart, co64));
    const mdia = box('mdia', mdhd(track, duration), hdlr(track), minf);
    const trak = box('trak', tkhd(track, movieDuration), ...(track.boxes.edts ? [track.boxes.edts] : []), mdia);
    return box('moov', mvhd(movieTimescale, movieDuration), trak);
  };
  // The moov's length does not depend on the offsets' values, only on their width.
  let co64 = false;
  let moov = build(0, co64);
  if (ftyp.length + moov.length + mdatHeaderSize + samples.payloadSize > UINT32_MAX) {
    co64 = true;
    moov = build(0, co64);
  }
  const payloadStart = ftyp.length + moov.length + mdatHeaderSize;
  moov = build(payloadStart, co64);
  const mdatHeader = mdatHeaderSize === 16
    ? Buffer.concat([u32(1), Buffer.from('mdat'), u64(samples.payloadSize + 16)])
    : Buffer.concat([u32(samples.payloadSize + 8), Buffer.from('mdat')]);
  return { head: Buffer.concat([ftyp, moov, mdatHeader]), duration };
}

/** What ADTS headers need from an AAC AudioSpecificConfig (ISO 14496-3 1.6.2.1). */
export interface AdtsConfig {
  profile: number;
  frequencyIndex: number;
  channels: number;
}

export function adtsConfig(track: Track): AdtsConfig {
  const asc = track.audio?.specificConfig;
  const unsupported = (why: string): PaniniError => new PaniniError(`track ${track.id} (${track.codec}) cannot be written as ADTS AAC: ${why}`, 'ask for an .m4a output instead (any other file name than *.aac), which keeps any codec');
  if (!asc || asc.length < 2 || track.audio?.objectType !== 0x40) throw unsupported('it is not MPEG-4 AAC with an AudioSpecificConfig');
  let bit = 0;
  const bits = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++, bit++) {
      if (bit >= asc.length * 8) throw unsupported('its AudioSpecificConfig is cut short');
      v = v * 2 + ((asc[bit >> 3]! >> (7 - (bit & 7))) & 1);
    }
    return v;
  };
  const objectType = (): number => {
    const t = bits(5);
    return t === 31 ? 32 + bits(6) : t;
  };
  let type = objectType();
  let frequencyIndex = bits(4);
  if (frequencyIndex === 15) throw unsupported('its sampling frequency has no ADTS index');
  const channels = bits(4);
  if (type === 5 || type === 29) {
    // Explicit SBR/PS: ADTS carries the core AAC configuration and the decoder finds the rest.
    if (bits(4) === 15) bits(24);
    type = objectType();
    frequencyIndex = Math.min(frequencyIndex, 12);
  }
  if (type < 1 || type > 4) throw unsupported(`audio object type ${type} has no ADTS profile`);
  if (channels === 0 || channels > 7) throw unsupported('its channel layout is given by a program config element');
  return { profile: type - 1, frequencyIndex, channels };
}

/** The 7-byte ADTS header (no CRC) of one AAC frame of `size` bytes. */
export function adtsHeader(config: AdtsConfig, size: number): Buffer {
  const length = size + 7;
  if (length > 0x1fff) throw new PaniniError(`an AAC frame of ${size} bytes does not fit an ADTS header`, 'ask for an .m4a output instead');
  return Buffer.from([
    0xff, 0xf1,
    (config.profile << 6) | (config.frequencyIndex << 2) | (config.channels >> 2),
    ((config.channels & 3) << 6) | (length >> 11),
    (length >> 3) & 0xff,
    ((length & 7) << 5) | 0x1f,
    0xfc,
  ]);
}
