/**
 * `git panini gc --remote`: the same collection for the remote store (panini.url). What is live
 * there is what any ref of any Git remote reaches (`git ls-remote`, every branch, tag and other
 * ref), plus everything this clone reaches (its unpushed work, reflogs, stash, indexes), plus every
 * Git LFS object record the store keeps. It refuses, deleting nothing, when it cannot be sure:
 * a Git remote it cannot list, a remote ref whose commit this clone has not fetched, a reachable
 * manifest neither store has, or a store not declared as serving this repository alone.
 *
 * Layouts (src/transfer/remote-layouts.ts) of files nothing reaches go; those of files still reached
 * whose packs it rewrites are written again in the new packs.
 *
 * Before deleting, it writes a new `gc-epoch`, so every clone's cache of what the remote holds
 * (src/transfer/inventory.ts) is dropped. A push running at that very moment may still have
 * skipped uploading an atom it believed present: run remote gc when nobody pushes, or keep the
 * grace period, which spares every object written recently.
 */
import { randomBytes } from 'node:crypto';
import type { Context } from '../cli/context.js';
import { MAX_CONCEPT_BYTES, parseConcept } from '../concept/concept.js';
import { errorMessage, PaniniError } from '../errors.js';
import { readConceptBlobs } from '../git/concepts.js';
import { git } from '../git/exec.js';
import type { HistoryWalk } from '../git/history.js';
import type { Repo } from '../git/repo.js';
import { ATOMS_PREFIX, atomKey, atomOfKey, bufferBody, GC_EPOCH_KEY, LAYOUTS_PREFIX, layoutKey, layoutOfKey, LFS_PREFIX, packKey, packOfKey, type Backend } from '../store/backend.js';
import { layoutPacks } from '../store/layout.js';
import { MERGE_ABOVE_PACKS, MERGE_BELOW_BYTES, PACK_MAGIC, type PackEntry } from '../store/pack.js';
import { readObject, type Transfer } from '../transfer/atoms.js';
import { AtomsNotOnRemote, downloadAll } from '../transfer/fetch.js';
import { forEachConcurrently } from '../transfer/pool.js';
import { downloadLayout, uploadLayouts } from '../transfer/remote-layouts.js';
import type { ListedPack } from '../transfer/remote-packs.js';
import { withRetries } from '../transfer/retry.js';
import { withSession, type Session } from '../transfer/session.js';
import { reachFromWalk, refuseIfBlocked, walkAll, type GcOptions, type GcReport, type Reachability } from './collect.js';

/** Reading manifests can reveal more manifests, at most this deep (as expandRefs allows). */
const MAX_MANIFEST_ROUNDS = 13;
const LFS_OID = /^lfs\/([0-9a-f]{64})$/;

