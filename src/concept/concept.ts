/**
 * Concepts: what Git stores in place of a tracked file. Markdown with YAML front matter; the format
 * is specified in docs/concept-format.md. Rendering is done by hand so the output is byte-for-byte
 * deterministic; parsing goes through gray-matter restricted to YAML (no engine that runs code),
 * except for front matter in our own rendering, read by a strict reader that yields the same.
 */
import type matterType from 'gray-matter';
import type yamlType from 'js-yaml';
import { atomUri, isAtomHash, isAtomType, MANIFEST_TYPES, parseAtomUri, type AtomType, type ContentRef } from '../atom.js';
import { PaniniError } from '../errors.js';
import { lazily } from '../lazy.js';
import type { FormatInfo } from '../decompose/index.js';
import type { TrackKind } from '../decompose/types.js';
import { parseCanonical } from './canonical.js';

// A filter process that reads only our own concepts never needs them.
const matter = lazily<typeof matterType>('gray-matter');
export const yaml = lazily<typeof yamlType>('js-yaml');

export const CONCEPT_VERSION = 1;
/** Refs kept inline in a concept; more go into manifest atoms. Keeps concepts under 8 KiB. */
export const MAX_INLINE_REFS = 32;
/** Refuse to parse anything bigger: concepts we write are < 8 KiB; hand-written notes stay small. */
export const MAX_CONCEPT_BYTES = 1024 * 1024;
const MAX_REFS = 4096;
/** Track components written into a concept (more tracks stay reachable in file order only). */
export const MAX_COMPONENTS = 8;
/** Hand-written notes may list more, within reason. */
const MAX_PARSED_COMPONENTS = 64;
const TRACK_KINDS: readonly TrackKind[] = ['video', 'audio', 'subtitle', 'other'];
/** 2^48 bytes (256 TiB): larger sizes are not real files. */
export const MAX_FILE_SIZE = 2 ** 48;

export interface Concept {
  version: number;
  /** SHA-256 of the whole file, hex. */
  oid: string;
  size: number;
  format: string;
  info: FormatInfo;
  /** Top-level refs in file order, covering [0, size) exactly; Manifest refs expand to more. */
  refs: ContentRef[];
  /** Markdown body (after the front matter). */
  body: string;
  /** Front matter keys that are not git-panini's (hand-written knowledge notes keep theirs). */
  extra: Record<string, unknown>;
  /** Per-track manifests (media files): each lists one track's atoms, for partial fetch and extraction. */
  components?: TrackComponent[];
}

/** One media track's atoms: the root of its track manifest tree (see manifest.ts). */
export interface TrackComponent {
  hash: string;
  /** VideoStream, AudioStream, or Manifest for subtitle and other tracks. */
  type: AtomType;
  kind: TrackKind;
  /** The container's track id. */
  track: number;
  codec: string;
  samples: number;
  /** Bytes of the track's atoms together. */
  size: number;
}

export const OWN_KEYS = new Set(['panini', 'oid', 'size', 'format', 'info', 'content_refs', 'components']);

function scalar(v: string | number): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v); // JSON strings are valid YAML
}

type Renderable = Pick<Concept, 'oid' | 'size' | 'format' | 'info' | 'refs' | 'components'>;

/** The front matter block (between the fences) for our keys. */
export function renderFrontMatter(c: Renderable): string {
  const lines = [
    `panini: ${CONCEPT_VERSION}`,
    `oid: sha256:${c.oid}`,
    `size: ${c.size}`,
    `format: ${scalar(c.format)}`,
  ];
  const info = Object.entries(c.info);
  if (info.length > 0) lines.push(`info: {${info.map(([k, v]) => `${k}: ${scalar(v)}`).join(', ')}}`);
  lines.push(c.refs.length > 0 ? 'content_refs:' : 'content_refs: []'); // a bare key would read back as null (empty files)
  for (const r of c.refs) lines.push(`  - {uri: "${atomUri(r.hash)}", type: ${r.type}, offset: ${r.offset}, size: ${r.size}}`);
  if (c.components?.length) {
    lines.push('components:');
    for (const t of c.components) {
      lines.push(`  - {uri: "${atomUri(t.hash)}", type: ${t.type}, kind: ${t.kind}, track: ${t.track}, codec: ${scalar(t.codec)}, samples: ${t.samples}, size: ${t.size}}`);
    }
  }
  return lines.join('\n') + '\n';
}

