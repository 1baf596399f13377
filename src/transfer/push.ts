/**
 * Uploading what some concepts need to the remote store: every atom they reach (leaves, file-order
 * manifests, track manifests) that the remote lacks. Refuses, before uploading anything, if an atom
 * is in neither store: the pushed commits would name bytes nobody can get back.
 */
import type { Context } from '../cli/context.js';
import type { Concept } from '../concept/concept.js';
import { errorMessage, PaniniError } from '../errors.js';
import { mayHaveLayout } from '../store/layout.js';
import { uploadAtom } from './atoms.js';
import { downloadAll } from './fetch.js';
import { collectAtoms } from './plan.js';
import { forEachConcurrently } from './pool.js';
import { uploadLayouts } from './remote-layouts.js';
import { withSession, type Session, type TransferOptions } from './session.js';

/** Pushes of at least this many atoms upload packs. */
const PACK_MIN_ATOMS = 16;

/** A concept and where it comes from (a path in a commit), for messages. */
export interface ConceptToPush {
  concept: Concept;
  path: string;
}

export interface PushResult {
  /** Atoms the concepts reach. */
  needed: number;
  uploaded: number;
  bytes: number;
}

export async function pushConcepts(ctx: Context, items: readonly ConceptToPush[], options: TransferOptions = {}): Promise<PushResult> {
  return withSession(ctx, { label: 'push', ...options }, (s) => pushConceptsWith(s, items));
}

/** pushConcepts in an open session (the Git LFS agent keeps one for all its objects). */
export async function pushConceptsWith(s: Session, items: readonly ConceptToPush[]): Promise<PushResult> {
  // A manifest missing here but present remotely (after a partial fetch) is read from there.
  const set = await collectAtoms(items.map((i) => i.concept), s.store, async (manifests) => {
    await downloadAll(s, manifests.map((hash) => ({ hash }))).catch(() => undefined);
  }, { walkTracks: true });
  const all = [...set.leaves.keys(), ...set.manifests];
  const inventory = await s.inventory;
  const toUpload = await inventory.missing(all);
  const lost = [...set.unreadable, ...toUpload.filter((h) => !s.store.has(h))];
  if (lost.length > 0) throw await unrecoverable(s, items, new Set(lost));
  s.progress.addTotal(toUpload.length, toUpload.reduce((n, h) => n + s.store.sizeOf(h), 0));
  const uploaded: string[] = [];
  let bytes = 0;
  const sent = (hashes: string[], size: number): void => {
    uploaded.push(...hashes);
    bytes += size;
    s.progress.advance(size);
  };
  let failure: { item: string; error: unknown } | undefined;
  let failed = 0;
  // A store that gets layouts (remote-layouts.ts) gets a file's new atoms packed, however few: a
  // layout names packs only (a retitled video is a few new atoms among thousands already there).
  if (toUpload.length >= PACK_MIN_ATOMS || (toUpload.length > 0 && items.some((i) => mayHaveLayout(i.concept.refs)))) {
    // Many atoms: a few pack objects instead of one object each (docs/remote-stores.md, "Packs").
    const r = await s.packs.upload(toUpload, sent);
    if (r.error !== undefined) {
      const done = new Set(r.uploaded);
      failed = toUpload.filter((h) => !done.has(h)).length;
      failure = { item: `pack of ${failed} atoms`, error: r.error };
    }
  } else {
    const failures = await forEachConcurrently(toUpload, s.settings.concurrency, async (hash) => sent([hash], await uploadAtom(s, hash)));
    failure = failures[0] && { item: `atom ${failures[0].item}`, error: failures[0].error };
    failed = failures.length;
  }
  inventory.record(uploaded);
  if (!failure) await uploadLayouts(s, items.map((i) => i.concept));
  if (failure) {
    const more = failed > 1 ? ` (${failed} atoms not uploaded; first failure shown)` : '';
    const hint = failure.error instanceof PaniniError ? failure.error.hint : undefined;
    throw new PaniniError(`uploading ${failure.item} to ${s.backend.url} failed: ${errorMessage(failure.error).split('\n')[0]}${more}`,
      `${hint ? hint + '; ' : ''}${uploaded.length} atoms were uploaded and will not be sent again; nothing half-written is visible on the remote`);
  }
  return { needed: all.length, uploaded: uploaded.length, bytes };
}

/** The refusal: which files need atoms that are in neither store. */
async function unrecoverable(s: Session, items: readonly ConceptToPush[], lost: Set<string>): Promise<PaniniError> {
  const paths: string[] = [];
  for (const item of items) {
    const own = await collectAtoms([item.concept], s.store, async () => undefined, { walkTracks: true });
    const reached = [...own.leaves.keys(), ...own.manifests];
    if (reached.some((h) => lost.has(h))) paths.push(item.path);
  }
  const shownPaths = paths.slice(0, 5).join(', ') + (paths.length > 5 ? `, and ${paths.length - 5} more` : '');
  return new PaniniError(
    `refusing to push: ${lost.size} atom${lost.size === 1 ? '' : 's'} needed by ${shownPaths || 'the pushed commits'} ${lost.size === 1 ? 'is' : 'are'} neither in the local store nor in the remote store ${s.backend.url} (first: ${[...lost][0]})`,
    'push from the clone where the files were added (git panini push), or add the files again here (`git add --renormalize .` and commit), then push',
  );
}
