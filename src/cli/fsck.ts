/**
 * `git panini fsck [--all] [--json]`: every atom HEAD and the index need (with --all, everything gc
 * keeps: all refs, reflogs, stashes, worktrees) is present and hashes to its name; manifests parse
 * and add up. A corrupt atom is moved aside to <store>/bad/<hash> (as Git LFS does with
 * .git/lfs/bad), so a later fetch can bring a good copy. Exit status 1 on any problem. Track
 * manifests of media components, which a checkout leaves on the remote, are listed, not problems.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST_TYPES } from '../atom.js';
import { AtomError, PaniniError } from '../errors.js';
import { describeProblem, walkAll } from '../gc/collect.js';
import { PhaseProgress } from '../gc/progress.js';
import { traverseAtoms, type Problem } from '../gc/reachability.js';
import { sha256Hex } from '../hash.js';
import type { LocalStore } from '../store/local.js';
import { rewritePacks } from '../store/pack-writer.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';

export async function run(args: string[]): Promise<number> {
  const { flags } = parseArgs(args, ['all', 'json']);
  const ctx = openContext();
  const repo = ctx.repo;
  if (!repo) throw new PaniniError('fsck needs a Git repository: it checks the atoms its history needs', 'run it inside the repository');
  const progress = PhaseProgress.onStderr();
  const walk = await walkAll(repo, ctx, flags.has('all') ? 'all' : 'head', ctx.config.getBool('panini.gc.reflog', true), progress);
  const problems: Problem[] = [];
  const reported = new Set<string>();
  const report = (p: Problem): void => {
    if (reported.has(p.name)) return; // a manifest moved aside is then also "missing" to the traversal
    reported.add(p.name);
    problems.push(p);
  };
  /** Track manifests a checkout leaves on the remote (fetched to extract a track): not problems. */
  const unfetched = new Set<string>();
  let checked = 0;
  let bytes = 0;
  const reached = traverseAtoms(walk, ctx.store, {
    onAtom: (ref, site) => {
      if (++checked % 1000 === 0) progress.update('Checking atoms', checked);
      let data: Buffer;
      try {
        data = ctx.store.readRaw(ref.hash);
      } catch (err) {
        if (!(err instanceof AtomError)) throw err;
        if (ref.component && err.kind === 'missing') return void unfetched.add(ref.hash);
        return report({ kind: 'missing', name: ref.hash, detail: 'not in the local store', site, ref });
      }
      bytes += data.length;
      if (sha256Hex(data) !== ref.hash) {
        report({ kind: 'corrupt', name: ref.hash, detail: `its bytes do not hash to its name; moved to ${moveAside(ctx.store, ref.hash)}`, site, ref });
      } else if (ref.size !== null && ref.type !== null && !MANIFEST_TYPES.has(ref.type) && data.length !== ref.size) {
        report({ kind: 'malformed', name: ref.hash, detail: `holds ${data.length} bytes but the concept says ${ref.size}`, site, ref });
      }
    },
    onProblem: report,
  });
  progress.update('Checking atoms', checked, checked);
  progress.finish();
  const scope = flags.has('all') ? 'all history' : 'HEAD and the index';
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify({
      scope, commits: walk.commits, concepts: reached.concepts, atoms: reached.atoms.size, bytes, unfetchedTrackManifests: [...unfetched],
      problems: problems.map((p) => ({ kind: p.kind, name: p.name, detail: p.detail, path: p.site.path, commit: p.site.commit })),
    }, null, 2) + '\n');
  } else {
    const lines = problems.map((p) => `${p.kind}: ${describeProblem(p)}`);
    lines.push(`Checked ${reached.atoms.size} atom(s) of ${reached.concepts} concept(s) reachable from ${scope}: ${problems.length === 0 ? 'no problems' : `${problems.length} problem(s)`}`);
    if (unfetched.size > 0) lines.push(`${unfetched.size} track manifest(s) of media files are not in the local store: a checkout does not fetch them; \`git panini get-content --component\` or \`git panini fetch\` does`);
    if (problems.some((p) => p.kind === 'missing' || p.kind === 'corrupt')) lines.push('hint: `git panini fetch` brings missing and moved-aside atoms back from the remote store');
    process.stdout.write(lines.join('\n') + '\n');
  }
  return problems.length === 0 ? 0 : 1;
}

/** Moves a damaged atom out of the store (overwriting an older bad copy); returns where it went. */
function moveAside(store: LocalStore, hash: string): string {
  const dir = join(store.root, 'bad');
  mkdirSync(dir, { recursive: true });
  const target = join(dir, hash);
  if (store.locate(hash)?.pack) {
    // A packed atom: kept aside as a file, then its pack rewritten without it.
    writeFileSync(target, store.readRaw(hash));
    rewritePacks(store, (h) => h === hash);
  } else {
    renameSync(store.atomPath(hash), target);
  }
  return target;
}
