import { listEntries, readConceptBlobs } from '../git/concepts.js';
import { computeStats } from '../store/stats.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function run(args: string[]): number {
  const { flags } = parseArgs(args, ['json']);
  const ctx = openContext();
  const indexed = ctx.repo?.top ? readConceptBlobs(ctx.repo.top, listEntries(ctx.repo.top).map((e) => e.blob)).concepts.values() : [];
  const s = computeStats(ctx.store, indexed);
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify({ store: ctx.store.root, ...s }, null, 2) + '\n');
    return 0;
  }
  const pct = s.logicalBytes > 0 ? ((s.dedupSavings / s.logicalBytes) * 100).toFixed(1) : '0.0';
  const out = [
    `store:            ${ctx.store.root}`,
    `files:            ${s.files}`,
    `atoms:            ${s.totalAtoms} (${s.sharedAtoms} shared, ${s.unreferencedAtoms} used by no file cleaned or checked out here)`,
    `logical bytes:    ${formatBytes(s.logicalBytes)} (${s.logicalBytes})`,
    `stored bytes:     ${formatBytes(s.storedBytes)} (${s.storedBytes})`,
    `dedup ratio:      ${s.dedupRatio.toFixed(2)}x, saving ${formatBytes(s.dedupSavings)} (${pct}%)`,
    '',
    `${'type'.padEnd(12)}${'atoms'.padStart(8)}${'stored'.padStart(12)}${'referenced'.padStart(12)}`,
  ];
  for (const [type, t] of Object.entries(s.byType).sort(([a], [b]) => (a < b ? -1 : 1))) {
    out.push(`${type.padEnd(12)}${String(t.atoms).padStart(8)}${formatBytes(t.storedBytes).padStart(12)}${formatBytes(t.logicalBytes).padStart(12)}`);
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
