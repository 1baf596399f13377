/**
 * isTerminal: progress is drawn on a terminal only, and finding out makes no `process.stderr`
 * (a pipe's stream loads Node's `net` modules in every clone's filter process).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/cli.js';

const io = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'io.js');
/** Prints whether fd 2 is a terminal, then whether anything loaded `net`. */
const probe = `import(${JSON.stringify(io)}).then(({ isTerminal }) => { const t = isTerminal(2); const net = process.moduleLoadList.includes('NativeModule net'); process.stdout.write(t + ' ' + net + '\\n'); })`;

test('a terminal is told from a pipe, a file and /dev/null; a pipe or a file loads nothing more', (t) => {
  const run = (stderr: 'pipe' | number | 'ignore'): string => {
    const r = spawnSync(process.execPath, ['-e', probe], { stdio: ['ignore', 'pipe', stderr], encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr ?? '');
    return r.stdout.trim();
  };
  assert.equal(run('pipe'), 'false false', 'a pipe');
  assert.match(run('ignore'), /^false /, '/dev/null: a character device, not a terminal');
  const { dir, dispose } = tempDir('panini-tty-');
  t.after(dispose);
  const file = path.join(dir, 'stderr.txt');
  const r = spawnSync('sh', ['-c', `"$0" -e "$1" 2>"$2"`, process.execPath, probe, file], { encoding: 'utf8' });
  assert.equal(r.stdout.trim(), 'false false', 'a file');
  // A pseudo-terminal, as an interactive `git clone` gives its filter.
  const pty = spawnSync('script', ['-qec', `"${process.execPath}" -e '${probe.replace(/'/g, `'\\''`)}'`, '/dev/null'], { encoding: 'utf8' });
  assert.equal(pty.status, 0, pty.stderr);
  assert.match(pty.stdout, /^true (true|false)\s*$/, 'a terminal');
});
