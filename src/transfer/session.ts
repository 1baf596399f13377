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
  /**
   * Opened with the session, awaited by what needs it (a push; a fetch that stores loose atoms):
   * a fetch's first requests do not wait for the gc epoch's round trip.
   */
  inventory: Promise<RemoteInventory>;
  packs: RemotePacks;
}

/** Opens the configured remote store; the caller closes the session (closeSession). */
export async function openSession(ctx: Context, progress: Progress, options: Pick<TransferOptions, 'listPacks'> = {}): Promise<Session> {
  const backend = await requireRemote(ctx);
  const t: Transfer = { backend, store: ctx.store, settings: transferSettings(ctx.config) };
  const packs = new RemotePacks(t);
  // Both under way at once; a failure is reported by what needs them.
  if (options.listPacks) packs.list().catch(() => undefined);
  const inventory = RemoteInventory.open(t, packs);
  inventory.catch(() => undefined);
  return { ...t, progress, packs, inventory };
}

/** Ends the session once nothing started for it is still running (a pack listing writes the index cache; the inventory reads the gc epoch). */
export async function closeSession(s: Session): Promise<void> {
  await s.packs.settled();
  await s.inventory.catch(() => undefined);
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
