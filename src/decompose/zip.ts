/**
 * ZIP (and docx, xlsx, jar, apk ...): per entry, its local header (Metadata), its compressed data
 * (Compressed) and its data descriptor if any (Metadata), so one changed entry leaves the other
 * entries' atoms untouched; then the central directory, the ZIP64 end records and the end record
 * (Container). The central directory is the authority on where entries are; if it is missing or
 * inconsistent, local headers are walked from the start instead.
 * Offsets in the archive are taken relative to the range's start.
 */
import type { Source } from '../source.js';
import type { Decomposer, FormatInfo, Segment } from './types.js';

const LOCAL_SIG = 0x04034b50;
const CENTRAL_SIG = 0x02014b50;
const EOCD_SIG = 0x06054b50;
const EOCD64_SIG = 0x06064b50;
const LOCATOR_SIG = 0x07064b50;
const DESCRIPTOR_SIG = 0x08074b50;
const EOCD_BYTES = Buffer.from([0x50, 0x4b, 0x05, 0x06]);

const LOCAL_SIZE = 30;
const CENTRAL_SIZE = 46;
const EOCD_SIZE = 22;
const EOCD64_SIZE = 56;
const LOCATOR_SIZE = 20;
const MAX_COMMENT = 0xffff;
/** Beyond these the central directory is not read whole; local headers are walked instead. */
const MAX_CENTRAL_BYTES = 64 << 20;
const MAX_ENTRIES = 1_000_000;

const ZIP64_EXTRA = 0x0001;
const FLAG_DESCRIPTOR = 0x0008;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

interface Entry {
  offset: number; // of the local header, absolute
  nameLength: number;
  crc: number;
  compressedSize: number;
  uncompressedSize: number;
}

interface EndRecords {
  /** Where the end records start: the ZIP64 record if any, else the EOCD. */
  recordsStart: number;
  eocd: number;
  eocdEnd: number;
  entries: number;
  cdOffset: number;
  cdSize: number;
  zip64: boolean;
}

/** A 64-bit little-endian field as a number, or null if it is beyond exact integers. */
function readU64(b: Buffer, at: number): number | null {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(v);
}

/**
 * Resolves fields that a ZIP64 extended-information extra field overrides: each 32-bit field that
 * is all ones takes, in order, the next 64-bit value of that extra field. Null if one is missing.
 */
function resolveZip64(extra: Buffer, fields: number[]): number[] | null {
  const wanted = fields.filter((f) => f === U32_MAX).length;
  if (wanted === 0) return fields;
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(p);
    const size = extra.readUInt16LE(p + 2);
    if (p + 4 + size > extra.length) return null;
    if (id === ZIP64_EXTRA) {
      if (size < 8 * wanted) return null;
      let next = p + 4;
      const resolved: number[] = [];
      for (const f of fields) {
        if (f !== U32_MAX) {
          resolved.push(f);
          continue;
        }
        const v = readU64(extra, next);
        if (v === null) return null;
        resolved.push(v);
        next += 8;
      }
      return resolved;
    }
    p += 4 + size;
  }
  return null;
}

/**
 * Finds the end of central directory record, searching backwards through the largest possible
 * comment. A record whose comment ends exactly at the range's end is preferred; otherwise the last
 * one whose comment fits is taken (data after the archive).
 */
function findEnd(src: Source, start: number, end: number): EndRecords | null {
  const tailStart = Math.max(start, end - (EOCD_SIZE + MAX_COMMENT));
  const tail = src.read(tailStart, end - tailStart);
  let found = -1;
  // (lastIndexOf with a negative offset would search from the end again, hence the i > 0 guard)
  for (let i = tail.lastIndexOf(EOCD_BYTES); i >= 0; i = i > 0 ? tail.lastIndexOf(EOCD_BYTES, i - 1) : -1) {
    if (i + EOCD_SIZE > tail.length) continue;
    const recordEnd = i + EOCD_SIZE + tail.readUInt16LE(i + 20);
    if (recordEnd > tail.length) continue; // a signature inside the comment
    if (found < 0) found = i;
    if (recordEnd === tail.length) {
      found = i;
      break;
    }
  }
  if (found < 0) return null;
  const r = tail.subarray(found, found + EOCD_SIZE);
  // Multi-disk archives are not supported (all ones: the ZIP64 record holds the value).
  const disk = r.readUInt16LE(4);
  const cdDisk = r.readUInt16LE(6);
  if ((disk !== 0 && disk !== U16_MAX) || (cdDisk !== 0 && cdDisk !== U16_MAX) || r.readUInt16LE(8) !== r.readUInt16LE(10)) return null;
  const eocd = tailStart + found;
  const records: EndRecords = {
    recordsStart: eocd,
    eocd,
    eocdEnd: eocd + EOCD_SIZE + r.readUInt16LE(20),
    entries: r.readUInt16LE(10),
    cdSize: r.readUInt32LE(12),
    cdOffset: r.readUInt32LE(16),
    zip64: false,
  };
  return eocd - start >= LOCATOR_SIZE ? readZip64(src, start, records) : records;
}

