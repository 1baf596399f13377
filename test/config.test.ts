/**
 * Settings: the committed .paniniconfig is read only when a key it may set is looked up (a checkout
 * from the local store never needs it), and still ranks below git config and the environment. A
 * plainly written one is read without Git, to the same settings Git reads from it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import childProcess, { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Config, loadConfig, parseConfig, readConfigFile, type Setting } from '../src/git/config.js';
import { findRepo, plainRepoAt, type Repo } from '../src/git/repo.js';
import { git, tempDir, tempRepo } from './helpers/cli.js';

function configWithFile(own: Record<string, string>, file: Record<string, string>): { config: Config; reads: () => number } {
  let reads = 0;
  const settings = new Map<string, Setting>(Object.entries(own).map(([k, value]) => [k, { value, origin: 'git config' }]));
  const config = new Config(settings, () => {
    reads++;
    return Object.entries(file).map(([k, value]) => [k, { value, origin: '.paniniconfig' }]);
  });
  return { config, reads: () => reads };
}

test('.paniniconfig is read at the first look-up of a shared key, once', () => {
  const { config, reads } = configWithFile({ 'panini.storage': '/store' }, { 'panini.url': 'file:///team', 'panini.maxatomsize': '8m' });
  assert.equal(config.get('panini.storage'), '/store');
  assert.equal(config.get('panini.gc.reflog'), undefined);
  assert.equal(reads(), 0, 'keys a .paniniconfig may not set never read it');
  assert.equal(config.get('panini.url'), 'file:///team');
  assert.equal(config.getInt('panini.maxAtomSize', undefined), 8 * 1024 * 1024);
  assert.equal(reads(), 1);
});

test('git config outranks .paniniconfig, which cannot set other keys', () => {
  const { config, reads } = configWithFile({ 'panini.url': 'file:///mine' }, { 'panini.url': 'file:///team', 'panini.storage': '/elsewhere' });
  assert.equal(config.get('panini.url'), 'file:///mine');
  assert.equal(reads(), 0, 'a key git config sets needs no file');
  assert.equal(config.get('panini.storage'), undefined);
  assert.deepEqual(config.entries().map(([k, s]) => `${k}=${s.value} <- ${s.origin}`), ['panini.url=file:///mine <- git config']);
});

/** The variables Git reads from a config file, as `git config --list` gives them (keys lowercased as Config looks them up). */
function listedByGit(file: string, env: NodeJS.ProcessEnv = process.env): [string, string][] | null {
  const r = spawnSync('git', ['config', '-z', '--file', file, '--list'], { encoding: 'utf8', env });
  if (r.status !== 0) return null;
  return r.stdout.split('\0').filter(Boolean).map((kv) => {
    const nl = kv.indexOf('\n');
    return nl < 0 ? [kv.toLowerCase(), 'true'] : [kv.slice(0, nl).toLowerCase(), kv.slice(nl + 1)];
  });
}

