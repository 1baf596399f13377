/**
 * Bytes and time to push and to clone media corpora, git-panini against Git LFS's whole-file
 * transfer of the same history.
 *
 * Two corpora, each committed as a history:
 * - mixed: the shared fixtures as three commits of related versions (videos sharing an intro, a
 *   retitled video, re-tagged images, an archive with one entry changed), plus a generated large
 *   file (PANINI_BENCH_MB, 64 MiB by default) and a copy of it with a small edit in the middle. Its
 *   newest commit is mostly that large file, which no other file shares.
 * - courses (with ffmpeg): the encoded courses of media-corpus.ts as a course maker keeps them: two
 *   lessons sharing an intro, then the first one retitled and delivered as a fragmented (streaming)
 *   and a moov-last (archive) re-mux. Every file stays in the newest commit.
 *
 * git-panini pushes to a shared folder and to S3 (s3rver on 127.0.0.1, behind a proxy that counts
 * the bytes each way, HTTP headers included; timed clones bypass it); Git LFS pushes to a bare
 * repository over a local path (its own local transfer: bytes are what it stores in the remote's
 * lfs/objects, and what a clone puts in its own). Clones check out the newest commit; each is timed
 * PANINI_BENCH_ROUNDS times (5 by default), the tools taking turns, and the median shown; so is a
 * clone of the folder's repository whose filter only sends each file's bytes from the pushing
 * worktree (floor-filter.ts: the least a Node filter process takes). Then, in the last clone, the
 * files are removed and checked out again (as many times, in turn), and every version of every
 * file is fetched once per tool. Last, in the pushing repository, one more commit is made and
 * pushed (the corpus's `next`: an edit of a file already pushed, as a day's work brings), its
 * bytes and time measured. Run:
 * `node dist/bench/transfer.js`.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3_CREDENTIALS, startS3Server, type S3Fixture } from '../test/helpers/s3-server.js';
import { dirBytes } from '../test/helpers/stress.js';
import { ensureGitLfs, floorFilterCommand, formatBytes, formatMs, measure, paniniEnvironment, randomBytesStream, tempDir, writeRandomFile } from './lib.js';
import { COURSE_SECONDS, encodeCourses, hasFfmpeg } from './media-corpus.js';

const BIG_MB = Number(process.env.PANINI_BENCH_MB ?? 64);
const FIXTURES = process.env.PANINI_FIXTURES ?? path.resolve(process.cwd(), '../shared/fixtures');
const PATTERNS = ['*.mp4', '*.m4a', '*.png', '*.jpg', '*.zip', '*.bin'];

interface Corpus {
  /** Short name: the remote stores' folder and prefix. */
  name: string;
  title: string;
  /** Where the source files are. */
  dir: string;
  /** Commits in order: path in the repository → source file in `dir`. */
  commits: Record<string, string>[];
  /** One more commit, pushed on its own at the end. */
  next: Record<string, string>;
  /** What the table's reader should know about its clone. */
  note: string;
}

/** The fixtures and a large generated file with an edited copy (see the header). */
function mixedCorpus(dir: string): Corpus {
  mkdirSync(dir, { recursive: true });
  const big = path.join(dir, 'big-v1.bin');
  writeRandomFile(big, BIG_MB * 1024 * 1024, 42);
  const edited = readFileSync(big);
  randomBytesStream(7)(edited.subarray(edited.length / 2, edited.length / 2 + 4096));
  writeFileSync(path.join(dir, 'big-v2.bin'), edited);
  randomBytesStream(11)(edited.subarray(edited.length / 4, edited.length / 4 + 4096));
  writeFileSync(path.join(dir, 'big-v3.bin'), edited);
  for (const name of readdirSync(FIXTURES)) if (name !== 'README.md') copyFileSync(path.join(FIXTURES, name), path.join(dir, name));
  return {
    name: 'mixed',
    title: `fixtures and a ${BIG_MB} MiB file`,
    dir,
    commits: [
      { 'video/course.mp4': 'course-a.mp4', 'video/other.mp4': 'course-b.mp4', 'img/photo.png': 'photo.png', 'img/photo.jpg': 'photo.jpg', 'pack/bundle.zip': 'bundle-v1.zip', 'audio/tone.m4a': 'tone.m4a', 'big/master.bin': 'big-v1.bin' },
      { 'video/course.mp4': 'course-a-retitled.mp4', 'img/photo.png': 'photo-tagged.png', 'img/photo.jpg': 'photo-edited-exif.jpg', 'pack/bundle.zip': 'bundle-v2.zip', 'big/master.bin': 'big-v2.bin' },
      { 'video/course-fragmented.mp4': 'course-a-fragmented.mp4', 'video/course-moov-last.mp4': 'course-a-moov-last.mp4', 'img/deep.png': 'deep.png', 'img/progressive.jpg': 'progressive.jpg', 'data/random.bin': 'random.bin' },
    ],
    next: { 'big/master.bin': 'big-v3.bin' },
    note: `A clone moves the newest commit's bytes, most of them the ${BIG_MB} MiB file no other file shares; fetching every version (\`git panini fetch --all\`, \`git lfs fetch --all\`) moves each atom once.`,
  };
}

