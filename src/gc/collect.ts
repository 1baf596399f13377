/**
 * `git panini gc` for the local store: walk what Git reaches, follow concepts to atoms, and delete
 * the rest once past the grace period. It refuses, deleting nothing, whenever it cannot be sure:
 * a broken ref, a reachable manifest it cannot read (its children are unknown), a store that other
 * repositories may share.
 */
import { isAbsolute, join, relative } from 'node:path';
import type { Context } from '../cli/context.js';
import { PaniniError } from '../errors.js';
import { walkHistory, type BlobSite, type HistoryWalk } from '../git/history.js';
import type { Repo } from '../git/repo.js';
import type { LocalStore } from '../store/local.js';
import { protectWriters, removeStaleMarkers } from '../store/writers.js';
import { executePrune, planPrune, withGcLock, type PrunePlan, type PruneResult } from './prune.js';
import type { PhaseProgress } from './progress.js';
import { traverseAtoms, type Problem, type Reached } from './reachability.js';

export interface GcOptions {
  dryRun: boolean;
  /** Unreachable atoms last written before this (epoch ms) are deleted; -Infinity keeps them all. */
  cutoffMs: number;
  nowMs: number;
  reflog: boolean;
  progress: PhaseProgress;
}

export interface Reachability {
  walk: HistoryWalk;
  reached: Reached;
  /** Reachable manifests that could not be read: their children are unknown. */
  blocking: Problem[];
  warnings: string[];
}

export interface GcReport {
  dryRun: boolean;
  store: string;
  /** ISO date before which unreachable atoms go; null for never. */
  cutoff: string | null;
  reflog: boolean;
  reachable: { commits: number; concepts: number; atoms: number };
  /** Atoms in the store before gc. */
  stored: number;
  /** Deleted, or with --dry-run to be deleted. */
  deleted: { atoms: { hash: string; size: number }[]; count: number; bytes: number };
  keptRecent: { atoms: number; bytes: number };
  /** Atoms an `add` re-used while gc ran: kept. */
  refreshed: number;
  /** Second copies of atoms dropped (each atom keeps one). */
  duplicates: { count: number; bytes: number };
  /** Small local packs merged into fewer. */
  mergedPacks?: { packs: number; into: number };
  /**
   * git-panini processes writing to the store when gc began (an `add` in progress: its atoms are not
   * in the index yet), and since when (ISO) atoms are kept for them; null if none.
   */
  writers?: { active: number; since: string | null };
  tempFiles: { count: number; bytes: number };
  registryEntries: number;
  /** Remote packs (gc --remote): rewritten without their unreachable atoms (`merged`: small ones rewritten together), deleted, and unreachable atoms kept in mostly live packs. */
  packs?: { rewritten: number; merged: number; deleted: number; keptUnreachable: { atoms: number; bytes: number } };
  warnings: string[];
}

/** The repository and the store, checked fit for a collection. */
export function requireGcRepo(ctx: Context): Repo {
  if (!ctx.repo) throw new PaniniError('gc needs a Git repository: it keeps what the repository\'s history reaches', 'run it inside the repository whose store you want to collect');
  const inside = relative(ctx.repo.commonDir, ctx.store.root);
  if ((inside.startsWith('..') || isAbsolute(inside)) && !ctx.config.getBool('panini.gc.exclusiveStore', false)) {
    throw new PaniniError(
      `the atom store ${ctx.store.root} is outside this repository (panini.storage), so other repositories may use it; gc only knows this repository's history and could delete their atoms`,
      'if no other repository uses this store, say so with `git config panini.gc.exclusiveStore true` and run gc again',
    );
  }
  return ctx.repo;
}

/** What the repository reaches, as Git objects: concept blobs and where they were met. */
export function walkAll(repo: Repo, ctx: Context, scope: 'all' | 'head', reflog: boolean, progress: PhaseProgress, extraTips: readonly string[] = []): Promise<HistoryWalk> {
  return walkHistory(repo, {
    scope,
    reflog,
    extraTips,
    cacheDir: join(ctx.store.root, 'cache'),
    onProgress: (phase, done, total) => progress.update(phase, done, total),
  });
}

