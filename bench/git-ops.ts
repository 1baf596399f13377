/**
 * Everyday Git operations, git-panini against Git LFS in the same run on the same bytes:
 * `git add`, `git checkout` and `git clone` of 2,000 files of 8–64 KB, and `git add` and
 * `git checkout` of one large file (1 GiB; PANINI_BENCH_BIG_MB changes it). The clone is of a
 * bare origin through a file:// URL, git-panini's atoms in a folder store, Git LFS's objects in the
 * origin (its local transfer). Run: `node dist/bench/git-ops.js`.
 *
 * The small-file checkout is also timed with a filter that does nothing but send each file's bytes
 * (floor-filter.ts): the least a Node filter process takes here, Node's start and Git's own work.
 *
 * Each operation runs in PANINI_BENCH_ROUNDS rounds (3 by default), each on fresh repositories and
 * stores, the two tools taking turns (which goes first alternates), and the median of each is shown:
 * on a shared 2-core machine one run of either tool can be off by half.
 */
import { linkSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import {
  cores, ensureGitLfs, floorFilterCommand, formatBytes, measure, paniniEnvironment, printTable, setupRepo, tempDir, writeRandomFile, writeSmallFiles,
  type Measured, type Row, type Tool,
} from './lib.js';

const SMALL_COUNT = 2000;
const SMALL_MIN = 8 * 1024;
const SMALL_MAX = 64 * 1024;
const BIG_BYTES = Number(process.env.PANINI_BENCH_BIG_MB ?? 1024) * 1024 * 1024;
const ROUNDS = Number(process.env.PANINI_BENCH_ROUNDS ?? 3);

const OPERATIONS = ['add small', 'checkout small', 'clone small', 'add big', 'checkout big'] as const;
type Operation = (typeof OPERATIONS)[number];
type Timings = Map<Operation, Map<Tool, Measured[]>>;

/** One round: fresh repositories under `dir`, each operation for both tools, one after the other. */
function round(tools: readonly Tool[], dir: string, env: NodeJS.ProcessEnv, bigFile: string, timings: Timings, floor: Measured[]): void {
  const git = (cwd: string, args: string[]): Measured => measure('git', args, { cwd, env });
  const small = (tool: Tool): string => path.join(dir, `${tool}-small`);
  const big = (tool: Tool): string => path.join(dir, `${tool}-big`);
  for (const tool of tools) {
    setupRepo(tool, small(tool), env, ['*.bin']);
    git(small(tool), ['branch', 'empty']); // the commit with only .gitattributes: checking it out removes the files
    writeSmallFiles(small(tool), SMALL_COUNT, SMALL_MIN, SMALL_MAX, 2000);
    setupRepo(tool, big(tool), env, ['*.bin']);
    linkSync(bigFile, path.join(big(tool), 'big.bin')); // same bytes for both tools without a second copy
  }
  const record = (op: Operation, step: (tool: Tool) => Measured): void => {
    for (const tool of tools) timings.get(op)!.get(tool)!.push(step(tool));
  };
  record('add small', (tool) => git(small(tool), ['add', '.']));
  for (const tool of tools) {
    git(small(tool), ['commit', '-q', '-m', 'small files']);
    git(small(tool), ['checkout', '-q', 'empty']);
  }
  record('checkout small', (tool) => git(small(tool), ['checkout', '-q', 'main']));
  for (const tool of tools) {
    const status = git(small(tool), ['status', '--porcelain']).stdout;
    if (status !== '') throw new Error(`${tool}: worktree not clean after checkout:\n${status.slice(0, 500)}`);
  }
  if (tools.includes('lfs')) {
    // The same checkout again, each file answered from Git LFS's finished one by floor-filter.ts.
    git(small('panini'), ['checkout', '-q', 'empty']);
    floor.push(git(small('panini'), ['-c', `filter.panini.process=${floorFilterCommand(small('lfs'))}`, 'checkout', '-q', 'main']));
  }
  const origin = (tool: Tool): string => path.join(dir, `${tool}-origin.git`);
  const store = path.join(dir, 'panini-store');
  const filter = (tool: Tool): string[] => {
    const name = tool === 'panini' ? 'panini' : 'lfs';
    const command = tool === 'panini' ? 'git-panini' : 'git-lfs';
    const config = { process: `${command} filter-process`, clean: `${command} clean -- %f`, smudge: `${command} smudge -- %f`, required: 'true' };
    return Object.entries(config).flatMap(([k, v]) => ['--config', `filter.${name}.${k}=${v}`]);
  };
  for (const tool of tools) {
    git(dir, ['init', '-q', '--bare', origin(tool)]);
    if (tool === 'panini') git(small(tool), ['-c', `panini.url=file://${store}`, 'panini', 'push', '--quiet']);
    git(small(tool), ['push', '-q', `file://${origin(tool)}`, 'main']); // Git LFS's pre-push hook sends its objects
  }
  record('clone small', (tool) => git(dir, ['clone', '-q', ...filter(tool), ...(tool === 'panini' ? ['--config', `panini.url=file://${store}`] : []), `file://${origin(tool)}`, `${tool}-clone`]));
  for (const tool of tools) {
    const status = git(path.join(dir, `${tool}-clone`), ['status', '--porcelain']).stdout;
    if (status !== '') throw new Error(`${tool}: clone not clean:\n${status.slice(0, 500)}`);
  }
  record('add big', (tool) => git(big(tool), ['add', 'big.bin']));
  for (const tool of tools) {
    git(big(tool), ['commit', '-q', '-m', 'big file']);
    rmSync(path.join(big(tool), 'big.bin')); // the hard link: the source file stays
  }
  record('checkout big', (tool) => git(big(tool), ['checkout', '--', 'big.bin']));
  for (const tool of tools) {
    if (statSync(path.join(big(tool), 'big.bin')).size !== BIG_BYTES) throw new Error(`${tool}: the big file did not check out whole`);
  }
}

function median(runs: readonly Measured[]): Measured {
  return [...runs].sort((a, b) => a.ms - b.ms)[Math.floor((runs.length - 1) / 2)]!;
}

function main(): void {
  if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1) throw new Error(`PANINI_BENCH_ROUNDS must be a positive whole number, not ${process.env.PANINI_BENCH_ROUNDS}`);
  const lfsVersion = ensureGitLfs();
  const work = tempDir('panini-bench-git-ops-');
  try {
    const env = paniniEnvironment(work.dir);
    const bigFile = path.join(work.dir, 'big-source.bin');
    writeRandomFile(bigFile, BIG_BYTES, 1);
    process.stdout.write(`git-ops: ${cores} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ${measure('git', ['version']).stdout.trim()}; ${lfsVersion ?? 'Git LFS not available'}; ${ROUNDS} round(s)\n`);

    const tools: Tool[] = lfsVersion ? ['panini', 'lfs'] : ['panini'];
    const timings: Timings = new Map(OPERATIONS.map((op) => [op, new Map(tools.map((t) => [t, []]))]));
    const floor: Measured[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const dir = path.join(work.dir, `round-${i}`);
      mkdirSync(dir);
      round(i % 2 === 0 ? tools : [...tools].reverse(), dir, env, bigFile, timings, floor);
      rmSync(dir, { recursive: true, force: true }); // a round holds several GiB on tmpfs
    }

    const rate = (m: Measured | null): string => (m ? `${(BIG_BYTES / (m.ms / 1000) / 1e6).toFixed(0)} MB/s` : '-');
    const names: Record<Operation, string> = {
      'add small': `git add, ${SMALL_COUNT} files of 8–64 KB`,
      'checkout small': `git checkout, ${SMALL_COUNT} files of 8–64 KB`,
      'clone small': `git clone of them (file:// origin)`,
      'add big': `git add, one ${formatBytes(BIG_BYTES)} random file`,
      'checkout big': 'git checkout of that file',
    };
    const spread = (panini: Measured[], lfs: Measured[]): string => {
      const ratios = lfs.length > 0 ? panini.map((p, i) => p.ms / lfs[i]!.ms).sort((a, b) => a - b) : [];
      return ratios.length > 1 ? `ratio per round ${ratios[0]!.toFixed(2)}–${ratios[ratios.length - 1]!.toFixed(2)}` : '';
    };
    const rows: Row[] = OPERATIONS.flatMap((op) => {
      const panini = timings.get(op)!.get('panini')!;
      const lfs = timings.get(op)!.get('lfs') ?? [];
      const rates = op.endsWith('big') ? `panini ${rate(median(panini))}, lfs ${rate(lfs.length > 0 ? median(lfs) : null)}` : '';
      const row: Row = { name: names[op], panini: median(panini), lfs: lfs.length > 0 ? median(lfs) : null, note: [rates, spread(panini, lfs)].filter(Boolean).join('; ') };
      if (op !== 'checkout small' || floor.length === 0) return [row];
      const floorNote = `in the git-panini column: a Node filter that only sends each file's bytes (floor-filter.ts); ${spread(floor, lfs)}`;
      return [row, { name: '  the same, least a Node filter takes', panini: median(floor), lfs: median(lfs), note: floorNote }];
    });
    printTable(`Git operations: git-panini vs Git LFS (median of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'})`, rows);
  } finally {
    work.dispose();
  }
}

main();
