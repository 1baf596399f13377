/**
 * What it costs to learn which atoms a remote store has: one HEAD per atom (run `concurrency` at a
 * time) against listing `atoms/` (sorted pages of 1,000 keys, one after the other), on s3rver
 * reached directly and through a proxy adding a per-request delay like a distant service, and on a
 * shared folder. The ratio "one list page costs as much as N HEADs" sets `listPageCost` in
 * src/store/s3.ts and src/store/folder.ts. Run: `node dist/bench/inventory.js`
 * (PANINI_BENCH_ATOMS=<n> to change the remote's size, 5,000 by default).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sha256Hex } from '../src/hash.js';
import { atomKey, bufferBody, type Backend } from '../src/store/backend.js';
import { FolderBackend } from '../src/store/folder.js';
import { S3Backend } from '../src/store/s3.js';
import { forEachConcurrently } from '../src/transfer/pool.js';
import { S3_CREDENTIALS, startS3Server } from '../test/helpers/s3-server.js';
import { formatMs, tempDir, timeIt } from './lib.js';

const ATOMS = Number(process.env.PANINI_BENCH_ATOMS ?? 5000);
const HEADS = 400;
const CONCURRENCY = 8;

interface Result {
  store: string;
  headMs: number;
  pageMs: number;
}

async function measureBackend(label: string, backend: Backend, hashes: string[]): Promise<Result> {
  const probe = hashes.slice(0, HEADS);
  const heads = await timeIt(() => forEachConcurrently(probe, 1, async (h) => void await backend.exists(atomKey(h))));
  let listed = 0;
  const listing = await timeIt(async () => {
    for await (const o of backend.list('atoms/')) if (o.key) listed++;
  });
  if (listed !== hashes.length) throw new Error(`${label}: listed ${listed} of ${hashes.length}`);
  return { store: label, headMs: heads.ms / probe.length, pageMs: listing.ms / Math.ceil(listed / 1000) };
}

async function fill(backend: Backend, bodies: Buffer[]): Promise<void> {
  await forEachConcurrently(bodies, 16, (b) => backend.upload(atomKey(sha256Hex(b)), bufferBody(b)));
}

async function main(): Promise<void> {
  Object.assign(process.env, S3_CREDENTIALS);
  const work = tempDir('panini-bench-inventory-');
  const s3 = await startS3Server();
  try {
    const bodies = Array.from({ length: ATOMS }, (_, i) => Buffer.from(`bench atom ${i}`));
    const hashes = bodies.map((b) => sha256Hex(b));
    const s3Options = { bucket: s3.bucket, prefix: 'inventory', forcePathStyle: true, timeoutMs: 30_000 };
    const direct = new S3Backend({ ...s3Options, endpoint: s3.endpoint });
    const proxied = new S3Backend({ ...s3Options, endpoint: s3.proxyEndpoint });
    const folderDir = path.join(work.dir, 'folder');
    mkdirSync(folderDir);
    const folder = new FolderBackend(folderDir, pathToFileURL(folderDir).href);
    await fill(direct, bodies);
    await fill(folder, bodies);
    const results = [await measureBackend('folder', folder, hashes), await measureBackend('s3rver, direct', direct, hashes)];
    for (const delayMs of [5, 20]) {
      await s3.setFaults({ share: 0, kinds: [], seed: 1, delayMs });
      results.push(await measureBackend(`s3rver + ${delayMs} ms per request`, proxied, hashes));
    }
    direct.close();
    proxied.close();
    const lines = [
      `\n## Remote inventory: HEAD per atom vs listing (${ATOMS} atoms in the store)`, '',
      '| store | one HEAD | one list page (1,000 keys) | page / HEAD | HEADs (x8 in flight) per page time |',
      '|---|---|---|---|---|',
      ...results.map((r) => `| ${r.store} | ${formatMs(r.headMs)} | ${formatMs(r.pageMs)} | ${(r.pageMs / r.headMs).toFixed(1)} | ${((r.pageMs / r.headMs) * CONCURRENCY).toFixed(0)} |`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await s3.stop();
    work.dispose();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