test('a config file reads as Git reads it; an include, or anything Git refuses, is left to Git', (t) => {
  const { dir, dispose } = tempDir('panini-config-');
  t.after(dispose);
  const file = path.join(dir, 'config');
  const read = [
    '[panini]\n\turl = file:///mnt/studio/atoms\n',
    '# shared store\n[panini]\n\turl = s3://atoms/course-videos\n; S3 settings\n[panini "s3"]\n\tendpoint = https://minio.example.com:9000\n\tforcePathStyle = true\n',
    '[Panini]\r\n  URL=s3://b/p  \r\n  concurrency =16\r\n\r\n[panini "S3"]\r\n\tregion = eu-west-1\r\n',
    '[panini.s3]\n\tregion = us-east-1\n[panini]\n\tretries\n\ttimeout =\n\turl = file:///a b  c\n\tstorage = x\ty \t z\t\r\n',
    '',
    '[panini]\n\turl = "file:///quoted path" # a comment\n\tstorage = x ; y\n',
    '[panini]\n\turl = file:///x\\\n/continued\n',
    '[panini] url = file:///same-line\n[user]name=A "B" \\"C\\"\n',
    '\uFEFF[panini]\n\turl = file:///caf\u00e9\n\tstorage = "  kept  "  \t and \t\t spaced \n',
    '[alias]\n\tlg = log --graph --pretty=format:\'%Cred%h%Creset\' --abbrev-commit\n\tst = "!f() { echo \\"$1\\"\\t; }; f"\n',
    '[remote "origin \\"x\\" \\\\ y"]\n\turl = https://example.com/x.git\n[credential "https://example.com"]\n\thelper = store\n',
    '[core]\n\tbare = false\n\tlogAllRefUpdates\n[panini]\n\turl=\n\tfoo-bar = "a;b#c"\n',
  ];
  for (const text of read) {
    writeFileSync(file, text);
    const git = listedByGit(file);
    assert.notEqual(git, null, JSON.stringify(text));
    assert.deepEqual(readConfigFile(file), git, JSON.stringify(text));
  }
  const forGit = [
    '[include]\n\tpath = other.cfg\n',
    '[includeIf "gitdir:/x/"]\n\tpath = other.cfg\n',
    'url = file:///no-section\n',
  ];
  const refused = [
    '[panini]\n\turl = "unterminated\n',
    '[panini]\n\turl = bad \\q escape\n',
    '[panini "unterminated]\n',
    '[panini]\n\t9url = x\n',
    '[panini]\n\turl x\n',
  ];
  for (const text of [...forGit, ...refused]) {
    writeFileSync(file, text);
    assert.equal(readConfigFile(file), null, JSON.stringify(text));
    if (refused.includes(text)) assert.equal(listedByGit(file), null, `Git refuses it too: ${JSON.stringify(text)}`);
  }
  assert.equal(readConfigFile(path.join(dir, 'absent')), undefined, 'no file: nothing to read');
  const target = path.join(dir, 'elsewhere');
  writeFileSync(target, read[0]!);
  const link = path.join(dir, 'linked');
  symlinkSync(target, link);
  assert.equal(readConfigFile(link), null, 'a symlink is left to Git');
  assert.deepEqual(readConfigFile(link, true), listedByGit(target), 'or followed, where asked');
});

test('random config files read as Git reads them, or are left to Git (a seeded differential fuzz)', (t) => {
  const { dir, dispose } = tempDir('panini-config-fuzz-');
  t.after(dispose);
  const file = path.join(dir, 'config');
  let seed = 20261201;
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0; // mulberry32
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  const pick = <T>(a: readonly T[]): T => a[rnd(a.length)]!;
  const headers = ['[panini]', '[Panini "S3"]', '[a.b]', '[x "a\\"b"]', '[sec  "sub sp"]', '[s] k = v', '[include]', '[]'];
  const values = ['a', 'b c', ' ', '\t', '"', '"q x"', '\\n', '\\t', '\\"', '\\\\', '#c', ';c', 'é', '\\\n', '\r', '=', '[', ']', "'", 'x#y', '" #"'];
  const blanks = ['', ' ', '\t', '  ', ' \t '];
  let read = 0;
  for (let i = 0; i < 150; i++) {
    let text = '[panini]\n';
    for (let lines = 1 + rnd(6); lines > 0; lines--) {
      const kind = rnd(10);
      if (kind === 0) text += pick(headers);
      else if (kind === 1) text += pick(blanks) + pick(['# comment', '; c', '']);
      else {
        text += pick(blanks) + pick(['url', 'Key', 'k-9', 'k']) + pick(blanks);
        if (rnd(5) > 0) {
          text += '=' + pick(blanks);
          for (let n = rnd(5); n > 0; n--) text += pick(values);
          text += pick(blanks);
        }
      }
      text += pick(['\n', '\n', '\r\n']);
    }
    writeFileSync(file, text);
    const ours = readConfigFile(file);
    if (ours === null) continue; // left to Git
    read++;
    assert.deepEqual(ours, listedByGit(file), JSON.stringify(text));
  }
  assert.ok(read > 100, `most are read without Git (${read} of 150)`);
});

test('a hostile config file costs no more than its length to read', () => {
  const long = 60_000;
  const lines = [
    `\turl = a${' '.repeat(long)}"`, // a value's blanks, then a quote: once read twice over for each blank
    `\turl = ${'a '.repeat(long / 2)}"`,
    `\turl = "${'\\\\'.repeat(long / 2)}`,
    `[x "${'a'.repeat(long)}`,
    `[x${' '.repeat(long)}`,
    `${'#'.repeat(long)}`,
    `\t${'k'.repeat(long)} x`,
  ];
  for (const line of lines) {
    const started = process.hrtime.bigint();
    parseConfig(`[panini]\n${line}\n`);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 500, `${JSON.stringify(line.slice(0, 24))}…: ${ms.toFixed(0)} ms`);
  }
});