/** The encoded courses (see the header), or null without ffmpeg. */
function coursesCorpus(dir: string): Corpus | null {
  if (!hasFfmpeg()) return null;
  mkdirSync(dir, { recursive: true });
  encodeCourses(dir);
  // The next commit's file: the second lesson retitled (its title tag edited, every frame the same).
  measure('ffmpeg', ['-v', 'error', '-y', '-i', 'long-b.mp4', '-map', '0', '-c', 'copy', '-metadata', 'title=Lecture 2, corrected', '-movflags', '+faststart', 'long-b-retitled.mp4'], { cwd: dir });
  return {
    name: 'courses',
    title: `two ${COURSE_SECONDS} s H.264/AAC lessons sharing an intro, one retitled and re-muxed twice`,
    dir,
    commits: [
      { 'lessons/lesson-1.mp4': 'long-a.mp4', 'lessons/lesson-2.mp4': 'long-b.mp4' },
      { 'lessons/lesson-1.mp4': 'long-a-retitled.mp4', 'deliver/lesson-1-stream.mp4': 'long-a-fragmented.mp4', 'deliver/lesson-1-archive.mp4': 'long-a-moov-last.mp4' },
    ],
    next: { 'lessons/lesson-2.mp4': 'long-b-retitled.mp4' },
    note: 'Every file is in the newest commit: a clone moves each shared intro, re-mux and retitled copy once with git-panini, whole with Git LFS.',
  };
}

function logicalBytes(corpus: Corpus): number {
  return corpus.commits.flatMap((c) => Object.values(c)).reduce((n, f) => n + statSync(path.join(corpus.dir, f)).size, 0);
}

interface Outcome {
  pushMs: number;
  pushBytes: number;
  /** Every timed clone; the table shows the median. */
  cloneMs: number[];
  cloneBytes: number;
  stored: number;
  /** One more clone, into a fresh directory: its time. */
  cloneAgain(): number;
  /** git-panini: the same clone with floor-filter.ts as the filter (it answers from the pushing worktree). */
  floorClone?(): number;
  /** In the last clone, its files removed and checked out again (their atoms or objects local): the time. */
  checkoutAgain(): number;
  /** Every timed checkout; the table shows the median. */
  checkoutMs: number[];
  /** In the last clone, every version of every file fetched (`git panini fetch --all`, `git lfs fetch --all`). */
  fetchAll(): Promise<{ ms: number; bytes: number }>;
  /** In the pushing repository, the corpus's next commit made and pushed: the push's time and bytes. */
  pushNext(): Promise<{ ms: number; bytes: number }>;
}

/** `git checkout -- .` in `clone` after removing the corpus's files from its worktree. */
function checkoutAgain(clone: string, corpus: Corpus, env: NodeJS.ProcessEnv): number {
  for (const file of new Set(corpus.commits.flatMap((c) => Object.keys(c)))) rmSync(path.join(clone, file), { force: true });
  return measure('git', ['checkout', '--', '.'], { cwd: clone, env }).ms;
}

/** Clones timed per tool, the tools taking turns (PANINI_BENCH_ROUNDS, 5 by default). */
const CLONE_ROUNDS = Number(process.env.PANINI_BENCH_ROUNDS ?? 5);


/** Builds the history in `repo` (already set up for its tool); files are copies. */
function commitHistory(repo: string, corpus: Corpus, env: NodeJS.ProcessEnv): void {
  for (const [i, files] of corpus.commits.entries()) commitFiles(repo, corpus, files, `version ${i + 1}`, env);
}

