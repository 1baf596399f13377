import type { ContentRef } from '../atom.js';
import { FileSource } from '../source.js';
import { ingest } from '../store/ingest.js';
import { leafRefs } from '../reconstruct/reconstruct.js';
import { parseArgs } from './args.js';
import { openContext } from './context.js';
import { resolveConcept } from './resolve.js';
import { PaniniError } from '../errors.js';

interface Listed extends ContentRef {
  present: boolean;
}

/** The atoms of a tracked file or concept, in file order; for an untracked file, the atoms it would have. */
export function run(args: string[]): number {
  const { positional, flags } = parseArgs(args, ['json']);
  const target = positional[0];
  if (!target) throw new PaniniError('usage: git panini list-atoms <path|concept.md> [--json]');
  const ctx = openContext();
  const concept = resolveConcept(ctx, target);
  let atoms: Listed[];
  let header: Record<string, unknown>;
  if (concept) {
    atoms = leafRefs(concept, ctx.store).map((r) => ({ ...r, present: ctx.store.has(r.hash) }));
    header = { oid: concept.oid, size: concept.size, format: concept.format, info: concept.info };
  } else {
    const src = FileSource.open(target);
    try {
      const result = ingest(src, { put: () => false }, { maxAtomSize: ctx.maxAtomSize });
      atoms = result.leaves.map((r) => ({ ...r, present: ctx.store.has(r.hash) }));
      header = { oid: result.oid, size: result.size, format: result.format, info: result.info, untracked: true };
    } finally {
      src.close();
    }
  }
  if (flags.has('json')) {
    process.stdout.write(JSON.stringify({ ...header, atoms }, null, 2) + '\n');
    return 0;
  }
  const lines = [`# ${target}: ${header.format}, ${header.size} bytes, ${atoms.length} atoms, oid sha256:${header.oid}`];
  for (const a of atoms) lines.push(`${String(a.offset).padStart(12)} ${String(a.size).padStart(10)}  ${a.type.padEnd(10)} ${a.hash}${a.present ? '' : '  (missing)'}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
