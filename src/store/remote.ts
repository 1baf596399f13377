/**
 * The remote store named by `panini.url` (git config or the committed .paniniconfig):
 *   file:///path          a shared folder (FolderBackend)
 *   s3://bucket[/prefix]  S3 or an S3-compatible service (S3Backend), with panini.s3.endpoint,
 *                         panini.s3.region and panini.s3.forcePathStyle
 * and the settings every transfer uses: panini.concurrency, panini.retries, panini.timeout (ms).
 */
import { fileURLToPath } from 'node:url';
import type { Context } from '../cli/context.js';
import { PaniniError } from '../errors.js';
import type { Config } from '../git/config.js';
import type { Backend } from './backend.js';
import { FolderBackend } from './folder.js';

export interface TransferSettings {
  /** Transfers in flight at once. */
  concurrency: number;
  /** Tries per object, the first included. */
  attempts: number;
  /** A request with no progress for this long fails (and is retried). */
  timeoutMs: number;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

export function transferSettings(config: Config): TransferSettings {
  return {
    concurrency: clamp(config.getInt('panini.concurrency', 8), 1, 64),
    attempts: clamp(config.getInt('panini.retries', 4), 0, 10) + 1,
    timeoutMs: clamp(config.getInt('panini.timeout', 30_000), 100, 600_000),
  };
}

export type RemoteLocation =
  | { kind: 'folder'; path: string }
  | { kind: 's3'; bucket: string; prefix: string };

const USAGE_HINT = 'set panini.url to file:///absolute/path or s3://bucket/prefix (git config, or the committed .paniniconfig)';

export function parseRemoteUrl(url: string): RemoteLocation {
  if (url.startsWith('file://')) {
    let path: string;
    try {
      path = fileURLToPath(url);
    } catch {
      throw new PaniniError(`panini.url ${url} is not a valid file URL`, 'write an absolute path with three slashes: file:///srv/atoms');
    }
    return { kind: 'folder', path };
  }
  const s3 = /^s3:\/\/([^/]+)\/*(.*?)\/*$/.exec(url);
  if (s3) {
    const [, bucket, prefix] = s3;
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket!)) throw new PaniniError(`panini.url ${url}: ${JSON.stringify(bucket)} is not a valid bucket name`, USAGE_HINT);
    if (prefix !== '' && (prefix!.split('/').some((part) => part === '' || part === '.' || part === '..') || /[\0-\x1f\\]/.test(prefix!))) {
      throw new PaniniError(`panini.url ${url}: the key prefix ${JSON.stringify(prefix)} is not usable`, 'use a prefix like team/project, without empty, . or .. parts');
    }
    return { kind: 's3', bucket: bucket!, prefix: prefix! };
  }
  throw new PaniniError(`panini.url ${url} is not a store git-panini can use`, USAGE_HINT);
}

/** The configured remote store, or null when panini.url is not set. */
export async function openRemote(ctx: Pick<Context, 'config'>): Promise<Backend | null> {
  const url = ctx.config.get('panini.url');
  if (!url) return null;
  const location = parseRemoteUrl(url);
  if (location.kind === 'folder') return new FolderBackend(location.path, url);
  // The S3 SDK takes a few hundred milliseconds to load: only commands that use it pay.
  const { S3Backend } = await import('./s3.js');
  return new S3Backend({
    ...location,
    endpoint: ctx.config.get('panini.s3.endpoint'),
    region: ctx.config.get('panini.s3.region'),
    forcePathStyle: ctx.config.getBool('panini.s3.forcePathStyle', false),
    timeoutMs: transferSettings(ctx.config).timeoutMs,
  });
}

/** Like openRemote, for commands that cannot work without one. */
export async function requireRemote(ctx: Pick<Context, 'config'>): Promise<Backend> {
  const remote = await openRemote(ctx);
  if (!remote) throw new PaniniError('no remote store is configured', USAGE_HINT);
  return remote;
}
