/**
 * From concepts to atoms: every atom a reachable concept needs, directly or through manifests
 * (file-order manifests and track manifests, any depth), the manifests themselves included. Each
 * manifest is read once per traversal, however many concepts share it. Concepts of Git LFS
 * pointers come from the store's concept registry (the LFS oid is the file's SHA-256).
 */
import { MANIFEST_TYPES, type AtomType } from '../atom.js';
import { parseConcept } from '../concept/concept.js';
import { decodeManifest, decodeTrackManifest } from '../concept/manifest.js';
import { AtomError, errorMessage } from '../errors.js';
import { refsOf, type AtomRef, type BlobSite, type HistoryWalk } from '../git/history.js';
import type { LocalStore } from '../store/local.js';

export type ProblemKind = 'missing' | 'corrupt' | 'malformed' | 'invalid-concept';

export interface Problem {
  kind: ProblemKind;
  /** The atom (or, for an invalid concept, the Git blob) concerned. */
  name: string;
  detail: string;
  site: BlobSite;
  /** The reference that led here (type and expected size), when there is one. */
  ref?: AtomRef;
}

export interface TraversalHooks {
  /** Each reached atom, once, with the first ref and site that reached it. */
  onAtom?(ref: AtomRef, site: BlobSite): void;
  onProblem(problem: Problem): void;
}

export interface Reached {
  atoms: Set<string>;
  /** Whole-file oids of the reachable concepts (their concept registry entries stay). */
  oids: Set<string>;
  concepts: number;
}

const MANIFEST_HEADER = 'panini-manifest 1';
const TRACK_HEADER = 'panini-manifest 1 track\n';
const MAX_DEPTH = 12;

export function traverseAtoms(walk: HistoryWalk, store: LocalStore, hooks: TraversalHooks): Reached {
  const atoms = new Set<string>();
  const oids = new Set<string>();
  let concepts = 0;
  const stack: { ref: AtomRef; site: BlobSite; depth: number }[] = [];
  const push = (refs: readonly AtomRef[], site: BlobSite, depth: number): void => {
    for (let i = refs.length - 1; i >= 0; i--) stack.push({ ref: refs[i]!, site, depth });
  };

  for (const [blob, { site, meaning }] of walk.blobs) {
    if (meaning.kind === 'invalid') {
      hooks.onProblem({ kind: 'invalid-concept', name: blob, detail: meaning.why, site });
      push(meaning.refs, site, 0);
      continue;
    }
    oids.add(meaning.oid);
    if (meaning.kind === 'concept') {
      concepts++;
      push(meaning.refs, site, 0);
      continue;
    }
    const text = store.getConcept(meaning.oid); // an LFS pointer: git-lfs keeps the file if we do not
    if (text === null) continue;
    try {
      push(refsOf(parseConcept(text), text), site, 0);
      concepts++;
    } catch (err) {
      hooks.onProblem({ kind: 'invalid-concept', name: meaning.oid, detail: `concept registry entry: ${errorMessage(err)}`, site });
    }
  }

  // Expansion is tracked apart from reaching: an atom one concept calls a leaf and another a
  // manifest is still looked into.
  const expanded = new Set<string>();
  while (stack.length > 0) {
    const { ref, site, depth } = stack.pop()!;
    if (!atoms.has(ref.hash)) {
      atoms.add(ref.hash);
      hooks.onAtom?.(ref, site);
    }
    if (expanded.has(ref.hash)) continue;
    if (ref.type === null ? !startsWithManifestHeader(store, ref.hash) : !MANIFEST_TYPES.has(ref.type)) continue;
    expanded.add(ref.hash);
    const children = manifestChildren(ref, store, site, depth, hooks);
    if (children) push(children, site, depth + 1);
  }
  return { atoms, oids, concepts };
}

/**
 * The refs a manifest lists, or null (with a problem reported if the ref says it is a manifest).
 * A ref of unknown type (a mention) was only taken for a manifest because its bytes start like one.
 */
function manifestChildren(ref: AtomRef, store: LocalStore, site: BlobSite, depth: number, hooks: TraversalHooks): AtomRef[] | null {
  const problem = (kind: ProblemKind, detail: string): null => {
    hooks.onProblem({ kind, name: ref.hash, detail, site, ref });
    return null;
  };
  if (depth >= MAX_DEPTH) return problem('malformed', `manifest nested deeper than ${MAX_DEPTH} levels`);
  let bytes: Buffer;
  try {
    bytes = store.get(ref.hash);
  } catch (err) {
    if (err instanceof AtomError && err.kind === 'missing' && ref.component) return null; // left on the remote by checkouts (onAtom sees it)
    if (err instanceof AtomError) return problem(err.kind, err.kind === 'missing' ? 'manifest not in the local store' : 'manifest bytes do not hash to its name');
    throw err;
  }
  let children: { hash: string; type: AtomType; size: number }[];
  try {
    children = bytes.subarray(0, TRACK_HEADER.length).toString('latin1') === TRACK_HEADER ? decodeTrackManifest(bytes, ref.hash) : decodeManifest(bytes, ref.hash);
  } catch (err) {
    return ref.type === null ? null : problem('malformed', errorMessage(err));
  }
  const total = children.reduce((n, c) => n + c.size, 0);
  if (ref.size !== null && total !== ref.size) problem('malformed', `manifest covers ${total} bytes but its ref says ${ref.size}`);
  return children.map((c) => ({ hash: c.hash, type: c.type, size: c.size }));
}

function startsWithManifestHeader(store: LocalStore, hash: string): boolean {
  return store.readHead(hash, MANIFEST_HEADER.length)?.toString('latin1') === MANIFEST_HEADER;
}
