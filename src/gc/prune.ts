/**
 * Deciding and deleting: atoms nothing reaches and last written before the cutoff, temp files
 * left by interrupted writes (older than a day), and concept registry entries for files nothing
 * reaches. A lock keeps two collections apart; each deletion re-checks the file's time first, so
 * an atom an `add` re-used meanwhile (LocalStore.put refreshes it) is kept. Loose atoms are
 * deleted one by one; a pack holding unreachable atoms is rewritten without them (rewritePacks),
 * unless it was written or refreshed since the cutoff.
 */
import { closeSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PaniniError } from '../errors.js';
import { removeUnlessRefreshed, statOrNull, type LocalStore, type StoredAtom } from '../store/local.js';
import { processRuns } from '../store/writers.js';
import { dropDuplicateCopies, mergeSmallPacks, rewritePacks, type MergeResult } from '../store/pack-writer.js';

/** Temp files younger than this may belong to a write still running. */
const TEMP_FILE_EXPIRY_MS = 24 * 3600 * 1000;

export interface FileEntry {
  path: string;
  size: number;
}

export interface PrunePlan {
  /** Atoms nothing reaches, last written before the cutoff. */
  atoms: StoredAtom[];
  /** Atoms nothing reaches but written since the cutoff: kept. */
  recent: { count: number; bytes: number };
  /** Atoms in the store. */
  stored: number;
  temps: FileEntry[];
  /** Concept registry entries (by file oid) of files nothing reaches, last written before the cutoff. */
  concepts: FileEntry[];
  /** The files whose layouts stay, if their packs do (the others are rebuilt from atoms, if ever). */
  liveOids: ReadonlySet<string>;
}

export function planPrune(store: LocalStore, live: ReadonlySet<string>, liveOids: ReadonlySet<string>, cutoffMs: number, nowMs: number, onListed?: (n: number) => void): PrunePlan {
  const plan: PrunePlan = { atoms: [], recent: { count: 0, bytes: 0 }, stored: 0, temps: [], concepts: [], liveOids };
  const tempCutoff = nowMs - TEMP_FILE_EXPIRY_MS;
  const considerTemp = (path: string): void => {
    const st = statOrNull(path);
    if (st?.isFile() && st.mtimeMs < tempCutoff) plan.temps.push({ path, size: st.size });
  };
  // Temp files of interrupted writes, and packs whose index never arrived (or is damaged).
  const considerStray = (path: string): void => {
    const name = path.slice(path.lastIndexOf('/') + 1);
    if (name.startsWith('.tmp-') || name.endsWith('.pack')) considerTemp(path);
  };
  // An atom may be stored twice (loose and packed): it goes only when every copy is old enough.
  const newest = new Map<string, StoredAtom>();
  const consider = (atom: StoredAtom): void => {
    if (live.has(atom.hash)) return;
    const seen = newest.get(atom.hash);
    if (!seen || seen.mtimeMs < atom.mtimeMs) newest.set(atom.hash, atom);
  };
  for (const hash of store.listLooseNames(considerStray)) {
    if (++plan.stored % 10_000 === 0) onListed?.(plan.stored);
    if (live.has(hash)) continue;
    const st = statOrNull(store.atomPath(hash));
    if (st) consider({ hash, size: st.size, mtimeMs: st.mtimeMs }); // else deleted meanwhile
  }
  for (const pack of store.packIndexes(considerStray)) {
    const st = statOrNull(pack.packPath);
    if (!st) continue;
    for (const e of pack.entries()) {
      if (++plan.stored % 10_000 === 0) onListed?.(plan.stored);
      consider({ hash: e.hash, size: e.size, mtimeMs: st.mtimeMs });
    }
  }
  for (const atom of newest.values()) {
    if (atom.mtimeMs < cutoffMs) plan.atoms.push(atom);
    else {
      plan.recent.count++;
      plan.recent.bytes += atom.size;
    }
  }
  for (const name of listDir(store.tmpDir)) considerTemp(join(store.tmpDir, name));
  for (const { oid, path } of store.listConcepts()) {
    if (liveOids.has(oid)) continue;
    const st = statOrNull(path);
    if (st && st.mtimeMs < cutoffMs) plan.concepts.push({ path, size: st.size });
  }
  return plan;
}

