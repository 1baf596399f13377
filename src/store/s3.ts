/**
 * S3 or any S3-compatible service (MinIO, Ceph RGW, R2, ...) as a remote store: `s3://bucket/prefix`,
 * objects at `<prefix>/atoms/ab/cd/<hash>`. Credentials come only from the AWS SDK's default chain
 * (environment, profile, SSO, instance role); git-panini never reads, writes or prints them.
 *
 * Requests go through s3-requests.ts (the SDK's credential chain, endpoint rules and signer, without
 * its client: ~85 ms less per process); only multipart uploads load the SDK's client, for
 * lib-storage. Objects up to one part (5 MiB) go in one PUT, which S3 applies atomically; larger
 * ones are multipart uploads that S3 shows only once CompleteMultipartUpload succeeds after the
 * last part, and that are aborted on failure. Neither retries: src/transfer/retry.ts retries every
 * backend the same way, with a fresh body stream.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import {
  checkKey, isTransientNetworkError, RemoteError, statsFromListing, type Backend, type BackendStats, type ByteRange, type RemoteObject, type UploadBody,
} from './backend.js';
import { parseListPage, S3Requests, type S3Failure } from './s3-requests.js';
import { deferredCaFile } from '../extra-ca-certs.js';
import type * as AwsSdk from './aws-sdk.js';

export interface S3Options {
  bucket: string;
  /** Key prefix without leading or trailing slash ('' for the bucket's root). */
  prefix: string;
  endpoint?: string;
  region?: string;
  forcePathStyle: boolean;
  /** A request with no progress for this long fails (and is retried). */
  timeoutMs: number;
}

/** lib-storage's minimum part size: larger objects become multipart uploads. */
export const S3_PART_SIZE = 5 * 1024 * 1024;
const LIST_PAGE = 1000;
const MAX_LIST_PAGES = 1_000_000;

// The SDK's client as one bundled CommonJS file (aws-sdk.ts), required by the first multipart
// upload: it loads in about half the time an ESM import takes. The same relative path from this
// module (dist/src/store) and from the CLI's bundle (dist/src/cli).
const require = createRequire(import.meta.url);
const awsSdk = (): typeof AwsSdk => require('../store/aws-sdk.cjs') as typeof AwsSdk;

export class S3Backend implements Backend {
  readonly url: string;
  /** Measured against s3rver 20 ms away: a page of 1,000 keys takes as long as 10 HEADs. */
  readonly listPageCost = 10;
  private readonly requests: S3Requests;
  private client: AwsSdk.S3Client | undefined;
  private readonly keyPrefix: string;
  private readonly trust = httpsTrust();

