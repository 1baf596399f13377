/**
 * `git panini get-content <path|concept> [--component audio|video|keyframes|metadata] [-o FILE]`:
 * rebuilds a stored file, or extracts one component of it, from the atom store. With a remote
 * store configured, only the atoms the output needs are downloaded first. Output goes to a temp
 * file beside FILE, renamed into place once complete (never a half-written FILE), or to stdout.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Concept } from '../concept/concept.js';
import { PaniniError } from '../errors.js';
import { writeFdAll } from '../io.js';
import { componentLeaves, COMPONENT_NAMES, extractComponent, isComponentName, type ComponentName } from '../reconstruct/extract.js';
import { reconstruct } from '../reconstruct/reconstruct.js';
import { parseArgs } from './args.js';
import { openContext, type Context } from './context.js';
import { requireConcept } from './resolve.js';
import { assertAtomsPresent } from './smudge.js';

const USAGE = `usage: git panini get-content <path|concept> [--component ${COMPONENT_NAMES.join('|')}] [-o FILE]`;

export async function run(args: string[]): Promise<number> {
  const { positional, flags } = parseArgs(args, [], ['component', 'o', 'output']);
  const target = positional[0];
  if (!target || positional.length > 1) throw new PaniniError(USAGE);
  const component = flags.get('component');
  if (component !== undefined && !isComponentName(component)) {
    throw new PaniniError(`unknown component ${JSON.stringify(component)}`, `choose one of ${COMPONENT_NAMES.join(', ')}`);
  }
  const output = flags.get('o') ?? flags.get('output');
  if (output === true || output === '') throw new PaniniError('-o needs a file name', USAGE);
  const ctx = openContext();
  const concept = requireConcept(ctx, target);
  await fetchNeeded(ctx, concept, component);
  const summary = await writeOutput(output, async (write) => {
    if (component === undefined) {
      assertAtomsPresent(ctx, concept, target);
      reconstruct(concept, ctx.store, write);
      return `${target} (${concept.size} bytes, verified)`;
    }
    const r = await extractComponent(concept, ctx.store, { component, outputName: output }, write);
    return `${r.description}, ${r.bytes} bytes from ${r.atomsRead} atoms`;
  });
  if (output !== undefined) process.stderr.write(`wrote ${summary} to ${output}\n`);
  return 0;
}

/** With a remote store: downloads the manifests, then only the atoms the output reads. */
async function fetchNeeded(ctx: Context, concept: Concept, component: ComponentName | undefined): Promise<void> {
  if (!ctx.config.get('panini.url')) return;
  const { fetchAtoms } = await import('../transfer/fetch.js');
  const { collectAtoms } = await import('../transfer/plan.js');
  const manifests = await collectAtoms([concept], ctx.store, (missing) => fetchAtoms(ctx, missing, { quiet: true }), { walkTracks: true });
  const leaves = component === undefined ? [...manifests.leaves.keys()] : componentLeaves(concept, ctx.store, component).map((l) => l.hash);
  await fetchAtoms(ctx, leaves, { quiet: true, label: 'get-content' });
}

/** Runs `produce` writing to stdout, or to a temp file beside `output` renamed into place on success. */
async function writeOutput(output: string | undefined, produce: (write: (bytes: Buffer) => void) => Promise<string>): Promise<string> {
  if (output === undefined) return produce((bytes) => writeFdAll(1, bytes));
  const temp = join(dirname(output), `.${basename(output)}.panini-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o644);
  } catch (err) {
    throw new PaniniError(`cannot write beside ${output}: ${(err as Error).message}`, 'check that its directory exists and is writable');
  }
  try {
    const summary = await produce((bytes) => writeFdAll(fd, bytes));
    closeSync(fd);
    renameSync(temp, output);
    return summary;
  } catch (err) {
    try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(temp); } catch { /* already gone */ }
    throw err;
  }
}
