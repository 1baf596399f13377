/**
 * Settings: the committed .paniniconfig is read only when a key it may set is looked up (a checkout
 * from the local store never needs it), and still ranks below git config and the environment. A
 * plainly written one is read without Git, to the same settings Git reads from it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Config, readSimpleConfig, type Setting } from '../src/git/config.js';
import { tempDir } from './helpers/cli.js';

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
