/**
 * Runs the built CLI (`node dist/src/cli/main.js`) the way Git does, and makes throwaway Git
 * repositories under the system temp directory.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/helpers/cli.js → dist/src/cli/main.js */
export const cliPath = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** dist/test/helpers/cli.js → bin/git-panini, what `npm install -g` puts on PATH */
export const launcherPath = fileURLToPath(new URL('../../../bin/git-panini', import.meta.url));

export interface RunResult {
  status: number;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Bytes for stdin (piped). */
  input?: Buffer | string;
  /** A file to use as stdin instead (a regular file descriptor, as a `< file` redirect gives). */
  stdinFile?: string;
  /** A file to send stdout to instead of capturing it (for outputs too big to hold). */
  stdoutFile?: string;
  /** Added to the hermetic environment. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/**
 * The environment every child gets: no user or system Git config, no PANINI_* settings leaking
 * in from the caller, a fixed identity so commits work.
 */
export function hermeticEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PANINI_') && !k.startsWith('GIT_')) env[k] = v;
  return {
    ...env,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Panini Test',
    GIT_AUTHOR_EMAIL: 'test@panini.invalid',
    GIT_COMMITTER_NAME: 'Panini Test',
    GIT_COMMITTER_EMAIL: 'test@panini.invalid',
    ...extra,
  };
}

function spawnWith(command: string, args: readonly string[], options: RunOptions): RunResult {
  const fds: number[] = [];
  const open = (file: string, flags: string): number => {
    const fd = openSync(file, flags);
    fds.push(fd);
    return fd;
  };
  try {
    const stdin = options.stdinFile ? open(options.stdinFile, 'r') : 'pipe';
    const stdout = options.stdoutFile ? open(options.stdoutFile, 'w') : 'pipe';
    const r = spawnSync(command, args, {
      cwd: options.cwd,
      input: options.stdinFile ? undefined : options.input ?? '',
      env: hermeticEnv(options.env),
      stdio: [stdin, stdout, 'pipe'],
      maxBuffer: 256 * 1024 * 1024,
      timeout: options.timeoutMs ?? 60_000,
    });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, stdout: r.stdout ?? Buffer.alloc(0), stderr: (r.stderr ?? Buffer.alloc(0)).toString() };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** `git panini <args>` through the compiled CLI. */
export function runCli(args: readonly string[], options: RunOptions = {}): RunResult {
  return spawnWith(process.execPath, [cliPath, ...args], options);
}

/** Runs git; throws with git's message if it fails (tests only call git for setup). */
export function git(cwd: string, args: readonly string[], options: Omit<RunOptions, 'cwd'> = {}): string {
  const r = spawnWith('git', args, { ...options, cwd });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.toString();
}

export interface TempRepo {
  /** Worktree top (real path, no symlinks). */
  dir: string;
  /** Where the local store lives by default: <dir>/.git/panini. */
  store: string;
  dispose(): void;
}

/**
 * Memory-backed temp space when the system has it (Linux /dev/shm): for tests that create and
 * delete tens of thousands of atom files, which a disk mounted with `discard` makes very slow.
 */
export const fastTmpdir = (): string => (existsSync('/dev/shm') && statSync('/dev/shm').isDirectory() ? '/dev/shm' : tmpdir());

/** A fresh temporary directory, real path; removed by `dispose`. */
export function tempDir(label = 'panini-test-', base = tmpdir()): { dir: string; dispose(): void } {
  const dir = realpathSync(mkdtempSync(path.join(base, label)));
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `git init` in a new temp directory, with a user configured. Pass `after` to clean up automatically. */
export function tempRepo(after?: (fn: () => void) => void): TempRepo {
  const { dir, dispose } = tempDir('panini-repo-');
  git(dir, ['init', '-q', '-b', 'main']);
  git(dir, ['config', 'user.name', 'Panini Test']);
  git(dir, ['config', 'user.email', 'test@panini.invalid']);
  git(dir, ['config', 'commit.gpgsign', 'false']);
  const repo = { dir, store: path.join(dir, '.git', 'panini'), dispose };
  after?.(dispose);
  return repo;
}