/** The atoms the walked concepts reach, through manifests; never deletes anything. */
export function reachFromWalk(walk: HistoryWalk, store: LocalStore, progress: PhaseProgress): Reachability {
  const blocking: Problem[] = [];
  const warnings: string[] = [];
  let followed = 0;
  const reached = traverseAtoms(walk, store, {
    onAtom: () => {
      if (++followed % 10_000 === 0) progress.update('Following concepts to atoms', followed);
    },
    onProblem: (p) => {
      if (p.kind === 'missing' || p.kind === 'corrupt') blocking.push(p);
      else warnings.push(describeProblem(p));
    },
  });
  progress.update('Following concepts to atoms', reached.atoms.size, reached.atoms.size);
  return { walk, reached, blocking, warnings };
}

function describeSite(site: BlobSite): string {
  return site.commit ? `${site.path} in commit ${site.commit.slice(0, 12)}` : `${site.path} in the index`;
}

export function describeProblem(p: Problem): string {
  const what = p.kind === 'invalid-concept' ? `concept ${p.name.slice(0, 12)} does not parse` : `atom ${p.name}`;
  return `${what} (${describeSite(p.site)}): ${p.detail}`;
}

/** Refuses when a reachable manifest cannot be read: the atoms it lists would look unreachable. */
export function refuseIfBlocked(reach: Reachability): void {
  if (reach.blocking.length === 0) return;
  const shown = reach.blocking.slice(0, 10).map((p) => `  ${p.kind} manifest ${p.name} (needed by ${describeSite(p.site)})`);
  const more = reach.blocking.length > shown.length ? [`  ... and ${reach.blocking.length - shown.length} more`] : [];
  throw new PaniniError(
    `gc cannot tell which atoms ${reach.blocking.length} reachable manifest(s) need, so it deleted nothing:\n${[...shown, ...more].join('\n')}`,
    'fetch them from the remote store (git panini fetch), or run `git panini fsck --all` to see and move aside damaged atoms',
  );
}

export async function collectLocal(ctx: Context, options: GcOptions): Promise<GcReport> {
  const repo = requireGcRepo(ctx);
  const run = async (): Promise<GcReport> => {
    // Before the index is read: a writer running now (an `add` whose index is not written yet) may
    // hand out atoms nothing reaches so far. Everything written since it began is kept, whatever
    // the grace period (store/writers.ts); without this, --prune=now deleted an add's atoms under it.
    const writers = protectWriters(ctx.store.root, options.cutoffMs, options.nowMs);
    const cutoffMs = writers.cutoffMs;
    const reach = reachFromWalk(await walkAll(repo, ctx, 'all', options.reflog, options.progress), ctx.store, options.progress);
    refuseIfBlocked(reach);
    const plan = planPrune(ctx.store, reach.reached.atoms, reach.reached.oids, cutoffMs, options.nowMs, (n) => options.progress.update('Listing the store', n));
    let result: PruneResult | null = null;
    if (!options.dryRun) {
      result = executePrune(ctx.store, plan, cutoffMs, (done, total) => options.progress.update('Deleting atoms', done, total));
      removeStaleMarkers(writers.stale);
    }
    options.progress.finish();
    const since = writers.oldestMs === null || writers.oldestMs >= options.cutoffMs ? null : new Date(writers.oldestMs).toISOString();
    return report(ctx, options, reach, plan, result, { active: writers.active, since });
  };
  return options.dryRun ? run() : withGcLock(ctx.store, run);
}

function report(ctx: Context, options: GcOptions, reach: Reachability, plan: PrunePlan, result: PruneResult | null, writers: NonNullable<GcReport['writers']>): GcReport {
  const deletedAtoms = result?.atoms ?? plan.atoms.map((a) => ({ hash: a.hash, size: a.size }));
  return {
    dryRun: options.dryRun,
    store: ctx.store.root,
    cutoff: Number.isFinite(options.cutoffMs) ? new Date(options.cutoffMs).toISOString() : null,
    reflog: options.reflog,
    reachable: { commits: reach.walk.commits, concepts: reach.reached.concepts, atoms: reach.reached.atoms.size },
    stored: plan.stored,
    deleted: { atoms: deletedAtoms, count: deletedAtoms.length, bytes: deletedAtoms.reduce((n, a) => n + a.size, 0) },
    keptRecent: { atoms: plan.recent.count, bytes: plan.recent.bytes },
    refreshed: result?.refreshed ?? 0,
    duplicates: result?.duplicates ?? { count: 0, bytes: 0 },
    mergedPacks: result?.merged,
    writers,
    tempFiles: { count: result?.temps ?? plan.temps.length, bytes: plan.temps.reduce((n, t) => n + t.size, 0) },
    registryEntries: result?.concepts ?? plan.concepts.length,
    warnings: reach.warnings,
  };
}
