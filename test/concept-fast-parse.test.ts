/**
 * The strict reader of our own concept rendering (src/concept/canonical.ts) must yield exactly what
 * gray-matter with js-yaml yields, or nothing (then gray-matter reads it). Checked on rendered
 * concepts of every shape and on many mutations of them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { ATOM_TYPES, type AtomType, type ContentRef } from '../src/atom.js';
import { parseCanonical } from '../src/concept/canonical.js';
import { ConceptReader, parseConcept, renderConcept, WholeAtomFrontMatter, type TrackComponent } from '../src/concept/concept.js';
import { sha256Hex } from '../src/hash.js';

const require = createRequire(import.meta.url);
const matter = require('gray-matter') as typeof import('gray-matter');
const yaml = require('js-yaml') as typeof import('js-yaml');
const OPTIONS = { language: 'yaml', engines: { yaml: (s: string): object => (yaml.safeLoad(s, { schema: yaml.CORE_SCHEMA, json: false }) ?? {}) as object } };

/** What gray-matter yields: data and body, or the error it throws. */
function reference(text: string): { data: unknown; body: string } | 'error' {
  try {
    const r = matter(text, OPTIONS as unknown as Parameters<typeof matter>[1]);
    return { data: r.data, body: r.content };
  } catch {
    return 'error';
  }
}

function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = ['png', 'binary', '', 'a b', 'x, y', 'q}', '#c', "it's", 'tab\there', 'quote"d', 'back\\slash', 'ünï', 'null', 'true', '1', '-', ': x', '{a: 1}', 'avc1', '[x]'];
const NUMBERS = [0, 1, 7, 42, 1920, -3, 0.5, 12.25, -0.75, 1e21, 2 ** 53, 1e-7, 100000000000000];
const KEYS = ['width', 'height', 'duration_s', 'tracks', 'color_type', '_x', 'null', 'True', 'a-b', '1x', 'k', 'height2'];

function renderRandom(next: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const hash = (): string => sha256Hex(Buffer.from(String(next())));
  const refs: ContentRef[] = [];
  let size = 0;
  const nRefs = Math.floor(next() * 5);
  for (let i = 0; i < nRefs; i++) {
    const n = 1 + Math.floor(next() * 100000);
    refs.push({ hash: hash(), type: pick(ATOM_TYPES) as AtomType, offset: size, size: n });
    size += n;
  }
  const info: Record<string, string | number> = {};
  const nInfo = Math.floor(next() * 4);
  for (let i = 0; i < nInfo; i++) info[pick(KEYS)] = next() < 0.5 ? pick(STRINGS) : pick(NUMBERS);
  const components: TrackComponent[] = [];
  if (next() < 0.3) {
    for (let i = 0; i < 1 + Math.floor(next() * 3); i++) {
      components.push({ hash: hash(), type: pick(['VideoStream', 'AudioStream', 'Manifest'] as const), kind: pick(['video', 'audio', 'subtitle', 'other'] as const), track: Math.floor(next() * 5), codec: pick(STRINGS), samples: 1 + Math.floor(next() * 9), size: 10 + Math.floor(next() * 99) });
    }
  }
  const counts: Record<string, number> = {};
  for (const r of refs) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return renderConcept({ oid: hash(), size, format: pick(STRINGS), info, refs, components }, counts);
}

function check(text: string): boolean {
  const fast = parseCanonical(text);
  if (fast === null) return false;
  const ref = reference(text);
  assert.notEqual(ref, 'error', `fast reader accepted what gray-matter refuses:\n${text}`);
  assert.deepStrictEqual({ data: fast.data, body: fast.body }, ref, `different reading of:\n${text}`);
  return true;
}

test('rendered concepts read the same as through gray-matter, and plain ones take the fast path', () => {
  const next = random(1);
  let fast = 0;
  for (let i = 0; i < 2000; i++) if (check(renderRandom(next))) fast++;
  assert.ok(fast > 500, `only ${fast} of 2000 took the fast path`);
  const plain = renderConcept({ oid: sha256Hex(Buffer.from('x')), size: 1, format: 'binary', info: {}, refs: [{ hash: sha256Hex(Buffer.from('x')), type: 'Raw', offset: 0, size: 1 }] }, { Raw: 1 });
  assert.ok(check(plain));
  const empty = renderConcept({ oid: sha256Hex(Buffer.alloc(0)), size: 0, format: 'empty', info: {}, refs: [] }, {});
  assert.ok(check(empty));
  assert.equal(parseConcept(plain).size, 1);
});

