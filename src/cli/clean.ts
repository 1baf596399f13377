import { buildConcept } from '../concept/build.js';
import { looksLikeConcept, parseConcept } from '../concept/concept.js';
import { spoolFd, writeFdAll, type SpooledInput } from '../io.js';
import { openContext, type Context } from './context.js';

/** Bytes in → concept out. Content that already is a concept comes out unchanged. */
export function cleanInput(ctx: Context, input: SpooledInput): Buffer {
  if (looksLikeConcept(input.head) && isValidConcept(input)) return input.source.read(0, input.source.size);
  return Buffer.from(buildConcept(input.source, ctx.store, { maxAtomSize: ctx.maxAtomSize }).text);
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

export function run(): number {
  const ctx = openContext();
  const input = spoolFd(0, () => ctx.store.tempPath('clean'));
  try {
    writeFdAll(1, cleanInput(ctx, input));
  } finally {
    input.dispose();
  }
  return 0;
}
