import { PaniniError } from '../errors.js';
import { reconstruct } from '../reconstruct/reconstruct.js';
import { openContext } from './context.js';
import { requireConcept } from './resolve.js';

/** Rebuilds the file in memory-bounded streaming and checks every atom and the whole file's oid. */
export function run(args: string[]): number {
  const targets = args.filter((a) => !a.startsWith('-'));
  if (targets.length === 0) throw new PaniniError('usage: git panini verify-content <path|concept.md>...');
  const ctx = openContext();
  let failures = 0;
  for (const target of targets) {
    try {
      const concept = requireConcept(ctx, target);
      let atoms = 0;
      reconstruct(concept, ctx.store, () => void atoms++);
      process.stdout.write(`ok ${target}: ${concept.size} bytes in ${atoms} atoms, sha256:${concept.oid}\n`);
    } catch (err) {
      failures++;
      process.stderr.write(`FAILED ${target}: ${err instanceof PaniniError ? err.toString() : (err as Error).message}\n`);
    }
  }
  return failures === 0 ? 0 : 1;
}
