import { PktReader, PktWriter } from '../git/pktline.js';
import { serveFilterProcess } from '../git/filter-process.js';
import { openContext } from './context.js';
import { announceWriter } from '../store/writers.js';
import { skipSmudge } from './smudge.js';
import { remoteFetcher } from './fetcher.js';
import { blockingPipe } from '../io.js';

/** Started by Git once per command (filter.panini.process); serves every file through pkt-lines. */
export async function run(): Promise<number> {
  const ctx = openContext();
  announceWriter(ctx.store.root); // until exit: gc keeps what this process writes (store/writers.ts)
  await serveFilterProcess(ctx, new PktReader(blockingPipe(0, 'r')), new PktWriter(blockingPipe(1, 'w')), {
    fetcher: remoteFetcher(ctx),
    skipSmudge: skipSmudge(),
    log: (line) => process.stderr.write(line + '\n'),
  });
  return 0;
}