  constructor(private readonly options: S3Options) {
    this.url = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}`;
    this.keyPrefix = options.prefix ? `${options.prefix}/` : '';
    this.requests = new S3Requests({ ...options, ca: this.trust?.ca });
  }

  async upload(key: string, body: UploadBody): Promise<void> {
    if (body.size > S3_PART_SIZE) return this.uploadParts(key, body);
    let res;
    try {
      const bytes = body.bytes ?? (await readBody(body));
      res = await this.requests.send('PUT', this.objectKey(key), { body: bytes });
    } catch (err) {
      throw this.error(err, `uploading ${key}`);
    }
    if (!succeeded(res)) throw this.error(await this.requests.failure(res), `uploading ${key}`);
    res.resume();
  }

  /** A multipart upload, through the SDK's client and lib-storage. */
  private async uploadParts(key: string, body: UploadBody): Promise<void> {
    const { AbortMultipartUploadCommand, Upload } = awsSdk();
    const client = this.sdkClient();
    const upload = new Upload({
      client,
      params: { Bucket: this.options.bucket, Key: this.objectKey(key), Body: body.open(), ContentLength: body.size },
      partSize: S3_PART_SIZE,
      queueSize: 2,
      // We abort ourselves: lib-storage's own abort throws its failure in place of the one that
      // made it abort (a dropped part), and some services (s3rver) refuse AbortMultipartUpload.
      leavePartsOnError: true,
    });
    try {
      await upload.done();
    } catch (err) {
      if (upload.uploadId) {
        // Best effort: parts left behind are invisible, and a bucket lifecycle rule removes them.
        await client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.objectKey(key), UploadId: upload.uploadId })).catch(() => undefined);
      }
      throw this.error(err, `uploading ${key}`);
    }
  }

  async download(key: string, range?: ByteRange): Promise<Readable | null> {
    let res;
    try {
      res = await this.requests.send('GET', this.objectKey(key), range ? { headers: { range: `bytes=${range.start}-${range.start + range.length - 1}` } } : {});
    } catch (err) {
      throw this.error(err, `downloading ${key}`);
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      const failure = await this.requests.failure(res);
      if (res.statusCode === 404 && failure.name !== 'NoSuchBucket') return null;
      throw this.error(failure, `downloading ${key}`);
    }
    if (range && res.statusCode !== 206) {
      res.destroy();
      throw new RemoteError(`remote store ${this.url}: the service answered a ranged download of ${key} with the whole object`, 'use an S3-compatible service that supports Range requests (all current ones do)', false);
    }
    return res;
  }

  async exists(key: string): Promise<boolean> {
    const res = await this.answer('HEAD', key, `looking for ${key}`);
    if (res.statusCode !== 200 && res.statusCode !== 404) throw this.error(await this.requests.failure(res), `looking for ${key}`);
    res.resume();
    return res.statusCode === 200;
  }

  async delete(key: string): Promise<void> {
    const res = await this.answer('DELETE', key, `deleting ${key}`);
    if (!succeeded(res) && res.statusCode !== 404) throw this.error(await this.requests.failure(res), `deleting ${key}`);
    res.resume();
  }

  async *list(prefix: string): AsyncGenerator<RemoteObject> {
    let token: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const query: Record<string, string> = { 'list-type': '2', prefix: this.keyPrefix + prefix, 'max-keys': String(LIST_PAGE) };
      if (token) query['continuation-token'] = token;
      let listed;
      try {
        const res = await this.requests.send('GET', null, { query });
        if (res.statusCode !== 200) throw await this.requests.failure(res);
        listed = parseListPage(await readText(res));
      } catch (err) {
        throw this.error(err, `listing ${prefix || '/'}`);
      }
      for (const o of listed.objects) {
        if (o.key.startsWith(this.keyPrefix)) yield { key: o.key.slice(this.keyPrefix.length), size: o.size, modifiedMs: o.modifiedMs };
      }
      if (!listed.next || listed.next === token) return;
      token = listed.next;
    }
  }

  stats(prefix = ''): Promise<BackendStats> {
    return statsFromListing(this, prefix);
  }

  close(): void {
    this.requests.close();
    this.client?.destroy();
  }

  /** The answer to a request without a body, whatever its status; a request that fails to get one is thrown. */
  private async answer(method: 'HEAD' | 'DELETE', key: string, doing: string): Promise<IncomingMessage> {
    try {
      return await this.requests.send(method, this.objectKey(key));
    } catch (err) {
      throw this.error(err, doing);
    }
  }

  private sdkClient(): AwsSdk.S3Client {
    if (this.client) return this.client;
    // The SDK's advice about future Node versions would land in Git's output on every push.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const { endpoint, region, forcePathStyle, timeoutMs } = this.options;
    this.client = new (awsSdk().S3Client)({
      endpoint,
      region: region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined),
      forcePathStyle,
      maxAttempts: 1,
      // Newer SDK defaults add CRC checksums that many S3-compatible servers reject; atoms are
      // SHA-256-checked end to end anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs, ...(this.trust ? { httpsAgent: this.trust } : {}) },
    });
    return this.client;
  }

  private objectKey(key: string): string {
    return this.keyPrefix + checkKey(key);
  }

  private error(err: unknown, doing: string): RemoteError {
    if (err instanceof RemoteError) return err;
    const e = err as Partial<S3Failure> & { $retryable?: unknown; code?: string };
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? 'Error';
    const what = `remote store ${this.url}: ${doing} failed`;
    if (name === 'CredentialsProviderError' || /could not load credentials/i.test(e.message ?? '')) {
      return new RemoteError(`${what}: no AWS credentials found`, 'provide them the AWS SDK way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO or an instance role); git-panini never stores credentials', false);
    }
    if (name === 'NoSuchBucket') return new RemoteError(`${what}: bucket ${this.options.bucket} does not exist`, 'create the bucket, or correct panini.url', false);
    if (/region is missing/i.test(e.message ?? '')) return new RemoteError(`${what}: no AWS region set`, 'set panini.s3.region (or AWS_REGION)', false);
    // A redirect, or a signature for the wrong region (AuthorizationHeaderMalformed), naming the bucket's.
    if (e.bucketRegion && status !== undefined && ((status >= 300 && status < 400) || name === 'AuthorizationHeaderMalformed')) {
      return new RemoteError(`${what}: bucket ${this.options.bucket} is in region ${e.bucketRegion}`, `set panini.s3.region to ${e.bucketRegion}`, false);
    }
    if (name === 'RequestTimeTooSkewed') {
      return new RemoteError(`${what}: this machine's clock differs from the service's by more than 15 minutes`, 'set the clock right (NTP), then run the command again', false);
    }
    if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
      return new RemoteError(`${what}: access denied (${name})`, 'check the credentials in your AWS environment and the bucket\'s policy', false);
    }
    if (/CERT/.test(e.code ?? '')) {
      return new RemoteError(
        `${what}: the service's TLS certificate is not trusted (${e.code}: ${e.message ?? ''})`,
        'if the service uses a private certificate authority, name its certificate file in NODE_EXTRA_CA_CERTS; otherwise check panini.s3.endpoint',
        false,
      );
    }
    const retryable = (status !== undefined && (status >= 500 || status === 408 || status === 429))
      || name === 'TimeoutError' || name === 'RequestTimeout' || name === 'AbortError' || Boolean(e.$retryable) || isTransientNetworkError(err)
      || /socket hang up|ECONNRESET|timed out|premature close/i.test(e.message ?? '');
    const detail = status !== undefined ? `${name}, HTTP ${status}` : e.code ?? name;
    const hint = retryable ? 'the service or the network failed repeatedly; run the command again later' : 'check panini.url, panini.s3.endpoint and panini.s3.forcePathStyle';
    return new RemoteError(`${what} (${detail}: ${(e.message ?? '').split('\n')[0]})`, hint, retryable);
  }
}

