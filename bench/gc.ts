/**
 * Garbage collection over a long history: a repository of 10,000 commits (PANINI_BENCH_COMMITS to
 * scale down) touching 2,000 tracked files, three files changed per commit, plus a deleted branch
 * whose files are garbage. Generated with `git fast-import` (not one `git commit` per commit): each
 * version is a small random file cleaned through the library in-process, so the store and the
 * concepts are what `git add` would have made. An equivalent Git LFS repository (same files as
 * pointers, objects in .git/lfs/objects) is generated beside it. Timed in the same run:
 *   git panini gc --dry-run            cold (no walk cache) and warm
 *   git rev-list --objects --all | git cat-file --batch-check   (Git's own walk, the floor)
 *   git lfs prune --dry-run            on the LFS repository
 *   git panini gc / git lfs prune      deleting for real
 * Run: `node dist/bench/gc.js` (PANINI_BENCH_KEEP=1 keeps the repositories and prints where).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { buildConcept } from '../src/concept/build.js';
import { sha256Hex } from '../src/hash.js';
import { BufferSource } from '../src/source.js';
import { LocalStore } from '../src/store/local.js';
import { ensureGitLfs, measure, paniniEnvironment, printTable, randomBytesStream, seededRandom, setupRepo, tempDir, timeIt, type Measured, type Row } from './lib.js';

const COMMITS = Number(process.env.PANINI_BENCH_COMMITS ?? 10_000);
const FILES = 2000;
const CHANGES_PER_COMMIT = 3;
/** Commits on a branch deleted afterwards: their files are what gc finds to delete. */
const DELETED_BRANCH_COMMITS = Math.max(1, Math.round(COMMITS / 50));
const MIN_FILE = 1024;
const MAX_FILE = 8 * 1024;
const SEED = 6;

/**
 * fast-import spends most of its time in brk() when glibc trims its heap after every blob (~13x
 * slower here); a larger trim threshold and top pad avoid it. Only generation is affected.
 */
const FAST_IMPORT_ENV = { MALLOC_TRIM_THRESHOLD_: String(256 << 20), MALLOC_TOP_PAD_: String(128 << 20) };

interface Importer {
  write(text: string | Buffer): Promise<void>;
  done(): Promise<void>;
}

