/**
 * The least a Node filter process can take, for bench/git-ops.ts and bench/transfer.ts: Git's
 * long-running filter protocol, answered with the files' bytes read from a finished checkout (the
 * directory given as the argument) through git-panini's own pkt-line reader and writer, and nothing
 * else: no store, no concept, no hash. Git runs it as lib.ts's floorFilterCommand says.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MAX_PAYLOAD, PktReader, PktWriter } from '../src/git/pktline.js';
import { blockingPipe, nonBlockingPipe } from '../src/io.js';

const checkout = process.argv[2];
if (!checkout) throw new Error('usage: floor-filter.js <directory holding the files Git asks for>');
// As git-panini's filter reads: polling for Git's next request (src/cli/filter-process.ts).
const reader = new PktReader(blockingPipe(0, 'r'), nonBlockingPipe(0, 'r'), 0.5);
const writer = new PktWriter(blockingPipe(1, 'w'), nonBlockingPipe(1, 'w'));

reader.readText(); // git-filter-client
while (reader.readText() !== null); // versions
writer.text('git-filter-server');
writer.text('version=2');
writer.flushPkt();
writer.send();
while (reader.readText() !== null); // capabilities
writer.text('capability=smudge');
writer.flushPkt();
writer.send();

const scratch = Buffer.allocUnsafe(MAX_PAYLOAD);
for (let request = reader.readKeyValues(); request !== undefined; request = reader.readKeyValues()) {
  while (reader.readContentInto(scratch, 0, scratch.length) > 0); // the concept: not read
  writer.text('status=success');
  writer.flushPkt();
  writer.data(readFileSync(path.join(checkout, request.get('pathname') ?? '')));
  writer.flushPkt();
  writer.flushPkt();
  writer.send();
}