export async function collectRemote(ctx: Context, options: GcOptions): Promise<GcReport> {
  const repo = ctx.repo;
  if (!repo) throw new PaniniError('gc --remote needs a Git repository: it keeps what the repository and its Git remotes reach', 'run it inside a clone of the repository');
  if (!ctx.config.getBool('panini.gc.exclusiveRemote', false)) {
    throw new PaniniError(
      'gc --remote deletes from the remote store what this repository\'s Git remotes do not reach; if other repositories (forks, other projects) use the same store, their atoms would go',
      'if only this repository\'s remotes use the store, say so with `git config panini.gc.exclusiveRemote true` and run it again',
    );
  }
  const tips = remoteRefTips(repo);
  return withSession(ctx, { quiet: true, label: 'gc' }, async (s) => {
    const { backend } = s;
    const lfsRecords = await listLfsRecords(backend, options);
    const walk = withRecordRoots(ctx, await walkAll(repo, ctx, 'all', options.reflog, options.progress, tips), lfsRecords);
    await readRecordConcepts(s, walk);
    let reach = reachFromWalk(walk, ctx.store, options.progress);
    for (let round = 0; reach.blocking.length > 0 && round < MAX_MANIFEST_ROUNDS; round++) {
      if (!(await fetchManifests(s, reach))) break;
      reach = reachFromWalk(walk, ctx.store, options.progress);
    }
    refuseIfBlocked(reach);
    const live = reach.reached.atoms;
    const isOld = (modifiedMs: number | undefined): boolean => modifiedMs !== undefined && modifiedMs < options.cutoffMs;

    const doomed: { hash: string; size: number }[] = [];
    const recent = { atoms: 0, bytes: 0 };
    let stored = 0;
    for await (const o of backend.list(ATOMS_PREFIX)) {
      const hash = atomOfKey(o.key);
      if (!hash) continue;
      if (++stored % 10_000 === 0) options.progress.update('Listing the remote store', stored);
      if (live.has(hash)) continue;
      if (isOld(o.modifiedMs)) doomed.push({ hash, size: o.size });
      else {
        recent.atoms++;
        recent.bytes += o.size;
      }
    }

    const packs = planPacks(await s.packs.list(), live, isOld, reach.warnings);
    stored += packs.stored;
    doomed.push(...packs.dropped);
    recent.atoms += packs.recent.atoms;
    recent.bytes += packs.recent.bytes;
    const oldRecords = lfsRecords.filter((r) => r.old && !reach.reached.oids.has(r.oid));
    if (!options.dryRun && packs.rewrite.length > 0) {
      // The live atoms of mostly dead packs go into new packs first (through the local store).
      const keep = packs.rewrite.flatMap((p) => [...p.index!.entries()].filter((e) => live.has(e.hash)));
      options.progress.update('Repacking the remote store', 0, keep.length);
      await downloadAll(s, keep.filter((e) => !ctx.store.has(e.hash)).map((e) => ({ hash: e.hash, size: e.size })));
      const r = await s.packs.upload(keep.map((e) => e.hash), () => undefined);
      if (r.error !== undefined) throw r.error;
    }
    const doomedKeys = [...packs.deleteKeys, ...doomed.filter((a) => !packs.droppedInPacks.has(a.hash)).map((a) => atomKey(a.hash))];
    const layouts = await layoutsToDelete(s, reach.reached.oids, new Set(packs.deleteKeys.map((k) => packOfKey(k)?.id)), isOld);
    if (!options.dryRun && (doomedKeys.length > 0 || oldRecords.length > 0 || layouts.stale.length > 0)) {
      // First the new epoch (clones stop trusting their caches), then records before their atoms.
      await withRetries(s.settings.attempts, () => backend.upload(GC_EPOCH_KEY, bufferBody(Buffer.from(randomBytes(16).toString('hex')))));
      await deleteAll(s, oldRecords.map((r) => r.key), 'Git LFS object records', options);
      await deleteAll(s, layouts.stale, 'layouts', options); // before the packs they name
      await deleteAll(s, doomedKeys, 'atoms and packs', options);
    }
    if (!options.dryRun && layouts.reachable.size > 0) {
      // Files still reached whose packs were rewritten get layouts in the new packs.
      s.packs.refresh();
      const blobs = [...walk.blobs].filter(([, b]) => b.meaning.kind === 'concept' && layouts.reachable.has(b.meaning.oid)).map(([blob]) => blob);
      await uploadLayouts(s, [...readConceptBlobs(repo.top ?? repo.commonDir, blobs).concepts.values()]);
    }
    options.progress.finish();
    return {
      dryRun: options.dryRun,
      store: backend.url,
      cutoff: Number.isFinite(options.cutoffMs) ? new Date(options.cutoffMs).toISOString() : null,
      reflog: options.reflog,
      reachable: { commits: reach.walk.commits, concepts: reach.reached.concepts, atoms: live.size },
      stored,
      deleted: { atoms: doomed, count: doomed.length, bytes: doomed.reduce((n, a) => n + a.size, 0) },
      keptRecent: recent,
      refreshed: 0,
      duplicates: { count: 0, bytes: 0 },
      tempFiles: packs.incomplete,
      registryEntries: oldRecords.length,
      packs: { rewritten: packs.rewrite.length, merged: packs.merged, deleted: packs.deleted, keptUnreachable: packs.keptUnreachable },
      warnings: reach.warnings,
    };
  });
}

