/**
 * A real S3-protocol server for tests and benchmarks: s3rver on 127.0.0.1 (a free port, a temp
 * directory, one bucket), in a child process so that tests blocking in spawnSync (git, the CLI)
 * never block the server. In front of it, a proxy that counts bytes each way and, on demand,
 * injects faults into a seeded share of requests: a connection dropped before forwarding, a
 * response cut in the middle of its body, a 500 answer, or a stall past the client's timeout.
 *
 * With `tls`, s3rver serves HTTPS with that key and certificate (the proxy stays plain HTTP).
 *
 * The child is this very file run with `--serve`; loaded any other way (the test runner loads every
 * file under dist/test/) it does nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { prng } from './fixtures.js';

export const BUCKET = 'panini-test';
/** s3rver accepts these; tests pass them to children through the environment only. */
export const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

export type FaultKind = 'drop' | 'cut' | 'error500' | 'stall';

export interface FaultConfig {
  /** Share of requests (0..1) that get a fault. */
  share: number;
  kinds: FaultKind[];
  seed: number;
  /** Added to every request before it is forwarded (to model a distant service). */
  delayMs?: number;
}

export interface ProxyStats {
  requests: number;
  faults: Record<FaultKind, number>;
  /** Request bytes received from clients (bodies and headers). */
  bytesIn: number;
  /** Response bytes sent to clients (bodies and headers). */
  bytesOut: number;
  byMethod: Record<string, number>;
}

export interface S3Fixture {
  /** s3rver itself. */
  endpoint: string;
  /** Through the counting, fault-injecting proxy. */
  proxyEndpoint: string;
  bucket: string;
  setFaults(config: FaultConfig): Promise<void>;
  /** Counters since the last reset. */
  stats(reset?: boolean): Promise<ProxyStats>;
  stop(): Promise<void>;
}

export interface TlsFiles {
  keyFile: string;
  certFile: string;
}

export async function startS3Server(options: { tls?: TlsFiles } = {}): Promise<S3Fixture> {
  const tlsArgs = options.tls ? [options.tls.keyFile, options.tls.certFile] : [];
  // s3rver makes its list continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', fileURLToPath(import.meta.url), '--serve', ...tlsArgs], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ask = (command: object): Promise<string> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the S3 test server did not answer in 20 s')), 20_000);
    waiting.push((line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.stdin!.write(JSON.stringify(command) + '\n');
  });
  const ready = JSON.parse(await ask({ command: 'ready' })) as { port: number; proxyPort: number };
  return {
    endpoint: `${options.tls ? 'https' : 'http'}://127.0.0.1:${ready.port}`,
    proxyEndpoint: `http://127.0.0.1:${ready.proxyPort}`,
    bucket: BUCKET,
    async setFaults(config) {
      await ask({ command: 'faults', config });
    },
    async stats(reset = false) {
      return JSON.parse(await ask({ command: 'stats', reset })) as ProxyStats;
    },
    async stop() {
      stopChild(child);
      await exited;
    },
  };
}

function stopChild(child: ChildProcess): void {
  child.stdin?.end();
}

