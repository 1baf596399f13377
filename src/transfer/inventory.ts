/**
 * Which atoms the remote store already has, at the fewest requests.
 *
 * 1. A local cache per remote (`<store>/remotes/<id>.inventory`): atoms this clone uploaded,
 *    downloaded one by one, or saw in a listing (those taken from the remote's packs are known from
 *    the packs' indexes, 2.). Atoms are immutable, so "present" stays true until a remote
 *    gc deletes some; a remote gc therefore writes a new value to the `gc-epoch` object first, and a
 *    cache recorded under another epoch is dropped. A store without that object (new, or wiped and
 *    made again at the same URL) gets a random one from its first push, and no cache is trusted
 *    before: a cache from the store that was there before must not pass for this one. Cost: one
 *    small GET per command.
 * 2. The remote store's packs (src/transfer/remote-packs.ts): listed once per session, their
 *    indexes cached, so whatever a pack holds is known at the cost of one listing request.
 * 3. For atoms neither knows: a listing of `atoms/` when it is cheaper than one HEAD per
 *    atom, else what the backend can rule out at once (a folder: atoms whose shard directory
 *    does not exist), then HEADs. Listings come in sorted pages of 1,000 keys, one page per request and one
 *    page after the other, while HEADs run `concurrency` at a time; one page costs as much as
 *    `backend.listPageCost` HEADs (measured, docs/remote-stores.md). So with n unknown atoms the
 *    listing gets a budget of n / (concurrency × listPageCost) pages; since keys are sorted, a
 *    listing cut short still decides every unknown atom whose key sorts before the last key listed,
 *    and only the rest get a HEAD. A complete listing replaces the cache (and so forgets deleted atoms).
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAtomHash } from '../atom.js';
import { randomBytes } from 'node:crypto';
import { ATOMS_PREFIX, atomKey, atomOfKey, bufferBody, GC_EPOCH_KEY } from '../store/backend.js';
import { readObject, remoteCachePath, type Transfer } from './atoms.js';
import { forEachConcurrently } from './pool.js';
import type { RemotePacks } from './remote-packs.js';
import { isRetryable, withRetries } from './retry.js';

const LIST_PAGE = 1000;
/** A listing never holds more keys than this in memory. */
const MAX_LISTED = 2_000_000;
const HEADER = 'panini-inventory 1';

/** Atoms listed, in key order: all of them (complete) or those up to lastKey. */
interface Listing {
  hashes: string[];
  lastKey: string;
  complete: boolean;
}

export class RemoteInventory {
  private known: Set<string> | null = null;

  private constructor(private readonly t: Transfer, private readonly packs: RemotePacks, private readonly path: string, private epoch: string, private valid: boolean) {}

  static async open(t: Transfer, packs: RemotePacks): Promise<RemoteInventory> {
    const epoch = await withRetries(t.settings.attempts, async () => {
      const bytes = await readObject(t, GC_EPOCH_KEY, 1024, `reading ${GC_EPOCH_KEY} from ${t.backend.url}`);
      return bytes ? bytes.toString('utf8').trim() : '';
    });
    const path = remoteCachePath(t, '.inventory');
    let valid = false;
    try {
      valid = epoch !== '' && readFileSync(path, 'latin1').startsWith(headerFor(t.backend.url, epoch));
    } catch {
      // no cache yet
    }
    return new RemoteInventory(t, packs, path, epoch, valid);
  }

  has(hash: string): boolean {
    return this.load().has(hash);
  }

  /** Notes atoms known to be on the remote (uploaded, downloaded, listed). */
  record(hashes: readonly string[]): void {
    if (hashes.length === 0) return;
    const known = this.load();
    const fresh = hashes.filter((h) => !known.has(h));
    if (fresh.length === 0) return;
    for (const h of fresh) known.add(h);
    if (!this.valid) {
      this.rewrite(known);
      return;
    }
    try {
      appendFileSync(this.path, fresh.join('\n') + '\n');
    } catch {
      // the cache is only a hint: losing it costs requests, never correctness
    }
  }

