/**
 * A strict reader for the front matter git-panini itself renders (concept.ts, renderFrontMatter).
 * Loading gray-matter and js-yaml and running them costs a filter process ~20 ms and each concept
 * ~40 µs; nearly every concept read is one we wrote. This reader accepts only that exact layout,
 * with values restricted to forms whose YAML meaning is plain (a double-quoted string without
 * escapes, a decimal integer or fraction, an atom type, a track kind), and yields exactly what
 * gray-matter with js-yaml (core schema) yields for it. Anything else returns null, and the caller
 * falls back to gray-matter. test/concept-fast-parse.test.ts checks the equivalence.
 */
import { ATOM_TYPES } from '../atom.js';

export interface FrontMatter {
  data: Record<string, unknown>;
  body: string;
}

const TYPES: ReadonlySet<string> = new Set(ATOM_TYPES);
const KINDS: ReadonlySet<string> = new Set(['video', 'audio', 'subtitle', 'other']);
const HEX64 = /^[0-9a-f]{64}$/;
/** A double-quoted YAML string that is its own content: printable ASCII but `"` and `\`. */
const QUOTED = /^"[ !#-[\]-~]*"$/;
/** Integers and fractions that js-yaml reads as the number JavaScript reads (no leading zeros, no -0). */
const INT = /^(?:0|-?[1-9][0-9]{0,14})$/;
const FRACTION = /^-?(?:0|[1-9][0-9]{0,14})\.[0-9]{1,15}$/;
/** Info keys read as themselves (core-schema words like `null`, `True` excluded: they fall back). */
const KEY = /^[a-z_][a-z0-9_]{0,63}$/;
const SPECIAL_KEYS: ReadonlySet<string> = new Set(['null', 'true', 'false', '__proto__']);
const URI_OPEN = '  - {uri: "atom://sha256:';

/** The front matter and body of `text` if it is in the canonical layout; else null. */
export function parseCanonical(text: string): FrontMatter | null {
  if (!text.startsWith('---\npanini: 1\n')) return null;
  const close = text.indexOf('\n---', 3);
  if (close < 0 || text.charCodeAt(close + 4) !== 10) return null; // the closing fence is a whole line
  const lines = text.slice(4, close).split('\n');
  let i = 1;
  const data: Record<string, unknown> = { panini: 1 };

  const oid = lines[i++];
  if (oid === undefined || !oid.startsWith('oid: sha256:') || !HEX64.test(oid.slice(12))) return null;
  data.oid = oid.slice(5);
  const size = valueOf(lines[i++], 'size: ');
  if (size === null || !INT.test(size)) return null;
  data.size = Number(size);
  const format = valueOf(lines[i++], 'format: ');
  if (format === null || !QUOTED.test(format)) return null;
  data.format = format.slice(1, -1);

  const infoText = valueOf(lines[i], 'info: ');
  if (infoText !== null) {
    const info = parseInfo(infoText);
    if (info === null) return null;
    data.info = info;
    i++;
  }

  if (lines[i] === 'content_refs: []') {
    data.content_refs = [];
    i++;
  } else if (lines[i] === 'content_refs:') {
    const refs = readList(lines, i + 1, parseRef);
    if (refs === null) return null;
    data.content_refs = refs.items;
    i = refs.next;
  } else {
    return null;
  }

  if (lines[i] === 'components:') {
    const components = readList(lines, i + 1, parseComponent);
    if (components === null) return null;
    data.components = components.items;
    i = components.next;
  }
  if (i !== lines.length) return null;
  return { data, body: text.slice(close + 5) };
}

/** The flow-mapping lines from `start` on, parsed; null if none, or if one does not parse. */
function readList(lines: readonly string[], start: number, parse: (line: string) => Record<string, unknown> | null): { items: Record<string, unknown>[]; next: number } | null {
  const items: Record<string, unknown>[] = [];
  let i = start;
  for (; lines[i]?.startsWith(URI_OPEN); i++) {
    const item = parse(lines[i]!);
    if (item === null) return null;
    items.push(item);
  }
  return items.length === 0 ? null : { items, next: i };
}