/** The child: s3rver, the proxy, and a line protocol on stdin/stdout. Ends when stdin closes. */
async function serve(tls: TlsFiles | null): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'panini-s3rver-'));
  const require = createRequire(import.meta.url);
  const S3rver = require('s3rver') as new (options: object) => { run(): Promise<AddressInfo>; close(): Promise<void> };
  const cert = tls && readFileSync(tls.certFile);
  const s3 = new S3rver({
    address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: BUCKET }],
    ...(tls && { key: readFileSync(tls.keyFile), cert }),
  });
  const { port } = await s3.run();

  let faults: FaultConfig = { share: 0, kinds: [], seed: 1 };
  let rand = prng(faults.seed);
  const fresh = (): ProxyStats => ({ requests: 0, faults: { drop: 0, cut: 0, error500: 0, stall: 0 }, bytesIn: 0, bytesOut: 0, byMethod: {} });
  let stats = fresh();
  const stalled = new Set<http.ServerResponse>();

  const proxy = http.createServer((req, res) => {
    stats.requests++;
    stats.byMethod[req.method ?? '?'] = (stats.byMethod[req.method ?? '?'] ?? 0) + 1;
    stats.bytesIn += headerBytes(req.rawHeaders) + (req.url?.length ?? 0);
    req.on('data', (chunk: Buffer) => void (stats.bytesIn += chunk.length));
    const fault = faults.kinds.length > 0 && rand(1_000_000) < faults.share * 1_000_000 ? faults.kinds[rand(faults.kinds.length)]! : null;
    if (fault) stats.faults[fault]++;
    if (fault === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault === 'error500') {
      req.resume();
      req.on('end', () => {
        const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>injected fault</Message></Error>';
        res.writeHead(500, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
        res.end(body);
      });
      return;
    }
    if (fault === 'stall') {
      // Never answer; the client's timeout must end it. Bounded here too, for a client with none.
      req.resume();
      stalled.add(res);
      setTimeout(() => {
        stalled.delete(res);
        req.socket.destroy();
      }, 120_000).unref();
      return;
    }
    const forward = (): void => {
      const target = { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers };
      const upstream = cert ? https.request({ ...target, ca: cert }, onResponse) : http.request(target, onResponse);
      function onResponse(up: http.IncomingMessage): void {
        const headers = up.rawHeaders;
        stats.bytesOut += headerBytes(headers);
        res.writeHead(up.statusCode ?? 502, up.statusMessage, headers);
        if (fault === 'cut') {
          // Send about half the body, then break the connection.
          const length = Number(up.headers['content-length'] ?? 0);
          let sent = 0;
          up.on('data', (chunk: Buffer) => {
            if (sent >= length / 2) {
              up.destroy();
              res.socket?.destroy();
              return;
            }
            sent += chunk.length;
            stats.bytesOut += chunk.length;
            res.write(chunk);
          });
          up.on('end', () => res.socket?.destroy());
          return;
        }
        up.on('data', (chunk: Buffer) => void (stats.bytesOut += chunk.length));
        up.pipe(res);
      }
      upstream.on('error', () => res.socket?.destroy());
      req.pipe(upstream);
    };
    if (faults.delayMs) setTimeout(forward, faults.delayMs);
    else forward();
  });
  proxy.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyPort = (proxy.address() as AddressInfo).port;

  const reply = (value: object): void => void process.stdout.write(JSON.stringify(value) + '\n');
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const msg = JSON.parse(line) as { command: string; config?: FaultConfig; reset?: boolean };
    if (msg.command === 'ready') reply({ port, proxyPort });
    else if (msg.command === 'faults') {
      faults = msg.config!;
      rand = prng(faults.seed);
      reply({ ok: true });
    } else if (msg.command === 'stats') {
      reply(stats);
      if (msg.reset) stats = fresh();
    }
  });
  commands.on('close', () => {
    for (const res of stalled) res.socket?.destroy();
    proxy.closeAllConnections();
    proxy.close();
    void s3.close().finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
}

function headerBytes(raw: string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) n += raw[i]!.length + raw[i + 1]!.length + 4;
  return n;
}

if (process.argv[2] === '--serve' && process.argv[1] === fileURLToPath(import.meta.url)) {
  const [keyFile, certFile] = process.argv.slice(3);
  serve(keyFile && certFile ? { keyFile, certFile } : null).catch((err: unknown) => {
    process.stderr.write(`s3 test server: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

/**
 * For a test file: an S3 server started (with test credentials in the environment) before its tests
 * and a temp directory, both stopped and removed after them. `s3` is valid inside tests.
 */
export function useS3Suite(label: string): { readonly s3: S3Fixture; readonly root: string } {
  const dir = mkdtempSync(path.join(tmpdir(), label));
  let server: S3Fixture | undefined;
  before(async () => {
    Object.assign(process.env, S3_CREDENTIALS);
    server = await startS3Server();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get s3(): S3Fixture {
      if (!server) throw new Error('the S3 server is started by before(): use it inside tests');
      return server;
    },
    root: dir,
  };
}