function commitFiles(repo: string, corpus: Corpus, files: Record<string, string>, message: string, env: NodeJS.ProcessEnv): void {
  for (const [file, source] of Object.entries(files)) {
    const target = path.join(repo, file);
    mkdirSync(path.dirname(target), { recursive: true });
    rmSync(target, { force: true });
    copyFileSync(path.join(corpus.dir, source), target);
  }
  measure('git', ['add', '.'], { cwd: repo, env });
  measure('git', ['commit', '-q', '-m', message], { cwd: repo, env });
}

function initRepo(dir: string, env: NodeJS.ProcessEnv): void {
  mkdirSync(dir, { recursive: true });
  measure('git', ['init', '-q', '-b', 'main'], { cwd: dir, env });
}

interface StoreUnderTest {
  config: string;
  env: NodeJS.ProcessEnv;
  traffic(): Promise<{ sent: number; received: number } | null>;
  stored(): Promise<number>;
  /**
   * Settings for timed clones that reach the store without the byte-counting proxy (S3): the
   * proxy's copy would be timed too. The first clone goes through it (its bytes are counted), and
   * so does the fetch of every version, with `counted`.
   */
  timedClone?: Record<string, string>;
  counted?: Record<string, string>;
}

async function benchPanini(root: string, corpus: Corpus, baseEnv: NodeJS.ProcessEnv, store: StoreUnderTest): Promise<Outcome> {
  const env = { ...baseEnv, ...store.env };
  const repo = path.join(root, 'work');
  const origin = path.join(root, 'origin.git');
  initRepo(repo, env);
  measure('git', ['init', '-q', '--bare', origin], { env });
  measure('git', ['panini', 'install', '--local'], { cwd: repo, env });
  measure('git', ['panini', 'track', ...PATTERNS], { cwd: repo, env });
  writeFileSync(path.join(repo, '.paniniconfig'), store.config);
  commitHistory(repo, corpus, env);
  measure('git', ['remote', 'add', 'origin', origin], { cwd: repo, env });
  await store.traffic();
  const push = measure('git', ['push', '-q', 'origin', 'main'], { cwd: repo, env });
  const pushed = await store.traffic();
  const stored = await store.stored();
  const clone = path.join(root, 'clone');
  const cloneWith = (settings: Record<string, string>, into = clone): number => {
    rmSync(into, { recursive: true, force: true });
    const config = Object.entries(settings).flatMap(([k, v]) => ['--config', `${k}=${v}`]);
    return measure('git', ['clone', '-q', ...config, origin, into], { env }).ms;
  };
  // As a user with git-panini installed globally clones (as for Git LFS below: installed once, untimed).
  measure('git', ['panini', 'install', '--skip-repo'], { env });
  const firstMs = cloneWith({});
  const pulled = await store.traffic();
  const held = (): number => dirBytes(path.join(clone, '.git', 'panini', 'atoms')) + dirBytes(path.join(clone, '.git', 'panini', 'packs'));
  return {
    pushMs: push.ms,
    pushBytes: pushed?.sent ?? stored,
    cloneMs: store.timedClone ? [] : [firstMs],
    cloneBytes: pulled?.received ?? held(),
    stored,
    cloneAgain: () => cloneWith(store.timedClone ?? {}),
    checkoutAgain: () => checkoutAgain(clone, corpus, env),
    checkoutMs: [],
    floorClone: () => cloneWith({ 'filter.panini.process': floorFilterCommand(repo) }, path.join(root, 'floor-clone')), // not the clone fetchAll uses
    async fetchAll() {
      const before = held();
      await store.traffic();
      const viaProxy = Object.entries(store.counted ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
      const { ms } = measure('git', [...viaProxy, 'panini', 'fetch', '--all', '-q'], { cwd: clone, env });
      const moved = await store.traffic();
      return { ms, bytes: moved?.received ?? held() - before };
    },
    async pushNext() {
      commitFiles(repo, corpus, corpus.next, 'next version', env);
      const counted = (await store.traffic()) !== null; // (its counters reset)
      const before = counted ? 0 : await store.stored();
      const { ms } = measure('git', ['push', '-q', 'origin', 'main'], { cwd: repo, env });
      const moved = await store.traffic();
      return { ms, bytes: moved?.sent ?? (await store.stored()) - before };
    },
  };
}

function benchLfs(root: string, corpus: Corpus, env: NodeJS.ProcessEnv): Outcome {
  const repo = path.join(root, 'work');
  const origin = path.join(root, 'origin.git');
  initRepo(repo, env);
  measure('git', ['init', '-q', '--bare', origin], { env });
  measure('git', ['lfs', 'install', '--local'], { cwd: repo, env });
  measure('git', ['lfs', 'track', ...PATTERNS], { cwd: repo, env });
  commitHistory(repo, corpus, env);
  measure('git', ['remote', 'add', 'origin', origin], { cwd: repo, env });
  const push = measure('git', ['push', '-q', 'origin', 'main'], { cwd: repo, env });
  const stored = dirBytes(path.join(origin, 'lfs', 'objects'));
  const clone = path.join(root, 'clone');
  const cloneAgain = (): number => {
    rmSync(clone, { recursive: true, force: true });
    return measure('git', ['clone', '-q', origin, clone], { env }).ms;
  };
  // Like a user who ran `git lfs install` once: the filter in the (benchmark's) global config.
  measure('git', ['lfs', 'install', '--skip-repo'], { env });
  const cloneMs = cloneAgain();
  const held = (): number => dirBytes(path.join(clone, '.git', 'lfs', 'objects'));
  return {
    pushMs: push.ms, pushBytes: stored, cloneMs: [cloneMs], cloneBytes: held(), stored, cloneAgain,
    checkoutAgain: () => checkoutAgain(clone, corpus, env),
    checkoutMs: [],
    async fetchAll() {
      const before = held();
      const { ms } = measure('git', ['lfs', 'fetch', '--all'], { cwd: clone, env });
      return { ms, bytes: held() - before };
    },
    async pushNext() {
      commitFiles(repo, corpus, corpus.next, 'next version', env);
      const before = dirBytes(path.join(origin, 'lfs', 'objects'));
      const { ms } = measure('git', ['push', '-q', 'origin', 'main'], { cwd: repo, env });
      return { ms, bytes: dirBytes(path.join(origin, 'lfs', 'objects')) - before };
    },
  };
}

/** Pushes and clones `corpus` with each tool and prints its table. */
async function benchCorpus(corpus: Corpus, work: string, s3: S3Fixture, lfsVersion: string | null): Promise<void> {
  const logical = logicalBytes(corpus);
  const env = paniniEnvironment(work);
  const folderStore = path.join(work, 'folder-store');
  mkdirSync(folderStore);
  const folder = await benchPanini(path.join(work, 'panini-folder'), corpus, env, {
    config: `[panini]\n\turl = ${pathToFileURL(folderStore).href}\n`,
    env: {},
    traffic: async () => null,
    stored: async () => dirBytes(folderStore),
  });
  const prefix = `bench-${corpus.name}`;
  const s3Result = await benchPanini(path.join(work, 'panini-s3'), corpus, env, {
    config: `[panini]\n\turl = s3://${s3.bucket}/${prefix}\n[panini "s3"]\n\tendpoint = ${s3.proxyEndpoint}\n\tforcePathStyle = true\n`,
    timedClone: { 'panini.s3.endpoint': s3.endpoint },
    counted: { 'panini.s3.endpoint': s3.proxyEndpoint },
    env: S3_CREDENTIALS,
    traffic: async () => {
      const st = await s3.stats(true);
      return { sent: st.bytesIn, received: st.bytesOut };
    },
    stored: async () => {
      const { S3Backend } = await import('../src/store/s3.js');
      Object.assign(process.env, S3_CREDENTIALS);
      const b = new S3Backend({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, forcePathStyle: true, timeoutMs: 30_000 });
      try {
        return (await b.stats()).bytes;
      } finally {
        b.close();
      }
    },
  });
  const lfs = lfsVersion ? benchLfs(path.join(work, 'lfs'), corpus, env) : null;
  const all = [folder, s3Result, ...(lfs ? [lfs] : [])];
  // Each tool in turn until each has CLONE_ROUNDS timed clones (S3's first, through the proxy, is not one).
  const floorMs: number[] = [];
  for (let i = 1; i <= CLONE_ROUNDS; i++) {
    for (const o of i % 2 === 0 ? all : [...all].reverse()) if (o.cloneMs.length < CLONE_ROUNDS) o.cloneMs.push(o.cloneAgain());
    if (lfs) floorMs.push(folder.floorClone!());
  }
  // Then, in each tool's last clone, its files checked out again (a branch switch, a reset).
  for (let i = 1; i <= CLONE_ROUNDS; i++) for (const o of i % 2 === 0 ? all : [...all].reverse()) o.checkoutMs.push(o.checkoutAgain());
  const median = (runs: number[]): number => [...runs].sort((a, b) => a - b)[Math.floor((runs.length - 1) / 2)]!;
  const history = new Map<Outcome, { ms: number; bytes: number }>();
  for (const o of all) history.set(o, await o.fetchAll());
  const next = new Map<Outcome, { ms: number; bytes: number }>();
  for (const o of all) next.set(o, await o.pushNext());

  const ratio = (a: number, b: number | undefined): string => (b ? (a / b).toFixed(2) : '-');
  const row = (name: string, pick: (o: Outcome) => number, fmt: (n: number) => string): string =>
    `| ${name} | ${fmt(pick(folder))} | ${fmt(pick(s3Result))} | ${lfs ? fmt(pick(lfs)) : '-'} | ${ratio(pick(folder), lfs ? pick(lfs) : undefined)} | ${ratio(pick(s3Result), lfs ? pick(lfs) : undefined)} |`;
  const lines = [
    `\n## Push and clone, ${corpus.name} corpus (${corpus.title}): git-panini vs Git LFS`,
    `(${corpus.commits.length} commits, ${formatBytes(logical)} of file versions; ${lfsVersion ?? 'Git LFS not installed'}; node ${process.version})`,
    '',
    '| measure | git-panini, folder | git-panini, S3 (s3rver) | Git LFS (local) | folder / LFS | S3 / LFS |',
    '|---|---|---|---|---|---|',
    row('push: bytes sent', (o) => o.pushBytes, formatBytes),
    row('push: time', (o) => o.pushMs, formatMs),
    row('remote store after push', (o) => o.stored, formatBytes),
    row('clone: bytes received', (o) => o.cloneBytes, formatBytes),
    row(`clone: time (with checkout), median of ${CLONE_ROUNDS}`, (o) => median(o.cloneMs), formatMs),
    row(`then its files checked out again: time, median of ${CLONE_ROUNDS}`, (o) => median(o.checkoutMs), formatMs),
    row('then every version fetched: bytes', (o) => history.get(o)!.bytes, formatBytes),
    row('then every version fetched: time', (o) => history.get(o)!.ms, formatMs),
    row(`next commit pushed (${Object.values(corpus.next).join(', ')}): bytes sent`, (o) => next.get(o)!.bytes, formatBytes),
    row('next commit pushed: time', (o) => next.get(o)!.ms, formatMs),
    '',
    'S3 bytes are measured on the wire (HTTP headers included) by a proxy in front of s3rver; S3 clones are timed without it (the push and the fetch of every version go through it). Folder and LFS bytes are what the stores hold.',
    corpus.note,
    `Clone times, each tool in turn: ${all.map((o, i) => `${['folder', 'S3', 'Git LFS'][i]} ${[...o.cloneMs].sort((a, b) => a - b).map((ms) => formatMs(ms)).join(', ')}`).join('; ')}.`,
    ...(lfs ? [`The least a Node filter takes: the folder's clone with a filter that only sends each file's bytes (floor-filter.ts), median ${formatMs(median(floorMs))}, ${ratio(median(floorMs), median(lfs.cloneMs))} of Git LFS's.`] : []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<void> {
  const lfsVersion = ensureGitLfs();
  const work = tempDir('panini-bench-transfer-');
  const s3 = await startS3Server();
  try {
    const corpora = [mixedCorpus(path.join(work.dir, 'mixed-files')), coursesCorpus(path.join(work.dir, 'courses-files'))];
    for (const corpus of corpora) {
      if (!corpus) {
        process.stdout.write('\n(ffmpeg not installed: the courses corpus is skipped)\n');
        continue;
      }
      const dir = path.join(work.dir, corpus.name);
      mkdirSync(dir);
      await benchCorpus(corpus, dir, s3, lfsVersion);
    }
  } finally {
    await s3.stop();
    work.dispose();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
