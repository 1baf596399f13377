/**
 * Manifest atoms: lists of child refs stored in the atom store, so a concept stays small whatever
 * the file's length (a tree, like the seed's parent/children).
 *
 * Text format (docs/concept-format.md):
 *   panini-manifest 1
 *   <type> <size> <64 hex>        one line per child, in file order
 * Children are contiguous; their offsets follow from the parent ref's offset, so a manifest does
 * not depend on where its span sits in the file and identical spans share one manifest atom.
 */
import { isAtomHash, isAtomType, MANIFEST_TYPES, type ContentRef } from '../atom.js';
import { PaniniError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import type { AtomReader, AtomWriter } from '../store/local.js';

const HEADER = 'panini-manifest 1';
export const MANIFEST_FANOUT = 1024;
/** A manifest with MANIFEST_FANOUT children is ~90 KiB; anything far larger is not ours. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_MANIFEST_CHILDREN = 32768;
const MAX_DEPTH = 12;

export function encodeManifest(children: readonly ContentRef[]): Buffer {
  const lines = [HEADER];
  for (const c of children) lines.push(`${c.type} ${c.size} ${c.hash}`);
  return Buffer.from(lines.join('\n') + '\n');
}

interface ManifestEntry {
  type: ContentRef['type'];
  size: number;
  hash: string;
}

export function decodeManifest(bytes: Buffer, hash: string): ManifestEntry[] {
  const bad = (why: string): PaniniError =>
    new PaniniError(`manifest atom ${hash} is malformed: ${why}`, 'the concept or store was damaged or hand-edited; re-add the file, or fetch the atom again');
  if (bytes.length > MAX_MANIFEST_BYTES) throw bad('too large');
  const text = bytes.toString('latin1');
  const lines = text.split('\n');
  if (lines[0] !== HEADER) throw bad('unknown header');
  if (lines[lines.length - 1] !== '') throw bad('missing final newline');
  const entries: ManifestEntry[] = [];
  for (let i = 1; i < lines.length - 1; i++) {
    const parts = lines[i]!.split(' ');
    const [type, sizeText, child] = parts;
    if (parts.length !== 3 || !isAtomType(type) || !isAtomHash(child) || !/^[0-9]{1,15}$/.test(sizeText!)) throw bad(`line ${i + 1}`);
    const size = Number(sizeText);
    if (size <= 0) throw bad(`line ${i + 1}: empty child`);
    entries.push({ type, size, hash: child });
    if (entries.length > MAX_MANIFEST_CHILDREN) throw bad('too many children');
  }
  if (entries.length === 0) throw bad('no children');
  return entries;
}

/**
 * Groups refs into manifest atoms, level by level, until at most `maxTop` remain. The store gets
 * every manifest written; the returned refs (type Manifest) span the same bytes as their children.
 */
export function buildManifestTree(leaves: readonly ContentRef[], store: AtomWriter, maxTop: number): ContentRef[] {
  let level: ContentRef[] = [...leaves];
  while (level.length > maxTop) {
    const next: ContentRef[] = [];
    for (let i = 0; i < level.length; i += MANIFEST_FANOUT) {
      const group = level.slice(i, i + MANIFEST_FANOUT);
      const bytes = encodeManifest(group);
      const hash = sha256Hex(bytes);
      store.put(hash, bytes);
      const size = group.reduce((n, c) => n + c.size, 0);
      next.push({ hash, type: 'Manifest', offset: group[0]!.offset, size });
    }
    level = next;
  }
  return level;
}

/** Expands manifests into the leaf atoms they reach, in file order, checking that spans add up. */
export function* expandRefs(refs: readonly ContentRef[], store: AtomReader): Generator<ContentRef> {
  yield* expand(refs, store, [], 0);
}

function* expand(refs: readonly ContentRef[], store: AtomReader, path: string[], depth: number): Generator<ContentRef> {
  for (const ref of refs) {
    if (!MANIFEST_TYPES.has(ref.type)) {
      yield ref;
      continue;
    }
    if (depth >= MAX_DEPTH) throw new PaniniError(`manifest tree deeper than ${MAX_DEPTH} levels at atom ${ref.hash}`, 'the concept is not one git-panini wrote; re-add the file');
    if (path.includes(ref.hash)) throw new PaniniError(`manifest atom ${ref.hash} contains itself (a loop)`, 'the concept is not one git-panini wrote; re-add the file');
    const entries = decodeManifest(store.get(ref.hash), ref.hash);
    let offset = ref.offset;
    const children: ContentRef[] = entries.map((e) => {
      const child = { ...e, offset };
      offset += e.size;
      return child;
    });
    if (offset - ref.offset !== ref.size) {
      throw new PaniniError(`manifest atom ${ref.hash} covers ${offset - ref.offset} bytes but its ref says ${ref.size}`, 'the concept does not match its manifest; re-add the file');
    }
    path.push(ref.hash);
    yield* expand(children, store, path, depth + 1);
    path.pop();
  }
}
