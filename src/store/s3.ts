/**
 * S3 or any S3-compatible service (MinIO, Ceph RGW, R2, ...) as a remote store: `s3://bucket/prefix`,
 * objects at `<prefix>/atoms/ab/cd/<hash>`. Credentials come only from the AWS SDK's default chain
 * (environment, profile, SSO, instance role); git-panini never reads, writes or prints them.
 *
 * Objects up to one part (5 MiB) go in one PUT, which S3 applies atomically; larger ones are
 * multipart uploads that S3 shows only once CompleteMultipartUpload succeeds after the last part,
 * and that are aborted on failure. The SDK's own retries are off: src/transfer/retry.ts retries
 * every backend the same way, with a fresh body stream.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import {
  checkKey, isTransientNetworkError, RemoteError, statsFromListing, type Backend, type BackendStats, type ByteRange, type RemoteObject, type UploadBody,
} from './backend.js';
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

// The SDK as one bundled CommonJS file (aws-sdk.ts): required, it loads in about half the time an
// ESM import takes (no scan of its sources for export names). The same relative path from this
// module (dist/src/store) and from the CLI's bundle (dist/src/cli).
const require = createRequire(import.meta.url);
const {
  AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, Upload,
} = require('../store/aws-sdk.cjs') as typeof AwsSdk;

export class S3Backend implements Backend {
  readonly url: string;
  /** Measured against s3rver 20 ms away: a page of 1,000 keys takes as long as 10 HEADs. */
  readonly listPageCost = 10;
  private readonly client: AwsSdk.S3Client;
  private readonly keyPrefix: string;

  constructor(private readonly options: S3Options) {
    this.url = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}`;
    this.keyPrefix = options.prefix ? `${options.prefix}/` : '';
    // The SDK's advice about future Node versions would land in Git's output on every push.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (options.endpoint ? 'us-east-1' : undefined),
      forcePathStyle: options.forcePathStyle,
      maxAttempts: 1,
      // Newer SDK defaults add CRC checksums that many S3-compatible servers reject; atoms are
      // SHA-256-checked end to end anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: options.timeoutMs, socketTimeout: options.timeoutMs, ...httpsTrust() },
    });
  }

  async upload(key: string, body: UploadBody): Promise<void> {
    const upload = new Upload({
      client: this.client,
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
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.objectKey(key), UploadId: upload.uploadId })).catch(() => undefined);
      }
      throw this.error(err, `uploading ${key}`);
    }
  }

  async download(key: string, range?: ByteRange): Promise<Readable | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({
        Bucket: this.options.bucket, Key: this.objectKey(key), Range: range ? `bytes=${range.start}-${range.start + range.length - 1}` : undefined,
      }));
      if (range && r.ContentRange === undefined) {
        (r.Body as Readable).destroy();
        throw new RemoteError(`remote store ${this.url}: the service answered a ranged download of ${key} with the whole object`, 'use an S3-compatible service that supports Range requests (all current ones do)', false);
      }
      return r.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.error(err, `downloading ${key}`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(key) }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.error(err, `looking for ${key}`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (!isNotFound(err)) throw this.error(err, `deleting ${key}`);
    }
  }

  async *list(prefix: string): AsyncGenerator<RemoteObject> {
    let token: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      let r;
      try {
        r = await this.client.send(new ListObjectsV2Command({
          Bucket: this.options.bucket, Prefix: this.keyPrefix + prefix, ContinuationToken: token, MaxKeys: LIST_PAGE,
        }));
      } catch (err) {
        throw this.error(err, `listing ${prefix || '/'}`);
      }
      for (const o of r.Contents ?? []) {
        if (o.Key?.startsWith(this.keyPrefix)) yield { key: o.Key.slice(this.keyPrefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() };
      }
      if (!r.IsTruncated || !r.NextContinuationToken || r.NextContinuationToken === token) return;
      token = r.NextContinuationToken;
    }
  }

  stats(prefix = ''): Promise<BackendStats> {
    return statsFromListing(this, prefix);
  }

  close(): void {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    return this.keyPrefix + checkKey(key);
  }

  private error(err: unknown, doing: string): RemoteError {
    if (err instanceof RemoteError) return err;
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; code?: string };
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? 'Error';
    const what = `remote store ${this.url}: ${doing} failed`;
    if (name === 'CredentialsProviderError' || /could not load credentials/i.test(e.message ?? '')) {
      return new RemoteError(`${what}: no AWS credentials found`, 'provide them the AWS SDK way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO or an instance role); git-panini never stores credentials', false);
    }
    if (name === 'NoSuchBucket') return new RemoteError(`${what}: bucket ${this.options.bucket} does not exist`, 'create the bucket, or correct panini.url', false);
    if (/region is missing/i.test(e.message ?? '')) return new RemoteError(`${what}: no AWS region set`, 'set panini.s3.region (or AWS_REGION)', false);
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

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

/**
 * When the launcher deferred NODE_EXTRA_CA_CERTS, HTTPS trusts what Node would have: its own roots
 * plus that file's certificates. Like Node, a file that cannot be read is reported and ignored.
 */
function httpsTrust(): { httpsAgent?: { ca: string[] } } {
  if (deferredCaFile === undefined) return {};
  try {
    return { httpsAgent: { ca: [...rootCertificates, readFileSync(deferredCaFile, 'utf8')] } };
  } catch (err) {
    process.stderr.write(`git-panini: warning: ignoring the extra CA certificates in ${deferredCaFile} (NODE_EXTRA_CA_CERTS): ${(err as Error).message}\n`);
    return {};
  }
}
