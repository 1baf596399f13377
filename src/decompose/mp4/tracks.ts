/**
 * Tracks of a movie from its moov: handler, codec and codec configuration, and the sample tables
 * (stsz/stz2, stco/co64, stsc, stts, ctts, stss, sdtp) expanded into per-sample arrays.
 * Fragment defaults (trex) are read here too; moof/traf/trun are in fragments.ts.
 */
import { boxBytes, childBoxes, findChild, payload, type BoxHeader } from './boxes.js';
import { avcConfig, hevcConfig, type NalConfig } from './nal.js';
import { SAMPLE_DISPOSABLE, SAMPLE_SYNC, SampleTable, type SampleBudget } from './samples.js';
import type { TrackKind } from '../types.js';

const KIND_BY_HANDLER: Record<string, TrackKind> = {
  vide: 'video', soun: 'audio', subt: 'subtitle', text: 'subtitle', sbtl: 'subtitle', clcp: 'subtitle',
};

/** AAC and friends: the esds decoder configuration. */
export interface AudioConfig {
  /** MPEG-4 objectTypeIndication (0x40 = MPEG-4 audio, 0x69/0x6B = MP3). */
  objectType: number;
  /** AudioSpecificConfig (DecoderSpecificInfo), empty if absent. */
  specificConfig: Buffer;
}

/** trex / tfhd defaults for samples of fragments. */
export interface SampleDefaults {
  duration: number;
  size: number;
  flags: number;
}

export interface Track {
  id: number;
  kind: TrackKind;
  handler: string;
  /** Fourcc of the first sample description (avc1, hvc1, mp4a, ...). */
  codec: string;
  timescale: number;
  /** Media duration from mdhd, in the track's timescale (0 in fragmented files). */
  duration: number;
  width: number;
  height: number;
  sampleRate: number;
  channels: number;
  /** Whole boxes of the source, copied for single-track remuxing. */
  boxes: { tkhd?: Buffer; edts?: Buffer; mdhd?: Buffer; hdlr?: Buffer; mediaHeader?: Buffer; stsd?: Buffer };
  nal?: NalConfig;
  audio?: AudioConfig;
  defaults: SampleDefaults;
  samples: SampleTable;
}

/** Track duration in seconds: the media header's, or the sum of sample durations (fragments). */
export function trackSeconds(track: Track): number {
  if (track.timescale === 0) return 0;
  let total = 0;
  for (let i = 0; i < track.samples.count; i++) total += track.samples.duration[i]!;
  return Math.max(track.duration, total) / track.timescale;
}

/** Samples in a table-described track, bounded by the box sizes that list them. */
export function parseTrack(moov: Buffer, trak: BoxHeader, fileStart: number, fileSize: number, budget: SampleBudget): Track | null {
  const tkhd = findChild(moov, trak, 'tkhd');
  const mdia = findChild(moov, trak, 'mdia');
  if (!tkhd || !mdia) return null;
  const th = payload(moov, tkhd);
  const v1 = th[0] === 1;
  if (th.length < (v1 ? 24 : 16)) return null;
  const id = th.readUInt32BE(v1 ? 20 : 12);
  const mdhd = findChild(moov, mdia, 'mdhd');
  const hdlr = findChild(moov, mdia, 'hdlr');
  const minf = findChild(moov, mdia, 'minf');
  const stbl = minf && findChild(moov, minf, 'stbl');
  if (!mdhd || !hdlr || !minf || !stbl) return null;
  const mh = payload(moov, mdhd);
  const mv1 = mh[0] === 1;
  if (mh.length < (mv1 ? 32 : 20)) return null;
  const timescale = mh.readUInt32BE(mv1 ? 20 : 12);
  const duration = mv1 ? Number(mh.readBigUInt64BE(24)) : mh.readUInt32BE(16);
  const hp = payload(moov, hdlr);
  const handler = hp.length >= 12 ? hp.toString('latin1', 8, 12) : '';
  const mediaHeader = childBoxes(moov, minf.offset + minf.headerSize, minf.offset + minf.size).find((b) => b.type.endsWith('mhd'));
  const edts = findChild(moov, trak, 'edts');
  const stsd = findChild(moov, stbl, 'stsd');
  const track: Track = {
    id,
    kind: KIND_BY_HANDLER[handler] ?? 'other',
    handler,
    codec: '',
    timescale,
    duration,
    width: th.length >= 8 ? th.readUInt32BE(th.length - 8) / 65536 : 0,
    height: th.length >= 4 ? th.readUInt32BE(th.length - 4) / 65536 : 0,
    sampleRate: 0,
    channels: 0,
    boxes: {
      tkhd: copy(boxBytes(moov, tkhd)), mdhd: copy(boxBytes(moov, mdhd)), hdlr: copy(boxBytes(moov, hdlr)),
      edts: edts && copy(boxBytes(moov, edts)), mediaHeader: mediaHeader && copy(boxBytes(moov, mediaHeader)),
      stsd: stsd && copy(boxBytes(moov, stsd)),
    },
    defaults: { duration: 0, size: 0, flags: 0 },
    samples: new SampleTable(),
  };
  if (stsd) readSampleDescription(moov, stsd, track);
  readSampleTables(moov, stbl, track, fileStart, fileSize, budget);
  return track;
}

