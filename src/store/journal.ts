/**
 * Pack journals (docs/store-format.md, "Batched small files"). A filter process that batches the
 * atoms of many small files into one pack (small-files.ts) hands each file's concept to Git before
 * the pack is named. So each new atom is appended to the pack, then recorded here, before the
 * concept goes out: if the process dies before it names the pack, the next process that reads the
 * packs directory names it from the journal (LocalStore), keeping the atoms whose bytes still hash
 * to their record. The journal of `.tmp-<x>.pack` is `.tmp-<x>.journal`:
 *
 *   "pid host start-ms\n" (the writer, as in writers/), then one record per atom:
 *   its SHA-256 (32 bytes), its offset in the pack (u64 BE), its size (u32 BE)
 *
 * A record cut short by the crash is ignored (its atom was never handed out).
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { PackEntry } from './pack.js';
import { writerLine } from './writers.js';

const RECORD_BYTES = 32 + 8 + 4;
const PACK_SUFFIX = '.pack';
const JOURNAL_SUFFIX = '.journal';

export class PackJournal {
  private readonly record = Buffer.alloc(RECORD_BYTES);
  /** Bytes written whole: a failed write is cut back to here, so records stay aligned. */
  private length = 0;
  /** A failed write could not be cut back: no record after it could be read, so none is written. */
  private broken: Error | null = null;

  private constructor(readonly path: string, private fd: number) {}

  /** Starts the journal of the pack being written at `packTmp`. */
  static create(packTmp: string): PackJournal {
    const path = packTmp.slice(0, -PACK_SUFFIX.length) + JOURNAL_SUFFIX;
    const fd = openSync(path, 'wx', 0o444);
    const journal = new PackJournal(path, fd);
    try {
      journal.write(Buffer.from(writerLine()));
    } catch (err) {
      journal.close();
      throw err;
    }
    return journal;
  }

  /** Records an atom whose bytes are in the pack already. */
  add(hash: string, offset: number, size: number): void {
    this.record.write(hash, 0, 'hex');
    this.record.writeBigUInt64BE(BigInt(offset), 32);
    this.record.writeUInt32BE(size, 40);
    this.write(this.record);
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  private write(bytes: Buffer): void {
    if (this.broken) throw this.broken;
    try {
      // At its place, not the file position: after a failed write is cut back, the next one lands there.
      for (let done = 0; done < bytes.length;) done += writeSync(this.fd, bytes, done, bytes.length - done, this.length + done);
      this.length += bytes.length;
    } catch (err) {
      try {
        ftruncateSync(this.fd, this.length);
      } catch {
        this.broken = err as Error;
      }
      throw err;
    }
  }
}

export const isJournalName = (name: string): boolean => name.startsWith('.tmp-') && name.endsWith(JOURNAL_SUFFIX);

/** The pack a journal records. */
export function journaledPack(journalPath: string): string {
  return journalPath.slice(0, -JOURNAL_SUFFIX.length) + PACK_SUFFIX;
}

/** A journal's writer line and its complete records. */
export function readJournal(path: string): { writer: string; entries: PackEntry[] } {
  const raw = readFileSync(path);
  const lineEnd = raw.indexOf(0x0a);
  if (lineEnd < 0) return { writer: raw.toString('latin1'), entries: [] }; // cut in its first line
  const entries: PackEntry[] = [];
  for (let at = lineEnd + 1; at + RECORD_BYTES <= raw.length; at += RECORD_BYTES) {
    entries.push({ hash: raw.toString('hex', at, at + 32), offset: Number(raw.readBigUInt64BE(at + 32)), size: raw.readUInt32BE(at + 40) });
  }
  return { writer: raw.toString('latin1', 0, lineEnd), entries };
}
