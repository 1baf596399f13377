/**
 * The S3 remote store against a real S3-protocol server (s3rver on 127.0.0.1): the common remote
 * checks, multipart uploads of large atoms (complete only after the last part), and the messages
 * for a missing bucket and missing credentials.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { sha256Hex } from '../src/hash.js';
import { atomKey } from '../src/store/backend.js';
import { openRemote } from '../src/store/remote.js';
import { S3_PART_SIZE } from '../src/store/s3.js';
import { uploadAtom } from '../src/transfer/atoms.js';
import { fetchAtoms } from '../src/transfer/fetch.js';
import { pushConcepts } from '../src/transfer/push.js';
import { addBytes, storeContext, subdir } from './helpers/remote.js';
import { defineRemoteSuite } from './helpers/remote-suite.js';
import { S3_CREDENTIALS, useS3Suite } from './helpers/s3-server.js';
import { sha256 } from './helpers/git.js';

const suite = useS3Suite('panini-s3-');
const root = suite.root;
let count = 0;

function settingsFor(prefix: string, endpoint = suite.s3.endpoint): Record<string, string> {
  return { 'panini.url': `s3://${suite.s3.bucket}/${prefix}`, 'panini.s3.endpoint': endpoint, 'panini.s3.forcePathStyle': 'true', 'panini.timeout': '5000' };
}

defineRemoteSuite('s3', {
  async freshSettings() {
    return settingsFor(`run-${process.pid}/remote-${++count}`);
  },
});

test('s3: an atom above the part size goes up as a multipart upload and comes back exact', async () => {
  const settings = settingsFor('multipart');
  const here = storeContext(subdir(root, 'mp-here'), settings);
  // An atom this large comes from a raised panini.maxAtomSize; it is put in the store directly.
  const big = randomBytes(S3_PART_SIZE + 2 * 1024 * 1024);
  const hash = sha256Hex(big);
  here.store.put(hash, big);
  await suite.s3.stats(true);
  const backend = (await openRemote(storeContext(subdir(root, 'mp-probe'), { ...settings, 'panini.s3.endpoint': suite.s3.proxyEndpoint })))!;
  try {
    await uploadAtom({ backend, store: here.store, settings: { concurrency: 2, attempts: 1, timeoutMs: 5000 } }, hash);
  } finally {
    backend.close();
  }
  const seen = await suite.s3.stats();
  assert.ok((seen.byMethod.POST ?? 0) >= 2, 'CreateMultipartUpload and CompleteMultipartUpload');
  assert.ok((seen.byMethod.PUT ?? 0) >= 2, 'at least two parts');
  const there = storeContext(subdir(root, 'mp-there'), settings);
  await fetchAtoms(there, [hash], { quiet: true });
  assert.equal(sha256(there.store.get(hash)), hash);
});

test('s3: a multipart upload interrupted before its last part leaves no object', async () => {
  const backend = (await openRemote(storeContext(subdir(root, 'mp-cut'), settingsFor('multipart-cut'))))!;
  try {
    const key = atomKey(sha256Hex(Buffer.from('interrupted')));
    const size = 3 * S3_PART_SIZE;
    const body = {
      size,
      open: () => Readable.from((async function* () {
        yield randomBytes(S3_PART_SIZE);
        yield randomBytes(S3_PART_SIZE);
        throw new Error('source lost after two parts');
      })(), { objectMode: false }),
    };
    await assert.rejects(backend.upload(key, body));
    assert.equal(await backend.exists(key), false);
    const left = [];
    for await (const o of backend.list('')) left.push(o.key);
    assert.deepEqual(left, []);
  } finally {
    backend.close();
  }
});

test('s3: pushing to a missing bucket says so', async () => {
  const here = storeContext(subdir(root, 'nobucket'), { ...settingsFor('x'), 'panini.url': 's3://no-such-bucket/x' });
  const file = addBytes(here, 'a.bin', randomBytes(10_000));
  await assert.rejects(pushConcepts(here, [{ concept: file.concept, path: 'a.bin' }], { quiet: true }), (err: Error) => {
    assert.match(err.message, /bucket no-such-bucket does not exist/);
    return true;
  });
});

test('s3: without credentials, a transfer fails with a clear message', async () => {
  const saved = { ...process.env };
  const home = subdir(root, 'home-without-aws');
  for (const k of Object.keys(S3_CREDENTIALS)) delete process.env[k];
  Object.assign(process.env, { HOME: home, AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: `${home}/none`, AWS_SHARED_CREDENTIALS_FILE: `${home}/none` });
  try {
    const ctx = storeContext(subdir(root, 'nocreds'), settingsFor('nocreds'));
    await assert.rejects(fetchAtoms(ctx, [sha256Hex(Buffer.from('x'))], { quiet: true }), (err: Error) => {
      assert.match(err.message, /no AWS credentials found/);
      assert.match(String((err as { hint?: string }).hint), /AWS_ACCESS_KEY_ID/);
      return true;
    });
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
});
