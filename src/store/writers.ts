/**
 * Writers announce themselves to gc (docs/store-format.md, "Writers and gc").
 *
 * The atoms an `add` writes are reachable from nothing until Git writes the index, after the last
 * file is cleaned; with `gc --prune=now` (or any short grace period) a collection running meanwhile
 * would find them unreachable and old enough, and delete them under the add. So a process that may
 * write atoms creates `<store>/writers/<pid>-<random>` (holding "pid host start-ms") before its
 * first write and removes it when it exits. The filter process outlives the index write (Git stops it at its
 * own exit), so while the marker is there, everything the process wrote may still be needed.
 *
 * gc reads the markers before it walks the index and keeps every atom written or refreshed since
 * the oldest live marker was created. A new atom's time comes from the store's file system clock and
 * a refreshed one's from the writer's own clock (utimes), so a marker's time is the earlier of the
 * two: its file's mtime and the start time written in it.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** A marker of another host cannot be checked against its process list: honoured this long. */
const FOREIGN_MARKER_EXPIRY_MS = 24 * 3600 * 1000;

const announced = new Map<string, string>();

export function writersDir(storeRoot: string): string {
  return join(storeRoot, 'writers');
}

/**
 * Marks this process as writing to the store at `storeRoot` until it exits (once per store).
 * Best effort: a store that cannot take the marker (read-only) cannot take atoms either.
 */
export function announceWriter(storeRoot: string): void {
  if (announced.has(storeRoot)) return;
  const dir = writersDir(storeRoot);
  const path = join(dir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    mkdirSync(dir, { recursive: true });
    const fd = openSync(path, 'wx', 0o644);
    try {
      writeSync(fd, writerLine());
    } finally {
      closeSync(fd);
    }
  } catch {
    return;
  }
  if (announced.size === 0) process.once('exit', retireAll);
  announced.set(storeRoot, path);
}

/** Who this process is, as a marker (and a pack journal) records it: "pid host start-ms". */
export function writerLine(): string {
  return `${process.pid} ${hostname()} ${Date.now()}\n`;
}

/**
 * When the writer a line of writerLine() names began, or null if it is gone. A writer of another
 * host cannot be checked against its process list: it counts as live until its file (`mtimeMs`)
 * is FOREIGN_MARKER_EXPIRY_MS old.
 */
export function liveWriterSince(line: string, mtimeMs: number, nowMs: number): number | null {
  const [pidText, host, startText] = line.trim().split(' ');
  const pid = Number(pidText);
  const live = host === hostname() && Number.isSafeInteger(pid) && pid > 0 ? processRuns(pid) : nowMs - mtimeMs < FOREIGN_MARKER_EXPIRY_MS;
  return live ? Math.min(mtimeMs, Number(startText) || mtimeMs) : null;
}

function retireAll(): void {
  for (const path of announced.values()) {
    try { unlinkSync(path); } catch { /* already gone */ }
  }
  announced.clear();
}

export interface WriterScan {
  /** Live writers: processes that may still hand out concepts naming atoms they wrote. */
  active: number;
  /** When the oldest live writer began (its marker's mtime or recorded start, the earlier), or null. */
  oldestMs: number | null;
  /** Markers of processes that are gone (killed: they never removed them). */
  stale: string[];
}

/** The writers of a store, read from their markers. */
export function scanWriters(storeRoot: string, nowMs: number): WriterScan {
  const dir = writersDir(storeRoot);
  const scan: WriterScan = { active: 0, oldestMs: null, stale: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return scan;
  }
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    let since: number | null;
    try {
      since = liveWriterSince(readFileSync(path, 'utf8'), statSync(path).mtimeMs, nowMs);
    } catch {
      continue; // removed by its writer meanwhile
    }
    if (since === null) {
      scan.stale.push(path);
      continue;
    }
    scan.active++;
    if (scan.oldestMs === null || since < scan.oldestMs) scan.oldestMs = since;
  }
  return scan;
}

export interface WriterCutoff extends WriterScan {
  /** The cutoff to use: no later than the given one, the store clock's now, and the oldest writer. */
  cutoffMs: number;
}

/**
 * Makes a gc cutoff safe for writers: call it before reading the index. Atoms written from now on
 * are no older than the store clock's now; atoms of writers already running, no older than their
 * markers.
 */
export function protectWriters(storeRoot: string, cutoffMs: number, nowMs: number): WriterCutoff {
  const clock = storeClockNow(storeRoot);
  const scan = scanWriters(storeRoot, nowMs);
  const bounds = [cutoffMs, nowMs, clock ?? nowMs, scan.oldestMs ?? nowMs];
  return { ...scan, cutoffMs: Math.min(...bounds) };
}

/** Removes the markers of writers that are gone (gc, after its collection). */
export function removeStaleMarkers(paths: readonly string[]): void {
  for (const path of paths) {
    try { unlinkSync(path); } catch { /* removed meanwhile */ }
  }
}

/**
 * The current time on the store's clock: the modification time the store's file system gives a
 * file created now. Atom times are compared with this, so a coarse or skewed file system clock
 * cannot make an atom written after this moment look older than it.
 */
export function storeClockNow(storeRoot: string): number | null {
  const dir = writersDir(storeRoot);
  const probe = join(dir, `.clock-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    mkdirSync(dir, { recursive: true });
    closeSync(openSync(probe, 'wx', 0o644));
    const ms = statSync(probe).mtimeMs;
    unlinkSync(probe);
    return ms;
  } catch {
    return null;
  }
}

/** Whether a process with this pid runs on this host (EPERM: it runs, as another user). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
