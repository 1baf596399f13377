/**
 * Real Git driving the built git-panini the way a user's machine does: a temp bin directory holds
 * `git-panini`, a symbolic link to the launcher bin/git-panini (as `npm install -g` makes), and every
 * git child gets it first on PATH, so `git panini …`, the filter driver and the hooks all find it.
 * Builds on helpers/cli.ts.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { hermeticEnv, launcherPath, tempDir, type RunResult } from './cli.js';

export interface GitRunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  timeoutMs?: number;
}

/**
 * One sandbox per test: a temp root holding the shim and every repository the test makes, removed
 * by `after` (pass `t.after.bind(t)` or node:test's `after`).
 */
export class GitSandbox {
  readonly root: string;
  readonly binDir: string;
  readonly env: NodeJS.ProcessEnv;

  constructor(after: (fn: () => void) => void) {
    const { dir, dispose } = tempDir('panini-git-');
    after(dispose);
    this.root = dir;
    this.binDir = path.join(dir, 'bin');
    mkdirSync(this.binDir);
    symlinkSync(launcherPath, path.join(this.binDir, 'git-panini'));
    // The launcher runs the `node` on PATH: this one.
    this.env = { PATH: [this.binDir, path.dirname(process.execPath), process.env.PATH ?? ''].join(path.delimiter) };
  }

  /** Absolute path of a name inside the sandbox. */
  path(...names: string[]): string {
    return path.join(this.root, ...names);
  }

  /** Runs git and returns what happened, failure included. */
  tryGit(cwd: string, args: readonly string[], options: GitRunOptions = {}): RunResult {
    const r = spawnSync('git', args, {
      cwd,
      input: options.input ?? '',
      env: hermeticEnv({ ...this.env, ...options.env }),
      maxBuffer: 256 * 1024 * 1024,
      timeout: options.timeoutMs ?? 60_000,
    });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
  }

  /** Runs git; throws with its output if it fails. Returns stdout as text. */
  git(cwd: string, args: readonly string[], options: GitRunOptions = {}): string {
    const r = this.tryGit(cwd, args, options);
    if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed (${r.status}) in ${cwd}:\n${r.stderr}${r.stdout.toString()}`);
    return r.stdout.toString();
  }

  /** `git panini <args>` through Git's own dispatch to git-panini on PATH. */
  panini(cwd: string, args: readonly string[], options: GitRunOptions = {}): string {
    return this.git(cwd, ['panini', ...args], options);
  }

  /** `git init` with an identity; `git panini install --local` unless told not to. */
  initRepo(name: string, options: { install?: boolean; bare?: boolean } = {}): string {
    const dir = this.path(name);
    this.git(this.root, ['init', '-q', '-b', 'main', ...(options.bare ? ['--bare'] : []), dir]);
    if (options.bare) return dir;
    this.git(dir, ['config', 'user.name', 'Panini Test']);
    this.git(dir, ['config', 'user.email', 'test@panini.invalid']);
    this.git(dir, ['config', 'commit.gpgsign', 'false']);
    if (options.install ?? true) this.panini(dir, ['install', '--local']);
    return dir;
  }

  /**
   * Clones `source` into a new directory the way a user with a local install would: clone without
   * checkout, `git panini install --local`, then check the branch out. `config` goes into the clone's
   * config before anything is checked out (`git clone --config`). Returns the checkout's result.
   */
  clone(source: string, name: string, options: { config?: Record<string, string>; env?: NodeJS.ProcessEnv; branch?: string } = {}): { dir: string; checkout: RunResult } {
    const dir = this.path(name);
    const config = Object.entries(options.config ?? {}).flatMap(([k, v]) => ['--config', `${k}=${v}`]);
    this.git(this.root, ['clone', '-q', '--no-checkout', ...config, source, dir], { env: options.env });
    this.git(dir, ['config', 'user.name', 'Panini Test']);
    this.git(dir, ['config', 'user.email', 'test@panini.invalid']);
    this.panini(dir, ['install', '--local']);
    const checkout = this.tryGit(dir, ['checkout', '-q', '-f', options.branch ?? 'main'], { env: options.env });
    return { dir, checkout };
  }
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function sha256File(file: string): string {
  return sha256(readFileSync(file));
}

/** Every regular file under `dir` (relative paths), skipping .git. */
export function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.name === '.git') continue;
    if (entry.isDirectory()) out.push(...listFiles(dir, rel));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

/** Moves every file's mtime forward, as `touch` does, so Git must re-read (and re-clean) them. */
export function touchAll(dir: string): void {
  const later = new Date(Date.now() + 5_000);
  for (const file of listFiles(dir)) {
    const full = path.join(dir, file);
    if (statSync(full).isFile()) utimesSync(full, later, later);
  }
}
