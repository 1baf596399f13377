/**
 * Finding concepts in Git: which paths are tracked through git-panini, and the concept blobs of
 * the index or of a tree, read in one `git cat-file --batch` call.
 */
import { looksLikeConcept, MAX_CONCEPT_BYTES, parseConcept, type Concept } from '../concept/concept.js';
import { git } from './exec.js';

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

/**
 * Parses the concepts among the given blobs. Blobs too large to be concepts are skipped without
 * being read; blobs that look like concepts but do not parse are reported in `invalid`.
 */
export function readConceptBlobs(cwd: string, blobs: readonly string[]): { concepts: Map<string, Concept>; invalid: Map<string, string> } {
  const concepts = new Map<string, Concept>();
  const invalid = new Map<string, string>();
  const unique = [...new Set(blobs)];
  if (unique.length === 0) return { concepts, invalid };
  const check = git(['cat-file', '--batch-check'], { cwd, input: unique.join('\n') + '\n' });
  const small: string[] = [];
  for (const line of check.stdout.toString().split('\n')) {
    const [oid, type, size] = line.split(' ');
    if (type === 'blob' && Number(size) <= MAX_CONCEPT_BYTES) small.push(oid!);
  }
  if (small.length === 0) return { concepts, invalid };
  const out = git(['cat-file', '--batch'], { cwd, input: small.join('\n') + '\n' }).stdout;
  let pos = 0;
  while (pos < out.length) {
    const nl = out.indexOf(0x0a, pos);
    if (nl < 0) break;
    const [oid, , sizeText] = out.toString('latin1', pos, nl).split(' ');
    const size = Number(sizeText);
    const body = out.subarray(nl + 1, nl + 1 + size);
    pos = nl + 1 + size + 1;
    if (!looksLikeConcept(body)) continue;
    try {
      concepts.set(oid!, parseConcept(body));
    } catch (err) {
      invalid.set(oid!, (err as Error).message);
    }
  }
  return { concepts, invalid };
}
