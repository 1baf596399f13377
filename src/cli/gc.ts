/**
 * `git panini gc [--dry-run] [--prune=<date>] [--json] [--remote]` (alias `gc-atoms`): deletes the
 * atoms nothing in the repository reaches any more, once past the grace period, and says what it
 * deleted (or with --dry-run would delete), with counts and bytes.
 */
import { DEFAULT_PRUNE_EXPIRE, parseExpiry } from '../gc/expiry.js';
import { collectLocal, type GcReport } from '../gc/collect.js';
import { PhaseProgress } from '../gc/progress.js';
import { PaniniError } from '../errors.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { formatBytes } from './stats.js';

export async function run(args: string[]): Promise<number> {
  const { positional, flags } = parseArgs(args, ['dry-run', 'n', 'json', 'remote', 'no-prune'], ['prune']);
  if (positional.length > 0) throw new PaniniError(`gc takes no arguments (got ${positional.join(' ')})`, 'usage: git panini gc [--dry-run] [--prune=<date>] [--json] [--remote]');
  const ctx = openContext();
  const nowMs = Date.now();
  const expiry = (flags.get('prune') as string | undefined) ?? (flags.has('no-prune') ? 'never' : ctx.config.get('panini.gc.pruneExpire') ?? DEFAULT_PRUNE_EXPIRE);
  const options = {
    dryRun: flags.has('dry-run') || flags.has('n'),
    cutoffMs: parseExpiry(expiry, nowMs),
    nowMs,
    reflog: ctx.config.getBool('panini.gc.reflog', true),
    progress: PhaseProgress.onStderr(),
  };
  const report = flags.has('remote') ? await (await import('../gc/remote.js')).collectRemote(ctx, options) : await collectLocal(ctx, options);
  if (flags.has('json')) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else process.stdout.write(describe(report));
  return 0;
}

function describe(r: GcReport): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const lines = r.deleted.atoms.map((a) => `${verb} atom ${a.hash} (${a.size} bytes)`);
  lines.push(
    `${r.dryRun ? 'Would delete' : 'Deleted'} ${r.deleted.count} unreachable atom(s), ${formatBytes(r.deleted.bytes)}, of ${r.stored} in ${r.store}`,
    `  reachable: ${r.reachable.atoms} atom(s) of ${r.reachable.concepts} concept(s) in ${r.reachable.commits} commit(s), the indexes and the stash${r.reflog ? ', and reflog entries' : ' (reflog entries not counted: panini.gc.reflog=false)'}`,
    r.cutoff ? `  grace period: unreachable atoms written since ${r.cutoff} are kept (--prune=<date>, panini.gc.pruneExpire)` : '  grace period: never (--prune=never): no unreachable atom is deleted',
  );
  if (r.keptRecent.atoms > 0) lines.push(`  kept ${r.keptRecent.atoms} unreachable atom(s), ${formatBytes(r.keptRecent.bytes)}, still in their grace period`);
  if (r.packs && r.packs.deleted > 0) lines.push(`  ${r.dryRun ? 'would delete' : 'deleted'} ${r.packs.deleted} remote pack(s), ${r.packs.rewritten} of them first rewritten with their reachable atoms only${r.packs.merged > 0 ? ` (${r.packs.merged} small ones merged)` : ''}`);
  if (r.packs && r.packs.keptUnreachable.atoms > 0) lines.push(`  kept ${r.packs.keptUnreachable.atoms} unreachable atom(s), ${formatBytes(r.packs.keptUnreachable.bytes)}, inside packs that are mostly reachable`);
  if (r.refreshed > 0) lines.push(`  kept ${r.refreshed} atom(s) that were used again while gc ran`);
  if (r.duplicates.count > 0) lines.push(`  dropped ${r.duplicates.count} second cop${r.duplicates.count === 1 ? 'y' : 'ies'} of atoms stored twice, ${formatBytes(r.duplicates.bytes)}`);
  if (r.mergedPacks && r.mergedPacks.packs > 0) lines.push(`  merged ${r.mergedPacks.packs} small packs into ${r.mergedPacks.into}`);
  if (r.writers?.since) lines.push(`  kept unreachable atoms written since ${r.writers.since}: ${r.writers.active} git panini process(es) (an add in progress) may still need them`);
  if (r.tempFiles.count > 0) lines.push(`  ${r.dryRun ? 'would remove' : 'removed'} ${r.tempFiles.count} stale temp file(s), ${formatBytes(r.tempFiles.bytes)}`);
  if (r.registryEntries > 0) lines.push(`  ${r.dryRun ? 'would remove' : 'removed'} ${r.registryEntries} concept registry entr${r.registryEntries === 1 ? 'y' : 'ies'} of files nothing reaches`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n') + '\n';
}
