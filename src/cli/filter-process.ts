import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { PktReader, PktWriter } from '../git/pktline.js';
import { serveFilterProcess, type AtomFetcher } from '../git/filter-process.js';
import { openContext, type Context } from './context.js';
import { statOrNull } from '../store/local.js';
import { MERGE_BELOW_BYTES } from '../store/pack.js';
import { errorMessage, PaniniError } from '../errors.js';
import { announceWriter } from '../store/writers.js';
import { skipSmudge } from './smudge.js';
import { remoteFetcher } from './fetcher.js';
import { blockingPipe, nonBlockingPipe } from '../io.js';

/**
 * Past this many packs, the filter process merges some of the small ones as it ends (as Git's
 * `gc --auto` repacks past gc.autoPackLimit, 50), at most AUTO_MERGE_BYTES a time: a reader pays
 * for every pack, and most users never run gc.
 */
const AUTO_MERGE_ABOVE_PACKS = 50;
const AUTO_MERGE_BYTES = 256 * 1024 * 1024;

/** Git sends the next file ~0.1–0.3 ms after the last answer in an add or checkout. */
const REQUEST_POLL_MS = 0.5;

/** Started by Git once per command (filter.panini.process); serves every file through pkt-lines. */
export async function run(): Promise<number> {
  // V8 hands a function to TurboFan (on another thread, so on the core Git is using) after a fixed
  // budget of bytecode. A checkout of thousands of small files ends before that compiling pays off:
  // at 15x the default budget the filter used ~20% less CPU for 2,000 files, and a 128 MiB file went
  // through at the same speed (its hot code still gets optimized, a little later).
  setFlagsFromString('--interrupt-budget=1000000');
  const ctx = openContext();
  announceWriter(ctx.store.root); // until exit: gc keeps what this process writes (store/writers.ts)
  let fetcher: AtomFetcher | null | undefined;
  // Git's next request is polled for before sleeping (readFdPolling), when Git has a core of its
  // own; idle work (naming a pack of small files) is done once Git has been quiet for a while.
  const reader = new PktReader(blockingPipe(0, 'r'), nonBlockingPipe(0, 'r'), availableParallelism() > 1 ? REQUEST_POLL_MS : 0);
  await serveFilterProcess(ctx, reader, new PktWriter(blockingPipe(1, 'w'), nonBlockingPipe(1, 'w')), {
    // Looked up when an atom is missing: the remote's settings may be in .paniniconfig (git calls).
    get fetcher() {
      return fetcher === undefined ? (fetcher = remoteFetcher(ctx)) : fetcher;
    },
    skipSmudge: skipSmudge(),
    log: (line) => process.stderr.write(line + '\n'),
    trace: Boolean(process.env.PANINI_TRACE),
  });
  await mergePacksIfMany(ctx);
  return 0;
}

async function mergePacksIfMany(ctx: Context): Promise<void> {
  const packs = ctx.store.packIndexes();
  if (packs.length <= AUTO_MERGE_ABOVE_PACKS) return;
  // Many large packs and no small ones: nothing to merge, and no module to load for it.
  if (packs.filter((p) => (statOrNull(p.packPath)?.size ?? Infinity) < MERGE_BELOW_BYTES).length < 2) return;
  const [{ withGcLock }, { mergeSmallPacks }] = await Promise.all([import('../gc/prune.js'), import('../store/pack-writer.js')]);
  try {
    const merged = await withGcLock(ctx.store, async () => mergeSmallPacks(ctx.store, AUTO_MERGE_BYTES));
    if (merged.packs > 0) process.stderr.write(`git-panini: merged ${merged.packs} small packs into ${merged.into} (the store had more than ${AUTO_MERGE_ABOVE_PACKS}; \`git panini gc\` merges them too)\n`);
  } catch (err) {
    // A gc holding the lock merges too; a read-only or full store keeps its packs as they are. The
    // packs are left whole whatever failed: only the unexpected is worth a line on every command.
    const code = (err as NodeJS.ErrnoException).code;
    if (!(err instanceof PaniniError) && !['EACCES', 'EPERM', 'EROFS', 'ENOSPC'].includes(code ?? '')) {
      process.stderr.write(`git-panini: could not merge the store's packs: ${errorMessage(err)}\n`);
    }
  }
}
