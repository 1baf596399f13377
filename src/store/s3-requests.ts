/**
 * S3 requests without the SDK's client: every request but a multipart upload's (src/store/s3.ts).
 * What decides where a request goes and who signs it is the SDK's own code, bundled apart
 * (aws-parts.ts): the default credential chain, S3's endpoint rules fed as the client feeds them
 * (panini.s3.* settings, then AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_USE_FIPS_ENDPOINT, ... and the
 * shared config files), and the SigV4 signer. What is ours is the HTTP exchange (node:http and
 * node:https, one keep-alive agent) and reading S3's two XML answers we need: a listing and an
 * error. The client costs ~105 ms before its first request where this costs ~20 (BENCHMARKS.md),
 * and Git starts a process for every checkout, fetch and push.
 */
import { createHash, createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import type * as AwsParts from './aws-parts.js';

export interface S3Location {
  bucket: string;
  endpoint?: string;
  region?: string;
  forcePathStyle: boolean;
  /** A request with no progress for this long fails (and is retried). */
  timeoutMs: number;
  /** Certificate authorities to trust for HTTPS instead of Node's own (see s3.ts, httpsTrust). */
  ca?: string[];
}

/** A failed request, shaped as the SDK's errors are (s3.ts maps both the same way). */
export interface S3Failure {
  name: string;
  message: string;
  $metadata: { httpStatusCode: number };
  /** The region S3 says the bucket is in (x-amz-bucket-region, or the error's Region), when it says. */
  bucketRegion?: string;
}

interface Target {
  /** The bucket's URL, without a trailing slash: a key's URL is this, `/`, and the key. */
  base: URL;
  signer: AwsParts.SignatureV4;
  /** Headers the endpoint rules ask for. */
  headers: Record<string, string>;
}

// The same relative path from this module (dist/src/store) and from the CLI's bundle (dist/src/cli).
const require = createRequire(import.meta.url);
let parts: typeof AwsParts | undefined;
const awsParts = (): typeof AwsParts => (parts ??= require('../store/aws-parts.cjs') as typeof AwsParts);

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const ERROR_BODY_LIMIT = 64 * 1024;

export class S3Requests {
  private target: Promise<Target> | undefined;
  private agent: HttpAgent | HttpsAgent | undefined;

  constructor(private readonly location: S3Location) {}

  /**
   * Sends one signed request for `key` (null: the bucket itself) and returns the answer, whatever
   * its status; its body is a stream with the same no-progress timeout as the request.
   */
  async send(method: 'GET' | 'HEAD' | 'PUT' | 'DELETE', key: string | null, options: { query?: Record<string, string>; headers?: Record<string, string>; body?: Buffer } = {}): Promise<IncomingMessage> {
    const { base, signer, headers } = await (this.target ??= this.resolve());
    const body = options.body;
    const path = base.pathname.replace(/\/$/, '') + (key === null ? '' : '/' + key.split('/').map(escapeUri).join('/')) || '/';
    const signed = await signer.sign({
      method,
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port ? Number(base.port) : undefined,
      path,
      query: options.query ?? {},
      headers: {
        ...headers,
        ...options.headers,
        host: base.host,
        'x-amz-content-sha256': body ? createHash('sha256').update(body).digest('hex') : EMPTY_SHA256,
        ...(body ? { 'content-length': String(body.length) } : {}),
      },
    });
    const query = Object.entries(options.query ?? {}).map(([k, v]) => `${escapeUri(k)}=${escapeUri(v)}`).join('&');
    const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send({
        agent: this.agentFor(base.protocol),
        method,
        host: base.hostname,
        port: base.port || undefined,
        path: path + (query ? `?${query}` : ''),
        headers: signed.headers,
      }, resolve);
      req.setTimeout(this.location.timeoutMs, () => {
        req.destroy(Object.assign(new Error(`no answer for ${this.location.timeoutMs} ms`), { name: 'TimeoutError' }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** The failure an answer of status 300 or more describes, its body read (up to 64 KiB). */
  async failure(res: IncomingMessage): Promise<S3Failure> {
    const status = res.statusCode ?? 0;
    let text = '';
    try {
      for await (const chunk of res) {
        if (text.length < ERROR_BODY_LIMIT) text += String(chunk);
      }
    } catch {
      // the status says enough
    }
    const region = res.headers['x-amz-bucket-region'];
    return {
      // A HEAD's failure has no body: named by its status, as the SDK names it (403 Forbidden, 404 NotFound).
      name: xmlField(text, 'Code') ?? (STATUS_CODES[status] ?? `HTTP${status}`).replace(/ /g, ''),
      message: xmlField(text, 'Message') ?? res.statusMessage ?? '',
      $metadata: { httpStatusCode: status },
      bucketRegion: typeof region === 'string' ? region : xmlField(text, 'Region'),
    };
  }

  close(): void {
    this.agent?.destroy();
  }

  private agentFor(protocol: string): HttpAgent | HttpsAgent {
    return (this.agent ??= protocol === 'https:' ? new HttpsAgent({ keepAlive: true, ...(this.location.ca ? { ca: this.location.ca } : {}) }) : new HttpAgent({ keepAlive: true }));
  }

  /** The bucket's endpoint, and a signer for it with the default credential chain. */
  private async resolve(): Promise<Target> {
    const aws = awsParts();
    const { url, signingRegion, signingName, headers } = await resolveBucket(this.location);
    return {
      base: url,
      headers,
      signer: new aws.SignatureV4({
        credentials: aws.defaultProvider(),
        region: signingRegion,
        service: signingName,
        sha256: NodeSha256,
        uriEscapePath: false, // S3 signs the path as sent, not escaped twice
        applyChecksum: false,
      }),
    };
  }
}

/** Where requests about a bucket go, and the region and service their signatures name. */
export interface BucketEndpoint {
  url: URL;
  signingRegion: string;
  signingName: string;
  headers: Record<string, string>;
}

/**
 * Decided as the SDK's client decides it, by its own code: the region from panini.s3.region, the
 * environment or the shared config (us-east-1 with an endpoint set, as before); the endpoint from
 * panini.s3.endpoint, else AWS_ENDPOINT_URL_S3 and the shared config's endpoint_url; then S3's
 * endpoint rules with the FIPS and dual-stack settings.
 */
export async function resolveBucket(location: Pick<S3Location, 'bucket' | 'endpoint' | 'region' | 'forcePathStyle'>): Promise<BucketEndpoint> {
  const aws = awsParts();
  const { endpoint, forcePathStyle } = location;
  const region = location.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION
    ?? (endpoint ? 'us-east-1' : await aws.loadConfig(aws.NODE_REGION_CONFIG_OPTIONS, aws.NODE_REGION_CONFIG_FILE_OPTIONS)());
  const config = {
    serviceId: 'S3',
    isCustomEndpoint: endpoint !== undefined,
    endpoint: endpoint === undefined ? undefined : async () => customEndpoint(endpoint),
    region: async () => region,
    useFipsEndpoint: aws.loadConfig(aws.NODE_USE_FIPS_ENDPOINT_CONFIG_OPTIONS),
    useDualstackEndpoint: aws.loadConfig(aws.NODE_USE_DUALSTACK_ENDPOINT_CONFIG_OPTIONS),
    forcePathStyle,
    useAccelerateEndpoint: false,
    useGlobalEndpoint: false,
    disableMultiregionAccessPoints: false,
    endpointProvider: aws.defaultEndpointResolver,
  };
  const resolved = await aws.getEndpointFromInstructions(
    { Bucket: location.bucket },
    { getEndpointParameterInstructions: () => ({ ...aws.commonParams, Bucket: { type: 'contextParams', name: 'Bucket' } }) },
    config,
  );
  const scheme = resolved.properties?.authSchemes?.find((s) => s.name === 'sigv4') as { signingRegion?: string; signingName?: string } | undefined;
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(resolved.headers ?? {})) headers[name.toLowerCase()] = values.join(',');
  return { url: new URL(resolved.url.href), signingRegion: scheme?.signingRegion ?? region, signingName: scheme?.signingName ?? 's3', headers };
}

/** An endpoint setting as the SDK's client takes it: a URL, its path kept. */
function customEndpoint(endpoint: string): { protocol: string; hostname: string; port?: number; path: string } {
  const url = new URL(endpoint);
  return { protocol: url.protocol, hostname: url.hostname, port: url.port ? Number(url.port) : undefined, path: url.pathname };
}

/** SigV4's escaping (RFC 3986: all but unreserved characters), for key segments and query parts. */
function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** SHA-256 and HMAC-SHA-256 from node:crypto, as the signer asks for them. */
class NodeSha256 {
  private readonly hash;

  constructor(secret?: AwsBytes) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(secret));
  }

  update(data: AwsBytes): void {
    this.hash.update(bytesOf(data));
  }

  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
}

type AwsBytes = string | ArrayBuffer | ArrayBufferView;

const bytesOf = (data: AwsBytes): string | Uint8Array =>
  typeof data === 'string' ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);

/** The text of the first `<tag>` in an XML answer, its entities decoded; undefined if there is none. */
export function xmlField(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? decodeXmlText(m[1]!) : undefined;
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeXmlText(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, e: string) => {
    if (e[0] !== '#') return NAMED_ENTITIES[e]!;
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : `&${e};`;
  });
}

export interface ListPage {
  objects: { key: string; size: number; modifiedMs?: number }[];
  /** Where the next page starts, if there is one. */
  next?: string;
}

/** A ListObjectsV2 answer. */
export function parseListPage(xml: string): ListPage {
  const objects: ListPage['objects'] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const entry = m[1]!;
    const key = xmlField(entry, 'Key');
    if (key === undefined) continue;
    const modified = Date.parse(xmlField(entry, 'LastModified') ?? '');
    objects.push({ key, size: Number(xmlField(entry, 'Size') ?? 0), modifiedMs: Number.isNaN(modified) ? undefined : modified });
  }
  const truncated = xmlField(xml, 'IsTruncated') === 'true';
  return { objects, next: truncated ? xmlField(xml, 'NextContinuationToken') : undefined };
}
