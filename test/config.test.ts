/**
 * Settings: the committed .paniniconfig is read only when a key it may set is looked up (a checkout
 * from the local store never needs it), and still ranks below git config and the environment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Config, type Setting } from '../src/git/config.js';

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
