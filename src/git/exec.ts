import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { PaniniError } from '../errors.js';

export interface GitResult {
  status: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs git synchronously; never throws for a non-zero exit (the caller decides). */
export function git(args: readonly string[], options: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): GitResult {
  const spawnOptions: SpawnSyncOptions = {
    cwd: options.cwd,
    input: options.input,
    env: options.env,
    maxBuffer: 1024 * 1024 * 1024,
  };
  const r = spawnSync('git', args, spawnOptions);
  if (r.error) throw new PaniniError(`could not run git: ${r.error.message}`, 'install Git and make sure `git` is on PATH');
  return { status: r.status ?? 1, stdout: r.stdout as Buffer, stderr: (r.stderr as Buffer).toString() };
}

/** Runs git and returns trimmed stdout; throws PaniniError with git's message on failure. */
export function gitText(args: readonly string[], cwd?: string): string {
  const r = git(args, { cwd });
  if (r.status !== 0) throw new PaniniError(`git ${args[0]} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout.toString().replace(/\n$/, '');
}