function fastImport(repo: string, env: NodeJS.ProcessEnv): Importer {
  const child = spawn('git', ['fast-import', '--quiet'], { cwd: repo, env: { ...env, ...FAST_IMPORT_ENV }, stdio: ['pipe', 'inherit', 'inherit'] });
  const exited = new Promise<void>((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import failed (exit ${code}) in ${repo}`)))));
  const stdin: Writable = child.stdin;
  return {
    async write(data) {
      if (!stdin.write(data)) await new Promise((r) => stdin.once('drain', r));
    },
    async done() {
      stdin.end();
      await exited;
    },
  };
}

function data(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return Buffer.concat([Buffer.from(`data ${b.length}\n`), b, Buffer.from('\n')]);
}

const filePath = (i: number): string => `d${String(Math.floor(i / 100)).padStart(2, '0')}/f${String(i).padStart(4, '0')}.bin`;

/** Writes both histories: main (COMMITS commits) and a `scratch` branch, deleted afterwards. */
async function generate(paniniRepo: string, lfsRepo: string, env: NodeJS.ProcessEnv): Promise<{ versions: number; bytes: number }> {
  const store = new LocalStore(path.join(paniniRepo, '.git', 'panini'));
  const lfsObjects = path.join(lfsRepo, '.git', 'lfs', 'objects');
  const panini = fastImport(paniniRepo, env);
  const lfs = fastImport(lfsRepo, env);
  const next = seededRandom(SEED);
  const fill = randomBytesStream(SEED);
  let versions = 0;
  let bytes = 0;
  let mark = 0;
  let when = Math.floor(Date.now() / 1000) - COMMITS - DELETED_BRANCH_COMMITS;

  const version = async (file: number): Promise<void> => {
    const content = Buffer.from(fill(Buffer.allocUnsafe(MIN_FILE + Math.floor(next() * (MAX_FILE - MIN_FILE)))));
    versions++;
    bytes += content.length;
    const concept = buildConcept(new BufferSource(content), store).text;
    const oid = sha256Hex(content);
    const dir = path.join(lfsObjects, oid.slice(0, 2), oid.slice(2, 4));
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, oid), content);
    const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${content.length}\n`;
    await panini.write(Buffer.concat([Buffer.from(`M 100644 inline ${filePath(file)}\n`), data(concept)]));
    await lfs.write(Buffer.concat([Buffer.from(`M 100644 inline ${filePath(file)}\n`), data(pointer)]));
  };
  const commit = async (ref: string, from: string | null, message: string, body: () => Promise<void>): Promise<number> => {
    mark++;
    const head = `commit ${ref}\nmark :${mark}\ncommitter Panini Bench <bench@panini.invalid> ${when++} +0000\n${data(message).toString()}${from ? `from ${from}\n` : ''}`;
    await panini.write(head);
    await lfs.write(head);
    await body();
    await panini.write('\n');
    await lfs.write('\n');
    return mark;
  };

  // On top of the commit setupRepo made (.gitattributes).
  let last = await commit('refs/heads/main', 'refs/heads/main^0', 'all files', async () => {
    for (let f = 0; f < FILES; f++) await version(f);
  });
  const branchPoint = Math.max(1, COMMITS - DELETED_BRANCH_COMMITS);
  let scratchFrom = last;
  for (let c = 1; c < COMMITS; c++) {
    last = await commit('refs/heads/main', `:${last}`, `commit ${c}`, async () => {
      for (let k = 0; k < CHANGES_PER_COMMIT; k++) await version(Math.floor(next() * FILES));
    });
    if (c === branchPoint) scratchFrom = last;
  }
  for (let c = 0; c < DELETED_BRANCH_COMMITS; c++) {
    scratchFrom = await commit('refs/heads/scratch', `:${scratchFrom}`, `scratch ${c}`, async () => {
      for (let k = 0; k < CHANGES_PER_COMMIT; k++) await version(Math.floor(next() * FILES));
    });
  }
  await panini.done();
  await lfs.done();
  return { versions, bytes };
}

async function main(): Promise<void> {
  if (!Number.isSafeInteger(COMMITS) || COMMITS < 2) throw new Error(`PANINI_BENCH_COMMITS must be a whole number of at least 2, not ${process.env.PANINI_BENCH_COMMITS}`);
  const lfsVersion = ensureGitLfs();
  if (!lfsVersion) throw new Error('this benchmark compares against git-lfs: install it (apt-get install git-lfs)');
  const work = tempDir('panini-bench-gc-');
  const keep = process.env.PANINI_BENCH_KEEP === '1';
  try {
    const env = paniniEnvironment(work.dir);
    const paniniRepo = path.join(work.dir, 'panini');
    const lfsRepo = path.join(work.dir, 'lfs');
    setupRepo('panini', paniniRepo, env, ['*.bin']);
    setupRepo('lfs', lfsRepo, env, ['*.bin']);
    process.stderr.write(`generating ${COMMITS} commits over ${FILES} files (+${DELETED_BRANCH_COMMITS} on a deleted branch)...\n`);
    const generated = await timeIt(() => generate(paniniRepo, lfsRepo, env));
    for (const repo of [paniniRepo, lfsRepo]) {
      const git = (args: string[]): Measured => measure('git', args, { cwd: repo, env });
      git(['branch', '-D', 'scratch']);
      git(['checkout', '-q', '-f', 'main']);
    }
    process.stderr.write(`generated ${generated.value.versions} file versions in ${(generated.ms / 1000).toFixed(1)} s; timing...\n`);

    const panini = (args: string[]): Measured => measure('git', ['panini', ...args], { cwd: paniniRepo, env });
    const lfs = (args: string[]): Measured => measure('git', ['lfs', ...args], { cwd: lfsRepo, env });
    const gitWalk = (repo: string): Measured => measure('sh', ['-c', 'git rev-list --objects --all | git cat-file --batch-check'], { cwd: repo, env });

    rmSync(path.join(paniniRepo, '.git', 'panini', 'cache'), { recursive: true, force: true });
    const cold = panini(['gc', '--dry-run', '--prune=now', '--json']);
    const warm = panini(['gc', '--dry-run', '--prune=now', '--json']);
    const lfsDry = lfs(['prune', '--dry-run']);
    const lfsDryAgain = lfs(['prune', '--dry-run']);
    const walkPanini = gitWalk(paniniRepo);
    const walkLfs = gitWalk(lfsRepo);
    const gcReal = panini(['gc', '--prune=now', '--json']);
    const lfsReal = lfs(['prune']);
    const fsck = panini(['fsck', '--all']);

    const report = JSON.parse(cold.stdout) as { deleted: { count: number }; reachable: { atoms: number; concepts: number } };
    const lfsWould = /prune: (\d+) local objects?, (\d+) retained/.exec(lfsDry.stderr + lfsDry.stdout);
    const rows: Row[] = [
      { name: 'gc --dry-run, cold (no walk cache)', panini: cold, lfs: lfsDry, note: `panini would delete ${report.deleted.count} atoms, keeps ${report.reachable.atoms}; lfs: ${lfsWould ? `${lfsWould[1]} objects, ${lfsWould[2]} retained` : lfsDry.stdout.trim().split('\n').pop()}` },
      { name: 'gc --dry-run, warm (walk cache)', panini: warm, lfs: lfsDryAgain, note: 'lfs prune has no cache: second run for comparison' },
      { name: 'rev-list --objects --all | cat-file --batch-check', panini: walkPanini, lfs: walkLfs, note: `${walkPanini.stdout.split('\n').length - 1} objects: Git's own walk, no concept read` },
      { name: 'gc --prune=now (deleting) / lfs prune', panini: gcReal, lfs: lfsReal },
      { name: 'fsck --all (hash every reachable atom)', panini: fsck, lfs: null },
    ];
    printTable(`gc over ${COMMITS} commits, ${FILES} tracked files, ${generated.value.versions} file versions (${(generated.value.bytes / 1048576).toFixed(0)} MiB)`, rows);
    if (keep) process.stdout.write(`\nrepositories kept in ${work.dir}\n`);
  } finally {
    if (!keep) work.dispose();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