function valueOf(line: string | undefined, prefix: string): string | null {
  return line !== undefined && line.startsWith(prefix) ? line.slice(prefix.length) : null;
}

function scalar(text: string): string | number | null {
  if (QUOTED.test(text)) return text.slice(1, -1);
  if (INT.test(text) || FRACTION.test(text)) return Number(text);
  return null;
}

/** `{k: v, k: v}` with at least one entry; a repeated key falls back (js-yaml refuses it). */
function parseInfo(text: string): Record<string, string | number> | null {
  if (!text.startsWith('{') || !text.endsWith('}') || text.length < 3) return null;
  const info: Record<string, string | number> = {};
  let at = 1;
  const end = text.length - 1;
  for (;;) {
    const colon = text.indexOf(': ', at);
    if (colon < 0) return null;
    const key = text.slice(at, colon);
    if (!KEY.test(key) || SPECIAL_KEYS.has(key) || Object.prototype.hasOwnProperty.call(info, key)) return null;
    let valueEnd: number;
    if (text.charCodeAt(colon + 2) === 34) {
      valueEnd = text.indexOf('"', colon + 3) + 1;
      if (valueEnd === 0) return null;
    } else {
      valueEnd = text.indexOf(', ', colon + 2);
      if (valueEnd < 0) valueEnd = end;
    }
    const value = scalar(text.slice(colon + 2, valueEnd));
    if (value === null) return null;
    info[key] = value;
    if (valueEnd === end) return info;
    if (text.charCodeAt(valueEnd) !== 44 || text.charCodeAt(valueEnd + 1) !== 32) return null;
    at = valueEnd + 2;
  }
}

/** `  - {uri: "atom://sha256:<hex>", type: T, offset: N, size: N}` */
function parseRef(line: string): Record<string, unknown> | null {
  const f = fields(line, ['type', 'offset', 'size']);
  if (f === null || !TYPES.has(f[1]!) || !INT.test(f[2]!) || !INT.test(f[3]!)) return null;
  return { uri: f[0], type: f[1], offset: Number(f[2]), size: Number(f[3]) };
}

/** `  - {uri: "…", type: T, kind: K, track: N, codec: "…", samples: N, size: N}` */
function parseComponent(line: string): Record<string, unknown> | null {
  const f = fields(line, ['type', 'kind', 'track', 'codec', 'samples', 'size']);
  if (f === null || !TYPES.has(f[1]!) || !KINDS.has(f[2]!) || !INT.test(f[3]!) || !QUOTED.test(f[4]!) || !INT.test(f[5]!) || !INT.test(f[6]!)) return null;
  return { uri: f[0], type: f[1], kind: f[2], track: Number(f[3]), codec: f[4]!.slice(1, -1), samples: Number(f[5]), size: Number(f[6]) };
}

/**
 * The uri (without quotes) and the raw text of each named field, in that order, or null. Only a
 * codec may be quoted, and QUOTED then checks it holds no `, ` or `}` that would confuse the split.
 */
function fields(line: string, names: readonly string[]): string[] | null {
  if (!line.endsWith('}')) return null;
  const parts = line.slice(5, -1).split(', '); // from `uri: "`
  if (parts.length !== names.length + 1) return null;
  const uri = parts[0]!; // `uri: "atom://sha256:<64 hex>"`
  if (uri.length !== 85 || uri.charCodeAt(84) !== 34 || !HEX64.test(uri.slice(20, 84))) return null;
  const out = [uri.slice(6, 84)];
  for (let k = 0; k < names.length; k++) {
    const part = parts[k + 1]!;
    const name = names[k]!;
    if (part.length <= name.length + 2 || !part.startsWith(name) || part.charCodeAt(name.length) !== 58 || part.charCodeAt(name.length + 1) !== 32) return null;
    out.push(part.slice(name.length + 2));
  }
  return out;
}