test("settings are read from Git's files and environment as Git reads them", (t) => {
  const repo = tempRepo(t.after.bind(t));
  const { dir, dispose } = tempDir('panini-config-home-');
  t.after(dispose);
  const system = path.join(dir, 'system');
  const global = path.join(dir, 'global');
  writeFileSync(system, '[panini]\n\turl = file:///system\n\tconcurrency = 4\n\tretries = 2\n\ttimeout = 5s\n');
  writeFileSync(global, '[alias]\n\tlg = log --pretty=format:\'%h "%s"\'\n[panini]\n\turl = "file:///global store" ; mine\n\tconcurrency = 8\n');
  writeFileSync(path.join(repo.dir, '.paniniconfig'), '[panini]\n\ttimeout = 9s\n\tmaxAtomSize = 4m\n');
  git(repo.dir, ['config', 'panini.storage', 'own-store']);
  git(repo.dir, ['config', 'panini.retries', '3']);
  const base: NodeJS.ProcessEnv = { ...process.env, GIT_CONFIG_SYSTEM: system, GIT_CONFIG_GLOBAL: global };
  delete base.GIT_CONFIG_NOSYSTEM;
  const settings = (config: Config): string[] => config.entries().map(([k, s]) => `${k}=${s.value}`);
  const envs: [string, NodeJS.ProcessEnv][] = [
    ['files', base],
    ['git -c', { ...base, GIT_CONFIG_PARAMETERS: `'panini.url'='file:///it'\\''s here' 'panini.timeout' 'panini.maxatomsize=8m'` }],
    ['git --config-env', { ...base, GIT_CONFIG_COUNT: '2', GIT_CONFIG_KEY_0: 'panini.concurrency', GIT_CONFIG_VALUE_0: '16', GIT_CONFIG_KEY_1: 'Panini.Retries', GIT_CONFIG_VALUE_1: '' }],
    ['no system file', { ...base, GIT_CONFIG_NOSYSTEM: '1' }],
  ];
  for (const [what, env] of envs) {
    const found = plainRepoAt(repo.dir);
    assert.ok(found?.ownConfig, what);
    const viaGit = loadConfig({ ...found, ownConfig: undefined }, env);
    const calls = gitCalls(() => assert.deepEqual(settings(loadConfig(found, env)), settings(viaGit), what));
    assert.equal(calls, 0, `${what}: read without Git`);
  }
  assert.ok(settings(loadConfig(plainRepoAt(repo.dir), envs[1]![1]!)).includes("panini.url=file:///it's here"));
  // Left to Git, with the same answer: an include, a system file whose place is not known.
  writeFileSync(global, `[include]\n\tpath = ${system}\n`);
  const included = gitCalls(() => assert.deepEqual(settings(loadConfig(plainRepoAt(repo.dir), base)), ['panini.concurrency=4', 'panini.maxatomsize=4m', 'panini.retries=3', 'panini.storage=own-store', 'panini.timeout=5s', 'panini.url=file:///system']));
  assert.equal(included, 1, 'an include is read by Git');
  writeFileSync(global, '[panini]\n\tconcurrency = 8\n');
  const { GIT_CONFIG_SYSTEM: _, ...unknownSystem } = base;
  const elsewhere = gitCalls(() => loadConfig(plainRepoAt(repo.dir), { ...unknownSystem, PATH: `${dir}:${process.env.PATH}` }));
  writeFileSync(path.join(dir, 'git'), '#!/bin/sh\nexec /usr/bin/git "$@"\n', { mode: 0o755 });
  const other = gitCalls(() => loadConfig(plainRepoAt(repo.dir), { ...unknownSystem, PATH: `${dir}:${process.env.PATH}` }));
  assert.deepEqual([elsewhere, other], [0, 1], 'a Git of its own build reads a system file of its own: Git is asked');
});

/** Where a repository was found (its own config read or not). */
const located = (repo: Repo | null): Omit<Repo, 'ownConfig'> | null => repo && { commonDir: repo.commonDir, gitDir: repo.gitDir, top: repo.top };

/** How many `git` processes `fn` starts. */
function gitCalls(fn: () => void): number {
  let calls = 0;
  const spawnSync = childProcess.spawnSync;
  childProcess.spawnSync = ((...args: Parameters<typeof spawnSync>) => {
    if (args[0] === 'git') calls++;
    return spawnSync(...args);
  }) as typeof spawnSync;
  try {
    fn();
  } finally {
    childProcess.spawnSync = spawnSync;
  }
  return calls;
}