/** A pack is rewritten when at least this share of its bytes is unreachable. */
const REWRITE_SHARE = 0.5;

interface PackPlan {
  /** Atoms in complete packs. */
  stored: number;
  /** Unreachable atoms that go with their pack (deleted or rewritten). */
  dropped: { hash: string; size: number }[];
  droppedInPacks: Set<string>;
  recent: { atoms: number; bytes: number };
  /** Packs whose live atoms move to a new pack before they are deleted. */
  rewrite: ListedPack[];
  /** Of those, small packs rewritten together because there were many (the rest were mostly dead). */
  merged: number;
  /** Keys to delete: each index before its pack, so no reader ever sees an index without its pack. */
  deleteKeys: string[];
  deleted: number;
  /** Unreachable atoms kept because they share a pack with mostly live ones. */
  keptUnreachable: { atoms: number; bytes: number };
  /** Parts of packs whose upload never finished (a pack without index, or the reverse). */
  incomplete: { count: number; bytes: number };
}

/**
 * What to do with each remote pack: delete it when nothing in it is live, rewrite it when mostly
 * dead, else keep it whole; and once more than MERGE_ABOVE_PACKS would stay, rewrite the small
 * ones kept whole together (every push leaves packs). Only packs older than the cutoff are
 * touched; an index that does not hold together is left alone with a warning.
 */
function planPacks(listed: readonly ListedPack[], live: ReadonlySet<string>, isOld: (ms: number | undefined) => boolean, warnings: string[]): PackPlan {
  const plan: PackPlan = {
    stored: 0, dropped: [], droppedInPacks: new Set(), recent: { atoms: 0, bytes: 0 }, rewrite: [], deleteKeys: [], deleted: 0, merged: 0,
    keptUnreachable: { atoms: 0, bytes: 0 }, incomplete: { count: 0, bytes: 0 },
  };
  /** Old packs kept whole, with their unreachable atoms: what merging may rewrite. */
  const keptWhole: { p: ListedPack; dead: PackEntry[]; deadBytes: number }[] = [];
  let staying = 0;
  const drop = (p: ListedPack, dead: readonly PackEntry[], live: boolean): void => {
    if (live) plan.rewrite.push(p);
    plan.deleteKeys.push(packKey(p.id, 'idx'), packKey(p.id, 'pack'));
    plan.deleted++;
    for (const e of dead) {
      plan.dropped.push({ hash: e.hash, size: e.size });
      plan.droppedInPacks.add(e.hash);
    }
  };
  for (const p of listed) {
    if (p.packSize === null || p.idxSize === null) {
      if (!isOld(p.modifiedMs) && p.packSize !== null) continue; // an upload may still be under way
      plan.deleteKeys.push(packKey(p.id, p.packSize === null ? 'idx' : 'pack'));
      plan.incomplete.count++;
      plan.incomplete.bytes += p.packSize ?? p.idxSize ?? 0;
      continue;
    }
    if (!p.index) {
      warnings.push(`the remote pack index ${packKey(p.id, 'idx')} is damaged; its pack was left alone (delete both and push again from a clone that has the files)`);
      continue;
    }
    const entries = [...p.index.entries()];
    plan.stored += entries.length;
    const dead = entries.filter((e) => !live.has(e.hash));
    const deadBytes = dead.reduce((n, e) => n + e.size, 0);
    if (!isOld(p.modifiedMs)) {
      plan.recent.atoms += dead.length;
      plan.recent.bytes += deadBytes;
      staying++;
    } else if (dead.length > 0 && (dead.length === entries.length || deadBytes >= REWRITE_SHARE * (p.packSize - PACK_MAGIC.length))) {
      drop(p, dead, dead.length < entries.length);
    } else {
      keptWhole.push({ p, dead, deadBytes });
      staying++;
    }
  }
  const small = keptWhole.filter(({ p }) => p.packSize! < MERGE_BELOW_BYTES);
  const merging = new Set(staying > MERGE_ABOVE_PACKS && small.length > 1 ? small : []);
  for (const { p, dead } of merging) {
    drop(p, dead, true);
    plan.merged++;
  }
  for (const { dead, deadBytes } of keptWhole.filter((k) => !merging.has(k))) {
    plan.keptUnreachable.atoms += dead.length;
    plan.keptUnreachable.bytes += deadBytes;
  }
  return plan;
}

