import { readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { buildConcept } from '../concept/build.js';
import { attachContent } from '../concept/note.js';
import { PaniniError } from '../errors.js';
import { FileSource } from '../source.js';
import { openContext } from './context.js';
import { announceWriter } from '../store/writers.js';

/** `add-content <concept.md> <file>`: stores the file as atoms and lists them in the note. */
export function run(args: string[]): number {
  const [notePath, filePath] = args.filter((a) => !a.startsWith('-'));
  if (!notePath || !filePath) throw new PaniniError('usage: git panini add-content <concept.md> <file>');
  if (!existsSync(filePath)) throw new PaniniError(`${filePath}: no such file`);
  const ctx = openContext();
  announceWriter(ctx.store.root); // until exit: gc keeps what this process writes (store/writers.ts)
  const note = existsSync(notePath) ? readFileSync(notePath, 'utf8') : '';
  const src = FileSource.open(filePath);
  let built;
  try {
    built = buildConcept(src, ctx.store, { maxAtomSize: ctx.maxAtomSize });
  } finally {
    src.close();
  }
  const tmp = `${notePath}.panini-tmp`;
  writeFileSync(tmp, attachContent(note, built.text));
  renameSync(tmp, notePath);
  process.stdout.write(`${notePath}: attached ${filePath} (${built.ingest.size} bytes, ${built.ingest.leaves.length} atoms, ${built.ingest.written} new)\n`);
  return 0;
}