export interface PruneResult {
  atoms: { hash: string; size: number }[];
  /** Atoms refreshed by a writer since the plan was made: kept. */
  refreshed: number;
  /** Second copies of atoms (loose and packed, or in two packs) dropped. */
  duplicates: { count: number; bytes: number };
  /** Small packs merged into fewer (mergeSmallPacks). */
  merged: MergeResult;
  temps: number;
  concepts: number;
  /** Layouts of files nothing reaches, or naming packs rewritten or merged (store/layout.ts). */
  layouts: number;
}

export function executePrune(store: LocalStore, plan: PrunePlan, cutoffMs: number, onDeleted?: (done: number, total: number) => void): PruneResult {
  const result: PruneResult = { atoms: [], refreshed: 0, duplicates: { count: 0, bytes: 0 }, merged: { packs: 0, into: 0 }, temps: 0, concepts: 0, layouts: 0 };
  const doomed = new Set<string>();
  for (const [i, atom] of plan.atoms.entries()) {
    const outcome = removeUnlessRefreshed(store.atomPath(atom.hash), cutoffMs);
    if (outcome === 'refreshed') {
      result.refreshed++;
      continue;
    }
    doomed.add(atom.hash); // its packed copies too
    if (outcome === 'removed') result.atoms.push({ hash: atom.hash, size: atom.size });
    if ((i + 1) % 1000 === 0) onDeleted?.(i + 1, plan.atoms.length);
  }
  const loose = new Set(result.atoms.map((a) => a.hash));
  const packed = rewritePacks(store, (hash) => doomed.has(hash), cutoffMs);
  result.refreshed += packed.refreshedPacks;
  for (const e of packed.removed) if (!loose.has(e.hash)) result.atoms.push({ hash: e.hash, size: e.size });
  result.duplicates = dropDuplicateCopies(store);
  result.merged = mergeSmallPacks(store);
  result.layouts = store.pruneLayouts(plan.liveOids, Date.now() - TEMP_FILE_EXPIRY_MS);
  for (const t of plan.temps) if (removeFile(t.path)) result.temps++;
  for (const c of plan.concepts) {
    const st = statOrNull(c.path);
    if (st && st.mtimeMs < cutoffMs && removeFile(c.path)) result.concepts++;
  }
  return result;
}

/**
 * Takes `<store>/gc.lock` for the duration of `body`. A lock left by a process that no longer
 * runs on this host is taken over; any other is respected.
 */
export async function withGcLock<T>(store: LocalStore, body: () => Promise<T>): Promise<T> {
  const path = join(store.root, 'gc.lock');
  const holder = `${process.pid} ${hostname()}\n`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, holder);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return body(); // no store yet: nothing to delete, nothing to guard
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const [pid, host] = readLock(path);
      if (attempt === 0 && host === hostname() && pid !== null && !processRuns(pid)) {
        removeFile(path);
        continue;
      }
      throw new PaniniError(`another git panini gc is running on this store (${path}: pid ${pid ?? '?'} on ${host ?? '?'})`, `wait for it to finish; if it is not running any more, delete ${path}`);
    }
  }
  try {
    return await body();
  } finally {
    removeFile(path);
  }
}

function readLock(path: string): [number | null, string | null] {
  try {
    const [pid, host] = readFileSync(path, 'utf8').trim().split(' ');
    return [Number.isSafeInteger(Number(pid)) ? Number(pid) : null, host ?? null];
  } catch {
    return [null, null];
  }
}

function removeFile(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
