/**
 * readFdPolling on a real pipe (a FIFO fed by another process): what arrives while it polls, what
 * arrives after it gave up polling and blocked, and the end of input, in order and complete.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { nonBlockingPipe, readFdPolling } from '../src/io.js';
import { tempDir } from './helpers/cli.js';

/**
 * A FIFO fed by `sh -c <script>` (its stdout is the FIFO), opened for reading: the blocking
 * descriptor, a non-blocking one of the same pipe, the writer's exit, and what closes them all.
 */
function fifoFrom(script: string): { fd: number; polled: number; exited: Promise<number | null>; close(): void } {
  const dir = tempDir();
  const fifo = path.join(dir.dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const writer = spawn('sh', ['-c', `exec > "$1"; ${script}`, 'sh', fifo], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => writer.on('exit', resolve));
  const fd = openSync(fifo, 'r'); // returns once the writer has opened its end
  const polled = nonBlockingPipe(fd, 'r');
  assert.ok(polled >= 0, 'a FIFO gets a second, non-blocking descriptor');
  return {
    fd, polled, exited,
    close() {
      closeSync(polled);
      closeSync(fd);
      dir.dispose();
    },
  };
}

test('readFdPolling: bytes written during the poll and after it, then end of input', { timeout: 30_000 }, async () => {
  // The writer sends one byte, then two more well after any poll window (which then blocks), then ends.
  const { fd, polled, exited, close } = fifoFrom('printf a; sleep 0.3; printf bc');
  try {
    const buf = Buffer.alloc(16);
    let received = '';
    const started = performance.now();
    for (let reads = 0; reads < 10; reads++) {
      const n = readFdPolling(fd, polled, 5, buf, 0, buf.length);
      if (n === 0) break;
      received += buf.toString('latin1', 0, n);
    }
    assert.equal(received, 'abc');
    assert.ok(performance.now() - started >= 250, 'the last bytes were waited for, not given up on');
    assert.equal(await exited, 0);
  } finally {
    close();
  }
});

test('readFdPolling: pending idle work runs once the input has been quiet that long, then the read waits on', { timeout: 30_000 }, async () => {
  // One byte at once (before the idle time), one after 1 s (well past it, even on a busy machine), then the end.
  const { fd, polled, exited, close } = fifoFrom('printf a; sleep 1; printf b');
  try {
    const buf = Buffer.alloc(16);
    const ran: number[] = [];
    let pending = true;
    const started = performance.now();
    const idle = { afterMs: 50, pending: () => pending, run: () => void ran.push(performance.now() - started) };
    const events: string[] = [];
    for (let reads = 0; reads < 10; reads++) {
      const n = readFdPolling(fd, polled, 1, buf, 0, buf.length, idle);
      if (n === 0) break;
      events.push(`${buf.toString('latin1', 0, n)} after ${ran.length} idle run(s)`);
      if (n > 0) pending = ran.length === 0; // done once: nothing is pending any more
    }
    assert.deepEqual(events, ['a after 0 idle run(s)', 'b after 1 idle run(s)']);
    assert.equal(ran.length, 1, 'nothing pending: the wait for the end of input does not run it again');
    assert.ok(ran[0]! >= 50 && ran[0]! < 990, `it ran after 50 ms of quiet, before the next byte (${ran[0]!.toFixed(1)} ms)`);
    assert.equal(await exited, 0);
  } finally {
    close();
  }
});
