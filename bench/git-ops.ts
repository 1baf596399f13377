/**
 * Everyday Git operations, git-panini against Git LFS in the same run on the same bytes:
 * `git add` and `git checkout` of 2,000 files of 8–64 KB, and `git add` and `git checkout` of one
 * large file (1 GiB; PANINI_BENCH_BIG_MB changes it). Run: `node dist/bench/git-ops.js`.
 */
import { linkSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import {
  cores, ensureGitLfs, formatBytes, measure, paniniEnvironment, printTable, setupRepo, tempDir, writeRandomFile, writeSmallFiles,
  type Measured, type Row, type Tool,
} from './lib.js';

const SMALL_COUNT = 2000;
const SMALL_MIN = 8 * 1024;
const SMALL_MAX = 64 * 1024;
const BIG_BYTES = Number(process.env.PANINI_BENCH_BIG_MB ?? 1024) * 1024 * 1024;

/**
 * Each operation runs for git-panini, then at once for Git LFS, so both meet the same machine load
 * (other processes, page cache) as nearly as a sequential run allows.
 */
function sideBySide<T>(tools: readonly Tool[], step: (tool: Tool) => T): Map<Tool, T> {
  return new Map(tools.map((tool) => [tool, step(tool)]));
}

function benchAll(tools: readonly Tool[], root: string, env: NodeJS.ProcessEnv, bigFile: string): Row[] {
  const git = (cwd: string, args: string[]): Measured => measure('git', args, { cwd, env });
  const small = (tool: Tool): string => path.join(root, `${tool}-small`);
  const big = (tool: Tool): string => path.join(root, `${tool}-big`);
  for (const tool of tools) {
    setupRepo(tool, small(tool), env, ['*.bin']);
    git(small(tool), ['branch', 'empty']); // the commit with only .gitattributes: checking it out removes the files
    writeSmallFiles(small(tool), SMALL_COUNT, SMALL_MIN, SMALL_MAX, 2000);
    setupRepo(tool, big(tool), env, ['*.bin']);
    linkSync(bigFile, path.join(big(tool), 'big.bin')); // same bytes for both tools without a second copy
  }

  const addSmall = sideBySide(tools, (tool) => git(small(tool), ['add', '.']));
  for (const tool of tools) {
    git(small(tool), ['commit', '-q', '-m', 'small files']);
    git(small(tool), ['checkout', '-q', 'empty']);
  }
  const checkoutSmall = sideBySide(tools, (tool) => git(small(tool), ['checkout', '-q', 'main']));
  for (const tool of tools) {
    const status = git(small(tool), ['status', '--porcelain']).stdout;
    if (status !== '') throw new Error(`${tool}: worktree not clean after checkout:\n${status.slice(0, 500)}`);
  }
  const addBig = sideBySide(tools, (tool) => git(big(tool), ['add', 'big.bin']));
  for (const tool of tools) {
    git(big(tool), ['commit', '-q', '-m', 'big file']);
    rmSync(path.join(big(tool), 'big.bin')); // the hard link: the source file stays
  }
  const checkoutBig = sideBySide(tools, (tool) => git(big(tool), ['checkout', '--', 'big.bin']));
  for (const tool of tools) {
    if (statSync(path.join(big(tool), 'big.bin')).size !== BIG_BYTES) throw new Error(`${tool}: the big file did not check out whole`);
  }

  const rate = (m: Measured | undefined): string => (m ? `${(BIG_BYTES / (m.ms / 1000) / 1e6).toFixed(0)} MB/s` : '-');
  return [
    { name: `git add, ${SMALL_COUNT} files of 8–64 KB`, panini: addSmall.get('panini')!, lfs: addSmall.get('lfs') ?? null },
    { name: `git checkout, ${SMALL_COUNT} files of 8–64 KB`, panini: checkoutSmall.get('panini')!, lfs: checkoutSmall.get('lfs') ?? null },
    {
      name: `git add, one ${formatBytes(BIG_BYTES)} random file`, panini: addBig.get('panini')!, lfs: addBig.get('lfs') ?? null,
      note: `panini ${rate(addBig.get('panini'))}, lfs ${rate(addBig.get('lfs'))}`,
    },
    {
      name: `git checkout of that file`, panini: checkoutBig.get('panini')!, lfs: checkoutBig.get('lfs') ?? null,
      note: `panini ${rate(checkoutBig.get('panini'))}, lfs ${rate(checkoutBig.get('lfs'))}`,
    },
  ];
}

function main(): void {
  const lfsVersion = ensureGitLfs();
  const work = tempDir('panini-bench-git-ops-');
  try {
    const env = paniniEnvironment(work.dir);
    const bigFile = path.join(work.dir, 'big-source.bin');
    writeRandomFile(bigFile, BIG_BYTES, 1);
    process.stdout.write(`git-ops: ${cores} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ${measure('git', ['version']).stdout.trim()}; ${lfsVersion ?? 'Git LFS not available'}\n`);

    const rows = benchAll(lfsVersion ? ['panini', 'lfs'] : ['panini'], work.dir, env, bigFile);
    printTable('Git operations: git-panini vs Git LFS', rows);
  } finally {
    work.dispose();
  }
}

main();