test('mutated concepts are read the same or left to gray-matter', () => {
  const next = random(2);
  const alphabet = ['\n', ' ', '-', ':', ',', '{', '}', '"', '\\', '#', '0', '1', 'a', '\r', '\t', '[', ']', "'", '&', '*', '!', '|', '>', '%', '@', '`', '.', 'e', 'x', '_'];
  for (let i = 0; i < 6000; i++) {
    let text = renderRandom(next);
    for (let k = 0, n = 1 + Math.floor(next() * 3); k < n; k++) {
      const at = Math.floor(next() * text.length);
      const r = next();
      const c = alphabet[Math.floor(next() * alphabet.length)]!;
      if (r < 0.4) text = text.slice(0, at) + c + text.slice(at + 1);
      else if (r < 0.7) text = text.slice(0, at) + c + text.slice(at);
      else text = text.slice(0, at) + text.slice(at + 1);
    }
    check(text);
  }
});

test('edge cases of the layout', () => {
  const h = 'a'.repeat(64);
  const head = `---\npanini: 1\noid: sha256:${h}\nsize: 5\nformat: "binary"\n`;
  const ref = `  - {uri: "atom://sha256:${h}", type: Raw, offset: 0, size: 5}\n`;
  const cases = [
    `${head}content_refs:\n${ref}---\nbody`,
    `${head}content_refs:\n${ref}---`,
    `${head}content_refs:\n${ref}---\r\nbody`,
    `${head}content_refs:\n${ref}----\nbody`,
    `${head}content_refs:\n${ref}---x\n`,
    `${head}info: {a: 1, a: 2}\ncontent_refs:\n${ref}---\n`,
    `${head}info: {__proto__: 1}\ncontent_refs:\n${ref}---\n`,
    `${head}info: {}\ncontent_refs:\n${ref}---\n`,
    `${head}info: {a: 0.10, b: -0, c: 01, d: 1_0, e: .5, f: "x"}\ncontent_refs:\n${ref}---\n`,
    `${head}info: {a: 1.5, b: "x, y", c: -2}\ncontent_refs:\n${ref}---\n`,
    `${head}content_refs:\n${ref}components:\n---\n`,
    `${head}content_refs:\n${ref}extra: 1\n---\n`,
    `${head}content_refs:\n${ref.replace('Raw', 'raw')}---\n`,
    `${head}content_refs:\n${ref.replace('size: 5', 'size: 05')}---\n`,
    `${head}content_refs:\n${ref.replace('size: 5}', 'size: 5 }')}---\n`,
    `${head}content_refs:\n${ref.replace('uri: "', 'uri: \'').replace('", type', '\', type')}---\n`,
    `${head}content_refs:\n${ref}# comment\n---\n`,
    `\ufeff${head}content_refs:\n${ref}---\n`,
    `${head.replace('"binary"', '"bin\\u0061ry"')}content_refs:\n${ref}---\n`,
  ];
  for (const text of cases) check(text);
  assert.ok(check(cases[0]!));
  assert.ok(check(cases[9]!));
  assert.equal(parseCanonical(cases[5]!), null);
  assert.equal(parseCanonical(cases[6]!), null);
});

/** A rendered concept of one whole-file atom of `size` bytes hashing to `hash`. */
function wholeAtomConcept(hash: string, size: number, format: string, info: Record<string, string | number>, type: AtomType = 'Raw'): string {
  return renderConcept({ oid: hash, size, format, info, refs: [{ hash, type, offset: 0, size }] }, { [type]: 1 });
}