function copy(b: Buffer): Buffer {
  return Buffer.from(b);
}

/** Codec fourcc and configuration from the first sample entry. */
function readSampleDescription(moov: Buffer, stsd: BoxHeader, track: Track): void {
  const entry = childBoxes(moov, stsd.offset + stsd.headerSize + 8, stsd.offset + stsd.size)[0];
  if (!entry) return;
  track.codec = entry.type.replace(/[^\x20-\x7e]/g, '_');
  const body = entry.offset + entry.headerSize;
  const end = entry.offset + entry.size;
  if (track.kind === 'video' && body + 78 <= end) {
    const children = childBoxes(moov, body + 78, end);
    const avcC = children.find((b) => b.type === 'avcC');
    const hvcC = children.find((b) => b.type === 'hvcC');
    track.nal = avcC ? avcConfig(payload(moov, avcC)) : hvcC ? hevcConfig(payload(moov, hvcC)) : undefined;
  } else if (track.kind === 'audio' && body + 28 <= end) {
    track.channels = moov.readUInt16BE(body + 16);
    track.sampleRate = moov.readUInt32BE(body + 24) / 65536;
    const soundVersion = moov.readUInt16BE(body + 8); // QuickTime sound descriptions v1/v2 are longer
    const childStart = body + 28 + (soundVersion === 1 ? 16 : soundVersion === 2 ? 36 : 0);
    if (childStart > end) return;
    let esds = childBoxes(moov, childStart, end).find((b) => b.type === 'esds');
    if (!esds) {
      const wave = childBoxes(moov, childStart, end).find((b) => b.type === 'wave');
      esds = wave && findChild(moov, wave, 'esds');
    }
    if (esds) track.audio = parseEsds(payload(moov, esds));
  }
}

