/**
 * The concepts in a range of commits: `git rev-list --objects <include> --not <exclude>` names every
 * blob the commits bring that the excluded ones do not have, but those too large to be concepts;
 * they are read in one `git cat-file --batch` and the concepts among them kept (src/git/concepts.ts).
 */
import { CONCEPT_BLOB_LIMIT, readConceptBlobs } from '../git/concepts.js';
import { git } from '../git/exec.js';
import { PaniniError } from '../errors.js';
import type { ConceptToPush } from './push.js';

export const ZERO_OID = /^0+$/;

/**
 * Concepts in the commits reachable from `include` and not from `exclude` (revision arguments:
 * object names, refs, or options such as --remotes=origin or --all). Concepts that do not parse are
 * reported through `warn` and skipped: they name no atom anyone could have.
 */
export function conceptsInCommits(cwd: string, include: readonly string[], exclude: readonly string[], warn: (line: string) => void): ConceptToPush[] {
  if (include.length === 0) return [];
  // Blobs too large to be concepts are left out here, so the rest are read without their sizes asked first.
  const r = git(['rev-list', '--objects', `--filter=blob:limit=${CONCEPT_BLOB_LIMIT}`, ...include, '--not', ...exclude, '--'], { cwd });
  if (r.status !== 0) throw new PaniniError(`git rev-list failed: ${r.stderr.trim()}`, 'check the refs given');
  const pathOf = new Map<string, string>();
  for (const line of r.stdout.toString('utf8').split('\n')) {
    const space = line.indexOf(' ');
    // Commits come without a path; trees and blobs with one (the root tree with an empty one).
    if (space > 0 && space < line.length - 1 && !pathOf.has(line.slice(0, space))) pathOf.set(line.slice(0, space), line.slice(space + 1));
  }
  const { concepts, invalid } = readConceptBlobs(cwd, [...pathOf.keys()], { small: true });
  for (const [blob, why] of invalid) warn(`git-panini: ${pathOf.get(blob)} (blob ${blob.slice(0, 10)}) looks like a concept but is not valid, so it has no atoms to send: ${why}`);
  return [...concepts].map(([blob, concept]) => ({ concept, path: pathOf.get(blob)! }));
}

/** Whether the object exists locally as a commit (a remote's tip we never fetched does not). */
export function isLocalCommit(cwd: string, oid: string): boolean {
  return git(['cat-file', '-e', `${oid}^{commit}`], { cwd }).status === 0;
}