/**
 * When the launcher deferred NODE_EXTRA_CA_CERTS, HTTPS trusts what Node would have: its own roots
 * plus that file's certificates. Like Node, a file that cannot be read is reported and ignored.
 */
function httpsTrust(): { ca: string[] } | undefined {
  if (deferredCaFile === undefined) return undefined;
  try {
    return { ca: [...rootCertificates, readFileSync(deferredCaFile, 'utf8')] };
  } catch (err) {
    process.stderr.write(`git-panini: warning: ignoring the extra CA certificates in ${deferredCaFile} (NODE_EXTRA_CA_CERTS): ${(err as Error).message}\n`);
    return undefined;
  }
}

/** A 2xx answer (S3 answers a PUT with 200, a DELETE with 204; some services with others of the class). */
const succeeded = (res: IncomingMessage): boolean => res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300;

/** An upload's bytes (at most one part: S3_PART_SIZE) read into memory, to be signed and sent in one PUT. */
async function readBody(body: UploadBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body.open()) {
    size += (chunk as Buffer).length;
    if (size > body.size) throw new RemoteError(`an upload's body is longer than the ${body.size} bytes announced`, 'this is a bug in git-panini; please report it', false);
    chunks.push(chunk as Buffer);
  }
  if (size !== body.size) throw new RemoteError(`an upload's body ended after ${size} of the ${body.size} bytes announced`, 'run the command again', true);
  return Buffer.concat(chunks, size);
}

/** A page of 1,000 keys is ~300 KB: more is not a listing. */
const LIST_PAGE_MAX_BYTES = 16 * 1024 * 1024;

/** A listing's body as text. */
async function readText(res: IncomingMessage): Promise<string> {
  res.setEncoding('utf8');
  let text = '';
  for await (const chunk of res) {
    text += chunk as string;
    if (text.length > LIST_PAGE_MAX_BYTES) {
      res.destroy();
      throw new RemoteError(`the service answered a listing with more than ${LIST_PAGE_MAX_BYTES} bytes`, 'check panini.s3.endpoint: it does not look like an S3 service', false);
    }
  }
  return text;
}