/** The ref tips of every Git remote, each present in this clone; refuses on anything it cannot see. */
function remoteRefTips(repo: Repo): string[] {
  const cwd = repo.top ?? repo.commonDir;
  const remotes = git(['remote'], { cwd }).stdout.toString().split('\n').filter(Boolean);
  if (remotes.length === 0) {
    throw new PaniniError('this repository has no Git remote, so gc --remote cannot tell what the remote store\'s users still need', 'add the Git remote the store serves (git remote add origin <url>) and fetch it');
  }
  const tips = new Map<string, string>();
  for (const remote of remotes) {
    const r = git(['ls-remote', remote], { cwd, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });
    if (r.status !== 0) {
      throw new PaniniError(`cannot list the refs of the Git remote '${remote}' (${r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`}), so gc --remote cannot tell what it still needs; nothing was deleted`,
        `check the network and credentials (git ls-remote ${remote}), or remove a remote that no longer exists (git remote remove ${remote})`);
    }
    for (const line of r.stdout.toString().split('\n')) {
      const [oid, ref] = line.split('\t');
      if (oid && ref && !ref.endsWith('^{}')) tips.set(oid, `${remote} ${ref}`);
    }
  }
  const check = git(['cat-file', '--batch-check'], { cwd, input: [...tips.keys()].join('\n') + '\n' });
  const unseen = check.stdout.toString().split('\n').filter((l) => l.endsWith(' missing')).map((l) => tips.get(l.split(' ')[0]!)!);
  if (unseen.length > 0) {
    const remote = unseen[0]!.split(' ')[0];
    throw new PaniniError(
      `${unseen.length} ref(s) on the Git remote(s) point at commits this clone does not have (${unseen.slice(0, 5).join(', ')}${unseen.length > 5 ? ', ...' : ''}), so gc --remote cannot see what they need; nothing was deleted`,
      `fetch them first: git fetch ${remote} (refs outside the usual branches and tags: git fetch ${remote} '+refs/*:refs/remotes/${remote}-all/*')`,
    );
  }
  return [...tips.keys()];
}

interface LfsRecord {
  key: string;
  oid: string;
  /** Last written before the cutoff: deleted if nothing reaches it. */
  old: boolean;
}

async function listLfsRecords(backend: Backend, options: GcOptions): Promise<LfsRecord[]> {
  const records: LfsRecord[] = [];
  for await (const o of backend.list(LFS_PREFIX)) {
    const m = LFS_OID.exec(o.key);
    if (m) records.push({ key: o.key, oid: m[1]!, old: o.modifiedMs !== undefined && o.modifiedMs < options.cutoffMs });
  }
  return records;
}

/**
 * The walk with the store's Git LFS object records as roots: those something reaches, and recent
 * ones (their atoms may be new).
 */
function withRecordRoots(ctx: Context, walk: HistoryWalk, records: LfsRecord[]): HistoryWalk {
  const reachedOids = new Set([...walk.blobs.values()].flatMap((b) => (b.meaning.kind === 'lfs' ? [b.meaning.oid] : [])));
  const blobs = new Map(walk.blobs);
  for (const r of records) {
    if (!reachedOids.has(r.oid) && r.old) continue;
    blobs.set(`record:${r.key}`, { site: { path: `${r.key} in ${ctx.config.get('panini.url')}`, commit: null }, meaning: { kind: 'lfs', oid: r.oid } });
  }
  return { commits: walk.commits, blobs };
}

/** Reads the concepts of the LFS objects the walk reaches into the local concept registry, where the traversal finds them. */
async function readRecordConcepts(t: Transfer, walk: HistoryWalk): Promise<void> {
  const oids = [...new Set([...walk.blobs.values()].flatMap((b) => (b.meaning.kind === 'lfs' ? [b.meaning.oid] : [])))];
  const missing = oids.filter((oid) => t.store.getConcept(oid) === null);
  const failures = await forEachConcurrently(missing, t.settings.concurrency, async (oid) => {
    const key = `${LFS_PREFIX}${oid}`;
    const text = await withRetries(t.settings.attempts, async () => {
      return readObject(t, key, MAX_CONCEPT_BYTES, `downloading ${key} from ${t.backend.url}`);
    });
    if (!text) return; // not in the store: no atoms to keep for it
    let concept;
    try {
      concept = parseConcept(text);
    } catch (err) {
      throw new PaniniError(`the remote store's record ${key} is not a valid concept (${errorMessage(err)}), so gc --remote cannot tell which atoms it needs; nothing was deleted`, `delete ${key} from the remote store, then upload the object again (git lfs push --all)`);
    }
    if (concept.oid !== oid) throw new PaniniError(`the remote store's record ${key} describes sha256:${concept.oid} instead; nothing was deleted`, `delete ${key} from the remote store, then upload the object again (git lfs push --all)`);
    t.store.putConcept(oid, text.toString('utf8'));
  });
  if (failures.length > 0) throw failures[0]!.error;
}

