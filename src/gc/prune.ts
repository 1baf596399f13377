/**
 * Deciding and deleting: atoms nothing reaches and last written before the cutoff, temp files
 * left by interrupted writes (older than a day), and concept registry entries for files nothing
 * reaches. A lock keeps two collections apart; each deletion re-checks the file's time first, so
 * an atom an `add` re-used meanwhile (LocalStore.put refreshes it) is kept.
 */
import { closeSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PaniniError } from '../errors.js';
import type { LocalStore, StoredAtom } from '../store/local.js';

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
}

export function planPrune(store: LocalStore, live: ReadonlySet<string>, liveOids: ReadonlySet<string>, cutoffMs: number, nowMs: number, onListed?: (n: number) => void): PrunePlan {
  const plan: PrunePlan = { atoms: [], recent: { count: 0, bytes: 0 }, stored: 0, temps: [], concepts: [] };
  const tempCutoff = nowMs - TEMP_FILE_EXPIRY_MS;
  const considerTemp = (path: string): void => {
    const st = statOrNull(path);
    if (st?.isFile() && st.mtimeMs < tempCutoff) plan.temps.push({ path, size: st.size });
  };
  for (const hash of store.listNames((path) => {
    if (path.slice(path.lastIndexOf('/') + 1).startsWith('.tmp-')) considerTemp(path);
  })) {
    if (++plan.stored % 10_000 === 0) onListed?.(plan.stored);
    if (live.has(hash)) continue;
    const st = statOrNull(store.atomPath(hash));
    if (!st) continue; // deleted meanwhile
    if (st.mtimeMs < cutoffMs) plan.atoms.push({ hash, size: st.size, mtimeMs: st.mtimeMs });
    else {
      plan.recent.count++;
      plan.recent.bytes += st.size;
    }
  }
  for (const name of listDir(store.tmpDir)) considerTemp(join(store.tmpDir, name));
  for (const oid of store.listConcepts()) {
    if (liveOids.has(oid)) continue;
    const path = store.conceptPath(oid);
    const st = statOrNull(path);
    if (st && st.mtimeMs < cutoffMs) plan.concepts.push({ path, size: st.size });
  }
  return plan;
}

export interface PruneResult {
  atoms: { hash: string; size: number }[];
  /** Atoms refreshed by a writer since the plan was made: kept. */
  refreshed: number;
  temps: number;
  concepts: number;
}

export function executePrune(store: LocalStore, plan: PrunePlan, cutoffMs: number, onDeleted?: (done: number, total: number) => void): PruneResult {
  const result: PruneResult = { atoms: [], refreshed: 0, temps: 0, concepts: 0 };
  for (const [i, atom] of plan.atoms.entries()) {
    const path = store.atomPath(atom.hash);
    const st = statOrNull(path);
    if (st && st.mtimeMs >= cutoffMs) result.refreshed++;
    else if (st && removeFile(path)) result.atoms.push({ hash: atom.hash, size: st.size });
    if ((i + 1) % 1000 === 0) onDeleted?.(i + 1, plan.atoms.length);
  }
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

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
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
