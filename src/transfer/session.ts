/** One transfer session: the remote store opened, settings read, a progress line, the inventory. */
import type { Context } from '../cli/context.js';
import { requireRemote, transferSettings } from '../store/remote.js';
import type { Transfer } from './atoms.js';
import { RemoteInventory } from './inventory.js';
import { Progress } from './progress.js';
import { RemotePacks } from './remote-packs.js';

export interface TransferOptions {
  quiet?: boolean;
  /** Label of the progress line. */
  label?: string;
  /** List the remote's packs while the session opens (every download reads them). */
  listPacks?: boolean;
}

export interface Session extends Transfer {
  progress: Progress;
  inventory: RemoteInventory;
  packs: RemotePacks;
}

/** Opens the configured remote store; the caller closes the session (closeSession). */
export async function openSession(ctx: Context, progress: Progress, options: Pick<TransferOptions, 'listPacks'> = {}): Promise<Session> {
  const backend = await requireRemote(ctx);
  try {
    const t: Transfer = { backend, store: ctx.store, settings: transferSettings(ctx.config) };
    const packs = new RemotePacks(t);
    // One round trip instead of two; a failed listing is reported by the download that needs it.
    if (options.listPacks) packs.list().catch(() => undefined);
    return { ...t, progress, packs, inventory: await RemoteInventory.open(t, packs) };
  } catch (err) {
    backend.close();
    throw err;
  }
}

/** Ends the session once nothing started for it is still running (a pack listing writes the index cache). */
export async function closeSession(s: Session): Promise<void> {
  await s.packs.settled();
  s.progress.finish();
  s.backend.close();
}

export async function withSession<T>(ctx: Context, options: TransferOptions, work: (s: Session) => Promise<T>): Promise<T> {
  const s = await openSession(ctx, Progress.forCommand(options.label ?? 'fetch', options.quiet ?? false), options);
  try {
    return await work(s);
  } finally {
    await closeSession(s);
  }
}