/** Downloads the reachable manifests missing here; false if some is not in the remote store either. */
async function fetchManifests(s: Session, reach: Reachability): Promise<boolean> {
  const wanted = reach.blocking.filter((p) => p.kind === 'missing');
  if (wanted.length !== reach.blocking.length) return false; // corrupt here: fsck first
  try {
    await downloadAll(s, wanted.map((p) => ({ hash: p.name })));
  } catch (err) {
    if (err instanceof AtomsNotOnRemote) return false;
    throw err;
  }
  return true;
}

/**
 * The layouts (src/transfer/remote-layouts.ts) to delete: those of files nothing reaches once
 * older than the cutoff, and those naming a pack this gc deletes (read only when it deletes one);
 * and among the latter, the files something still reaches (their layouts are written again).
 */
async function layoutsToDelete(
  t: Transfer, reachable: ReadonlySet<string>, deletedPacks: ReadonlySet<string | undefined>, isOld: (ms: number | undefined) => boolean,
): Promise<{ stale: string[]; reachable: Set<string> }> {
  const stale: string[] = [];
  const kept: string[] = [];
  for await (const o of t.backend.list(LAYOUTS_PREFIX)) {
    const oid = layoutOfKey(o.key);
    if (!oid) continue;
    if (!reachable.has(oid) && isOld(o.modifiedMs)) stale.push(o.key);
    else kept.push(oid);
  }
  const again = new Set<string>();
  if (deletedPacks.size === 0) return { stale, reachable: again };
  const failures = await forEachConcurrently(kept, t.settings.concurrency, async (oid) => {
    const named = layoutPacks(await withRetries(t.settings.attempts, () => downloadLayout(t, oid)) ?? Buffer.alloc(0));
    if (named && !named.some((id) => deletedPacks.has(id))) return;
    stale.push(layoutKey(oid)); // not a whole layout: no reader uses it either
    if (reachable.has(oid)) again.add(oid);
  });
  if (failures.length > 0) throw failures[0]!.error;
  return { stale, reachable: again };
}

async function deleteAll(t: Transfer, keys: string[], what: string, options: GcOptions): Promise<void> {
  let done = 0;
  const failures = await forEachConcurrently(keys, t.settings.concurrency, async (key) => {
    await withRetries(t.settings.attempts, () => t.backend.delete(key));
    if (++done % 100 === 0) options.progress.update(`Deleting remote ${what}`, done, keys.length);
  });
  if (failures.length > 0) {
    throw new PaniniError(`deleting ${what} from ${t.backend.url} failed for ${failures.length} of ${keys.length} (${errorMessage(failures[0]!.error)})`, 'run git panini gc --remote again: what is left is still unreachable and will be deleted then');
  }
}
