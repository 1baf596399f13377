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
import { isAtomType, MANIFEST_TYPES, type AtomType, type ContentRef } from '../atom.js';
import { PaniniError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import type { AtomReader, AtomWriter } from '../store/local.js';

const HEADER = 'panini-manifest 1';
export const MANIFEST_FANOUT = 1024;
/** A manifest with MANIFEST_FANOUT children is ~90 KiB; anything far larger is not ours. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_MANIFEST_CHILDREN = 32768;
const MAX_DEPTH = 12;
/**
 * Entries of decoded manifests kept per store for the process (~100 bytes each): a checkout walks
 * the manifests its fetch just read, and a manifest listed many times over is read once.
 */
const MAX_DECODED_ENTRIES = 131_072;

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

/**
 * Manifest lines: `<type> <number> <64 lowercase hex>\n`, or with two numbers (track manifests),
 * numbers of 1–15 digits. A manifest is checked whole by one native regular expression (fast from
 * a process's first call on, as every checkout is), then its fields are cut from each line; only a
 * manifest that fails is matched line by line, to name its first bad line.
 */
const LINE = /([A-Za-z]{1,16}) ([0-9]{1,15}) ([0-9a-f]{64})\n/y;
const TRACK_LINE = /([A-Za-z]{1,16}) ([0-9]{1,15}) ([0-9]{1,15}) ([0-9a-f]{64})\n/y;
const LINES = /(?:[A-Za-z]{1,16} [0-9]{1,15} [0-9a-f]{64}\n)+$/y;
const TRACK_LINES = /(?:[A-Za-z]{1,16} [0-9]{1,15} [0-9]{1,15} [0-9a-f]{64}\n)+$/y;
const HASH_CHARS = 64;

/**
 * Reads a manifest's lines after its header; `take` gets each line's fields (`second` is 0 with
 * one number).
 */
function readManifestLines(
  bytes: Buffer, header: string, numbers: 1 | 2, bad: (why: string) => PaniniError,
  take: (type: AtomType, first: number, second: number, hash: string, line: number) => void,
): void {
  if (bytes.length > MAX_MANIFEST_BYTES) throw bad('too large');
  const text = bytes.toString('latin1');
  if (!text.startsWith(header + '\n')) throw bad('unknown header');
  if (!text.endsWith('\n')) throw bad('missing final newline');
  if (text.length === header.length + 1) throw bad('no children');
  const whole = numbers === 1 ? LINES : TRACK_LINES;
  whole.lastIndex = header.length + 1;
  if (!whole.test(text)) throw bad(`line ${firstBadLine(text, header, numbers === 1 ? LINE : TRACK_LINE)}`);
  const lines = text.split('\n'); // the header, the children, and '' after the final newline
  if (lines.length - 2 > MAX_MANIFEST_CHILDREN) throw bad('too many children');
  for (let i = 1; i < lines.length - 1; i++) {
    const l = lines[i]!;
    const firstSpace = l.indexOf(' ');
    const type = l.slice(0, firstSpace);
    if (!isAtomType(type)) throw bad(`line ${i + 1}`);
    const hashAt = l.length - HASH_CHARS;
    if (numbers === 1) {
      take(type, Number(l.slice(firstSpace + 1, hashAt - 1)), 0, l.slice(hashAt), i + 1);
    } else {
      const secondSpace = l.indexOf(' ', firstSpace + 1);
      take(type, Number(l.slice(firstSpace + 1, secondSpace)), Number(l.slice(secondSpace + 1, hashAt - 1)), l.slice(hashAt), i + 1);
    }
  }
}

/** The number of the first line after the header that `line` (sticky) does not match. */
function firstBadLine(text: string, header: string, line: RegExp): number {
  let n = 2;
  for (line.lastIndex = header.length + 1; line.lastIndex < text.length && line.test(text); n++) { /* next line */ }
  return n;
}

export function decodeManifest(bytes: Buffer, hash: string): ManifestEntry[] {
  const bad = (why: string): PaniniError =>
    new PaniniError(`manifest atom ${hash} is malformed: ${why}`, 'the concept or store was damaged or hand-edited; re-add the file, or fetch the atom again');
  const entries: ManifestEntry[] = [];
  readManifestLines(bytes, HEADER, 1, bad, (type, size, _, child, line) => {
    if (size <= 0) throw bad(`line ${line}: empty child`);
    entries.push({ type, size, hash: child });
  });
  return entries;
}

/**
 * Whether a file-order manifest lists manifests (a level of the tree above the leaves), from its
 * first child alone: buildManifestTree makes each level of one kind. Throws as decodeManifest does
 * on a manifest that does not start as one.
 */
export function listsManifests(bytes: Buffer, hash: string): boolean {
  const first = bytes.subarray(HEADER.length + 1, bytes.indexOf(0x0a, HEADER.length + 1) + 1);
  return decodeManifest(Buffer.concat([bytes.subarray(0, HEADER.length + 1), first]), hash).some((child) => MANIFEST_TYPES.has(child.type));
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
export function expandRefs(refs: readonly ContentRef[], store: AtomReader): Generator<ContentRef> {
  // Each manifest is read and verified once: a hostile one may be listed many times over.
  return expand(refs, store, null);
}

/**
 * Every distinct leaf the refs reach, each once, visiting each manifest once (with the same checks
 * as expandRefs). What a presence check needs: a manifest listed many times over (a few hundred
 * bytes of manifests can describe terabytes of repeated leaves) costs one visit, not one per use.
 */
export function* distinctLeaves(refs: readonly ContentRef[], store: AtomReader): Generator<ContentRef> {
  const seen = new Set<string>();
  for (const leaf of expand(refs, store, new Set())) {
    if (seen.has(leaf.hash)) continue;
    seen.add(leaf.hash);
    yield leaf;
  }
}

/** Decoded manifests of each store, oldest first, and how many entries they hold. */
const decodedByStore = new WeakMap<AtomReader, { manifests: Map<string, ManifestEntry[]>; entries: number }>();

/**
 * The children of the file-order manifest atom `hash`, read from the store (verified) and decoded
 * once per process while they fit in MAX_DECODED_ENTRIES: content addressing makes the answer the
 * same every time.
 */
export function readManifest(store: AtomReader, hash: string): ManifestEntry[] {
  let cache = decodedByStore.get(store);
  const cached = cache?.manifests.get(hash);
  if (cached) return cached;
  const entries = decodeManifest(store.get(hash), hash);
  if (entries.length > MAX_DECODED_ENTRIES) return entries;
  if (!cache) decodedByStore.set(store, (cache = { manifests: new Map(), entries: 0 }));
  for (const [oldest, held] of cache.manifests) {
    if (cache.entries + entries.length <= MAX_DECODED_ENTRIES) break;
    cache.manifests.delete(oldest);
    cache.entries -= held.length;
  }
  cache.manifests.set(hash, entries);
  cache.entries += entries.length;
  return entries;
}

/**
 * The walk behind expandRefs and distinctLeaves, one generator whatever the depth (a generator per
 * level would resume each of them for every leaf): `stack` holds the refs being walked at each
 * level and the manifest they came from.
 */
function* expand(refs: readonly ContentRef[], store: AtomReader, visited: Set<string> | null): Generator<ContentRef> {
  const stack: { refs: readonly ContentRef[]; next: number; manifest: string | null }[] = [{ refs, next: 0, manifest: null }];
  while (stack.length > 0) {
    const level = stack[stack.length - 1]!;
    if (level.next === level.refs.length) {
      stack.pop();
      continue;
    }
    const ref = level.refs[level.next++]!;
    if (!MANIFEST_TYPES.has(ref.type)) {
      yield ref;
      continue;
    }
    if (stack.length > MAX_DEPTH) throw new PaniniError(`manifest tree deeper than ${MAX_DEPTH} levels at atom ${ref.hash}`, 'the concept is not one git-panini wrote; re-add the file');
    if (stack.some((l) => l.manifest === ref.hash)) throw new PaniniError(`manifest atom ${ref.hash} contains itself (a loop)`, 'the concept is not one git-panini wrote; re-add the file');
    const key = `${ref.hash} ${ref.size}`;
    if (visited?.has(key)) continue;
    visited?.add(key);
    const entries = readManifest(store, ref.hash);
    let offset = ref.offset;
    const children: ContentRef[] = entries.map((e) => {
      const child = { hash: e.hash, type: e.type, offset, size: e.size };
      offset += e.size;
      return child;
    });
    if (offset - ref.offset !== ref.size) {
      throw new PaniniError(`manifest atom ${ref.hash} covers ${offset - ref.offset} bytes but its ref says ${ref.size}`, 'the concept does not match its manifest; re-add the file');
    }
    stack.push({ refs: children, next: 0, manifest: ref.hash });
  }
}

/*
 * Track manifests: the atoms of one media track (a video's frames, an audio track's chunks), so a
 * component can be fetched and rebuilt without the rest of the file. Unlike file-order manifests
 * their children are not contiguous, so each line carries its absolute source offset:
 *   panini-manifest 1 track
 *   <type> <offset> <size> <64 hex>     in file order
 * A line whose type is a manifest type (VideoStream, AudioStream, Manifest) points to a child track
 * manifest; its offset is its first leaf's and its size the sum of its leaves' sizes. The two kinds
 * never mix: each decoder refuses the other's header, so expandRefs cannot walk into a track.
 */
const TRACK_HEADER = 'panini-manifest 1 track';
/** Lines are ~95 bytes: 8192 of them keep every track manifest under 1 MiB. */
export const TRACK_MANIFEST_FANOUT = 8192;

export function encodeTrackManifest(children: readonly ContentRef[]): Buffer {
  const lines = [TRACK_HEADER];
  for (const c of children) lines.push(`${c.type} ${c.offset} ${c.size} ${c.hash}`);
  return Buffer.from(lines.join('\n') + '\n');
}

export function decodeTrackManifest(bytes: Buffer, hash: string): ContentRef[] {
  const bad = (why: string): PaniniError =>
    new PaniniError(`track manifest atom ${hash} is malformed: ${why}`, 'the concept or store was damaged or hand-edited; re-add the file, or fetch the atom again');
  const entries: ContentRef[] = [];
  readManifestLines(bytes, TRACK_HEADER, 2, bad, (type, offset, size, child, line) => {
    if (size <= 0) throw bad(`line ${line}: empty child`);
    const previous = entries[entries.length - 1];
    if (previous && offset <= previous.offset) throw bad(`line ${line}: offsets must increase`);
    entries.push({ type, offset, size, hash: child });
  });
  return entries;
}

/**
 * Stores a track's leaves (file order) as a tree of track manifests; returns the root ref, typed
 * `type`, whose offset is the first leaf's and whose size is the sum of the leaves' sizes.
 */
export function buildTrackManifest(leaves: readonly ContentRef[], store: AtomWriter, type: AtomType): ContentRef {
  if (leaves.length === 0) throw new RangeError('a track manifest needs at least one leaf');
  let level: readonly ContentRef[] = leaves;
  for (;;) {
    const next: ContentRef[] = [];
    for (let i = 0; i < level.length; i += TRACK_MANIFEST_FANOUT) {
      const group = level.slice(i, i + TRACK_MANIFEST_FANOUT);
      const bytes = encodeTrackManifest(group);
      const hash = sha256Hex(bytes);
      store.put(hash, bytes);
      next.push({ hash, type, offset: group[0]!.offset, size: group.reduce((n, c) => n + c.size, 0) });
    }
    if (next.length === 1) return next[0]!;
    level = next;
  }
}

/**
 * The leaves of a track manifest tree, in file order. `root.size` must be the sum of its leaves'
 * sizes; leaves must not overlap. Throws PaniniError on anything else.
 */
export function* expandTrackRefs(root: Pick<ContentRef, 'hash' | 'type' | 'size'>, store: AtomReader): Generator<ContentRef> {
  const state = { end: -1 };
  yield* expandTrack(root, store, [], 0, state);
}

function* expandTrack(ref: Pick<ContentRef, 'hash' | 'type' | 'size'>, store: AtomReader, path: string[], depth: number, state: { end: number }): Generator<ContentRef> {
  const bad = (why: string): PaniniError => new PaniniError(`track manifest atom ${ref.hash} ${why}`, 'the concept is not one git-panini wrote, or the store is damaged; re-add the file');
  if (depth >= MAX_DEPTH) throw bad(`is nested deeper than ${MAX_DEPTH} levels`);
  if (path.includes(ref.hash)) throw bad('contains itself (a loop)');
  const children = decodeTrackManifest(store.get(ref.hash), ref.hash);
  const total = children.reduce((n, c) => n + c.size, 0);
  if (total !== ref.size) throw bad(`covers ${total} bytes but its ref says ${ref.size}`);
  path.push(ref.hash);
  for (const child of children) {
    if (MANIFEST_TYPES.has(child.type)) {
      yield* expandTrack(child, store, path, depth + 1, state);
      continue;
    }
    if (child.offset < state.end) throw bad(`lists atom ${child.hash} at offset ${child.offset}, overlapping the previous one`);
    state.end = child.offset + child.size;
    yield child;
  }
  path.pop();
}
