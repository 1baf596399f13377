/**
 * The long-running filter process spoken to directly, as Git would (gitattributes(5), "Long Running
 * Filter Process", protocol version 2). The pkt-line encoder and decoder here are the test's own, so
 * a bug in src/git/pktline.ts cannot hide behind a matching bug on this side.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { chmodSync, closeSync, cpSync, existsSync, openSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConcept } from '../src/concept/concept.js';
import { LocalStore } from '../src/store/local.js';
import { cliPath, git, hermeticEnv, tempDir, tempRepo, type TempRepo } from './helpers/cli.js';
import { readFixture } from './helpers/fixtures.js';
import { sha256 } from './helpers/git.js';
import { flipByte } from './helpers/store-files.js';

const MAX_PAYLOAD = 65516;
const READ_TIMEOUT_MS = 30_000;
const remoteFetchAvailable = existsSync(path.resolve(path.dirname(cliPath), '../transfer/fetch.js'));

function pkt(payload: Buffer | string): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
  assert.ok(bytes.length > 0 && bytes.length <= MAX_PAYLOAD, 'test encoder: payload size');
  return Buffer.concat([Buffer.from((bytes.length + 4).toString(16).padStart(4, '0')), bytes]);
}
const FLUSH = Buffer.from('0000');

/** A filter process and a pkt-line conversation with it. */
class FilterClient {
  readonly child: ChildProcessWithoutNullStreams;
  stderr = '';
  private chunks: Buffer[] = [];
  private available = 0;
  private ended = false;
  private wake: (() => void) | null = null;
  readonly exited: Promise<number | null>;

