/**
 * Settings: the committed .paniniconfig is read only when a key it may set is looked up (a checkout
 * from the local store never needs it), and still ranks below git config and the environment. A
 * plainly written one is read without Git, to the same settings Git reads from it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Config, readSimpleConfig, type Setting } from '../src/git/config.js';
import { findRepo, plainRepoAt } from '../src/git/repo.js';
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

test('a plainly written .paniniconfig reads as Git reads it; anything else is left to Git', (t) => {
  const { dir, dispose } = tempDir('panini-config-');
  t.after(dispose);
  const file = path.join(dir, '.paniniconfig');
  const viaGit = (): [string, string][] => {
    const r = spawnSync('git', ['config', '-z', '--file', file, '--list'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\0').filter(Boolean).map((kv) => {
      const nl = kv.indexOf('\n');
      return nl < 0 ? [kv.toLowerCase(), 'true'] : [kv.slice(0, nl).toLowerCase(), kv.slice(nl + 1)];
    });
  };
  const plain = [
    '[panini]\n\turl = file:///mnt/studio/atoms\n',
    '# shared store\n[panini]\n\turl = s3://atoms/course-videos\n; S3 settings\n[panini "s3"]\n\tendpoint = https://minio.example.com:9000\n\tforcePathStyle = true\n',
    '[Panini]\r\n  URL=s3://b/p  \r\n  concurrency =16\r\n\r\n[panini "S3"]\r\n\tregion = eu-west-1\r\n',
    '[panini.s3]\n\tregion = us-east-1\n[panini]\n\tretries\n\ttimeout =\n\turl = file:///a b  c\n',
    '',
  ];
  for (const text of plain) {
    writeFileSync(file, text);
    assert.deepEqual(readSimpleConfig(file), viaGit(), JSON.stringify(text));
  }
  const forGit = [
    '[panini]\n\turl = "file:///quoted path"\n',
    '[panini]\n\turl = file:///x # a comment\n',
    '[panini]\n\turl = file:///x\\\n/continued\n',
    '[include]\n\tpath = other.cfg\n',
    '[includeIf "gitdir:/x/"]\n\tpath = other.cfg\n',
    '[panini] url = file:///x\n',
    'url = file:///no-section\n',
    '[panini]\n\turl = file:///caf\u00e9\n',
  ];
  for (const text of forGit) {
    writeFileSync(file, text);
    assert.equal(readSimpleConfig(file), null, JSON.stringify(text));
  }
  const target = path.join(dir, 'elsewhere');
  writeFileSync(target, plain[0]!);
  const link = path.join(dir, 'linked');
  symlinkSync(target, link);
  assert.equal(readSimpleConfig(link), null, 'a symlink is left to Git');
});

test('a plain repository is found without Git, as Git finds it; any other case is left to Git', (t) => {
  const repo = tempRepo(t.after.bind(t));
  const viaGit = (cwd: string): { commonDir: string; gitDir: string; top: string | null } => {
    const [commonDir, gitDir, inside, cdup] = git(cwd, ['rev-parse', '--path-format=absolute', '--git-common-dir', '--git-dir', '--is-inside-work-tree', '--show-cdup']).split('\n');
    return { commonDir: commonDir!, gitDir: gitDir!, top: inside === 'true' ? path.resolve(cwd, cdup ?? '') : null };
  };
  assert.deepEqual(plainRepoAt(repo.dir), viaGit(repo.dir), 'a fresh repository');
  git(repo.dir, ['config', 'filter.panini.process', 'git-panini filter-process']);
  git(repo.dir, ['remote', 'add', 'origin', 'https://example.com/x.git']);
  assert.deepEqual(plainRepoAt(repo.dir), viaGit(repo.dir), 'with sections and subsections');
  const link = `${repo.dir}-link`;
  symlinkSync(repo.dir, link);
  t.after(() => rmSync(link, { force: true }));
  assert.deepEqual(plainRepoAt(link), viaGit(link), 'reached through a symlink: Git names its directories by their real path');

  // Left to Git: each of these, and findRepo still answers as Git does.
  const sub = path.join(repo.dir, 'sub');
  mkdirSync(sub);
  assert.equal(plainRepoAt(sub), null, 'not the top of the work tree');
  assert.deepEqual(findRepo(sub), viaGit(sub));
  const linked = path.join(repo.dir, '..', `${path.basename(repo.dir)}-linked`);
  git(repo.dir, ['commit', '-q', '--allow-empty', '-m', 'one']);
  git(repo.dir, ['worktree', 'add', '-q', linked]);
  t.after(() => rmSync(linked, { recursive: true, force: true }));
  assert.equal(plainRepoAt(linked), null, 'a linked worktree (.git is a file)');
  assert.deepEqual(findRepo(linked), viaGit(linked));
  const cases: [string, () => void, () => void][] = [
    ['a moved work tree', () => git(repo.dir, ['config', 'core.worktree', sub]), () => git(repo.dir, ['config', '--unset', 'core.worktree'])],
    ['a bare repository', () => git(repo.dir, ['config', 'core.bare', 'true']), () => git(repo.dir, ['config', 'core.bare', 'false'])],
    ['a format extension', () => git(repo.dir, ['config', 'extensions.worktreeConfig', 'true']), () => git(repo.dir, ['config', '--unset', 'extensions.worktreeConfig'])],
    ['a config Git must read', () => git(repo.dir, ['config', 'user.name', 'Name "quoted"']), () => git(repo.dir, ['config', 'user.name', 'Panini Test'])],
  ];
  for (const [what, make, undo] of cases) {
    make();
    assert.equal(plainRepoAt(repo.dir), null, what);
    assert.deepEqual(findRepo(repo.dir), viaGit(repo.dir), what);
    undo();
  }
  assert.deepEqual(plainRepoAt(repo.dir), viaGit(repo.dir), 'plain again');
  for (const name of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_COMMON_DIR', 'GIT_CONFIG_COUNT']) {
    process.env[name] = name === 'GIT_CONFIG_COUNT' ? '0' : path.join(repo.dir, '.git');
    try {
      assert.equal(plainRepoAt(repo.dir), null, name);
    } finally {
      delete process.env[name];
    }
  }
  process.env.GIT_CONFIG_PARAMETERS = `'core.worktree'='${sub}'`;
  try {
    assert.equal(plainRepoAt(repo.dir), null, 'git -c core.worktree=…');
  } finally {
    delete process.env.GIT_CONFIG_PARAMETERS;
  }
});

