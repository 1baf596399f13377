/**
 * Where the filter process stores the atoms of small files (those under PACK_MIN, whose atoms are
 * otherwise loose). The first LOOSE_ATOMS new ones of a session go loose, one file each; past that
 * (a bulk add) the rest go into one pack, appended as they come and named by seal(): when Git asks
 * for anything but a clean, when it has sent nothing for 20 ms (it is done cleaning, and may run
 * hooks that read the store), when it closes the pipe, and every PACK_MAX_ATOMS or PACK_MAX_BYTES.
 * A file's concept goes to Git before that pack is named, so the pack is journaled (journal.ts): if
 * this process dies first, the next one to read the store names it.
 *
 * Measured (README, "Choices made by measurement"): `git add` of 2,000 files of 8–64 KB took
 * 0.70–0.73 s instead of 0.75–0.80 s; a loose atom costs a file creation, a rename and, in a young
 * store, a shard directory.
 */
import type { AtomWriter, LocalStore } from './local.js';
import { PackWriter } from './pack-writer.js';

/** As many atoms as a file needs to be packed (8 MiB of 64 KiB chunks): small adds stay loose. */
const LOOSE_ATOMS = 128;
/**
 * A pack is named once it holds this many atoms or bytes, and the next one begun: the pack's index
 * is built in memory (~150 bytes an atom), and an add of a million files must not hold it all.
 */
const PACK_MAX_ATOMS = 65_536;
const PACK_MAX_BYTES = 1024 * 1024 * 1024;

export class SmallFileAtoms implements AtomWriter {
  private loose = 0;
  private pack: PackWriter | null = null;

  constructor(private readonly store: LocalStore) {}

  put(hash: string, bytes: Uint8Array): boolean {
    if (this.pack === null && this.loose >= LOOSE_ATOMS) this.pack = new PackWriter(this.store, { journal: true });
    if (this.pack) {
      const fresh = this.pack.put(hash, bytes);
      if (this.pack.atoms >= PACK_MAX_ATOMS || this.pack.bytes >= PACK_MAX_BYTES) this.seal();
      return fresh;
    }
    const fresh = this.store.put(hash, bytes);
    if (fresh) this.loose++;
    return fresh;
  }

  /** Whether atoms put are waiting in a pack not yet named. */
  get unnamed(): boolean {
    return this.pack !== null;
  }

  /** Names the pack of the atoms put so far, making them visible to every reader. */
  seal(): void {
    const pack = this.pack;
    this.pack = null;
    pack?.finish();
  }
}