export function renderConcept(c: Renderable, leafCounts: Record<string, number>): string {
  return `---\n${renderFrontMatter(c)}---\n${describe(c, leafCounts)}`;
}

function describe(c: Pick<Concept, 'size' | 'format' | 'info'>, leafCounts: Record<string, number>): string {
  const facts = Object.entries(c.info).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v}`);
  const total = Object.values(leafCounts).reduce((a, b) => a + b, 0);
  const byType = Object.entries(leafCounts).sort(([a], [b]) => (a < b ? -1 : 1)).map(([t, n]) => `${n} ${t}`);
  return [
    `# ${c.format} file, ${c.size} bytes`,
    '',
    ...(facts.length ? [facts.join(' · '), ''] : []),
    `Stored by git-panini as ${total} atom${total === 1 ? '' : 's'}${byType.length ? `: ${byType.join(', ')}` : ''}.`,
    '',
  ].join('\n');
}

const OWN_START = Buffer.from(`---\npanini: `);

/** Cheap test: does this content claim to be a concept (so smudge must rebuild it, not pass it)? */
export function looksLikeConcept(head: Buffer): boolean {
  if (head.length < 4 || head[0] !== 0x2d || head[1] !== 0x2d || head[2] !== 0x2d) return false;
  if (head.length >= OWN_START.length && head.compare(OWN_START, 0, OWN_START.length, 0, OWN_START.length) === 0) return true; // as rendered: no text to decode
  const text = head.subarray(0, 1024).toString('latin1');
  return /^---[^\n]*\r?\n(?:[^\n]*\n)*?panini\s*:/m.test(text) || text.includes('content_refs');
}

const refuse = (lang: string) => (): never => {
  throw new PaniniError(`front matter in '${lang}' is refused: git-panini only reads YAML front matter and never evaluates code`, 'if this concept came from a clone, it was crafted or damaged; ask its author, or remove the file');
};

/** gray-matter with every engine but YAML replaced by a refusal, YAML parsed with the safe schema. */
const MATTER_OPTIONS = {
  language: 'yaml',
  engines: {
    yaml: (s: string): object => (yaml().safeLoad(s, { schema: yaml().CORE_SCHEMA, json: false }) ?? {}) as object,
    js: refuse('js'), javascript: refuse('javascript'), coffee: refuse('coffee'), coffeescript: refuse('coffeescript'),
    cson: refuse('cson'), json: refuse('json'), toml: refuse('toml'),
  },
};

/**
 * The front matter of a Markdown note as data, and its body; null if the text has no front matter.
 * Only YAML is read (safe schema); any other front matter language is refused, never evaluated.
 */
