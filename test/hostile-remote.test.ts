/**
 * A hostile (or broken) remote store, end to end with real Git: after a push, an S3 server (s3rver
 * on 127.0.0.1) serves wrong bytes for an atom — a leaf of one file, then a manifest of another,
 * both inside the pack the push uploaded — with the right length, so only the hash check can tell. A fresh clone must report a
 * hash mismatch naming the atom and the file; the wrong bytes must reach neither the local store
 * (every atom there hashes to its name) nor the worktree. Once the bucket is repaired, the same
 * clone checks out exactly.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { MANIFEST_TYPES } from '../src/atom.js';
import { parseConcept } from '../src/concept/concept.js';
import { openRemote } from '../src/store/remote.js';
import { GitSandbox, sha256 } from './helpers/git.js';
import { readRemote, remoteAtoms, storeContext, type RemotePlace } from './helpers/remote.js';
import { S3_CREDENTIALS, useS3Suite } from './helpers/s3-server.js';
import { assertStoreClean } from './helpers/store-check.js';

const suite = useS3Suite('panini-hostile-remote-');
const PREFIX = 'hostile';

test('an S3 store serving wrong bytes for an atom: the clone names the atom, the bytes reach neither store nor worktree', { timeout: 120_000 }, async (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const env = S3_CREDENTIALS;
  const s3 = new S3Client({ endpoint: suite.s3.endpoint, region: S3_CREDENTIALS.AWS_REGION, forcePathStyle: true, credentials: { accessKeyId: S3_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY } });
  t.after(() => s3.destroy());
  const backend = (await openRemote(storeContext(path.join(sb.root, 'probe'), {
    'panini.url': `s3://${suite.s3.bucket}/${PREFIX}`, 'panini.s3.endpoint': suite.s3.endpoint, 'panini.s3.forcePathStyle': 'true',
  })))!;
  t.after(() => backend.close());
  const placeOf = async (hash: string): Promise<RemotePlace> => {
    const at = (await remoteAtoms(backend)).get(hash);
    assert.ok(at, `${hash} is in the remote store`);
    return at;
  };
  const getObject = async (hash: string): Promise<Buffer> => {
    const at = await placeOf(hash);
    return readRemote(backend, at.key, { start: at.offset, length: at.size });
  };
  /** Same-length bytes in place of the atom's, wherever the push put it (a pack, here). */
  const putObject = async (hash: string, bytes: Buffer): Promise<void> => {
    const at = await placeOf(hash);
    const whole = await readRemote(backend, at.key);
    bytes.copy(whole, at.offset);
    await s3.send(new PutObjectCommand({ Bucket: suite.s3.bucket, Key: `${PREFIX}/${at.key}`, Body: whole }));
  };

  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work');
  sb.panini(work, ['track', '*.bin']);
  writeFileSync(path.join(work, '.paniniconfig'), `[panini]\n\turl = s3://${suite.s3.bucket}/${PREFIX}\n\tretries = 1\n\ttimeout = 5000\n[panini "s3"]\n\tendpoint = ${suite.s3.endpoint}\n\tforcePathStyle = true\n`);
  // small.bin: a few atoms listed in its concept; large.bin: over 32 atoms, so its concept lists a manifest.
  const files: Record<string, Buffer> = { 'small.bin': randomBytes(400_000), 'large.bin': randomBytes(4 * 1024 * 1024) };
  for (const [f, bytes] of Object.entries(files)) writeFileSync(path.join(work, f), bytes);
  sb.git(work, ['add', '.']);
  sb.git(work, ['commit', '-q', '-m', 'files']);
  sb.git(work, ['remote', 'add', 'origin', origin]);
  sb.git(work, ['push', '-q', 'origin', 'main'], { env });

  const conceptOf = (f: string) => parseConcept(sb.git(work, ['show', `HEAD:${f}`]));
  const leaf = conceptOf('small.bin').refs.find((r) => !MANIFEST_TYPES.has(r.type) && r.offset > 0)!;
  const manifestRef = conceptOf('large.bin').refs.find((r) => r.type === 'Manifest');
  assert.ok(leaf && manifestRef, 'small.bin lists a leaf past its start; large.bin lists a manifest');

  let n = 0;
  for (const [label, file, hash] of [['a leaf', 'small.bin', leaf.hash], ['a manifest', 'large.bin', manifestRef.hash]] as const) {
    const good = await getObject(hash);
    assert.equal(sha256(good), hash, 'the push uploaded the right bytes');
    // Same length, different bytes: a manifest stays a well-formed manifest (one line's size nudged).
    const wrong = Buffer.from(good);
    if (file === 'large.bin') {
      const text = good.toString('latin1');
      const line = /^(\w+) (\d+) /m.exec(text.slice(text.indexOf('\n') + 1))!;
      const nudged = String(Number(line[2]) + (line[2]!.endsWith('9') ? -1 : 1));
      wrong.write(line[0].replace(line[2]!, nudged), text.indexOf('\n') + 1 + line.index, 'latin1');
    } else {
      wrong[wrong.length >> 1]! ^= 0x5a;
    }
    assert.equal(wrong.length, good.length);
    assert.notEqual(sha256(wrong), hash);
    await putObject(hash, wrong);
    assert.deepEqual(await getObject(hash), wrong, 'the bucket now serves wrong bytes');

    const { dir: clone, checkout } = sb.clone(origin, `clone-${++n}`, { env });
    const context = `${label}:\n${checkout.stderr}`;
    assert.notEqual(checkout.status, 0, `the checkout must fail: ${context}`);
    assert.match(checkout.stderr, new RegExp(`git-panini: ${file.replace('.', '\\.')}: `), `names the file: ${context}`);
    assert.match(checkout.stderr, new RegExp(`served ${wrong.length} bytes for atom ${hash} that hash to ${sha256(wrong)}; they were not stored`), context);
    assert.match(checkout.stderr, /hint: \S/, context);

    const storeRoot = path.join(clone, '.git', 'panini');
    const stored = assertStoreClean(storeRoot);
    assert.ok(!stored.has(hash), `${hash} is not in the local store`);
    for (const f of Object.keys(files)) {
      const full = path.join(clone, f);
      if (!existsSync(full)) continue;
      const bytes = readFileSync(full);
      assert.equal(bytes.includes(wrong), false, `${f} holds the wrong bytes`);
      assert.equal(sha256(bytes), sha256(files[f]!), `${f} exists, so it must be exact`);
    }
    // Fetching by hand says the same, and stores nothing wrong either.
    const fetched = sb.tryGit(clone, ['panini', 'fetch', '--quiet'], { env });
    assert.notEqual(fetched.status, 0);
    assert.match(fetched.stderr, new RegExp(`atom ${hash} that hash to ${sha256(wrong)}`), fetched.stderr);
    assert.ok(!assertStoreClean(storeRoot).has(hash));

    // Repaired bucket: the same clone now checks out exactly.
    await putObject(hash, good);
    const again = sb.tryGit(clone, ['checkout', '-f', 'main'], { env });
    assert.equal(again.status, 0, again.stderr);
    for (const [f, bytes] of Object.entries(files)) assert.equal(sha256(readFileSync(path.join(clone, f))), sha256(bytes), `${f} after repair`);
    assert.ok(assertStoreClean(storeRoot).has(hash));
  }
});
