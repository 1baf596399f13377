/**
 * Shared helpers for the benchmarks: temp dirs, seeded data, timing child processes with their peak
 * RSS, running git-panini and Git LFS side by side in throwaway repositories, and printing results
 * with the panini/LFS ratio. Benchmarks make no assertions; they print what they measured.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { closeSync, mkdirSync, symlinkSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { formatBytes } from '../src/cli/stats.js';
import { fileURLToPath } from 'node:url';

/** bin/git-panini, the launcher `npm install -g` puts on PATH */
const launcherPath = fileURLToPath(new URL('../../bin/git-panini', import.meta.url));
const floorFilterPath = fileURLToPath(new URL('./floor-filter.js', import.meta.url));

/**
 * A `filter.panini.process` value that runs floor-filter.ts: every file Git asks for is answered
 * with its bytes from `checkout`, nothing else done (the least a Node filter process takes). Node
 * starts without NODE_EXTRA_CA_CERTS, as git-panini's launcher starts it (parsing a system bundle
 * costs ~60 ms).
 */
export function floorFilterCommand(checkout: string): string {
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return ['env', '-u', 'NODE_EXTRA_CA_CERTS', process.execPath, floorFilterPath, checkout].map(quote).join(' ');
}

export const cores = cpus().length;

export interface TempDir {
  dir: string;
  dispose(): void;
}

/** A fresh directory under the system temp dir (real path). */
export function tempDir(label = 'panini-bench-'): TempDir {
  const dir = realpathSync(mkdtempSync(path.join(tmpdir(), label)));
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs `body` with a temp dir that is removed afterwards, whatever happens. */
export async function withTempDir<T>(label: string, body: (dir: string) => T | Promise<T>): Promise<T> {
  const t = tempDir(label);
  try {
    return await body(t.dir);
  } finally {
    t.dispose();
  }
}

/** mulberry32: seeded, so every run benchmarks the same bytes. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded stream of pseudo-random bytes (AES-128-CTR over zeros: deterministic and ~1 GB/s). */
export function randomBytesStream(seed: number): (buf: Buffer) => Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (buf) => {
    buf.fill(0);
    const out = cipher.update(buf);
    out.copy(buf);
    return buf;
  };
}