test('a concept of one whole-file atom read from the front matter of another: the same as parsing it, or nothing', () => {
  const next = random(3);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const alphabet = ['\n', ' ', '-', ':', ',', '{', '}', '"', '0', '1', '9', 'a', 'f', 'g', 'A', '#', 'x'];
  /** What parseConcept gives, or 'refused'. */
  const parsed = (raw: Buffer): unknown => {
    try {
      return parseConcept(raw);
    } catch {
      return 'refused';
    }
  };
  let modelled = 0;
  for (let i = 0; i < 400; i++) {
    const format = pick(STRINGS);
    const info: Record<string, string | number> = {};
    for (let k = 0, n = Math.floor(next() * 3); k < n; k++) info[pick(KEYS)] = next() < 0.5 ? pick(STRINGS) : pick(NUMBERS);
    const type = pick(['Raw', 'ImageData', 'Compressed'] as const);
    const first = Buffer.from(wholeAtomConcept(sha256Hex(Buffer.from(`a${i}`)), 1 + Math.floor(next() * 99999), format, info, type));
    const model = WholeAtomFrontMatter.of(first, parseConcept(first));
    if (!model) {
      assert.equal(parseCanonical(first.toString()), null, `a canonical concept of one atom makes a model:\n${first}`);
      continue;
    }
    modelled++;
    const hash = sha256Hex(Buffer.from(`b${i}`));
    const size = pick([1, 9, 10, 12345, 64 * 1024, 1 + Math.floor(next() * 999999), 2 ** 48]);
    const alike = Buffer.from(wholeAtomConcept(hash, size, format, info, type));
    assert.deepStrictEqual(model.read(alike), parseConcept(alike), `read as parsed:\n${alike}`);
    // Slots that do not hold a hash and a size as we write them, the same twice: not read.
    const text = alike.toString();
    for (const odd of [
      text.replace(`oid: sha256:${hash}`, `oid: sha256:${hash.toUpperCase()}`),
      text.replace(`atom://sha256:${hash}`, `atom://sha256:${sha256Hex(Buffer.from(`c${i}`))}`),
      text.replace(`\nsize: ${size}\n`, `\nsize: 0${size}\n`),
      text.replace(`, size: ${size}}`, `, size: ${size + 1}}`),
      text.replace(new RegExp(`size: ${size}([}\n])`, 'g'), 'size: 0$1'),
    ]) {
      const read = model.read(Buffer.from(odd));
      assert.ok(read === null || (odd === text && read !== null), `not read:\n${odd}`);
    }
    // Any other difference: the same reading as parsing, or none.
    let mutated = text;
    for (let k = 0, n = 1 + Math.floor(next() * 2); k < n; k++) {
      const at = Math.floor(next() * mutated.length);
      const r = next();
      const c = pick(alphabet);
      if (r < 0.4) mutated = mutated.slice(0, at) + c + mutated.slice(at + 1);
      else if (r < 0.7) mutated = mutated.slice(0, at) + c + mutated.slice(at);
      else mutated = mutated.slice(0, at) + mutated.slice(at + 1);
    }
    const read = model.read(Buffer.from(mutated));
    if (read !== null) assert.deepStrictEqual(read, parsed(Buffer.from(mutated)), `read as parsed:\n${mutated}`);
  }
  assert.ok(modelled > 100, `only ${modelled} of 400 made a model`); // the others are not canonical (strings YAML reads otherwise)
  // Not one whole-file atom, or not rendered as ours: no model.
  const two = renderConcept({ oid: 'a'.repeat(64), size: 3, format: 'binary', info: {}, refs: [{ hash: 'b'.repeat(64), type: 'Raw', offset: 0, size: 1 }, { hash: 'c'.repeat(64), type: 'Raw', offset: 1, size: 2 }] }, { Raw: 2 });
  assert.equal(WholeAtomFrontMatter.of(Buffer.from(two), parseConcept(two)), null);
  const handWritten = `---\npanini: 1\noid: sha256:${'a'.repeat(64)}\nsize: 5\nformat: binary # hand-written\ncontent_refs:\n  - {uri: "atom://sha256:${'a'.repeat(64)}", type: Raw, offset: 0, size: 5}\n---\n`;
  assert.equal(WholeAtomFrontMatter.of(Buffer.from(handWritten), parseConcept(handWritten)), null);
});

test('a ConceptReader reads a run of concepts of every kind as parseConcept does, refusals included', () => {
  const next = random(4);
  const reader = new ConceptReader();
  const formats = ['binary', 'png', 'jpeg'];
  let refused = 0;
  for (let i = 0; i < 600; i++) {
    let text = next() < 0.2 ? renderRandom(next) : wholeAtomConcept(sha256Hex(Buffer.from(`d${i}`)), 1 + Math.floor(next() * 70000), formats[i % 3]!, i % 5 === 0 ? { width: i } : {});
    if (next() < 0.2) {
      const at = Math.floor(next() * text.length);
      text = text.slice(0, at) + (next() < 0.5 ? '' : 'Z') + text.slice(at + 1);
    }
    const raw = Buffer.from(text);
    let expected: unknown;
    try {
      expected = parseConcept(raw);
    } catch (err) {
      expected = (err as Error).message;
    }
    let actual: unknown;
    try {
      actual = reader.read(raw);
    } catch (err) {
      actual = (err as Error).message;
      refused++;
    }
    assert.deepStrictEqual(actual, expected, `concept ${i}:\n${text}`);
  }
  assert.ok(refused > 10, `only ${refused} refusals`);
});
