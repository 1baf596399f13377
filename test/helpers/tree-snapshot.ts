/**
 * What a directory tree looks like, to prove a command changed nothing outside where it may write:
 * every entry's kind, mode, size, mtime and (for files) SHA-256, compared before and after. And the
 * access times of chosen files, to prove they were not even read (see `readTracker`).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, lstatSync, openSync, readFileSync, readdirSync, readlinkSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Entry {
  kind: 'file' | 'dir' | 'link' | 'other';
  mode: number;
  size: number;
  mtimeMs: number;
  /** File content hash, or a link's target. */
  content?: string;
}

export type Snapshot = Map<string, Entry>;

/**
 * Every entry under `root`, by path relative to it. `skip(rel)` leaves an entry (and, for a
 * directory, everything under it) out. Directory mtimes are not recorded: an entry added or
 * removed shows as itself.
 */
export function snapshotTree(root: string, skip: (rel: string) => boolean = () => false): Snapshot {
  const out: Snapshot = new Map();
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip(r)) continue;
      const full = path.join(root, r);
      const st = lstatSync(full);
      if (st.isDirectory()) {
        out.set(r, { kind: 'dir', mode: st.mode, size: 0, mtimeMs: 0 });
        walk(r);
      } else if (st.isFile()) {
        out.set(r, { kind: 'file', mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, content: createHash('sha256').update(readQuietly(full)).digest('hex') });
      } else if (st.isSymbolicLink()) {
        out.set(r, { kind: 'link', mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, content: readlinkSync(full) });
      } else {
        out.set(r, { kind: 'other', mode: st.mode, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
  };
  walk('');
  return out;
}

/** A file's bytes without touching its access time (O_NOATIME: the owner or root), so snapshots do not disturb readTracker. */
function readQuietly(file: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOATIME ?? 0));
  } catch {
    fd = openSync(file, 'r');
  }
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The differences, one line each ("added x", "removed y", "changed z (size, content)"); empty if none. */
export function diffSnapshots(before: Snapshot, after: Snapshot): string[] {
  const lines: string[] = [];
  for (const [p, a] of after) {
    const b = before.get(p);
    if (!b) {
      lines.push(`added ${p}`);
      continue;
    }
    const what = (['kind', 'mode', 'size', 'mtimeMs', 'content'] as const).filter((k) => a[k] !== b[k]);
    if (what.length > 0) lines.push(`changed ${p} (${what.join(', ')})`);
  }
  for (const p of before.keys()) if (!after.has(p)) lines.push(`removed ${p}`);
  return lines;
}

/**
 * Detects reads of files through their access time. Each file gets an atime a day before its
 * mtime, which any read then moves forward, on `strictatime` and on Linux's default `relatime`
 * (it updates an atime older than the mtime). Under `noatime` reads leave no trace: `works` says
 * whether a probe read in `probeDir` was seen, so a test can say it could not check. Call it before
 * taking a snapshot of the same files (it sets their mtimes to whole seconds).
 */
export function readTracker(files: string[], probeDir: string): { works: boolean; read(): string[] } {
  // Whole seconds: the mtime set here is the one later snapshots see, with no rounding in between.
  const backdate = (file: string): number => {
    const mtime = Math.floor(statSync(file).mtimeMs / 1000);
    utimesSync(file, mtime - 86_400, mtime);
    return statSync(file).atimeMs;
  };
  const probe = path.join(probeDir, '.atime-probe');
  writeFileSync(probe, 'probe');
  const probeAtime = backdate(probe);
  readFileSync(probe);
  const works = statSync(probe).atimeMs !== probeAtime;
  const atimes = new Map(files.map((f) => [f, backdate(f)]));
  return {
    works,
    read: () => files.filter((f) => statSync(f).atimeMs !== atimes.get(f)),
  };
}
