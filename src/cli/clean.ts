import { buildConcept } from '../concept/build.js';
import { looksLikeConcept, parseConcept } from '../concept/concept.js';
import { spoolFd, writeFdAll, type SpooledInput } from '../io.js';
import { PaniniError } from '../errors.js';
import { openContext, type Context } from './context.js';

/** Bytes in → concept out. Content that already is a concept comes out unchanged. */
export function cleanInput(ctx: Context, input: SpooledInput, path?: string): Buffer {
  if (looksLikeConcept(input.head) && isValidConcept(input)) return input.source.read(0, input.source.size);
  const { text } = buildConcept(input.source, ctx.store, { maxAtomSize: ctx.maxAtomSize });
  if (input.unchanged && !input.unchanged()) {
    throw new PaniniError(`${path ?? 'the file'} changed while it was being added`, 'run `git add` again once nothing is writing to the file');
  }
  return Buffer.from(text);
}

function isValidConcept(input: SpooledInput): boolean {
  if (input.source.size > 1024 * 1024) return false;
  try {
    parseConcept(input.source.read(0, input.source.size));
    return true;
  } catch {
    return false; // bytes that merely resemble a concept are stored like any other content
  }
}

/** `clean [--] [path]`: Git passes the path (%f); a large stdin identical to that file is read in place. */
export function run(args: string[]): number {
  const path = args.filter((a) => a !== '--')[0];
  const ctx = openContext();
  const input = spoolFd(0, () => ctx.store.tempPath('clean'), path);
  try {
    writeFdAll(1, cleanInput(ctx, input, path));
  } finally {
    input.dispose();
  }
  return 0;
}