  /** The atoms among `hashes` that the remote store lacks. */
  async missing(hashes: readonly string[]): Promise<string[]> {
    await this.identify();
    let unknown = [...new Set(hashes)].filter((h) => !this.has(h));
    if (unknown.length === 0) return [];
    await this.packs.list();
    unknown = unknown.filter((h) => !this.packs.find(h));
    if (unknown.length === 0) return [];
    const { concurrency, attempts } = this.t.settings;
    const absent: string[] = [];
    let undecided = unknown;
    const pages = Math.floor(unknown.length / (concurrency * this.t.backend.listPageCost));
    const budget = Math.min(MAX_LISTED, pages * LIST_PAGE);
    if (budget > 0) {
      let listing: Listing | null = null;
      try {
        listing = await withRetries(attempts, () => this.listAtoms(budget));
      } catch (err) {
        if (!isRetryable(err)) throw err; // else HEADs decide instead
      }
      if (listing) {
        const listed = new Set(listing.hashes);
        undecided = [];
        for (const h of unknown) {
          if (listed.has(h)) continue;
          if (listing.complete || atomKey(h) <= listing.lastKey) absent.push(h);
          else undecided.push(h);
        }
      }
    }
    if (undecided.length > 0 && this.t.backend.absentAmong) {
      const keys = undecided.map(atomKey);
      const gone = await withRetries(attempts, () => this.t.backend.absentAmong!(keys));
      const still: string[] = [];
      undecided.forEach((h, i) => (gone.has(keys[i]!) ? absent : still).push(h));
      undecided = still;
    }
    const seen: string[] = [];
    const failures = await forEachConcurrently(undecided, concurrency, async (h) => {
      if (await withRetries(attempts, () => this.t.backend.exists(atomKey(h)))) seen.push(h);
      else absent.push(h);
    });
    this.record(seen);
    if (failures.length > 0) throw failures[0]!.error;
    return absent;
  }

  /** Gives a store without a gc-epoch object one, so that what this push records can be trusted later. */
  private async identify(): Promise<void> {
    if (this.epoch !== '') return;
    const epoch = randomBytes(16).toString('hex');
    await withRetries(this.t.settings.attempts, () => this.t.backend.upload(GC_EPOCH_KEY, bufferBody(Buffer.from(epoch))));
    this.epoch = epoch;
  }

  /** Lists up to `budget` keys of atoms/ and records them. */
  private async listAtoms(budget: number): Promise<Listing> {
    const hashes: string[] = [];
    let lastKey = '';
    let complete = true;
    let count = 0;
    for await (const o of this.t.backend.list(ATOMS_PREFIX)) {
      const h = atomOfKey(o.key);
      if (h) hashes.push(h);
      lastKey = o.key;
      if (++count >= budget) {
        complete = false;
        break;
      }
    }
    if (complete) {
      this.known = new Set(hashes);
      this.rewrite(this.known);
    } else {
      this.record(hashes);
    }
    return { hashes, lastKey, complete };
  }

  private load(): Set<string> {
    if (this.known) return this.known;
    this.known = new Set();
    if (!this.valid) return this.known;
    try {
      for (const line of readFileSync(this.path, 'latin1').split('\n')) if (isAtomHash(line)) this.known.add(line);
    } catch {
      this.valid = false;
    }
    return this.known;
  }

  private rewrite(hashes: Set<string>): void {
    if (this.epoch === '') return; // a store without an epoch: nothing recorded for it could be trusted
    try {
      mkdirSync(join(this.path, '..'), { recursive: true });
      const tmp = `${this.path}.tmp-${process.pid}`;
      writeFileSync(tmp, headerFor(this.t.backend.url, this.epoch) + [...hashes].map((h) => h + '\n').join(''));
      renameSync(tmp, this.path);
      this.valid = true;
    } catch {
      // see record()
    }
  }
}

function headerFor(url: string, epoch: string): string {
  return `${HEADER}\nurl ${JSON.stringify(url)}\nepoch ${JSON.stringify(epoch)}\n`;
}
