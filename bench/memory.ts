/**
 * Memory: a large file (2 GiB by default; PANINI_BENCH_MEMORY_MB=<n>) through clean and smudge,
 * git-panini against Git LFS in the same run, with each process's peak RSS (GNU time's %M).
 * The smudged output is compared with the input. Run: `node dist/bench/memory.js`.
 */
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { ensureGitLfs, formatBytes, measure, paniniEnvironment, printTable, tempDir, writeRandomFile, type Measured } from './lib.js';

const SIZE_MB = Number(process.env.PANINI_BENCH_MEMORY_MB ?? 2048);

/** Runs a filter command with stdin and stdout redirected to files. */
function filter(cwd: string, env: NodeJS.ProcessEnv, command: string, args: string[], input: string, output: string): Measured {
  const inFd = openSync(input, 'r');
  const outFd = openSync(output, 'w');
  try {
    return measure(command, args, { cwd, env, stdio: [inFd, outFd, 'pipe'] });
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
}

function main(): void {
  if (!Number.isSafeInteger(SIZE_MB) || SIZE_MB <= 0) throw new Error(`PANINI_BENCH_MEMORY_MB must be a positive whole number, not ${process.env.PANINI_BENCH_MEMORY_MB}`);
  ensureGitLfs();
  const work = tempDir('panini-bench-memory-');
  try {
    const env = paniniEnvironment(work.dir);
    const file = path.join(work.dir, 'big.bin');
    writeRandomFile(file, SIZE_MB * 1024 * 1024, 7);
    const rows = [];
    for (const tool of ['panini', 'lfs'] as const) {
      const repo = path.join(work.dir, tool);
      measure('git', ['init', '-q', repo], { env });
      if (tool === 'lfs') measure('git', ['lfs', 'install', '--local'], { cwd: repo, env });
      const [cmd, cleanArgs, smudgeArgs] = tool === 'panini'
        ? ['git-panini', ['clean', 'big.bin'], ['smudge', 'big.bin']] // the launcher on the benchmark's PATH
        : ['git', ['lfs', 'clean', 'big.bin'], ['lfs', 'smudge', 'big.bin']];
      const pointer = path.join(work.dir, `${tool}.pointer`);
      const out = path.join(work.dir, `${tool}.out`);
      const clean = filter(repo, env, cmd, cleanArgs, file, pointer);
      const smudge = filter(repo, env, cmd, smudgeArgs, pointer, out);
      measure('cmp', [file, out]);
      rows.push({ tool, clean, smudge });
    }
    const [p, l] = rows;
    printTable(`clean and smudge of a ${formatBytes(SIZE_MB * 1024 * 1024)} random file (output compared with cmp)`, [
      { name: 'clean', panini: p!.clean, lfs: l!.clean },
      { name: 'smudge', panini: p!.smudge, lfs: l!.smudge },
    ]);
  } finally {
    work.dispose();
  }
}

main();