/** If a ZIP64 locator precedes the EOCD, takes counts and offsets from the ZIP64 record instead. */
function readZip64(src: Source, start: number, records: EndRecords): EndRecords | null {
  const locator = src.read(records.eocd - LOCATOR_SIZE, LOCATOR_SIZE);
  if (locator.length < LOCATOR_SIZE || locator.readUInt32LE(0) !== LOCATOR_SIG) return records;
  const offset = readU64(locator, 8);
  if (offset === null || locator.readUInt32LE(4) !== 0) return null;
  const at = start + offset;
  const rec = src.read(at, EOCD64_SIZE);
  if (rec.length < EOCD64_SIZE || rec.readUInt32LE(0) !== EOCD64_SIG) return null;
  const recordSize = readU64(rec, 4);
  // The record (with any extensible data) must end where the locator starts.
  if (recordSize === null || recordSize < EOCD64_SIZE - 12 || at + 12 + recordSize !== records.eocd - LOCATOR_SIZE) return null;
  const entriesOnDisk = readU64(rec, 24);
  const entries = readU64(rec, 32);
  const cdSize = readU64(rec, 40);
  const cdOffset = readU64(rec, 48);
  if (entries === null || cdSize === null || cdOffset === null || entriesOnDisk !== entries) return null;
  if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0) return null;
  return { ...records, recordsStart: at, entries, cdSize, cdOffset, zip64: true };
}

/** Parses the central directory; null if it is too big, inconsistent or not where the end record says. */
function readCentral(src: Source, start: number, records: EndRecords): { entries: Entry[]; zip64: boolean } | null {
  const cdStart = start + records.cdOffset;
  if (records.cdSize > MAX_CENTRAL_BYTES || records.entries > MAX_ENTRIES) return null;
  if (cdStart + records.cdSize !== records.recordsStart) return null;
  const cd = src.read(cdStart, records.cdSize);
  if (cd.length !== records.cdSize) return null;
  const entries: Entry[] = [];
  let zip64 = false;
  let p = 0;
  while (entries.length < records.entries) {
    if (p + CENTRAL_SIZE > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) return null;
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const next = p + CENTRAL_SIZE + nameLength + extraLength + cd.readUInt16LE(p + 32);
    if (next > cd.length) return null;
    const fields = [cd.readUInt32LE(p + 24), cd.readUInt32LE(p + 20), cd.readUInt32LE(p + 42)];
    const extraStart = p + CENTRAL_SIZE + nameLength;
    const resolved = resolveZip64(cd.subarray(extraStart, extraStart + extraLength), fields);
    if (!resolved) return null;
    if (fields.includes(U32_MAX)) zip64 = true;
    const [uncompressedSize, compressedSize, offset] = resolved as [number, number, number];
    entries.push({ offset: start + offset, nameLength, crc: cd.readUInt32LE(p + 16), compressedSize, uncompressedSize });
    p = next;
  }
  return p === cd.length ? { entries, zip64 } : null;
}

/**
 * The size of the data descriptor at `pos`: with or without its signature, 32- or 64-bit sizes,
 * whichever matches the central entry; one that ends exactly at `next` wins a tie. 0 if none does.
 */
function descriptorSize(src: Source, pos: number, next: number, e: Entry): number {
  const b = src.read(pos, 24);
  const matches: number[] = [];
  for (const sig of [true, false]) {
    const at = sig ? 4 : 0;
    if (sig && (b.length < 4 || b.readUInt32LE(0) !== DESCRIPTOR_SIG)) continue;
    if (b.length < at + 12 || b.readUInt32LE(at) !== e.crc) continue;
    if (b.readUInt32LE(at + 4) === e.compressedSize && b.readUInt32LE(at + 8) === e.uncompressedSize) matches.push(at + 12);
    if (b.length >= at + 20 && readU64(b, at + 4) === e.compressedSize && readU64(b, at + 12) === e.uncompressedSize) matches.push(at + 20);
  }
  return matches.find((size) => pos + size === next) ?? matches[0] ?? 0;
}

