/**
 * Bounded memory across many large files: one `git add` of twelve 36 MiB files runs them all
 * through one filter process, each through a pack writer whose worker thread and 64 MiB ring would
 * add up if every file had its own (1.3 GB for thirty files before they were reused). The filter's
 * peak resident set is read from /proc while it runs (Linux).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { GitSandbox, sha256, sha256File } from './helpers/git.js';
import { descendantProcesses, gitAsync, isFilterProcess, seededBytes, sleep } from './helpers/stress.js';

const MiB = 1024 * 1024;
const FILES = 12;
const PEAK_LIMIT_MIB = 300;

/** VmHWM of a process in MiB, or null once it is gone. */
function peakMiB(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

test(`git add of ${FILES} files of 36 MiB: the filter process stays under ${PEAK_LIMIT_MIB} MiB, and every file checks out`, { timeout: 180_000 }, async (t) => {
  if (!existsSync('/proc/self/status')) {
    t.skip('needs /proc to read the filter process\'s peak memory');
    return;
  }
  const sb = new GitSandbox(t.after.bind(t));
  const repo = sb.initRepo('repo');
  sb.panini(repo, ['track', '*.bin']);
  const hashes = new Map<string, string>();
  for (let i = 0; i < FILES; i++) {
    const bytes = seededBytes(`memory ${i}`, 36 * MiB);
    writeFileSync(path.join(repo, `f${i}.bin`), bytes);
    hashes.set(`f${i}.bin`, sha256(bytes));
  }

  const add = gitAsync(sb, repo, ['add', '.'], { timeoutMs: 150_000 });
  let peak = 0;
  let seen = false;
  while (add.running()) {
    for (const pid of descendantProcesses(add.pid, isFilterProcess)) {
      const now = peakMiB(pid);
      if (now !== null) {
        seen = true;
        peak = Math.max(peak, now);
      }
    }
    await sleep(10);
  }
  const result = await add.done;
  assert.equal(result.status, 0, result.stderr);
  assert.ok(seen, 'the filter process was found while it ran');
  t.diagnostic(`filter process peak: ${peak.toFixed(0)} MiB for ${FILES} files of 36 MiB`);
  assert.ok(peak < PEAK_LIMIT_MIB, `the filter process peaked at ${peak.toFixed(0)} MiB`);

  sb.git(repo, ['commit', '-q', '-m', 'large files']);
  for (const name of hashes.keys()) rmSync(path.join(repo, name));
  sb.git(repo, ['checkout', '--', '.']);
  for (const [name, hash] of hashes) assert.equal(sha256File(path.join(repo, name)), hash, `${name} checks out bit for bit`);
});
