/** Atom types from the Panini-FS seed, plus Manifest (an atom listing other atoms). */
export const ATOM_TYPES = [
  'Container', 'VideoStream', 'AudioStream', 'IFrame', 'PFrame', 'BFrame', 'AudioChunk',
  'Subtitle', 'ImageData', 'Metadata', 'Compressed', 'Raw', 'Manifest',
] as const;
export type AtomType = (typeof ATOM_TYPES)[number];

const TYPE_SET: ReadonlySet<string> = new Set(ATOM_TYPES);
export function isAtomType(value: unknown): value is AtomType {
  return typeof value === 'string' && TYPE_SET.has(value);
}

/** Types whose atoms list children instead of carrying file bytes. */
export const MANIFEST_TYPES: ReadonlySet<AtomType> = new Set(['Manifest', 'VideoStream', 'AudioStream']);

const HEX64 = /^[0-9a-f]{64}$/;
export function isAtomHash(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value);
}

export const ATOM_URI_PREFIX = 'atom://sha256:';
export function atomUri(hash: string): string {
  return ATOM_URI_PREFIX + hash;
}
/** Parses `atom://sha256:<64 lowercase hex>`; returns null for anything else. */
export function parseAtomUri(uri: unknown): string | null {
  if (typeof uri !== 'string' || !uri.startsWith(ATOM_URI_PREFIX)) return null;
  const hash = uri.slice(ATOM_URI_PREFIX.length);
  return isAtomHash(hash) ? hash : null;
}

/** A piece of a file: which atom holds bytes [offset, offset+size) of the source. */
export interface ContentRef {
  hash: string;
  type: AtomType;
  offset: number;
  size: number;
}