test('a plain repository is found without Git, as Git finds it; any other case is left to Git', (t) => {
  const repo = tempRepo(t.after.bind(t));
  const viaGit = (cwd: string, env: Record<string, string> = {}): { commonDir: string; gitDir: string; top: string | null } => {
    const [commonDir, gitDir, inside, cdup] = git(cwd, ['rev-parse', '--path-format=absolute', '--git-common-dir', '--git-dir', '--is-inside-work-tree', '--show-cdup'], { env }).split('\n');
    return { commonDir: commonDir!, gitDir: gitDir!, top: inside === 'true' ? path.resolve(cwd, cdup ?? '') : null };
  };
  assert.deepEqual(located(plainRepoAt(repo.dir)), viaGit(repo.dir), 'a fresh repository');
  git(repo.dir, ['config', 'filter.panini.process', 'git-panini filter-process']);
  git(repo.dir, ['remote', 'add', 'origin', 'https://example.com/x.git']);
  assert.deepEqual(located(plainRepoAt(repo.dir)), viaGit(repo.dir), 'with sections and subsections');
  const link = `${repo.dir}-link`;
  symlinkSync(repo.dir, link);
  t.after(() => rmSync(link, { force: true }));
  assert.deepEqual(located(plainRepoAt(link)), viaGit(link), 'reached through a symlink: Git names its directories by their real path');

  // Left to Git: each of these, and findRepo still answers as Git does.
  const sub = path.join(repo.dir, 'sub');
  mkdirSync(sub);
  assert.equal(plainRepoAt(sub), null, 'not the top of the work tree');
  assert.deepEqual(located(findRepo(sub)), viaGit(sub));
  const linked = path.join(repo.dir, '..', `${path.basename(repo.dir)}-linked`);
  git(repo.dir, ['commit', '-q', '--allow-empty', '-m', 'one']);
  git(repo.dir, ['worktree', 'add', '-q', linked]);
  t.after(() => rmSync(linked, { recursive: true, force: true }));
  assert.equal(plainRepoAt(linked), null, 'a linked worktree (.git is a file)');
  assert.deepEqual(located(findRepo(linked)), viaGit(linked));
  const cases: [string, () => void, () => void][] = [
    ['a moved work tree', () => git(repo.dir, ['config', 'core.worktree', sub]), () => git(repo.dir, ['config', '--unset', 'core.worktree'])],
    ['a bare repository', () => git(repo.dir, ['config', 'core.bare', 'true']), () => git(repo.dir, ['config', 'core.bare', 'false'])],
    ['a format extension', () => git(repo.dir, ['config', 'extensions.worktreeConfig', 'true']), () => git(repo.dir, ['config', '--unset', 'extensions.worktreeConfig'])],
    ['a config that includes another', () => git(repo.dir, ['config', 'include.path', '/dev/null']), () => git(repo.dir, ['config', '--remove-section', 'include'])],
  ];
  for (const [what, make, undo] of cases) {
    make();
    assert.equal(plainRepoAt(repo.dir), null, what);
    assert.deepEqual(located(findRepo(repo.dir)), viaGit(repo.dir), what);
    undo();
  }
  assert.deepEqual(located(plainRepoAt(repo.dir)), viaGit(repo.dir), 'plain again');
  const withEnv = <T>(env: Record<string, string>, fn: () => T): T => {
    Object.assign(process.env, env);
    try {
      return fn();
    } finally {
      for (const name of Object.keys(env)) delete process.env[name];
    }
  };
  for (const name of ['GIT_WORK_TREE', 'GIT_COMMON_DIR', 'GIT_CONFIG_COUNT']) {
    assert.equal(withEnv({ [name]: name === 'GIT_CONFIG_COUNT' ? '0' : path.join(repo.dir, '.git') }, () => plainRepoAt(repo.dir)), null, name);
  }
  // In a clone, Git runs its filter with GIT_DIR set to the new repository's .git.
  for (const named of [path.join(repo.dir, '.git'), '.git', path.join(link, '.git')]) {
    const env = { GIT_DIR: named };
    assert.deepEqual(located(withEnv(env, () => plainRepoAt(repo.dir))), viaGit(repo.dir, env), `GIT_DIR=${named}`);
  }
  const other = tempRepo(t.after.bind(t));
  assert.equal(withEnv({ GIT_DIR: path.join(other.dir, '.git') }, () => plainRepoAt(repo.dir)), null, 'GIT_DIR naming another repository');
  process.env.GIT_CONFIG_PARAMETERS = `'core.worktree'='${sub}'`;
  try {
    assert.equal(plainRepoAt(repo.dir), null, 'git -c core.worktree=…');
  } finally {
    delete process.env.GIT_CONFIG_PARAMETERS;
  }
});

