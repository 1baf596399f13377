/**
 * Frame types of H.264 and HEVC samples from their NAL units: the type of the first slice, read
 * from its header with Exp-Golomb codes (H.264 7.3.3, HEVC 7.3.6.1). Samples in MP4 are
 * length-prefixed NAL units; only the first few bytes of each are read.
 */
import type { AtomType } from '../../atom.js';
import type { Source } from '../../source.js';

export interface NalConfig {
  hevc: boolean;
  /** Bytes of each NAL unit's length prefix (1, 2 or 4). */
  lengthSize: number;
  /** HEVC: num_extra_slice_header_bits of each picture parameter set, by id. */
  extraSliceBits: Map<number, number>;
}

/** Reads bits and Exp-Golomb codes from an RBSP (emulation prevention bytes already removed). */
class BitReader {
  private bit = 0;
  constructor(private readonly bytes: Uint8Array) {}
  get left(): number {
    return this.bytes.length * 8 - this.bit;
  }
  u(n: number): number {
    if (n > this.left) throw new RangeError('slice header runs past the bytes read');
    let v = 0;
    for (let i = 0; i < n; i++, this.bit++) v = v * 2 + ((this.bytes[this.bit >> 3]! >> (7 - (this.bit & 7))) & 1);
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) if (++zeros > 31) throw new RangeError('Exp-Golomb code too long');
    return 2 ** zeros - 1 + this.u(zeros);
  }
}

/** Drops emulation prevention bytes (00 00 03 → 00 00). */
export function unescapeRbsp(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  let n = 0;
  let zeros = 0;
  for (const b of bytes) {
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    zeros = b === 0 ? zeros + 1 : 0;
    out[n++] = b;
  }
  return out.subarray(0, n);
}

/** The AVC configuration (avcC payload): NAL length size. */
export function avcConfig(avcC: Buffer): NalConfig | undefined {
  if (avcC.length < 7 || avcC[0] !== 1) return undefined;
  return { hevc: false, lengthSize: (avcC[4]! & 3) + 1, extraSliceBits: new Map() };
}

/** The HEVC configuration (hvcC payload): NAL length size and what slice headers need from each PPS. */
export function hevcConfig(hvcC: Buffer): NalConfig | undefined {
  if (hvcC.length < 23) return undefined;
  const config: NalConfig = { hevc: true, lengthSize: (hvcC[21]! & 3) + 1, extraSliceBits: new Map() };
  let pos = 23;
  for (let a = 0, arrays = hvcC[22]!; a < arrays && pos + 3 <= hvcC.length; a++) {
    const nalType = hvcC[pos]! & 0x3f;
    const count = hvcC.readUInt16BE(pos + 1);
    pos += 3;
    for (let i = 0; i < count && pos + 2 <= hvcC.length; i++) {
      const len = hvcC.readUInt16BE(pos);
      const nal = hvcC.subarray(pos + 2, Math.min(hvcC.length, pos + 2 + len));
      pos += 2 + len;
      if (nalType !== 34) continue; // PPS_NUT
      try {
        const r = new BitReader(unescapeRbsp(nal.subarray(2)));
        const ppsId = r.ue();
        r.ue(); // pps_seq_parameter_set_id
        r.u(2); // dependent_slice_segments_enabled_flag, output_flag_present_flag
        config.extraSliceBits.set(ppsId, r.u(3));
      } catch {
        // a PPS we cannot read: slices using it fall back to the sample flags
      }
    }
  }
  return config;
}

const H264_SLICE_TYPES: AtomType[] = ['PFrame', 'BFrame', 'IFrame', 'PFrame', 'IFrame']; // P B I SP SI
const HEVC_SLICE_TYPES: AtomType[] = ['BFrame', 'PFrame', 'IFrame'];

/** The frame type of one NAL unit's first bytes, or null if it is not a slice we can read. */
export function sliceType(nal: Uint8Array, hevc: boolean, extraSliceBits: ReadonlyMap<number, number>): AtomType | null {
  if (nal.length < 2) return null;
  try {
    if (!hevc) {
      const type = nal[0]! & 0x1f;
      if (type === 5) return 'IFrame'; // IDR
      if (type !== 1) return null;
      const r = new BitReader(unescapeRbsp(nal.subarray(1)));
      r.ue(); // first_mb_in_slice
      return H264_SLICE_TYPES[r.ue() % 5]!;
    }
    const type = (nal[0]! >> 1) & 0x3f;
    if (type >= 16 && type <= 23) return 'IFrame'; // IRAP pictures (BLA, IDR, CRA)
    if (type > 9) return null; // not a slice segment
    const r = new BitReader(unescapeRbsp(nal.subarray(2)));
    if (r.u(1) !== 1) return null; // not the picture's first slice segment: its header needs the SPS
    const ppsId = r.ue();
    r.u(extraSliceBits.get(ppsId) ?? 0);
    return HEVC_SLICE_TYPES[r.ue()] ?? null;
  } catch {
    return null;
  }
}

/** NAL units looked at per sample before giving up (AUD, SEI, parameter sets come before slices). */
const MAX_NALS = 16;
/** Bytes read at each NAL unit: its header and the start of a slice header. */
const NAL_WINDOW = 64;
const FIRST_WINDOW = 512;

/**
 * The frame type of the sample at [offset, offset+size) from its first slice, or null if no slice
 * header could be read (then the caller uses the container's sync and dependency flags).
 */
export function sampleFrameType(src: Source, offset: number, size: number, config: NalConfig): AtomType | null {
  const end = offset + size;
  let window = src.read(offset, Math.min(size, FIRST_WINDOW));
  let windowStart = offset;
  let pos = offset;
  for (let n = 0; n < MAX_NALS && pos + config.lengthSize < end; n++) {
    if (pos + config.lengthSize + NAL_WINDOW > windowStart + window.length && windowStart + window.length < end) {
      window = src.read(pos, Math.min(end - pos, NAL_WINDOW + config.lengthSize));
      windowStart = pos;
    }
    const at = pos - windowStart;
    if (at + config.lengthSize > window.length) return null;
    let length = 0;
    for (let i = 0; i < config.lengthSize; i++) length = length * 256 + window[at + i]!;
    const body = pos + config.lengthSize;
    if (length === 0 || body + length > end) return null;
    const type = sliceType(window.subarray(at + config.lengthSize, Math.min(window.length, at + config.lengthSize + Math.min(length, NAL_WINDOW))), config.hevc, config.extraSliceBits);
    if (type) return type;
    pos = body + length;
  }
  return null;
}
