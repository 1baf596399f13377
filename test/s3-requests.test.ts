/**
 * S3 requests without the SDK's client (src/store/s3-requests.ts): they go where the SDK's client
 * sends them, for every way of naming a bucket's endpoint; keys and prefixes that need escaping
 * travel, are signed and are listed back exact against a real S3-protocol server (s3rver); S3's XML
 * is read with its entities; and a bucket in another region, a clock the service refuses and a
 * refusal without a body are named in the error.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { S3Client, HeadObjectCommand } from '@aws-sdk/client-s3';
import { bufferBody } from '../src/store/backend.js';
import { S3Backend } from '../src/store/s3.js';
import { parseListPage, resolveBucket, xmlField } from '../src/store/s3-requests.js';
import { subdir } from './helpers/remote.js';
import { useS3Suite } from './helpers/s3-server.js';

const suite = useS3Suite('panini-s3-requests-');

/** Runs `fn` with these environment variables set (undefined: unset), and no AWS files of the user's. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  const home = subdir(suite.root, `home-${Math.random().toString(36).slice(2)}`);
  Object.assign(process.env, { HOME: home, AWS_CONFIG_FILE: `${home}/config`, AWS_SHARED_CREDENTIALS_FILE: `${home}/credentials`, AWS_EC2_METADATA_DISABLED: 'true' });
  for (const k of ['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_PROFILE', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT']) delete process.env[k];
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

/** Where the SDK's client sends a HeadObject of `key`, and the region it signs for, without sending it. */
async function sdkTarget(options: { bucket: string; endpoint?: string; region?: string; forcePathStyle: boolean }, key: string): Promise<{ url: string; region: string }> {
  const { bucket, endpoint, region, forcePathStyle } = options;
  // As S3Backend configures the client for multipart uploads.
  const client = new S3Client({ endpoint, region: region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined), forcePathStyle, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
  let seen: { url: string; region: string } | undefined;
  client.middlewareStack.add((_next, context) => async (args) => {
    const r = args.request as { protocol: string; hostname: string; port?: number; path: string };
    const scheme = (context.endpointV2?.properties?.authSchemes as { signingRegion?: string }[] | undefined)?.[0];
    seen = { url: `${r.protocol}//${r.hostname}${r.port ? `:${r.port}` : ''}${r.path}`, region: scheme?.signingRegion ?? (await client.config.region()) };
    throw new Error('not sent');
  }, { step: 'build', name: 'capture', override: true });
  await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
  client.destroy();
  assert.ok(seen, 'the SDK built a request');
  return seen;
}

const CASES: { title: string; options: { bucket: string; endpoint?: string; region?: string; forcePathStyle: boolean }; env?: Record<string, string>; config?: string; expect: string }[] = [
  { title: 'an endpoint, path style', options: { bucket: 'media', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true }, expect: 'http://127.0.0.1:9000/media/' },
  { title: 'an endpoint, virtual host', options: { bucket: 'media', endpoint: 'https://minio.example.org:9000', forcePathStyle: false }, expect: 'https://media.minio.example.org:9000/' },
  { title: 'an endpoint with a path', options: { bucket: 'media', endpoint: 'http://store.example.org/s3', forcePathStyle: true }, expect: 'http://store.example.org/s3/media/' },
  { title: 'AWS, a region', options: { bucket: 'media', region: 'eu-west-3', forcePathStyle: false }, expect: 'https://media.s3.eu-west-3.amazonaws.com/' },
  { title: 'AWS, path style', options: { bucket: 'media', region: 'us-east-1', forcePathStyle: true }, expect: 'https://s3.us-east-1.amazonaws.com/media/' },
  { title: 'AWS, a bucket with dots', options: { bucket: 'media.example', region: 'eu-central-1', forcePathStyle: false }, expect: 'https://s3.eu-central-1.amazonaws.com/media.example/' },
  { title: 'AWS China', options: { bucket: 'media', region: 'cn-north-1', forcePathStyle: false }, expect: 'https://media.s3.cn-north-1.amazonaws.com.cn/' },
  { title: 'AWS_REGION', options: { bucket: 'media', forcePathStyle: false }, env: { AWS_REGION: 'ap-south-1' }, expect: 'https://media.s3.ap-south-1.amazonaws.com/' },
  { title: 'FIPS', options: { bucket: 'media', region: 'us-east-2', forcePathStyle: false }, env: { AWS_USE_FIPS_ENDPOINT: 'true' }, expect: 'https://media.s3-fips.us-east-2.amazonaws.com/' },
  { title: 'dual-stack', options: { bucket: 'media', region: 'us-west-2', forcePathStyle: false }, env: { AWS_USE_DUALSTACK_ENDPOINT: 'true' }, expect: 'https://media.s3.dualstack.us-west-2.amazonaws.com/' },
  { title: 'AWS_ENDPOINT_URL_S3', options: { bucket: 'media', region: 'us-east-1', forcePathStyle: true }, env: { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9999' }, expect: 'http://127.0.0.1:9999/media/' },
  { title: 'the shared config\'s region', options: { bucket: 'media', forcePathStyle: false }, config: '[default]\nregion = sa-east-1\n', expect: 'https://media.s3.sa-east-1.amazonaws.com/' },
];

for (const c of CASES) {
  test(`s3 requests go where the SDK's client sends them: ${c.title}`, async () => {
    await withEnv(c.env ?? {}, async () => {
      if (c.config) writeFileSync(process.env.AWS_CONFIG_FILE!, c.config);
      const ours = await resolveBucket(c.options);
      const sdk = await sdkTarget(c.options, 'atoms/ab/key');
      assert.equal(ours.url.href.replace(/\/?$/, '/'), c.expect);
      assert.equal(new URL('atoms/ab/key', ours.url.href.replace(/\/?$/, '/')).href, sdk.url);
      assert.equal(ours.signingRegion, sdk.region);
      assert.equal(ours.signingName, 's3');
    });
  });
}

test('s3 requests: a prefix that needs escaping is signed, stored and listed back exact', async () => {
  const backend = new S3Backend({ bucket: suite.s3.bucket, prefix: 'team a/proj+1&(x)~ü', endpoint: suite.s3.endpoint, forcePathStyle: true, timeoutMs: 5000 });
  try {
    await backend.upload('layouts/ab/one', bufferBody(Buffer.from('first')));
    await backend.upload('layouts/ab/two', bufferBody(Buffer.from('second')));
    assert.equal(await backend.exists('layouts/ab/one'), true);
    assert.equal(await backend.exists('layouts/ab/three'), false);
    const listed = [];
    for await (const o of backend.list('layouts/')) listed.push(`${o.key}:${o.size}`);
    assert.deepEqual(listed, ['layouts/ab/one:5', 'layouts/ab/two:6']);
    const ranged = await backend.download('layouts/ab/two', { start: 1, length: 3 });
    const chunks = [];
    for await (const chunk of ranged!) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'eco');
    assert.equal(await backend.download('layouts/ab/three'), null);
    await backend.delete('layouts/ab/one');
    await backend.delete('layouts/ab/one');
    assert.equal(await backend.exists('layouts/ab/one'), false);
  } finally {
    backend.close();
  }
});

test('s3 requests: a listing of more than one page is read to its end', async () => {
  const backend = new S3Backend({ bucket: suite.s3.bucket, prefix: 'pages', endpoint: suite.s3.endpoint, forcePathStyle: true, timeoutMs: 5000 });
  try {
    const keys = Array.from({ length: 1005 }, (_, i) => `gc/k${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => backend.upload(k, bufferBody(Buffer.from(k)))));
    const listed = [];
    for await (const o of backend.list('gc/')) listed.push(o.key);
    assert.deepEqual(listed, keys);
  } finally {
    backend.close();
  }
});

test('s3 requests: S3\'s XML is read with its entities', () => {
  const page = parseListPage(`<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>p/a&amp;b&lt;c&#x20AC;&#65;</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>12</Size></Contents>
<Contents><Key>p/plain</Key><Size>0</Size></Contents>
<NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>`);
  assert.deepEqual(page.objects, [
    { key: 'p/a&b<c€A', size: 12, modifiedMs: Date.parse('2026-11-30T10:00:00.000Z') },
    { key: 'p/plain', size: 0, modifiedMs: undefined },
  ]);
  assert.equal(page.next, 'tok&en');
  assert.equal(parseListPage('<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken></ListBucketResult>').next, undefined);
  assert.equal(xmlField('<Error><Code>NoSuchBucket</Code><Message>no &quot;b&quot;</Message></Error>', 'Message'), 'no "b"');
  assert.equal(xmlField('<Error><Code>A</Code></Error>', 'Message'), undefined);
  assert.equal(xmlField('<Key>&#x110000;</Key>', 'Key'), '&#x110000;');
});

/**
 * An S3 backend facing a local HTTP server that answers as S3 does in `answer` (a failure S3 gives
 * that s3rver cannot be made to give); both closed after the test.
 */
async function facing(t: { after(fn: () => void): void }, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<S3Backend> {
  const server = createServer((req, res) => {
    req.resume();
    answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const backend = new S3Backend({ bucket: 'media', prefix: '', endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, forcePathStyle: true, timeoutMs: 5000 });
  t.after(() => {
    backend.close();
    server.close();
  });
  return backend;
}

test('s3 requests: a bucket in another region is named, with the setting that fixes it', async (t) => {
  // What S3 answers a request for a bucket in another region: a redirect naming the bucket's region
  // in a header, or (signed for the wrong region) an error naming it in its body.
  let requests = 0;
  const backend = await facing(t, (_req, res) => {
    if (requests++ % 2 === 0) {
      res.writeHead(301, { 'x-amz-bucket-region': 'eu-north-1', 'content-type': 'application/xml' });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>');
    } else {
      res.writeHead(400, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>the region \'us-east-1\' is wrong; expecting \'eu-north-1\'</Message><Region>eu-north-1</Region></Error>');
    }
  });
  for (const attempt of [() => backend.download('gc-epoch'), () => backend.download('gc-epoch'), async () => backend.list('packs/').next(), async () => backend.list('packs/').next(), () => backend.exists('gc-epoch')]) {
    await assert.rejects(attempt(), (err: Error & { hint?: string; retryable?: boolean }) => {
      assert.match(err.message, /bucket media is in region eu-north-1/);
      assert.match(String(err.hint), /panini\.s3\.region to eu-north-1/);
      assert.equal(err.retryable, false);
      return true;
    });
  }
});

test('s3 requests: a clock the service refuses and a bodiless refusal are named', async (t) => {
  // What S3 answers a request signed more than 15 minutes off its clock, and a HEAD it refuses.
  const backend = await facing(t, (req, res) => {
    res.writeHead(403, { 'content-type': 'application/xml' });
    if (req.method === 'HEAD') res.end();
    else res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>');
  });
  await assert.rejects(backend.download('gc-epoch'), (err: Error & { hint?: string }) => {
    assert.match(err.message, /clock differs from the service's/);
    assert.match(String(err.hint), /NTP/);
    return true;
  });
  await assert.rejects(backend.exists('gc-epoch'), /access denied \(Forbidden\)/);
});