/** ES_Descriptor → DecoderConfigDescriptor → DecoderSpecificInfo (ISO 14496-1 7.2.6). */
export function parseEsds(esds: Buffer): AudioConfig | undefined {
  let pos = 4; // version and flags
  const descriptor = (): { tag: number; start: number; end: number } | null => {
    if (pos >= esds.length) return null;
    const tag = esds[pos++]!;
    let len = 0;
    for (let i = 0; i < 4 && pos < esds.length; i++) {
      const b = esds[pos++]!;
      len = len * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
    return { tag, start: pos, end: Math.min(esds.length, pos + len) };
  };
  const es = descriptor();
  if (!es || es.tag !== 3 || es.start + 3 > es.end) return undefined;
  const flags = esds[es.start + 2]!;
  pos = es.start + 3 + (flags & 0x80 ? 2 : 0) + (flags & 0x20 ? 2 : 0);
  if (flags & 0x40) pos += 1 + (esds[pos] ?? 0);
  const dc = descriptor();
  if (!dc || dc.tag !== 4 || dc.start + 13 > dc.end) return undefined;
  const objectType = esds[dc.start]!;
  pos = dc.start + 13;
  const dsi = pos < dc.end ? descriptor() : null;
  return { objectType, specificConfig: dsi && dsi.tag === 5 ? Buffer.from(esds.subarray(dsi.start, dsi.end)) : Buffer.alloc(0) };
}

/** A full box's table: entry count after version/flags (and `skip` more bytes), capped by what fits. */
function table(moov: Buffer, box: BoxHeader | undefined, entryBytes: number, skip = 0): { body: Buffer; count: number } {
  if (!box) return { body: Buffer.alloc(0), count: 0 };
  const p = payload(moov, box);
  if (p.length < 8 + skip) return { body: Buffer.alloc(0), count: 0 };
  const body = p.subarray(8 + skip);
  return { body, count: Math.min(p.readUInt32BE(4 + skip), Math.floor(body.length / entryBytes)) };
}

function readSampleTables(moov: Buffer, stbl: BoxHeader, track: Track, fileStart: number, fileSize: number, budget: SampleBudget): void {
  const boxes = new Map<string, BoxHeader>();
  for (const b of childBoxes(moov, stbl.offset + stbl.headerSize, stbl.offset + stbl.size)) if (!boxes.has(b.type)) boxes.set(b.type, b);
  const sizes = sampleSizes(moov, boxes.get('stsz'), boxes.get('stz2'), fileSize);
  const co64 = boxes.has('co64');
  const chunks = table(moov, boxes.get(co64 ? 'co64' : 'stco'), co64 ? 8 : 4);
  const stsc = table(moov, boxes.get('stsc'), 12);
  if (sizes.count === 0 || chunks.count === 0 || stsc.count === 0) return;
  const samples = track.samples;
  const count = samples.reserve(sizes.count, budget);
  // Chunks → sample offsets: each stsc run gives its chunks' samples-per-chunk.
  let s = 0;
  let run = -1;
  for (let chunk = 0; chunk < chunks.count && s < count; chunk++) {
    while (run + 1 < stsc.count && stsc.body.readUInt32BE((run + 1) * 12) - 1 <= chunk) run++;
    const perChunk = run < 0 ? 0 : stsc.body.readUInt32BE(run * 12 + 4);
    let pos = fileStart + (co64 ? Number(chunks.body.readBigUInt64BE(chunk * 8)) : chunks.body.readUInt32BE(chunk * 4));
    for (let j = 0; j < perChunk && s < count; j++, s++) {
      const size = sizes.at(s);
      samples.push(pos, size, 0, 0, 0, budget);
      pos += size;
    }
  }
  const n = samples.count;
  const stts = table(moov, boxes.get('stts'), 8);
  for (let e = 0, i = 0; e < stts.count && i < n; e++) {
    const delta = stts.body.readUInt32BE(e * 8 + 4);
    for (let k = stts.body.readUInt32BE(e * 8); k > 0 && i < n; k--) samples.duration[i++] = delta;
  }
  const ctts = table(moov, boxes.get('ctts'), 8);
  for (let e = 0, i = 0; e < ctts.count && i < n; e++) {
    const offset = ctts.body.readInt32BE(e * 8 + 4); // version 0 is unsigned, but writers use it signed
    for (let k = ctts.body.readUInt32BE(e * 8); k > 0 && i < n; k--) samples.cts[i++] = offset;
  }
  const stss = boxes.get('stss');
  if (!stss) samples.flags.fill(SAMPLE_SYNC, 0, n); // no stss: every sample is a sync sample
  else {
    const sync = table(moov, stss, 4);
    for (let e = 0; e < sync.count; e++) {
      const index = sync.body.readUInt32BE(e * 4) - 1;
      if (index >= 0 && index < n) samples.flags[index]! |= SAMPLE_SYNC;
    }
  }
  const sdtp = boxes.get('sdtp');
  if (sdtp) {
    const deps = payload(moov, sdtp).subarray(4);
    for (let i = 0; i < Math.min(n, deps.length); i++) if (((deps[i]! >> 2) & 3) === 2) samples.flags[i]! |= SAMPLE_DISPOSABLE;
  }
}

/** stsz (one size, or 32-bit sizes) or stz2 (4-, 8- or 16-bit sizes); count capped by what fits. */
function sampleSizes(moov: Buffer, stsz: BoxHeader | undefined, stz2: BoxHeader | undefined, fileSize: number): { count: number; at(i: number): number } {
  const none = { count: 0, at: () => 0 };
  if (stsz) {
    const p = payload(moov, stsz);
    if (p.length < 12) return none;
    const fixed = p.readUInt32BE(4);
    const declared = p.readUInt32BE(8);
    // One size for all: n samples of that size cannot exceed the file, whatever the count claims.
    if (fixed > 0) return { count: Math.min(declared, Math.floor(fileSize / fixed)), at: () => fixed };
    const body = p.subarray(12);
    return { count: Math.min(declared, body.length >> 2), at: (i) => body.readUInt32BE(i * 4) };
  }
  if (stz2) {
    const p = payload(moov, stz2);
    if (p.length < 12) return none;
    const bits = p[7]!;
    const body = p.subarray(12);
    if (bits === 16) return { count: Math.min(p.readUInt32BE(8), body.length >> 1), at: (i) => body.readUInt16BE(i * 2) };
    if (bits === 8) return { count: Math.min(p.readUInt32BE(8), body.length), at: (i) => body[i]! };
    if (bits === 4) return { count: Math.min(p.readUInt32BE(8), body.length * 2), at: (i) => (i & 1 ? body[i >> 1]! & 15 : body[i >> 1]! >> 4) };
  }
  return none;
}

/** trex defaults of each track, by track id (mvex in moov). */
export function readTrackDefaults(moov: Buffer, moovBox: BoxHeader, tracks: readonly Track[]): void {
  const mvex = findChild(moov, moovBox, 'mvex');
  if (!mvex) return;
  for (const trex of childBoxes(moov, mvex.offset + mvex.headerSize, mvex.offset + mvex.size)) {
    if (trex.type !== 'trex') continue;
    const p = payload(moov, trex);
    if (p.length < 24) continue;
    const track = tracks.find((t) => t.id === p.readUInt32BE(4));
    if (track) track.defaults = { duration: p.readUInt32BE(12), size: p.readUInt32BE(16), flags: p.readUInt32BE(20) };
  }
}
