/**
 * Finding concepts in Git: which paths are tracked through git-panini, and the concept blobs of
 * the index or of a tree, read in one `git cat-file --batch` call.
 */
import { looksLikeConcept, MAX_CONCEPT_BYTES, parseConcept, type Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { git, gitStream, recordSplitter } from './exec.js';

export interface TreeEntry {
  path: string;
  blob: string;
}

function splitZ(out: Buffer): string[] {
  return out.toString('utf8').split('\0').filter((s) => s.length > 0);
}

/** Entries of the index (treeish undefined) or of a tree-ish, regular files only. */
export function listEntries(cwd: string, treeish?: string): TreeEntry[] {
  const r = treeish ? git(['ls-tree', '-r', '-z', '--full-tree', treeish], { cwd }) : git(['ls-files', '-s', '-z'], { cwd });
  if (r.status !== 0) return [];
  const entries: TreeEntry[] = [];
  for (const rec of splitZ(r.stdout)) {
    const tab = rec.indexOf('\t');
    const fields = rec.slice(0, tab).split(' ');
    // ls-tree: "<mode> blob <oid>"; ls-files -s: "<mode> <oid> <stage>"
    const mode = fields[0];
    const blob = treeish ? fields[2] : fields[1];
    if (mode !== '100644' && mode !== '100755') continue;
    if (treeish && fields[1] !== 'blob') continue;
    entries.push({ path: rec.slice(tab + 1), blob: blob! });
  }
  return entries;
}

/** The subset of paths whose filter attribute is panini. */
export function pathsWithPaniniFilter(cwd: string, paths: readonly string[]): Set<string> {
  if (paths.length === 0) return new Set();
  const r = git(['check-attr', '-z', '--stdin', 'filter'], { cwd, input: paths.join('\0') + '\0' });
  const parts = splitZ(r.stdout);
  const result = new Set<string>();
  for (let i = 0; i + 2 < parts.length; i += 3) if (parts[i + 2] === 'panini') result.add(parts[i]!);
  return result;
}

/** Objects at most this large can be concepts: `git rev-list --filter=blob:limit=` leaves out the others. */
export const CONCEPT_BLOB_LIMIT = MAX_CONCEPT_BYTES + 1;

/**
 * Parses the concepts among the given objects. Blobs too large to be concepts are skipped without
 * being read (`small`: the caller listed none, e.g. with CONCEPT_BLOB_LIMIT, so their sizes are
 * not asked first); objects that are not blobs are skipped; blobs that look like concepts but do
 * not parse are reported in `invalid`.
 */
export function readConceptBlobs(cwd: string, objects: readonly string[], { small = false } = {}): { concepts: Map<string, Concept>; invalid: Map<string, string> } {
  const concepts = new Map<string, Concept>();
  const invalid = new Map<string, string>();
  let wanted = [...new Set(objects)];
  if (!small && wanted.length > 0) {
    const check = git(['cat-file', '--batch-check'], { cwd, input: wanted.join('\n') + '\n' });
    wanted = [];
    for (const line of check.stdout.toString().split('\n')) {
      const [oid, type, size] = line.split(' ');
      if (type === 'blob' && Number(size) <= MAX_CONCEPT_BYTES) wanted.push(oid!);
    }
  }
  if (wanted.length === 0) return { concepts, invalid };
  const out = git(['cat-file', '--batch'], { cwd, input: wanted.join('\n') + '\n' }).stdout;
  let pos = 0;
  while (pos < out.length) {
    const nl = out.indexOf(0x0a, pos);
    if (nl < 0) break;
    // "<oid> <type> <size>", then the object and a newline; "<oid> missing" alone.
    const [oid, type, sizeText] = out.toString('latin1', pos, nl).split(' ');
    const size = sizeText === undefined ? -1 : Number(sizeText);
    pos = nl + 1 + (size >= 0 ? size + 1 : 0);
    if (type !== 'blob' || size > MAX_CONCEPT_BYTES) continue;
    const found = conceptOfBlob(out.subarray(nl + 1, nl + 1 + size));
    if (found && 'concept' in found) concepts.set(oid!, found.concept);
    else if (found) invalid.set(oid!, found.invalid);
  }
  return { concepts, invalid };
}

/** What a blob holds: a concept, something claiming to be one that does not parse, or (null) neither. */
export function conceptOfBlob(body: Buffer): { concept: Concept } | { invalid: string } | null {
  if (!looksLikeConcept(body)) return null;
  try {
    return { concept: parseConcept(body) };
  } catch (err) {
    return { invalid: (err as Error).message };
  }
}

/**
 * Streams the bytes of every blob among `oids` no larger than `limit` to `onBlob`, through two
 * piped `git cat-file` runs (sizes first, so large blobs are never read): memory stays bounded
 * however many blobs a history holds. Objects that are not blobs, or are missing, are skipped.
 */
export async function streamSmallBlobs(cwd: string, oids: Iterable<string>, limit: number, onBlob: (oid: string, body: Buffer) => void): Promise<void> {
  const small: string[] = [];
  const check = await gitStream(['cat-file', '--batch-check'], {
    cwd,
    input: oids,
    onStdout: recordSplitter(0x0a, (line) => {
      const [oid, type, size] = line.split(' ');
      if (type === 'blob' && Number(size) <= limit) small.push(oid!);
    }),
  });
  if (check.status !== 0) throw new PaniniError(`git cat-file --batch-check failed: ${check.stderr.trim() || `exit ${check.status}`}`, 'run `git fsck` to check the repository');
  if (small.length === 0) return;
  const read = await gitStream(['cat-file', '--batch'], { cwd, input: small, onStdout: batchRecords(onBlob) });
  if (read.status !== 0) throw new PaniniError(`git cat-file --batch failed: ${read.stderr.trim() || `exit ${read.status}`}`, 'run `git fsck` to check the repository');
}

/** Parses `git cat-file --batch` output ("<oid> <type> <size>\n<bytes>\n" per object) as it streams. */
function batchRecords(onObject: (oid: string, body: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      const nl = pending.indexOf(0x0a, pos);
      if (nl < 0) break;
      const [oid, type, sizeText] = pending.toString('latin1', pos, nl).split(' ');
      if (type === 'missing') {
        pos = nl + 1;
        continue;
      }
      const end = nl + 1 + Number(sizeText);
      if (end + 1 > pending.length) break; // the body (and its newline) has not all arrived
      onObject(oid!, pending.subarray(nl + 1, end));
      pos = end + 1;
    }
    pending = pending.subarray(pos);
  };
}
