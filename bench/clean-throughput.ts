/**
 * Clean throughput: git-panini's clean filter against Git LFS's on the same random file, in the
 * same run. 1 GiB by default; PANINI_BENCH_MB=<n> for a quick run. Each tool cleans into a fresh
 * repository (nothing stored yet), then again with everything already stored; stdin is the file
 * itself (`< file`) and then a pipe (what Git's filter driver gives). Throughput is in MB/s
 * (10^6 bytes per second). Run: `node dist/bench/clean-throughput.js`.
 */
import { closeSync, openSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { cores, ensureGitLfs, formatBytes, measure, paniniEnvironment, printTable, tempDir, writeRandomFile, type Measured, type Row } from './lib.js';

const SIZE_MB = Number(process.env.PANINI_BENCH_MB ?? 1024);

type Feed = 'file' | 'pipe';

interface Tool {
  name: 'git-panini' | 'Git LFS';
  /** Prepares a fresh repository for this tool. */
  init(repo: string): void;
  /** The clean command, run inside the repository. */
  command: string[];
  /** What a successful clean prints: a concept, or a pointer. */
  expect: RegExp;
}

function main(): void {
  if (!Number.isSafeInteger(SIZE_MB) || SIZE_MB <= 0) throw new Error(`PANINI_BENCH_MB must be a positive whole number of MiB, not ${process.env.PANINI_BENCH_MB}`);
  const lfsVersion = ensureGitLfs();
  const work = tempDir('panini-bench-clean-');
  try {
    const env = paniniEnvironment(work.dir);
    const git = (cwd: string, args: string[]): Measured => measure('git', args, { cwd, env });
    const bytes = SIZE_MB * 1024 * 1024;
    const file = path.join(work.dir, 'big.bin');
    writeRandomFile(file, bytes, 42);

    const tools: Tool[] = [{
      name: 'git-panini',
      init: (repo) => void git(work.dir, ['init', '-q', repo]),
      command: ['git-panini', 'clean', 'big.bin'], // the launcher on the benchmark's PATH
      expect: /^---\npanini: 1\n/,
    }];
    if (lfsVersion) {
      tools.push({
        name: 'Git LFS',
        init: (repo) => {
          git(work.dir, ['init', '-q', repo]);
          git(repo, ['lfs', 'install', '--local']);
        },
        command: ['git', 'lfs', 'clean', 'big.bin'],
        expect: /^version https:\/\/git-lfs\.github\.com\/spec\/v1\n/,
      });
    }

    /** One clean of the big file; the concept or pointer goes to a pipe and is checked. */
    const clean = (tool: Tool, repo: string, feed: Feed): Measured => {
      const [cmd, ...args] = tool.command;
      let m: Measured;
      if (feed === 'file') {
        const fd = openSync(file, 'r');
        try {
          m = measure(cmd!, args, { cwd: repo, env, stdio: [fd, 'pipe', 'pipe'] });
        } finally {
          closeSync(fd);
        }
      } else {
        const quoted = [cmd!, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
        m = measure('sh', ['-c', `cat '${file}' | ${quoted}`], { cwd: repo, env });
      }
      if (!tool.expect.test(m.stdout)) throw new Error(`${tool.name} clean printed something unexpected:\n${m.stdout.slice(0, 300)}`);
      return m;
    };

    const loadBefore = loadavg().map((l) => l.toFixed(2)).join(' ');
    const results = new Map<string, Measured>();
    for (const tool of tools) {
      for (const feed of ['file', 'pipe'] as Feed[]) {
        const repo = path.join(work.dir, `${tool.name.replace(/\W/g, '')}-${feed}`);
        tool.init(repo);
        results.set(`${tool.name} ${feed} cold`, clean(tool, repo, feed));
        if (feed === 'file') results.set(`${tool.name} file warm`, clean(tool, repo, feed));
      }
    }

    const mbps = (m: Measured | undefined): number => (m ? bytes / 1e6 / (m.ms / 1000) : NaN);
    const row = (name: string, key: string): Row => {
      const p = results.get(`git-panini ${key}`) ?? null;
      const l = results.get(`Git LFS ${key}`) ?? null;
      const note = `panini ${mbps(p ?? undefined).toFixed(0)} MB/s` + (l ? `, LFS ${mbps(l).toFixed(0)} MB/s, throughput ×${(mbps(p ?? undefined) / mbps(l)).toFixed(2)}` : '');
      return { name, panini: p, lfs: l, note };
    };
    process.stdout.write(`clean-throughput: ${formatBytes(bytes)} of random bytes; ${cores} cores; node ${process.version}; ${git(work.dir, ['version']).stdout.trim()}; ${lfsVersion ?? 'Git LFS not available'}\n`);
    // Other work on the machine slows both tools: the load average says how quiet the run was.
    process.stdout.write(`load average before ${loadBefore}, after ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
    printTable(`clean throughput, ${formatBytes(bytes)} random file`, [
      row('clean < file, empty store', 'file cold'),
      row('clean < file, already stored', 'file warm'),
      row('clean from a pipe, empty store', 'pipe cold'),
    ]);
    const headline = results.get('git-panini file cold')!;
    const lfs = results.get('Git LFS file cold');
    process.stdout.write(`\nheadline: git-panini clean ${mbps(headline).toFixed(0)} MB/s` +
      (lfs ? `, Git LFS clean ${mbps(lfs).toFixed(0)} MB/s, ratio ${(mbps(headline) / mbps(lfs)).toFixed(2)}×` : '') +
      `; peak RSS of the panini process ${headline.peakRssKb ? formatBytes(headline.peakRssKb * 1024) : 'unknown'}; ${cores} cores\n`);
  } finally {
    work.dispose();
  }
}

main();
