/**
 * After a fault or an attack, a local store must hold nothing half-written and nothing wrong: no
 * temp file anywhere in it, nothing left in tmp/, and every atom it lists (loose or otherwise)
 * hashing to its name. Read through LocalStore, so the check follows the store's own layout.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local.js';

/** Asserts the store at `root` is clean and sound; returns the names of its atoms. */
export function assertStoreClean(root: string): Set<string> {
  const leftovers: string[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.name.startsWith('.tmp-')) leftovers.push(full);
      if (e.isDirectory()) walk(full);
      else if (dir === path.join(root, 'tmp')) leftovers.push(full);
    }
  };
  walk(root);
  assert.deepEqual(leftovers, [], `temp files left in the store ${root}`);
  const store = new LocalStore(root);
  const names = new Set<string>();
  for (const { hash } of store.list()) {
    store.get(hash); // throws AtomError if the bytes do not hash to the name: a partial or wrong atom
    names.add(hash);
  }
  return names;
}