  /** `throughPipe`: the filter reads a real pipe, as from Git (fed by `cat`), where it polls for requests. */
  constructor(cwd: string, env: NodeJS.ProcessEnv = {}, throughPipe = false) {
    this.child = throughPipe
      ? spawn('sh', ['-c', 'cat | "$0" "$1" filter-process', process.execPath, cliPath], { cwd, env: hermeticEnv(env), stdio: 'pipe' })
      : spawn(process.execPath, [cliPath, 'filter-process'], { cwd, env: hermeticEnv(env), stdio: 'pipe' });
    this.child.stdout.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.available += d.length;
      this.wake?.();
    });
    this.child.stdout.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.stdin.on('error', () => undefined); // the process may exit while we write; the exit code says why
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  async write(...parts: Buffer[]): Promise<void> {
    for (const part of parts) {
      if (!this.child.stdin.write(part)) await new Promise<void>((resolve) => this.child.stdin.once('drain', resolve));
    }
  }

  /** key=value lines then a flush. */
  async sendList(lines: readonly string[]): Promise<void> {
    await this.write(...lines.map((l) => pkt(`${l}\n`)), FLUSH);
  }

  /** Content in maximum-size packets then a flush, as Git sends it. */
  async sendContent(bytes: Buffer): Promise<void> {
    for (let i = 0; i < bytes.length; i += MAX_PAYLOAD) await this.write(pkt(bytes.subarray(i, i + MAX_PAYLOAD)));
    await this.write(FLUSH);
  }

  async request(command: string, pathname: string, content: Buffer, extra: readonly string[] = []): Promise<void> {
    await this.sendList([`command=${command}`, `pathname=${pathname}`, ...extra]);
    await this.sendContent(content);
  }

  /** The next packet's payload; null for a flush. */
  async packet(): Promise<Buffer | null> {
    const head = (await this.take(4)).toString('latin1');
    assert.match(head, /^[0-9a-f]{4}$/, `pkt-line header ${JSON.stringify(head)}`);
    const len = parseInt(head, 16);
    if (len === 0) return null;
    assert.ok(len > 4 && len - 4 <= MAX_PAYLOAD, `pkt-line length ${len} out of range`);
    return this.take(len - 4);
  }

  /** Text lines up to a flush. */
  async list(): Promise<string[]> {
    const lines: string[] = [];
    for (let p = await this.packet(); p !== null; p = await this.packet()) {
      const text = p.toString('utf8');
      assert.ok(text.endsWith('\n'), `text packet ${JSON.stringify(text)} ends with a newline`);
      lines.push(text.slice(0, -1));
    }
    return lines;
  }

  /**
   * A clean/smudge response: status list; on success, content up to a flush and the final status
   * list (empty means "unchanged").
   */
  async response(): Promise<{ status: string; content: Buffer | null; finalStatus: string | null }> {
    const status = statusOf(await this.list());
    if (status !== 'success') return { status, content: null, finalStatus: null };
    const parts: Buffer[] = [];
    for (let p = await this.packet(); p !== null; p = await this.packet()) parts.push(p);
    const final = await this.list();
    return { status, content: Buffer.concat(parts), finalStatus: final.length === 0 ? null : statusOf(final) };
  }

  /** Client side of the handshake; returns the capabilities the filter announced. */
  async handshake(capabilities: readonly string[] = ['clean', 'smudge', 'delay']): Promise<string[]> {
    await this.sendList(['git-filter-client', 'version=2']);
    assert.deepEqual(await this.list(), ['git-filter-server', 'version=2']);
    await this.sendList(capabilities.map((c) => `capability=${c}`));
    return this.list();
  }

  /**
   * stderr once it contains `text` (or READ_TIMEOUT_MS passed): the filter logs a file's error
   * before its status, but the two pipes reach this process in either order.
   */
  async logged(text: string | RegExp): Promise<string> {
    const deadline = Date.now() + READ_TIMEOUT_MS;
    const found = (): boolean => (typeof text === 'string' ? this.stderr.includes(text) : text.test(this.stderr));
    while (!found() && !this.ended && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    return this.stderr;
  }

  async close(): Promise<number | null> {
    this.child.stdin.end();
    return withTimeout(this.exited, 'filter process exit');
  }

  private async take(n: number): Promise<Buffer> {
    const deadline = Date.now() + READ_TIMEOUT_MS;
    while (this.available < n) {
      if (this.ended) throw new Error(`filter output ended (wanted ${n} bytes, have ${this.available}); stderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no answer from the filter within ${READ_TIMEOUT_MS} ms; stderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const used = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(used);
    }
    this.available -= n;
    return out;
  }
}

function statusOf(lines: readonly string[]): string {
  const status = lines.find((l) => l.startsWith('status='));
  assert.ok(status, `a status in ${JSON.stringify(lines)}`);
  return status.slice('status='.length);
}

async function withTimeout<T>(promise: Promise<T>, what: string, ms = READ_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: timed out`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Seeded pseudo-random bytes (AES-CTR over zeros). */
function randomBytesSeeded(size: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

describe('filter-process, pkt-line protocol v2', { timeout: 120_000 }, () => {
  let repo: TempRepo;
  /** A repository whose store is empty: concepts from `repo` have no atoms there. */
  let emptyRepo: TempRepo;
  const clients: FilterClient[] = [];
  const open = (dir = repo.dir, env: NodeJS.ProcessEnv = {}, throughPipe = false): FilterClient => {
    const c = new FilterClient(dir, env, throughPipe);
    clients.push(c);
    return c;
  };
  let photoConcept: Buffer;

  before(async () => {
    repo = tempRepo();
    emptyRepo = tempRepo();
    const c = open();
    await c.handshake();
    await c.request('clean', 'photo.png', readFixture('photo.png'));
    const r = await c.response();
    assert.equal(r.status, 'success', c.stderr);
    photoConcept = r.content!;
    assert.equal(await c.close(), 0);
  });

  after(() => {
    for (const c of clients) if (c.child.exitCode === null) c.child.kill();
    repo?.dispose();
    emptyRepo?.dispose();
  });

  it('handshake: version 2, and only the capabilities Git offered', async () => {
    const some = open();
    assert.deepEqual(await some.handshake(['clean', 'smudge']), ['capability=clean', 'capability=smudge']);
    assert.equal(await some.close(), 0);
    const all = open();
    assert.deepEqual((await all.handshake(['clean', 'sparkle', 'smudge', 'delay'])).sort(),
      ['capability=clean', 'capability=delay', 'capability=smudge']);
    assert.equal(await all.close(), 0);
    const onlyClean = open();
    assert.deepEqual(await onlyClean.handshake(['clean']), ['capability=clean']);
    assert.equal(await onlyClean.close(), 0);
  });

  it('clean gives a concept; smudge of it gives the exact bytes back', async () => {
    const c = open();
    await c.handshake();
    const fixture = readFixture('course-a.mp4');
    await c.request('clean', 'media/course a.mp4', fixture);
    const cleaned = await c.response();
    assert.equal(cleaned.status, 'success');
    assert.equal(cleaned.finalStatus, null);
    const concept = cleaned.content!.toString('utf8');
    assert.match(concept, /^---\n/);
    assert.ok(concept.includes(`oid: sha256:${sha256(fixture)}`));
    assert.ok(concept.includes(`size: ${fixture.length}`));
    assert.match(concept, /atom:\/\/sha256:[0-9a-f]{64}/);

    await c.request('smudge', 'media/course a.mp4', cleaned.content!);
    const smudged = await c.response();
    assert.equal(smudged.status, 'success');
    assert.equal(smudged.finalStatus, null);
    assert.equal(sha256(smudged.content!), sha256(fixture));

    await c.request('smudge', 'photo.png', photoConcept, ['can-delay=1']);
    const photo = await c.response();
    assert.equal(photo.status, 'success', 'atoms are local: no delay');
    assert.ok(photo.content!.equals(readFixture('photo.png')));
    assert.equal(await c.close(), 0);
  });

  it('small files smudged one after another each get exactly their own bytes; a damaged atom is an error naming its file', async () => {
    const files = [40_000, 9_000, 64_000, 8_192, 1].map((size, i) => ({ name: `small/f${i}.bin`, bytes: randomBytesSeeded(size, 100 + i) }));
    const c = open();
    await c.handshake();
    const concepts: Buffer[] = [];
    for (const f of files) {
      await c.request('clean', f.name, f.bytes);
      const r = await c.response();
      assert.equal(r.status, 'success', c.stderr);
      concepts.push(r.content!);
    }
    for (const [i, f] of files.entries()) { // a shorter file after a longer one: nothing of the last one shows
      await c.request('smudge', f.name, concepts[i]!, ['can-delay=1']);
      const r = await c.response();
      assert.equal(r.status, 'success', c.stderr);
      assert.ok(r.content!.equals(f.bytes), `${f.name}: exact bytes`);
    }
    const atom = path.join(repo.store, 'atoms', sha256(files[1]!.bytes).slice(0, 2), sha256(files[1]!.bytes).slice(2, 4), sha256(files[1]!.bytes));
    chmodSync(atom, 0o644);
    writeFileSync(atom, Buffer.concat([files[1]!.bytes, Buffer.from('x')]));
    await c.request('smudge', files[1]!.name, concepts[1]!);
    const damaged = await c.response();
    assert.ok(damaged.status === 'error' || damaged.finalStatus === 'error', 'one byte too many is not the atom: Git discards the content');
    // The same size with one bit flipped: sent before it is hashed (Git reads meanwhile), then the
    // error status, so Git discards it.
    const flipped = Buffer.from(files[1]!.bytes);
    flipped[4321]! ^= 0x01;
    writeFileSync(atom, flipped);
    await c.request('smudge', files[1]!.name, concepts[1]!);
    const sameSize = await c.response();
    assert.equal(sameSize.status, 'success', 'the status goes out before the content');
    assert.equal(sameSize.finalStatus, 'error', 'and the error after it');
    const corrupt = new RegExp(`^git-panini: small/f1\\.bin: atom ${sha256(files[1]!.bytes)} is corrupt`, 'm');
    assert.match(await c.logged(corrupt), corrupt);
    writeFileSync(atom, files[1]!.bytes); // as it was: served again
    await c.request('smudge', files[1]!.name, concepts[1]!);
    const again = await c.response();
    assert.ok(again.content!.equals(files[1]!.bytes));
    assert.equal(again.finalStatus, null);
    assert.equal(await c.close(), 0);
    assert.match(await c.logged(/^git-panini: small\/f1\.bin: .*corrupt/m), /^git-panini: small\/f1\.bin: .*corrupt/m);
  });

  it('the atoms of many small files cleaned in one process are named before a smudge there, and when Git closes the pipe', async () => {
    const fresh = tempRepo();
    try {
      const c = open(fresh.dir);
      await c.handshake();
      const clean = async (i: number): Promise<{ bytes: Buffer; concept: Buffer }> => {
        const bytes = randomBytesSeeded(2000 + i, 7000 + i);
        await c.request('clean', `f${i}.bin`, bytes);
        const r = await c.response();
        assert.equal(r.status, 'success', c.stderr);
        return { bytes, concept: r.content! };
      };
      const cleaned = [];
      for (let i = 0; i < 200; i++) cleaned.push(await clean(i));
      const packsDir = path.join(fresh.store, 'packs');
      assert.ok(readdirSync(packsDir).some((n) => n.endsWith('.journal')), 'the last atoms are in a pack still being written');
      const last = cleaned[199]!;
      await c.request('smudge', 'f199.bin', last.concept);
      const smudged = await c.response();
      assert.equal(smudged.status, 'success', c.stderr);
      assert.ok(smudged.content!.equals(last.bytes));
      cleaned.push(await clean(200));
      assert.equal(await c.close(), 0);
      assert.deepEqual(readdirSync(packsDir).filter((n) => n.startsWith('.tmp-')), [], 'every pack named');
      const store = new LocalStore(fresh.store);
      assert.equal(store.packIndexes().length, 2);
      for (const { bytes } of cleaned) assert.ok(store.get(sha256(bytes)).equals(bytes));
    } finally {
      fresh.dispose();
    }
  });

  it('small files are read ahead in pack order while Git is busy, and sent verified; a damaged one read ahead is still an error naming its file', async () => {
    const fresh = tempRepo();
    try {
      const c = open(fresh.dir);
      await c.handshake();
      const files: { name: string; bytes: Buffer; concept: Buffer }[] = [];
      for (let i = 0; i < 160; i++) { // past the first 128 new atoms, which are loose: these are packed, in this order
        const bytes = randomBytesSeeded(3000 + i * 97, 9000 + i);
        await c.request('clean', `f${i}.bin`, bytes);
        const r = await c.response();
        assert.equal(r.status, 'success', c.stderr);
        files.push({ name: `f${i}.bin`, bytes, concept: r.content! });
      }
      assert.equal(await c.close(), 0);
      // Git writes each file before it asks for the next: a pause here lets the filter read ahead.
      const smudgeInTurn = async (client: FilterClient, from: number, to: number): Promise<{ status: string; content: Buffer | null; finalStatus: string | null }[]> => {
        const responses = [];
        for (let i = from; i < to; i++) {
          await client.request('smudge', files[i]!.name, files[i]!.concept, ['can-delay=1']);
          responses.push(await client.response());
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return responses;
      };
      const readsAhead = availableParallelism() > 1; // only with a core to spare (it polls for Git's requests)
      const traced = open(fresh.dir, { PANINI_TRACE: '1' }, true);
      await traced.handshake();
      for (const [i, r] of (await smudgeInTurn(traced, 130, 150)).entries()) {
        assert.equal(r.status, 'success', traced.stderr);
        assert.ok(r.content!.equals(files[130 + i]!.bytes), `${files[130 + i]!.name}: exact bytes`);
        assert.equal(r.finalStatus, null);
      }
      assert.equal(await traced.close(), 0);
      const sent = Number(/(\d+) small files sent as read ahead/.exec(await traced.logged('read ahead'))?.[1]);
      if (readsAhead) assert.ok(sent >= 10, `most of the 19 files after the first were read ahead: ${traced.stderr}`);
      else assert.equal(sent, 0);

      const damaged = files[140]!;
      const at = new LocalStore(fresh.store).packedAt(sha256(damaged.bytes));
      assert.ok(at, 'a packed atom');
      flipByte(at.path, at.offset + 1000);
      const again = open(fresh.dir, { PANINI_TRACE: '1' }, true);
      await again.handshake();
      const responses = await smudgeInTurn(again, 137, 142);
      for (const i of [0, 1, 2, 4]) assert.ok(responses[i]!.content!.equals(files[137 + i]!.bytes), `${files[137 + i]!.name}: exact bytes`);
      const bad = responses[3]!;
      assert.ok(bad.status === 'error' || bad.finalStatus === 'error', 'the damaged atom is not sent as the file: Git discards it');
      const corrupt = new RegExp(`^git-panini: f140\\.bin: atom ${sha256(damaged.bytes)} is corrupt`, 'm');
      assert.match(await again.logged(corrupt), corrupt);
      assert.equal(await again.close(), 0);
    } finally {
      fresh.dispose();
    }
  });

  it('an atom read ahead is not sent once a later read-ahead has used its buffer, even if that one failed', async () => {
    if (availableParallelism() < 2) return; // no read-ahead on one core
    const fresh = tempRepo();
    try {
      const c = open(fresh.dir);
      await c.handshake();
      const clean = async (name: string, bytes: Buffer): Promise<Buffer> => {
        await c.request('clean', name, bytes);
        const r = await c.response();
        assert.equal(r.status, 'success', c.stderr);
        return r.content!;
      };
      for (let i = 0; i < 130; i++) await clean(`pad${i}.bin`, randomBytesSeeded(2000 + i, 500 + i)); // the first 128 go loose
      // In the pack, in this order: a, x, b (several atoms), y.
      const files = ['a', 'x', 'b', 'y'].map((name, i) => ({ name: `${name}.bin`, bytes: randomBytesSeeded(name === 'b' ? 400_000 : 30_000 + i, 800 + i) }));
      const concepts = new Map<string, Buffer>();
      for (const f of files) concepts.set(f.name, await clean(f.name, f.bytes));
      assert.ok(parseConcept(concepts.get('b.bin')!).refs.length > 1, 'b is several atoms');
      assert.equal(await c.close(), 0);
      const y = new LocalStore(fresh.store).packedAt(sha256(files[3]!.bytes));
      assert.ok(y, 'y is packed');
      flipByte(y.path, y.offset + 100); // the read-ahead after b reads y, which fails its hash
      const s = open(fresh.dir, {}, true);
      await s.handshake();
      for (const name of ['a.bin', 'b.bin', 'x.bin']) { // x was read ahead after a, then b's read-ahead used the buffer
        await s.request('smudge', name, concepts.get(name)!, ['can-delay=1']);
        const r = await s.response();
        assert.equal(r.status, 'success', s.stderr);
        assert.equal(r.finalStatus, null, s.stderr);
        assert.ok(r.content!.equals(files.find((f) => f.name === name)!.bytes), `${name}: exact bytes`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(await s.close(), 0);
    } finally {
      fresh.dispose();
    }
  });

  it('smudge passes non-concept content through; clean passes a concept through unchanged', async () => {
    const c = open();
    await c.handshake();
    for (const content of [Buffer.from('just text, not a concept\n'), readFixture('random.bin'), Buffer.from('---\ntitle: a note\n---\nhello\n')]) {
      await c.request('smudge', 'x.bin', content);
      const r = await c.response();
      assert.equal(r.status, 'success');
      assert.ok(r.content!.equals(content), 'passed through byte for byte');
    }
    await c.request('smudge', 'empty.bin', Buffer.alloc(0));
    const empty = await c.response();
    assert.equal(empty.status, 'success');
    assert.equal(empty.content!.length, 0);

    await c.request('clean', 'photo.png', photoConcept);
    const again = await c.response();
    assert.equal(again.status, 'success');
    assert.ok(again.content!.equals(photoConcept), 'a concept cleans to itself (no phantom changes)');
    assert.equal(await c.close(), 0);
  });

  it('streams a 20 MiB input sent in 65516-byte packets, both ways', async () => {
    const big = randomBytesSeeded(20 * 1024 * 1024, 20);
    const c = open();
    await c.handshake();
    await c.request('clean', 'big.bin', big);
    const cleaned = await c.response();
    assert.equal(cleaned.status, 'success', c.stderr);
    const concept = cleaned.content!.toString('utf8');
    assert.ok(concept.includes(`oid: sha256:${sha256(big)}`));
    assert.ok(concept.includes(`size: ${big.length}`));
    assert.ok(cleaned.content!.length < 8192, 'the concept stays small');

    await c.request('smudge', 'big.bin', cleaned.content!);
    const smudged = await c.response();
    assert.equal(smudged.status, 'success', c.stderr);
    assert.equal(smudged.content!.length, big.length);
    assert.equal(sha256(smudged.content!), sha256(big));
    assert.equal(await c.close(), 0);
  });

  it('large content with no structure is chunked as it arrives: the same concept as cleaning the file, and serving goes on', async () => {
    // Not a worktree file, so nothing could be read in place: the stream is all there is.
    const big = randomBytesSeeded(12 * 1024 * 1024 + 4321, 21);
    const file = path.join(repo.dir, 'streamed-source.bin');
    writeFileSync(file, big);
    const fd = openSync(file, 'r');
    let fromFile: string;
    try {
      const r = spawnSync(process.execPath, [cliPath, 'clean', 'streamed.bin'], { cwd: repo.dir, env: hermeticEnv(), stdio: [fd, 'pipe', 'pipe'] });
      assert.equal(r.status, 0, r.stderr.toString());
      fromFile = r.stdout.toString('utf8');
    } finally {
      closeSync(fd);
      unlinkSync(file);
    }
    const piped = spawnSync(process.execPath, [cliPath, 'clean'], { cwd: repo.dir, env: hermeticEnv(), input: big, maxBuffer: 1024 * 1024 });
    assert.equal(piped.status, 0, piped.stderr.toString());
    assert.equal(piped.stdout.toString('utf8'), fromFile, 'a pipe without a path is chunked as it arrives, to the same concept');
    // A PNG signature makes the same bytes structured: they are kept and decomposed, not streamed.
    const pngHead = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55', 'hex');
    const looksLikePng = Buffer.concat([pngHead, big]);

    const c = open();
    await c.handshake();
    await c.request('clean', 'streamed.bin', big);
    const streamed = await c.response();
    assert.equal(streamed.status, 'success', c.stderr);
    assert.equal(streamed.content!.toString('utf8'), fromFile, 'streamed and in-place cleaning give the same concept');
    assert.match(fromFile, /format: "binary"/);
    await c.request('clean', 'kept.png', looksLikePng);
    const kept = await c.response();
    assert.equal(kept.status, 'success', c.stderr);
    assert.match(kept.content!.toString('utf8'), /format: "png"/);
    for (const [name, concept, bytes] of [['streamed.bin', streamed.content!, big], ['kept.png', kept.content!, looksLikePng]] as const) {
      await c.request('smudge', name, concept);
      const back = await c.response();
      assert.equal(back.status, 'success', c.stderr);
      assert.equal(sha256(back.content!), sha256(bytes), name);
    }
    assert.equal(await c.close(), 0);
  });

  it('a damaged atom: the content is followed by status=error (Git discards it), the log names the atom, serving goes on', async () => {
    const bytes = randomBytesSeeded(600 * 1024, 22); // several atoms, stored loose
    const c = open();
    await c.handshake();
    await c.request('clean', 'damaged.bin', bytes);
    const cleaned = await c.response();
    assert.equal(cleaned.status, 'success', c.stderr);
    const ref = parseConcept(cleaned.content!).refs[1]!;
    const file = new LocalStore(repo.store).atomPath(ref.hash);
    const saved = readFileSync(file);
    const damaged = Buffer.from(saved);
    damaged[damaged.length >> 1]! ^= 0x40;
    chmodSync(file, 0o644);
    writeFileSync(file, damaged);
    try {
      await c.request('smudge', 'damaged.bin', cleaned.content!);
      const r = await c.response();
      assert.equal(r.status, 'success', 'the status goes out before the content');
      assert.equal(r.finalStatus, 'error', 'and the error after it: Git discards what it received');
      const named = new RegExp(`damaged\\.bin.*${ref.hash}.*corrupt|damaged\\.bin.*corrupt.*${ref.hash}`);
      assert.match(await c.logged(named), named);
    } finally {
      writeFileSync(file, saved);
    }
    await c.request('smudge', 'damaged.bin', cleaned.content!);
    const repaired = await c.response();
    assert.equal(repaired.finalStatus, null);
    assert.equal(sha256(repaired.content!), sha256(bytes));
    assert.equal(await c.close(), 0);
  });

  it('a malformed concept gets status=error and the process keeps serving', async () => {
    const c = open();
    await c.handshake();
    const broken = Buffer.from('---\npanini: 1\noid: sha256:nothex\nsize: -5\ncontent_refs:\n  - {uri: "atom://sha256:12", type: Raw, offset: 0, size: 9}\n---\n');
    await c.request('smudge', 'broken.png', broken);
    assert.equal((await c.response()).status, 'error');
    assert.match(await c.logged(/broken\.png/), /broken\.png/, 'the log names the file');
    // A request's values are UTF-8 and run from the first '=' to the end of the line.
    const odd = 'dossier/été = bilan=final.png';
    await c.request('smudge', odd, broken);
    assert.equal((await c.response()).status, 'error');
    assert.ok((await c.logged(`git-panini: ${odd}: `)).includes(`git-panini: ${odd}: `), `the log names ${odd} exactly:\n${c.stderr}`);

    await c.request('smudge', 'photo.png', photoConcept);
    const next = await c.response();
    assert.equal(next.status, 'success');
    assert.ok(next.content!.equals(readFixture('photo.png')));
    assert.equal(await c.close(), 0);
  });

  it('an unknown command gets status=error and the process keeps serving', async () => {
    const c = open();
    await c.handshake();
    await c.request('frobnicate', 'x.bin', Buffer.from('whatever'));
    assert.equal((await c.response()).status, 'error');
    await c.request('clean', 'photo.png', readFixture('photo.png'));
    const next = await c.response();
    assert.equal(next.status, 'success');
    assert.ok(next.content!.equals(photoConcept), 'same bytes, same concept');
    assert.equal(await c.close(), 0);
  });

  it('missing atoms and no remote store: status=error naming the file, and it keeps serving', async () => {
    const c = open(emptyRepo.dir);
    await c.handshake();
    await c.request('smudge', 'photo.png', photoConcept, ['can-delay=1']);
    assert.equal((await c.response()).status, 'error', 'no remote to wait for: not delayed');
    assert.match(await c.logged(/^git-panini: photo\.png: \d+ atoms? missing from the local store/m), /^git-panini: photo\.png: \d+ atoms? missing from the local store/m, 'one line naming the file once');
    assert.match(c.stderr, /panini\.url|PANINI_SKIP_SMUDGE/, 'says what to do');

    await c.request('smudge', 'note.txt', Buffer.from('plain\n'));
    assert.equal((await c.response()).status, 'success');
    assert.equal(await c.close(), 0);
  });

  it('delay: missing atoms with a remote are answered delayed, listed, then served',
    { skip: remoteFetchAvailable ? false : 'remote store not yet available (dist/src/transfer/fetch.js)' }, async () => {
      const remote = tempDir('panini-remote-');
      try {
        cpSync(path.join(repo.store, 'atoms'), path.join(remote.dir, 'atoms'), { recursive: true });
        const client = tempRepo();
        try {
          git(client.dir, ['config', 'panini.url', `file://${remote.dir}`]);
          const c = open(client.dir);
          await c.handshake();
          await c.request('smudge', 'photo.png', photoConcept, ['can-delay=1']);
          assert.equal((await c.response()).status, 'delayed', c.stderr);

          let listed: string[] = [];
          for (let attempt = 0; attempt < 20 && !listed.includes('pathname=photo.png'); attempt++) {
            await c.sendList(['command=list_available_blobs']);
            listed = await c.list();
            assert.equal(statusOf(await c.list()), 'success');
          }
          assert.deepEqual(listed, ['pathname=photo.png']);

          await c.sendList(['command=smudge', 'pathname=photo.png']);
          await c.write(FLUSH); // no content: Git asks for the delayed blob by path
          const served = await c.response();
          assert.equal(served.status, 'success', c.stderr);
          assert.ok(served.content!.equals(readFixture('photo.png')));
          assert.equal(await c.close(), 0);
        } finally {
          client.dispose();
        }
      } finally {
        remote.dispose();
      }
    });

  it('delay: files asked for in sorted order are located while Git writes the one before; any order is served exact',
    { skip: remoteFetchAvailable ? false : 'remote store not yet available (dist/src/transfer/fetch.js)' }, async () => {
      // Files of several atoms (served by reconstruct, not as one small atom), cleaned in `repo`.
      const files = ['a.bin', 'b.bin', 'c.bin', 'd.bin'].map((name, i) => ({ name, bytes: randomBytesSeeded(300_000 + i * 1000, 40 + i), concept: Buffer.alloc(0) as Buffer }));
      const cleaner = open();
      await cleaner.handshake();
      for (const f of files) {
        await cleaner.request('clean', f.name, f.bytes);
        const r = await cleaner.response();
        assert.equal(r.status, 'success', cleaner.stderr);
        f.concept = r.content!;
        assert.ok((f.concept.toString().match(/atom:\/\//g) ?? []).length > 1, 'more than one atom');
      }
      assert.equal(await cleaner.close(), 0);
      const remote = tempDir('panini-remote-');
      try {
        for (const dir of ['atoms', 'packs']) {
          if (existsSync(path.join(repo.store, dir))) cpSync(path.join(repo.store, dir), path.join(remote.dir, dir), { recursive: true });
        }
        const locatesAhead = availableParallelism() > 1; // only with a core to spare (it polls for Git's requests)
        for (const order of ['sorted', 'reversed'] as const) {
          const client = tempRepo();
          try {
            git(client.dir, ['config', 'panini.url', `file://${remote.dir}`]);
            const c = open(client.dir, { PANINI_TRACE: '1' }, true); // through a pipe, as from Git: the reader then polls, and works while it waits
            await c.handshake();
            for (const f of files) {
              await c.request('smudge', f.name, f.concept, ['can-delay=1']);
              assert.equal((await c.response()).status, 'delayed', c.stderr);
            }
            let listed: string[] = [];
            for (let attempt = 0; attempt < 20 && listed.length < files.length; attempt++) {
              await c.sendList(['command=list_available_blobs']);
              listed = [...listed, ...(await c.list())];
              assert.equal(statusOf(await c.list()), 'success');
            }
            assert.deepEqual(listed.sort(), files.map((f) => `pathname=${f.name}`));
            for (const f of order === 'sorted' ? files : [...files].reverse()) {
              await new Promise((resolve) => setTimeout(resolve, 20)); // as Git writes the file before asking for the next
              await c.sendList(['command=smudge', `pathname=${f.name}`]);
              await c.write(FLUSH);
              const served = await c.response();
              assert.equal(served.status, 'success', c.stderr);
              assert.ok(served.content!.equals(f.bytes), `${f.name} served exact (${order})`);
            }
            assert.equal(await c.close(), 0);
            const [hits, misses] = (/(\d+) delayed files located ahead, (\d+) located ahead for nothing/.exec(c.stderr) ?? []).slice(1).map(Number);
            if (!locatesAhead) assert.deepEqual([hits, misses], [0, 0], c.stderr);
            // In sorted order every guess is right (a request that came before the reader waited finds none made);
            // asked in reverse, only the last file (the first in sorted order) is the one located ahead.
            else if (order === 'sorted') assert.ok(misses === 0 && hits! >= files.length - 1, c.stderr);
            else assert.ok(hits! <= 1 && misses! >= files.length - 2, c.stderr);
          } finally {
            client.dispose();
          }
        }
      } finally {
        remote.dispose();
      }
    });

  it('end of input from Git ends the process with exit code 0', async () => {
    const idle = open();
    await idle.handshake();
    assert.equal(await idle.close(), 0);
    const busy = open();
    await busy.handshake();
    await busy.request('clean', 'photo.png', readFixture('photo.png'));
    assert.equal((await busy.response()).status, 'success');
    assert.equal(await busy.close(), 0);
    assert.equal(busy.stderr, '', 'nothing to complain about');
  });
});
