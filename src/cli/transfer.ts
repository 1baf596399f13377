/**
 * `git panini transfer`: a Git LFS custom transfer agent (git-lfs docs/custom-transfers.md), so a
 * Git LFS repository keeps using `git lfs` while its objects are stored as deduplicated atoms in
 * the store named by panini.url. Setup:
 *   git config lfs.standalonetransferagent panini
 *   git config lfs.customtransfer.panini.path git-panini
 *   git config lfs.customtransfer.panini.args transfer
 *   git config panini.url s3://bucket/prefix      (or commit it in .paniniconfig)
 *
 * Line-delimited JSON on stdin/stdout; git-lfs sends one request at a time. Upload: the object is
 * decomposed like any tracked file, the atoms the store lacks are sent, then its concept is stored
 * as `lfs/<oid>` — last, so an object is visible only once all its atoms are there. Download: the
 * concept is read back, its missing atoms fetched, the exact bytes rebuilt (verified) into a temp
 * file whose path goes back to git-lfs. An error with one object is reported in its `complete`
 * message; the agent goes on with the next.
 */
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { isAtomHash } from '../atom.js';
import { buildConcept } from '../concept/build.js';
import { MAX_CONCEPT_BYTES, parseConcept } from '../concept/concept.js';
import { errorMessage, PaniniError } from '../errors.js';
import { writeFdAll } from '../io.js';
import { reconstruct } from '../reconstruct/reconstruct.js';
import { FileSource } from '../source.js';
import { bufferBody, LFS_PREFIX } from '../store/backend.js';
import { readObject } from '../transfer/atoms.js';
import { fetchConceptsWith } from '../transfer/fetch.js';
import { Progress } from '../transfer/progress.js';
import { pushConceptsWith } from '../transfer/push.js';
import { withRetries } from '../transfer/retry.js';
import { closeSession, openSession, type Session } from '../transfer/session.js';
import { openContext, type Context } from './context.js';
import { announceWriter } from '../store/writers.js';

interface Request {
  event?: string;
  operation?: string;
  oid?: unknown;
  size?: unknown;
  path?: unknown;
}

/** Progress events at most this often per object (plus the last one). */
const PROGRESS_STEPS = 100;

class ObjectError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

export async function run(): Promise<number> {
  const send = (message: object): void => void process.stdout.write(JSON.stringify(message) + '\n');
  let ctx: Context | null = null;
  let session: Session | null = null;
  /** Bytes moved for the current object, reported to git-lfs as progress. */
  let onAtom: (bytes: number) => void = () => undefined;
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      let request: Request;
      try {
        request = JSON.parse(line) as Request;
      } catch {
        process.stderr.write(`git-panini transfer: ignoring a line that is not JSON: ${line.slice(0, 80)}\n`);
        continue;
      }
      if (request.event === 'terminate') break;
      if (request.event === 'init') {
        try {
          ctx = openContext();
          announceWriter(ctx.store.root); // until exit: gc keeps what this process writes (store/writers.ts)
          session = await openSession(ctx, new Progress('', false, (bytes) => onAtom(bytes)));
          send({});
        } catch (err) {
          send({ error: { code: 32, message: errorMessage(err) } });
        }
        continue;
      }
      if (request.event !== 'upload' && request.event !== 'download') continue;
      const oid = typeof request.oid === 'string' ? request.oid : '';
      const size = typeof request.size === 'number' ? request.size : -1;
      let reported = 0;
      const report = (bytesSoFar: number): void => {
        const capped = Math.min(size, bytesSoFar);
        if (capped <= reported || (capped < size && capped - reported < size / PROGRESS_STEPS)) return;
        send({ event: 'progress', oid, bytesSoFar: capped, bytesSinceLast: capped - reported });
        reported = capped;
      };
      try {
        if (!ctx || !session) throw new ObjectError(32, 'the agent was not initialised (no init event)');
        if (!isAtomHash(oid) || !Number.isSafeInteger(size) || size < 0) throw new ObjectError(400, `invalid object ${JSON.stringify(request.oid)} of size ${JSON.stringify(request.size)}`);
        let moved = 0;
        onAtom = (bytes) => report(moved += bytes);
        if (request.event === 'upload') {
          await uploadObject(ctx, session, oid, size, request.path);
          report(size);
          send({ event: 'complete', oid });
        } else {
          const path = await downloadObject(ctx, session, oid, size, report);
          report(size);
          send({ event: 'complete', oid, path });
        }
      } catch (err) {
        send({ event: 'complete', oid, error: { code: err instanceof ObjectError ? err.code : 2, message: errorMessage(err) } });
      } finally {
        onAtom = () => undefined;
      }
    }
  } finally {
    if (session) await closeSession(session);
  }
  return 0;
}

async function uploadObject(ctx: Context, s: Session, oid: string, size: number, path: unknown): Promise<void> {
  const key = `${LFS_PREFIX}${oid}`;
  if (await withRetries(s.settings.attempts, () => s.backend.exists(key))) return;
  if (typeof path !== 'string' || path === '') throw new ObjectError(400, `no file path given for object ${oid}`);
  let source: FileSource;
  try {
    source = FileSource.open(path);
  } catch (err) {
    throw new ObjectError(404, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
  let text: string;
  try {
    const built = buildConcept(source, ctx.store, { maxAtomSize: ctx.maxAtomSize });
    if (built.ingest.oid !== oid || built.ingest.size !== size) {
      throw new ObjectError(409, `${path} holds sha256:${built.ingest.oid} (${built.ingest.size} bytes), not the object ${oid} (${size} bytes) git-lfs asked for`);
    }
    text = built.text;
  } finally {
    source.close();
  }
  await pushConceptsWith(s, [{ concept: parseConcept(text), path }]);
  const body = Buffer.from(text);
  await withRetries(s.settings.attempts, () => s.backend.upload(key, bufferBody(body)));
}

async function downloadObject(ctx: Context, s: Session, oid: string, size: number, report: (bytesSoFar: number) => void): Promise<string> {
  const key = `${LFS_PREFIX}${oid}`;
  const text = await withRetries(s.settings.attempts, async () => {
    return readObject(s, key, MAX_CONCEPT_BYTES, `downloading ${key} from ${s.backend.url}`);
  });
  if (!text) throw new ObjectError(404, `object ${oid} is not in the store ${s.backend.url}`);
  const concept = parseConcept(text);
  if (concept.oid !== oid || concept.size !== size) {
    throw new PaniniError(`the store's record for object ${oid} describes sha256:${concept.oid} (${concept.size} bytes) instead`, `the remote object ${key} is damaged; upload the object again from a clone that has it (git lfs push --all)`);
  }
  ctx.store.putConcept(oid, text.toString('utf8'));
  await fetchConceptsWith(s, [concept]);
  const path = ctx.store.tempPath('lfs-download');
  const fd = openSync(path, 'wx', 0o644);
  let written = 0;
  try {
    reconstruct(concept, ctx.store, (bytes) => {
      writeFdAll(fd, bytes);
      report(written += bytes.length);
    }, { discardedOnError: true, release: () => undefined }); // written at once; the temp file is removed below on failure
  } catch (err) {
    closeSync(fd);
    unlinkSync(path);
    throw err;
  }
  closeSync(fd);
  return path;
}
