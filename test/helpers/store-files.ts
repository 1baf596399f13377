/**
 * Looking at a local atom store from the outside, by walking its directories (independently of
 * LocalStore), for the gc and fsck tests.
 */
import { chmodSync, closeSync, openSync, readdirSync, readFileSync, readSync, utimesSync, writeSync } from 'node:fs';
import path from 'node:path';

const HASH = /^[0-9a-f]{64}$/;

/** Damages a read-only store file (an atom, a pack) in place: one bit of the byte at `position`. */
export function flipByte(file: string, position: number): void {
  chmodSync(file, 0o644);
  const fd = openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, position);
    byte[0]! ^= 0x10;
    writeSync(fd, byte, 0, 1, position);
  } finally {
    closeSync(fd);
  }
}

/** Every atom file under <store>/atoms, by name → full path. */
export function atomFiles(store: string): Map<string, string> {
  return hashNamedFiles(path.join(store, 'atoms'));
}

/** The files of the concept registry (<store>/concepts). */
export function conceptRegistryFiles(store: string): string[] {
  return [...hashNamedFiles(path.join(store, 'concepts')).values()];
}

function hashNamedFiles(root: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (HASH.test(e.name)) found.set(e.name, p);
    }
  };
  walk(root);
  return found;
}

/** The named packs of <store>/packs: each pack file and the atom names its index lists. */
export function packFiles(store: string): { pack: string; atoms: string[] }[] {
  const dir = path.join(store, 'packs');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.idx') && HASH.test(n.slice(0, -4))).map((n) => {
    const idx = readFileSync(path.join(dir, n));
    const count = idx.readUInt32BE(16); // after the 16-byte magic; the hashes start at 24
    const atoms = Array.from({ length: count }, (_, i) => idx.toString('hex', 24 + i * 32, 56 + i * 32));
    return { pack: path.join(dir, `${n.slice(0, -4)}.pack`), atoms };
  });
}

/** Every atom of the store: loose files and the entries of named packs. */
export function atomNames(store: string): Set<string> {
  return new Set([...atomFiles(store).keys(), ...packFiles(store).flatMap((p) => p.atoms)]);
}

/** Sets the mtime of the given files (default: every atom) to `days` ago. */
export function ageFiles(files: Iterable<string>, days: number): void {
  const then = new Date(Date.now() - days * 86_400_000);
  for (const f of files) utimesSync(f, then, then);
}

export function difference<T>(a: Iterable<T>, b: ReadonlySet<T>): Set<T> {
  return new Set([...a].filter((x) => !b.has(x)));
}

export function sorted(set: Iterable<string>): string[] {
  return [...set].sort();
}
