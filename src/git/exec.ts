import type * as ChildProcess from 'node:child_process';
import type { Writable } from 'node:stream';
import { PaniniError } from '../errors.js';
import { lazily } from '../lazy.js';

const childProcess = lazily<typeof ChildProcess>('node:child_process');

export interface GitResult {
  status: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs git synchronously; never throws for a non-zero exit (the caller decides). */
export function git(args: readonly string[], options: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): GitResult {
  const spawnOptions: ChildProcess.SpawnSyncOptions = {
    cwd: options.cwd,
    input: options.input,
    env: options.env,
    maxBuffer: 1024 * 1024 * 1024,
  };
  const r = childProcess().spawnSync('git', args, spawnOptions);
  if (r.error) throw new PaniniError(`could not run git: ${r.error.message}`, 'install Git and make sure `git` is on PATH');
  return { status: r.status ?? 1, stdout: r.stdout as Buffer, stderr: (r.stderr as Buffer).toString() };
}

/** Runs git and returns trimmed stdout; throws PaniniError with git's message on failure. */
export function gitText(args: readonly string[], cwd?: string): string {
  const r = git(args, { cwd });
  if (r.status !== 0) throw new PaniniError(`git ${args[0]} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout.toString().replace(/\n$/, '');
}

export interface GitStreamOptions {
  cwd?: string;
  /** Lines written to git's stdin (each followed by a newline) as fast as git reads them. */
  input?: Iterable<string>;
  /** Called with each chunk of stdout as it arrives; a throw stops git and rejects. */
  onStdout(chunk: Buffer): void;
}

const STDIN_BATCH = 64 * 1024;
const MAX_STDERR = 64 * 1024;

/**
 * Runs git with pipes instead of buffers, for outputs too large to hold (a whole history's objects):
 * stdin is fed with backpressure while stdout is consumed chunk by chunk. Resolves with the exit
 * status and (the start of) stderr; never rejects for a non-zero exit.
 */
export function gitStream(args: readonly string[], options: GitStreamOptions): Promise<{ status: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn('git', args, { cwd: options.cwd, stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let failure: unknown = null;
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR) stderr += chunk.toString();
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      if (failure) return;
      try {
        options.onStdout(chunk);
      } catch (err) {
        failure = err;
        child.kill();
      }
    });
    child.on('error', (err) => reject(new PaniniError(`could not run git: ${err.message}`, 'install Git and make sure `git` is on PATH')));
    child.on('close', (code) => (failure ? reject(failure) : resolve({ status: code ?? 1, stderr })));
    if (options.input && child.stdin) void feed(child.stdin, options.input);
  });
}

async function feed(stdin: Writable, lines: Iterable<string>): Promise<void> {
  stdin.on('error', () => undefined); // git exited early: its status says why
  let batch = '';
  for (const line of lines) {
    batch += line + '\n';
    if (batch.length < STDIN_BATCH) continue;
    if (!stdin.write(batch)) await new Promise((r) => stdin.once('drain', r));
    batch = '';
    if (stdin.destroyed) return;
  }
  stdin.end(batch);
}

/** Splits a byte stream on `separator` (newline, NUL) and hands over each complete record as text. */
export function recordSplitter(separator: number, onRecord: (record: string) => void): (chunk: Buffer) => void {
  let tail: Buffer = Buffer.alloc(0);
  return (chunk) => {
    const buf = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
    let start = 0;
    for (let end = buf.indexOf(separator, start); end >= 0; end = buf.indexOf(separator, start)) {
      onRecord(buf.toString('utf8', start, end));
      start = end + 1;
    }
    tail = buf.subarray(start);
  };
}