export function parseFrontMatter(text: string, bad: (why: string) => PaniniError): { data: Record<string, unknown>; body: string } | null {
  if (Buffer.byteLength(text) > MAX_CONCEPT_BYTES) throw bad('larger than 1 MiB');
  const fence = /^---([^\n\r]*)\r?\n/.exec(text);
  if (!fence) return null;
  const lang = fence[1]!.trim().toLowerCase();
  if (lang !== '' && lang !== 'yaml' && lang !== 'yml') refuse(lang)();
  const canonical = parseCanonical(text);
  if (canonical) return canonical;
  let parsed: matterType.GrayMatterFile<string>;
  try {
    parsed = matter()(text, MATTER_OPTIONS as unknown as Parameters<typeof matterType>[1]);
  } catch (err) {
    if (err instanceof PaniniError) throw err;
    throw bad(`its front matter is not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  const data = parsed.data as unknown;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw bad('front matter is not a mapping');
  return { data: data as Record<string, unknown>, body: parsed.content };
}

/** Parses and validates a concept; throws PaniniError saying what is wrong. */
export function parseConcept(input: Buffer | string): Concept {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  const bad = (why: string): PaniniError =>
    new PaniniError(`not a valid git-panini concept: ${why}`, 'if it came from a clone it may be damaged or crafted; `git log -p` on the path shows who changed it');
  const parsed = parseFrontMatter(text, bad);
  if (!parsed) throw bad('it does not start with a --- front matter fence');
  const { data } = parsed;
  if (data.panini !== CONCEPT_VERSION) throw bad(`unknown format version ${JSON.stringify(data.panini)} (this git-panini reads version ${CONCEPT_VERSION})`);
  const oidText = typeof data.oid === 'string' ? data.oid : '';
  const oid = oidText.startsWith('sha256:') ? oidText.slice(7) : '';
  if (!isAtomHash(oid)) throw bad('oid must be sha256:<64 lowercase hex>');
  const size = data.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_FILE_SIZE) throw bad('size must be a whole number of bytes');
  const format = typeof data.format === 'string' && data.format.length <= 64 ? data.format : null;
  if (format === null) throw bad('format must be a short string');
  const info = parseInfo(data.info, bad);
  const refs = parseRefs(data.content_refs, size, bad);
  const components = parseComponents(data.components, size, bad);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) if (!OWN_KEYS.has(k)) extra[k] = v;
  return { version: CONCEPT_VERSION, oid, size, format, info, refs, body: parsed.body, extra, ...(components ? { components } : {}) };
}

const WHOLE_ATOM_START = '---\npanini: 1\noid: sha256:';
/** Front matters of concepts of one whole-file atom kept by a ConceptReader (a checkout mixes a few kinds of file). */
const MAX_MODELS = 4;

/**
 * Reads concepts one after another: parseConcept, except that a concept of one whole-file atom
 * whose front matter is that of one read before but for its hash and size (a checkout of small
 * files gets thousands of them) is read by comparing bytes, with the same result.
 */
export class ConceptReader {
  private readonly models: WholeAtomFrontMatter[] = [];

  read(raw: Buffer): Concept {
    const text = this.models.length > 0 && raw.length <= MAX_CONCEPT_BYTES ? raw.toString('latin1') : '';
    for (const model of this.models) {
      const concept = model.read(raw, text);
      if (concept) return concept;
    }
    const concept = parseConcept(raw);
    const model = WholeAtomFrontMatter.of(raw, concept);
    if (model) {
      if (this.models.length >= MAX_MODELS) this.models.pop();
      this.models.unshift(model);
    }
    return concept;
  }
}

/**
 * The canonical front matter of a concept of one whole-file atom, its hash and size left out: the
 * concept of another such file, whose front matter is the same but for those two values, is read
 * by comparing bytes, with the result parseConcept gives.
 */
export class WholeAtomFrontMatter {
  private constructor(
    /** The text between the slots: before the oid, before the size, before the uri's hash, before the ref's size, the closing fence. */
    private readonly parts: readonly [string, string, string, string, string],
    private readonly concept: Concept,
  ) {}

  /** The front matter of `raw`, parsed as `concept`, if it is rendered as ours for one whole-file atom; else null. */
  static of(raw: Buffer, concept: Concept): WholeAtomFrontMatter | null {
    const ref = concept.refs.length === 1 ? concept.refs[0]! : null;
    if (!ref || ref.hash !== concept.oid || ref.offset !== 0 || ref.size !== concept.size || concept.components || Object.keys(concept.extra).length > 0) return null;
    const size = String(concept.size);
    const sizeLine = `\nsize: ${size}\n`;
    const refsOpen = 'content_refs:\n  - {uri: "atom://sha256:';
    const refTail = `", type: ${ref.type}, offset: 0, size: `;
    const text = raw.toString('latin1', 0, Math.min(raw.length, 64 * 1024)); // one byte per character: offsets are byte offsets
    const middleAt = WHOLE_ATOM_START.length + 64 + sizeLine.length;
    const middleEnd = text.indexOf(`\n${refsOpen}${concept.oid}${refTail}${size}}\n---\n`, middleAt - 1) + 1;
    if (middleEnd <= 0 || !text.startsWith(`${WHOLE_ATOM_START}${concept.oid}${sizeLine}`) || !parseCanonical(text)) return null;
    return new WholeAtomFrontMatter([WHOLE_ATOM_START, '\nsize: ', `\n${text.slice(middleAt, middleEnd)}${refsOpen}`, refTail, '}\n---\n'], concept);
  }

  /**
   * The concept in `raw` (`text`: the same bytes as latin1, one character per byte) if its front
   * matter is this one with a hash (64 lowercase hex digits, the same twice) and a size (a positive
   * decimal number as we write it, the same twice) in the slots; else null. Compared as text: one
   * native call per part, fast from a process's first concepts on.
   */
  read(raw: Buffer, text = raw.length <= MAX_CONCEPT_BYTES ? raw.toString('latin1') : ''): Concept | null {
    if (raw.length > MAX_CONCEPT_BYTES || text.length !== raw.length) return null;
    const [start, beforeSize, beforeUri, beforeRefSize, fence] = this.parts;
    if (!text.startsWith(start)) return null;
    let at = start.length;
    const hash = text.slice(at, at + 64);
    at += 64;
    if (!isAtomHash(hash) || !text.startsWith(beforeSize, at)) return null;
    at += beforeSize.length;
    const sizeEnd = text.indexOf('\n', at); // the text after the size starts a line
    const sizeText = sizeEnd < 0 ? '' : text.slice(at, sizeEnd);
    // As parseCanonical and parseConcept take it: no leading zero, a whole file of at least one byte.
    if (!/^[1-9][0-9]{0,14}$/.test(sizeText) || !text.startsWith(beforeUri, sizeEnd)) return null;
    at = sizeEnd + beforeUri.length;
    if (!text.startsWith(hash, at) || !text.startsWith(beforeRefSize, at + 64)) return null;
    at += 64 + beforeRefSize.length;
    if (!text.startsWith(sizeText, at) || !text.startsWith(fence, at + sizeText.length)) return null; // the fence starts with "}": no digit more
    at += sizeText.length + fence.length;
    const size = Number(sizeText);
    if (size > MAX_FILE_SIZE) return null;
    const c = this.concept;
    return { ...c, oid: hash, size, refs: [{ ...c.refs[0]!, hash, size }], body: raw.toString('utf8', at), extra: {} };
  }
}

function parseComponents(value: unknown, size: number, bad: (why: string) => PaniniError): TrackComponent[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw bad('components must be a list');
  if (value.length > MAX_PARSED_COMPONENTS) throw bad(`more than ${MAX_PARSED_COMPONENTS} components`);
  const whole = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
  return value.map((item: unknown, i) => {
    const at = `components[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad(`${at} is not a mapping`);
    const { uri, type, kind, track, codec, samples, size: bytes } = item as Record<string, unknown>;
    const hash = parseAtomUri(uri);
    if (hash === null) throw bad(`${at}.uri must be atom://sha256:<64 lowercase hex>`);
    if (!isAtomType(type) || !MANIFEST_TYPES.has(type)) throw bad(`${at}.type must be VideoStream, AudioStream or Manifest`);
    if (!TRACK_KINDS.includes(kind as TrackKind)) throw bad(`${at}.kind must be one of ${TRACK_KINDS.join(', ')}`);
    if (!whole(track, 0, 0xffffffff)) throw bad(`${at}.track must be a track id (0 to 4294967295)`);
    if (typeof codec !== 'string' || !/^[\x20-\x7e]{0,16}$/.test(codec)) throw bad(`${at}.codec must be a short printable string`);
    if (!whole(bytes, 1, size)) throw bad(`${at}.size must be positive and within the file's size`);
    if (!whole(samples, 1, bytes)) throw bad(`${at}.samples must be a positive count no larger than its size`);
    return { hash, type, kind: kind as TrackKind, track, codec, samples, size: bytes };
  });
}

function parseInfo(value: unknown, bad: (why: string) => PaniniError): FormatInfo {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('info must be a mapping');
  const info: FormatInfo = {};
  for (const [k, v] of Object.entries(value).slice(0, 64)) {
    if (typeof v === 'string' || typeof v === 'number') info[k] = v;
  }
  return info;
}

function parseRefs(value: unknown, size: number, bad: (why: string) => PaniniError): ContentRef[] {
  if (!Array.isArray(value)) throw bad('content_refs must be a list');
  if (value.length > MAX_REFS) throw bad(`more than ${MAX_REFS} content_refs`);
  const refs: ContentRef[] = [];
  let expected = 0;
  for (const [i, item] of value.entries()) {
    const at = `content_refs[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad(`${at} is not a mapping`);
    const { uri, type, offset, size: refSize } = item as Record<string, unknown>;
    const hash = parseAtomUri(uri);
    if (hash === null) throw bad(`${at}.uri must be atom://sha256:<64 lowercase hex>`);
    if (!isAtomType(type)) throw bad(`${at}.type ${JSON.stringify(type)} is not an atom type`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset !== expected) throw bad(`${at}.offset must be ${expected} (refs are contiguous, in file order)`);
    if (typeof refSize !== 'number' || !Number.isSafeInteger(refSize) || refSize <= 0 || offset + refSize > size) throw bad(`${at}.size must be positive and stay within the file's size`);
    refs.push({ hash, type, offset, size: refSize });
    expected += refSize;
  }
  if (expected !== size) throw bad(`content_refs cover ${expected} bytes but size is ${size}`);
  return refs;
}
