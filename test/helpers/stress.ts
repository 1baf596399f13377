/**
 * Shared by the crash-safety and concurrency tests: seeded bulk data, real Git run asynchronously
 * (so a test can act while it runs), finding a running process's descendants through /proc, and
 * checking a local store from the outside (every loose atom and every packed one hashed to its
 * name).
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { hermeticEnv } from './cli.js';
import type { GitSandbox } from './git.js';
import { atomFiles } from './store-files.js';

/**
 * `size` pseudo-random bytes determined by `label`: the AES-128-CTR keystream under a key derived
 * from the label (about 1 GB/s, so tests can make hundreds of MiB of reproducible data).
 */
export function seededBytes(label: string, size: number): Buffer {
  const key = createHash('sha256').update(`git-panini stress ${label}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const out = cipher.update(Buffer.alloc(size));
  cipher.final();
  return out;
}

/** A copy of `bytes` with a few seeded small edits: bytes overwritten and short runs inserted. */
export function edited(bytes: Buffer, rand: (n: number) => number, edits: number): Buffer {
  let out = Buffer.from(bytes);
  for (let i = 0; i < edits; i++) {
    const at = rand(out.length);
    if (i % 2 === 0) {
      out[at] = out[at]! ^ 0x5a;
    } else {
      const insert = Buffer.from(Array.from({ length: 1 + rand(40) }, () => rand(256)));
      out = Buffer.concat([out.subarray(0, at), insert, out.subarray(at)]);
    }
  }
  return out;
}

export interface AsyncRun {
  /** Pid of the spawned git (or other) process. */
  pid: number;
  startedAt: number;
  done: Promise<{ status: number; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string; endedAt: number }>;
  /** True until the process has exited. */
  running(): boolean;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Runs a command asynchronously with the sandbox's PATH and the hermetic environment. The process
 * is killed if it runs past `timeoutMs`, so a test never hangs on it.
 */
export function spawnAsync(sb: GitSandbox, command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; stdinFile?: string; timeoutMs?: number }): AsyncRun {
  const startedAt = Date.now();
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: hermeticEnv({ ...sb.env, ...options.env }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let exited = false;
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => stdout.push(c));
  child.stderr.on('data', (c: Buffer) => stderr.push(c));
  if (options.stdinFile) {
    createReadStream(options.stdinFile).pipe(child.stdin);
  } else {
    child.stdin.end();
  }
  child.stdin.on('error', () => undefined); // a killed child closes its stdin early
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const done = new Promise<{ status: number; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string; endedAt: number }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      resolve({ status: code ?? -1, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString(), endedAt: Date.now() });
    });
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return { pid: child.pid, startedAt, done, running: () => !exited, kill: (signal = 'SIGKILL') => void child.kill(signal) };
}

/** `git <args>` asynchronously in the sandbox. */
export function gitAsync(sb: GitSandbox, cwd: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): AsyncRun {
  return spawnAsync(sb, 'git', args, { cwd, ...options });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Parent pid and command line of a process, or null once it is gone. */
function procInfo(pid: number): { ppid: number; argv: string[] } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    return { ppid: Number(fields[1]), argv };
  } catch {
    return null;
  }
}

/**
 * Running descendants of `root` whose command line matches `match` (Git starts a filter process
 * through `sh -c`, so the filter is a grandchild of the git process).
 */
export function descendantProcesses(root: number, match: (argv: string[]) => boolean): number[] {
  const children = new Map<number, { pid: number; argv: string[] }[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const info = procInfo(Number(name));
    if (!info) continue;
    const list = children.get(info.ppid) ?? [];
    list.push({ pid: Number(name), argv: info.argv });
    children.set(info.ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    for (const c of children.get(queue[i]!) ?? []) {
      if (match(c.argv)) found.push(c.pid);
      queue.push(c.pid);
    }
  }
  return found;
}

/**
 * Bytes a process has written so far, through any descriptor and by all its threads (`wchar` of
 * /proc/<pid>/io); null if the process is gone or the kernel does not account I/O.
 */
export function bytesWritten(pid: number): number | null {
  try {
    const m = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Total size of the regular files under a directory. */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** True for the filter process as the launcher runs it: node running the CLI with `filter-process` (not the launcher's shell before its exec). */
export function isFilterProcess(argv: string[]): boolean {
  return /(^|\/)node[^/]*$/.test(argv[0] ?? '') && argv.includes('filter-process');
}

export interface StoreCheck {
  /** Every atom the store holds, loose or packed. */
  names: Set<string>;
  /** Distinct atoms, and the bytes of every copy checked. */
  atoms: number;
  bytes: number;
  /** Loose atom files or pack entries whose bytes do not hash to their name; damaged pack indexes. */
  corrupt: string[];
  /** `.tmp-…` files in the shard directories and in packs/ (interrupted writes). */
  tempFiles: string[];
  /** `<id>.pack` files without their index (a write interrupted before the index was named). */
  orphanPacks: string[];
}

const PACK_MAGIC = Buffer.from('PANINI-PACK 1\n\0\0', 'latin1');
const IDX_MAGIC = Buffer.from('PANINI-IDX 1\n\0\0\0', 'latin1');

/**
 * Hashes every atom of a store directly, without git-panini's code: each loose atom file, and each
 * entry of each pack through its index (docs/store-format.md, "Packs"), index checksum included.
 */
export function checkStore(store: string): StoreCheck {
  const result: StoreCheck = { names: new Set(), atoms: 0, bytes: 0, corrupt: [], tempFiles: [], orphanPacks: [] };
  const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
  for (const [hash, file] of atomFiles(store)) {
    const bytes = readFileSync(file);
    result.names.add(hash);
    result.bytes += bytes.length;
    if (sha(bytes) !== hash) result.corrupt.push(`${hash} (loose, ${bytes.length} bytes)`);
  }
  Object.assign(result, interruptedWrites(store));
  const packs = path.join(store, 'packs');
  const names = filesIn(packs);
  for (const name of names.filter((n) => /^[0-9a-f]{64}\.idx$/.test(n))) {
    const id = name.slice(0, 64);
    const idx = readFileSync(path.join(packs, name));
    const body = idx.subarray(0, idx.length - 32);
    const count = idx.length >= 56 ? idx.readUInt32BE(16) : -1;
    if (!idx.subarray(0, 16).equals(IDX_MAGIC) || sha(body) !== id || idx.subarray(body.length).toString('hex') !== id || body.length !== 24 + count * 44) {
      result.corrupt.push(`pack index ${name}`);
      continue;
    }
    let pack: Buffer;
    try {
      pack = readFileSync(path.join(packs, `${id}.pack`));
    } catch {
      result.corrupt.push(`pack ${id}: index without pack`);
      continue;
    }
    if (!pack.subarray(0, 16).equals(PACK_MAGIC)) result.corrupt.push(`pack ${id}: bad header`);
    for (let i = 0; i < count; i++) {
      const hash = idx.subarray(24 + i * 32, 24 + (i + 1) * 32).toString('hex');
      const offset = Number(idx.readBigUInt64BE(24 + count * 32 + i * 8));
      const size = idx.readUInt32BE(24 + count * 40 + i * 4);
      const bytes = pack.subarray(offset, offset + size);
      result.names.add(hash);
      result.bytes += bytes.length;
      if (bytes.length !== size || sha(bytes) !== hash) result.corrupt.push(`${hash} (in pack ${id} at ${offset}, ${size} bytes)`);
    }
  }
  result.atoms = result.names.size;
  return result;
}

/** What interrupted writes leave: temp files (atoms/ shards and packs/) and packs without an index. */
export function interruptedWrites(store: string): { tempFiles: string[]; orphanPacks: string[] } {
  const tempFiles = listTemp(path.join(store, 'atoms'));
  const orphanPacks: string[] = [];
  const packs = path.join(store, 'packs');
  const names = filesIn(packs);
  for (const name of names) {
    const full = path.join(packs, name);
    if (name.startsWith('.tmp-')) tempFiles.push(full);
    else if (name.endsWith('.pack') && !names.includes(`${name.slice(0, -5)}.idx`)) orphanPacks.push(full);
  }
  return { tempFiles, orphanPacks };
}

/** The names of every atom a store holds, loose or packed (indexes read, nothing hashed). */
export function storeAtomNames(store: string): Set<string> {
  const names = new Set(atomFiles(store).keys());
  const packs = path.join(store, 'packs');
  for (const name of filesIn(packs).filter((n) => /^[0-9a-f]{64}\.idx$/.test(n))) {
    const idx = readFileSync(path.join(packs, name));
    if (idx.length < 56 || !idx.subarray(0, 16).equals(IDX_MAGIC)) continue;
    const count = idx.readUInt32BE(16);
    for (let i = 0; i < count && 24 + (i + 1) * 32 <= idx.length; i++) names.add(idx.subarray(24 + i * 32, 24 + (i + 1) * 32).toString('hex'));
  }
  return names;
}

function listTemp(dir: string): string[] {
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listTemp(p));
    else if (e.name.startsWith('.tmp-')) out.push(p);
  }
  return out;
}

/** Files directly in a directory (none if it does not exist). */
export function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => statSync(path.join(dir, n)).isFile());
  } catch {
    return [];
  }
}

/** `git init` at an exact path (GitSandbox.initRepo puts repositories under its own root). */
export function initRepoAt(sb: GitSandbox, dir: string, config: Record<string, string> = {}): string {
  sb.git(path.dirname(dir), ['init', '-q', '-b', 'main', dir]);
  const settings = { 'user.name': 'Panini Test', 'user.email': 'test@panini.invalid', 'commit.gpgsign': 'false', ...config };
  for (const [k, v] of Object.entries(settings)) sb.git(dir, ['config', k, v]);
  sb.panini(dir, ['install', '--local']);
  return dir;
}