/** Lays out entries in file order as the central directory describes them; null on any inconsistency. */
function layoutFromCentral(src: Source, start: number, records: EndRecords): { segments: Segment[]; info: FormatInfo } | null {
  const central = readCentral(src, start, records);
  if (!central) return null;
  const cdStart = start + records.cdOffset;
  const entries = [...central.entries].sort((a, b) => a.offset - b.offset);
  const segments: Segment[] = [];
  const gap = (from: number, to: number): void => {
    if (to > from) segments.push({ offset: from, size: to - from, type: 'Raw' });
  };
  let zip64 = records.zip64 || central.zip64;
  let pos = start;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.offset < pos || e.offset + LOCAL_SIZE > cdStart) return null;
    const h = src.read(e.offset, LOCAL_SIZE);
    if (h.length < LOCAL_SIZE || h.readUInt32LE(0) !== LOCAL_SIG || h.readUInt16LE(26) !== e.nameLength) return null;
    const hasDescriptor = (h.readUInt16LE(6) & FLAG_DESCRIPTOR) !== 0;
    const localCompressed = h.readUInt32LE(18);
    if (!hasDescriptor && localCompressed !== U32_MAX && localCompressed !== e.compressedSize) return null;
    if (localCompressed === U32_MAX) zip64 = true;
    const dataStart = e.offset + LOCAL_SIZE + e.nameLength + h.readUInt16LE(28);
    const dataEnd = dataStart + e.compressedSize;
    const next = i + 1 < entries.length ? entries[i + 1]!.offset : cdStart;
    if (dataEnd > next) return null;
    gap(pos, e.offset);
    segments.push({ offset: e.offset, size: dataStart - e.offset, type: 'Metadata' });
    if (dataEnd > dataStart) segments.push({ offset: dataStart, size: e.compressedSize, type: 'Compressed' });
    pos = dataEnd;
    if (hasDescriptor) {
      const size = descriptorSize(src, dataEnd, next, e);
      if (size === 0 || dataEnd + size > next) return null;
      segments.push({ offset: dataEnd, size, type: 'Metadata' });
      if (size === 20 || size === 24) zip64 = true; // 64-bit sizes
      pos += size;
    }
  }
  gap(pos, cdStart);
  if (records.cdSize > 0) segments.push({ offset: cdStart, size: records.cdSize, type: 'Container' });
  if (records.recordsStart < records.eocd) {
    segments.push({ offset: records.recordsStart, size: records.eocd - records.recordsStart, type: 'Container' });
  }
  segments.push({ offset: records.eocd, size: records.eocdEnd - records.eocd, type: 'Container' });
  const info: FormatInfo = { entries: entries.length };
  if (zip64) info.zip64 = 1;
  return { segments, info };
}

/**
 * Walks local headers from the start using the sizes they give, up to the first entry whose size
 * is only in a data descriptor (bit 3) or anything else that does not fit.
 */
function walkLocal(src: Source, start: number, end: number): { segments: Segment[]; info: FormatInfo } {
  const segments: Segment[] = [];
  let zip64 = false;
  let pos = start;
  let entries = 0;
  while (pos + LOCAL_SIZE <= end) {
    const h = src.read(pos, LOCAL_SIZE);
    if (h.length < LOCAL_SIZE || h.readUInt32LE(0) !== LOCAL_SIG || (h.readUInt16LE(6) & FLAG_DESCRIPTOR) !== 0) break;
    const nameLength = h.readUInt16LE(26);
    const extraLength = h.readUInt16LE(28);
    const dataStart = pos + LOCAL_SIZE + nameLength + extraLength;
    if (dataStart > end) break;
    const fields = [h.readUInt32LE(22), h.readUInt32LE(18)];
    const resolved = resolveZip64(src.read(pos + LOCAL_SIZE + nameLength, extraLength), fields);
    if (!resolved) break;
    if (fields.includes(U32_MAX)) zip64 = true;
    const compressedSize = resolved[1]!;
    const dataEnd = dataStart + compressedSize;
    if (dataEnd > end) break;
    segments.push({ offset: pos, size: dataStart - pos, type: 'Metadata' });
    if (dataEnd > dataStart) segments.push({ offset: dataStart, size: compressedSize, type: 'Compressed' });
    entries++;
    pos = dataEnd;
  }
  const info: FormatInfo = { entries };
  if (zip64) info.zip64 = 1;
  return { segments, info };
}

export const zip: Decomposer = {
  format: 'zip',
  detect(head) {
    if (head.length < 4) return false;
    const sig = head.readUInt32LE(0);
    return sig === LOCAL_SIG || sig === EOCD_SIG;
  },
  decompose(src, start, end) {
    const records = findEnd(src, start, end);
    return (records && layoutFromCentral(src, start, records)) ?? walkLocal(src, start, end);
  },
};