/** Writes `bytes` of seeded random data to `file` in 4 MiB pieces (never all in memory). */
export function writeRandomFile(file: string, bytes: number, seed: number): void {
  const fill = randomBytesStream(seed);
  const piece = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(piece.length, bytes - done);
      fill(piece.subarray(0, n));
      for (let off = 0; off < n; ) off += writeSync(fd, piece, off, n - off);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** `count` files of `minBytes`–`maxBytes` random bytes under `dir` (100 per subdirectory); returns their total size. */
export function writeSmallFiles(dir: string, count: number, minBytes: number, maxBytes: number, seed: number, ext = 'bin'): number {
  const next = seededRandom(seed);
  const fill = randomBytesStream(seed);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const sub = path.join(dir, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    const size = minBytes + Math.floor(next() * (maxBytes - minBytes + 1));
    writeFileSync(path.join(sub, `f${String(i).padStart(5, '0')}.${ext}`), fill(Buffer.allocUnsafe(size)));
    total += size;
  }
  return total;
}

export interface Measured {
  /** Wall-clock milliseconds. */
  ms: number;
  /** Peak resident set of the largest process in the tree, KiB (from GNU time), or null if unavailable. */
  peakRssKb: number | null;
  stdout: string;
  stderr: string;
}

const GNU_TIME = '/usr/bin/time';
const hasGnuTime = spawnSync(GNU_TIME, ['-f', '%M', 'true']).status === 0;

/**
 * Runs a command to completion and measures it. Peak RSS comes from GNU time's %M (the maximum over
 * the command and its waited-for children, as getrusage reports it); without GNU time it is null.
 * Throws with the command's stderr if it fails: a benchmark of a failed run means nothing.
 */
export function measure(command: string, args: readonly string[], options: SpawnSyncOptions = {}): Measured {
  const rssFile = hasGnuTime ? path.join(tmpdir(), `panini-bench-rss-${process.pid}-${Date.now()}`) : null;
  const [cmd, argv] = rssFile ? [GNU_TIME, ['-f', '%M', '-o', rssFile, command, ...args]] : [command, [...args]];
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { maxBuffer: 64 * 1024 * 1024, timeout: 30 * 60_000, ...options });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  let peakRssKb: number | null = null;
  if (rssFile) {
    try {
      peakRssKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) || null;
    } catch {
      peakRssKb = null;
    }
    rmSync(rssFile, { force: true });
  }
  const stdout = r.stdout?.toString() ?? '';
  const stderr = r.stderr?.toString() ?? '';
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${stderr.trim()}`);
  return { ms, peakRssKb, stdout, stderr };
}

/** Times a function in this process. */
export async function timeIt<T>(body: () => T | Promise<T>): Promise<{ ms: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await body();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

/** This process's own peak RSS so far, KiB (VmHWM from /proc, else Node's maxRSS). */
export function selfPeakRssKb(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS;
}

/**
 * A directory holding an executable `git-panini` that runs the built CLI, and an environment whose
 * PATH finds it first, so `git panini …` and the filter driver run this checkout's build. Git's
 * user and system config are left out so the user's own filters and hooks cannot skew the figures.
 */
export function paniniEnvironment(root: string): NodeJS.ProcessEnv {
  const binDir = path.join(root, 'bin');
  mkdirSync(binDir, { recursive: true });
  symlinkSync(launcherPath, path.join(binDir, 'git-panini')); // as `npm install -g` links it
  const globalConfig = path.join(root, 'gitconfig');
  writeFileSync(globalConfig, '[user]\n\tname = Panini Bench\n\temail = bench@panini.invalid\n[init]\n\tdefaultBranch = main\n');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_') && !k.startsWith('PANINI_')) env[k] = v;
  const PATH = [binDir, path.dirname(process.execPath), process.env.PATH ?? ''].join(path.delimiter); // the launcher runs `node`
  return { ...env, PATH, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: globalConfig };
}

/** Git LFS's version line, installing Debian's git-lfs package when it is missing and we may (root). */
export function ensureGitLfs(): string | null {
  const probe = (): string | null => {
    const r = spawnSync('git', ['lfs', 'version']);
    return r.status === 0 ? r.stdout.toString().trim() : null;
  };
  const found = probe();
  if (found || process.getuid?.() !== 0) return found;
  process.stderr.write('git-lfs not found: installing the Debian package...\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  spawnSync('apt-get', ['install', '-y', '-qq', 'git-lfs'], { stdio: 'inherit', env });
  return probe();
}

export type Tool = 'panini' | 'lfs';

/**
 * A throwaway repository set up for one tool: `git panini install --local` + `track`, or
 * `git lfs install --local` + `track`, with the same patterns.
 */
export function setupRepo(tool: Tool, dir: string, env: NodeJS.ProcessEnv, patterns: readonly string[]): void {
  mkdirSync(dir, { recursive: true });
  const run = (args: string[]): void => void measure('git', args, { cwd: dir, env });
  run(['init', '-q', '-b', 'main']);
  if (tool === 'panini') {
    run(['panini', 'install', '--local']);
    run(['panini', 'track', ...patterns]);
  } else {
    run(['lfs', 'install', '--local']);
    run(['lfs', 'track', ...patterns]);
  }
  run(['add', '.gitattributes']);
  run(['commit', '-q', '-m', 'track']);
}

export interface Row {
  name: string;
  panini: Measured | null;
  lfs: Measured | null;
  /** Extra note (sizes, rates). */
  note?: string;
}

export function formatMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

/** One byte formatter for the CLI and the benchmarks. */
export { formatBytes };

function rss(m: Measured | null): string {
  return m?.peakRssKb ? formatBytes(m.peakRssKb * 1024) : '-';
}

/** Prints a Markdown table: time and peak RSS of each tool, and the panini/LFS time ratio. */
export function printTable(title: string, rows: readonly Row[]): void {
  const header = ['operation', 'git-panini', 'Git LFS', 'ratio panini/lfs', 'peak RSS panini', 'peak RSS lfs', 'note'];
  const lines = rows.map((r) => [
    r.name,
    r.panini ? formatMs(r.panini.ms) : '-',
    r.lfs ? formatMs(r.lfs.ms) : '-',
    r.panini && r.lfs ? (r.panini.ms / r.lfs.ms).toFixed(2) : '-',
    rss(r.panini),
    rss(r.lfs),
    r.note ?? '',
  ]);
  const out = [`\n## ${title}`, `(${cores} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)})`, '',
    `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...lines.map((l) => `| ${l.join(' | ')} |`)];
  process.stdout.write(out.join('\n') + '\n');
}
