/**
 * Hostile concepts arriving with a clone, end to end with real Git. An attacker's repository tracks
 * *.bin with filter=panini, but its blobs are crafted concept texts (written with `git hash-object`
 * and `git update-index --cacheinfo`, so no clean filter ever saw them): front matter in engines that
 * would run code, a YAML alias bomb, atom URIs with path traversal or non-hex characters, absurd
 * sizes and offsets, refs whose sizes do not add up or do not match their atoms, and manifests served
 * by the attacker's own remote store (its committed .paniniconfig names it) that lie about their
 * sizes, do not parse, nest too deep, or "contain themselves". A victim with git-panini installed
 * clones it. Each file must be refused with a message naming it and the reason, no code may run,
 * nothing outside the victim's atom store may be written (or, for a planted decoy, even read), Git's
 * index must keep the attacker's blobs, and the store must hold only atoms that hash to their names.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import matter from 'gray-matter';
import { GitSandbox, sha256 } from './helpers/git.js';
import { assertStoreClean } from './helpers/store-check.js';
import { diffSnapshots, readTracker, snapshotTree } from './helpers/tree-snapshot.js';

/** Atoms go where a store (local or folder remote) keeps them: atoms/ab/cd/<name>. */
function plantAtom(storeRoot: string, bytes: Buffer, name = sha256(bytes)): string {
  const dir = path.join(storeRoot, 'atoms', name.slice(0, 2), name.slice(2, 4));
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, name), bytes);
  return name;
}

const manifest = (lines: string[]): Buffer => Buffer.from(['panini-manifest 1', ...lines, ''].join('\n'));
const uri = (hash: string): string => `atom://sha256:${hash}`;
const refLine = (u: string, type: string, offset: number | string, size: number | string): string =>
  `  - {uri: ${JSON.stringify(u)}, type: ${type}, offset: ${offset}, size: ${size}}`;
const FAKE_OID = sha256(Buffer.from('the attacker does not say what the file is'));

/** A concept text: `lines` are the front matter (after the usual keys unless `bare`). */
function conceptText(size: number | string, refs: string[], options: { lang?: string; bare?: string[] } = {}): string {
  const front = options.bare ?? ['panini: 1', `oid: sha256:${FAKE_OID}`, `size: ${size}`, 'format: "binary"', refs.length ? 'content_refs:' : 'content_refs: []', ...refs];
  return `---${options.lang ?? ''}\n${front.join('\n')}\n---\n# crafted\n`;
}

interface Payload {
  path: string;
  text: string;
  /** What the refusal must say (besides the path). */
  expect: RegExp[];
}

test('hostile concepts in a clone are refused by name, run nothing, touch nothing outside the store, leave the index alone', { timeout: 120_000 }, async (t) => {
  const started = Date.now();
  const sb = new GitSandbox(t.after.bind(t));
  const marker = sb.path('PWNED');
  const decoy = sb.path('decoy');
  mkdirSync(decoy);
  const decoyBytes = Buffer.from('root:x:0:0:decoy standing in for a file outside the store\n');
  const plantedName = sha256(decoyBytes);
  // A file outside the store, named like an atom, that an unsafe path join could reach.
  const planted = path.join(decoy, plantedName);
  writeFileSync(planted, decoyBytes);
  writeFileSync(path.join(decoy, 'secret.txt'), 'not for git-panini\n');
  const attackerStore = sb.path('attacker-store');
  mkdirSync(attackerStore);

  // --- The attacker's repository -------------------------------------------------------------
  const attacker = sb.initRepo('attacker');
  sb.panini(attacker, ['track', '*.bin']);
  writeFileSync(path.join(attacker, '.paniniconfig'), [
    '[panini]',
    `\turl = ${pathToFileURL(attackerStore).href}`,
    '\tretries = 0',
    // Ignored: a clone may not choose where the victim's machine writes.
    `\tstorage = ${path.join(decoy, 'stolen-store')}`,
    '',
  ].join('\n'));
  // One honest file, so the victim's setup demonstrably works (fetch from the attacker's store).
  const honest = randomBytes(300_000);
  writeFileSync(path.join(attacker, 'ok.bin'), honest);
  sb.git(attacker, ['add', '.gitattributes', '.paniniconfig', 'ok.bin']);
  cpSync(path.join(attacker, '.git', 'panini', 'atoms'), path.join(attackerStore, 'atoms'), { recursive: true });

  const victim = sb.path('victim');
  const victimStore = path.join(victim, '.git', 'panini');
  const victimAtoms = path.join(victimStore, 'atoms');
  const jsMarkerCode = `(typeof require === 'function' ? require('fs') : process.getBuiltinModule('fs')).writeFileSync(${JSON.stringify(marker)}, 'evaluated')`;
  const jsBody = `({ panini: 1, oid: 'sha256:${FAKE_OID}', size: 0, format: 'x', content_refs: [], pwned: ${jsMarkerCode} })`;
  const laughs = ['l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
  for (let i = 1; i <= 9; i++) laughs.push(`l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`);
  const atom = (n: number): { hash: string; size: number } => {
    const bytes = randomBytes(n);
    return { hash: plantAtom(attackerStore, bytes), size: n };
  };
  const refused = /not a valid git-panini concept/;
  const badUri = /content_refs\[0\]\.uri must be atom:\/\/sha256:<64 lowercase hex>/;

  const payloads: Payload[] = [];
  const add = (name: string, text: string, ...expect: RegExp[]): void => void payloads.push({ path: `${name}.bin`, text, expect });

  // Front matter engines other than YAML: refused before gray-matter sees them, never evaluated.
  add('engine-js', `---js\n${jsBody}\n---\n`, /front matter in 'js' is refused/, /never evaluates code/);
  add('engine-javascript', `--- JavaScript \n${jsBody}\n---\n`, /front matter in 'javascript' is refused/, /never evaluates code/);
  add('engine-coffee', `---coffee\npanini: 1\ncontent_refs: []\nx: do -> ${jsMarkerCode}\n---\n`, /front matter in 'coffee' is refused/);
  add('engine-json', `---json\n{"panini": 1, "oid": "sha256:${FAKE_OID}", "size": 0, "format": "x", "content_refs": []}\n---\n`, /front matter in 'json' is refused/);
  // YAML: an alias bomb (9^9 strings if expanded) as the refs; and a tag that would construct code.
  add('alias-bomb', conceptText(0, [], { bare: ['panini: 1', `oid: sha256:${FAKE_OID}`, 'size: 0', 'format: "x"', ...laughs, 'content_refs: *l9'] }), refused, /content_refs\[0\] is not a mapping/);
  add('yaml-js-tag', conceptText(0, [], { bare: ['panini: 1', 'content_refs: []', `x: !!js/function "function () { ${jsMarkerCode} }"`] }), refused, /not valid YAML/);
  // Atom URIs that are not 64 lowercase hex digits.
  add('uri-traversal', conceptText(5, [refLine('atom://sha256:../../../../../../../../etc/passwd', 'Raw', 0, 5)]), refused, badUri);
  add('uri-planted', conceptText(decoyBytes.length, [refLine(`atom://sha256:${path.relative(victimAtoms, planted)}`, 'Raw', 0, decoyBytes.length)]), refused, badUri);
  add('uri-absolute', conceptText(decoyBytes.length, [refLine(`atom://sha256:${planted}`, 'Raw', 0, decoyBytes.length)]), refused, badUri);
  add('uri-suffix', conceptText(decoyBytes.length, [refLine(`atom://sha256:${plantedName}/../../../../${path.relative(victimAtoms, planted)}`, 'Raw', 0, decoyBytes.length)]), refused, badUri);
  add('uri-nonhex', conceptText(5, [refLine(`atom://sha256:${plantedName.slice(0, 63)}g`, 'Raw', 0, 5)]), refused, badUri);
  add('uri-uppercase', conceptText(decoyBytes.length, [refLine(`atom://sha256:${plantedName.toUpperCase()}`, 'Raw', 0, decoyBytes.length)]), refused, badUri);
  // Absurd sizes and offsets, spans that do not add up.
  add('size-1e18', conceptText('1000000000000000000', [refLine(uri(plantedName), 'Raw', 0, '1000000000000000000')]), refused, /size must be a whole number of bytes/);
  add('size-float', conceptText('1e18', [refLine(uri(plantedName), 'Raw', 0, '1e18')]), refused, /size must be a whole number of bytes/);
  add('offset-absurd', conceptText(5, [refLine(uri(plantedName), 'Raw', '1000000000000000000', 5)]), refused, /content_refs\[0\]\.offset must be 0/);
  add('size-negative', conceptText(5, [refLine(uri(plantedName), 'Raw', 0, -5)]), refused, /content_refs\[0\]\.size must be positive/);
  add('sizes-gap', conceptText(300, [refLine(uri(plantedName), 'Raw', 0, 100), refLine(uri(plantedName), 'Raw', 100, 100)]), refused, /content_refs cover 200 bytes but size is 300/);
  add('too-large', conceptText(0, []) + `${'x'.repeat(1024 * 1024)}\n`, refused, /larger than 1 MiB/);
  // Refs that parse, whose atoms (served by the attacker's store) do not match them.
  const short = atom(1000);
  add('atom-shorter', conceptText(1010, [refLine(uri(short.hash), 'Raw', 0, 1010)]), new RegExp(`atom ${short.hash} holds 1000 bytes but the concept expects 1010`));
  const long = atom(1000);
  add('atom-longer', conceptText(990, [refLine(uri(long.hash), 'Raw', 0, 990)]), new RegExp(`atom ${long.hash} from .*larger than the 990 bytes expected`));
  const wrongOid = atom(2000);
  add('oid-lies', conceptText(2000, [refLine(uri(wrongOid.hash), 'Raw', 0, 2000)]), /reconstructed bytes do not match the concept/);
  // Manifests: sizes that do not add up, an absurd child size, lines that do not parse, nesting.
  const inSum = atom(1000);
  const sumManifest = plantAtom(attackerStore, manifest([`Raw 1000 ${inSum.hash}`]));
  add('manifest-sum', conceptText(1500, [refLine(uri(sumManifest), 'Manifest', 0, 1500)]), new RegExp(`manifest atom ${sumManifest} covers 1000 bytes but its ref says 1500`));
  const inHuge = atom(1000);
  const huge = 2 ** 48;
  const hugeManifest = plantAtom(attackerStore, manifest([`Raw ${huge} ${inHuge.hash}`]));
  add('manifest-absurd-size', conceptText(huge, [refLine(uri(hugeManifest), 'Manifest', 0, huge)]), new RegExp(`atom ${inHuge.hash} holds 1000 bytes but the concept expects ${huge}`));
  const malformed = plantAtom(attackerStore, Buffer.from('panini-manifest 1\nRaw 5 ../../../../etc/passwd\n'));
  add('manifest-malformed', conceptText(5, [refLine(uri(malformed), 'Manifest', 0, 5)]), new RegExp(`manifest atom ${malformed} is malformed: line 2`));
  const deepLeaf = atom(100);
  let deep = plantAtom(attackerStore, manifest([`Raw 100 ${deepLeaf.hash}`]));
  for (let i = 1; i < 13; i++) deep = plantAtom(attackerStore, manifest([`Manifest 100 ${deep}`]));
  add('manifest-deep', conceptText(100, [refLine(uri(deep), 'Manifest', 0, 100)]), /manifest tree deeper than 12 levels/);
  // "A manifest that contains itself": content addressing makes a real one impossible (its bytes
  // would have to hash to a name written inside them), so a loop can only be served under a name
  // that is not its hash: by the attacker's remote, or planted in the victim's own store.
  const loopName = sha256(Buffer.from('a manifest listing itself, on the remote'));
  plantAtom(attackerStore, manifest([`Manifest 10 ${loopName}`]), loopName);
  add('manifest-loop-remote', conceptText(10, [refLine(uri(loopName), 'Manifest', 0, 10)]), new RegExp(`served \\d+ bytes for atom ${loopName} that hash to [0-9a-f]{64}; they were not stored`));
  const plantedLoop = sha256(Buffer.from('a manifest listing itself, in the victim store'));
  add('manifest-loop-local', conceptText(10, [refLine(uri(plantedLoop), 'Manifest', 0, 10)]), new RegExp(`atom ${plantedLoop} is corrupt`));

  // The positive control: the js payload is live code that gray-matter's own engine would run.
  const control = sb.path('control-marker');
  matter(`---js\n${jsBody.replace(JSON.stringify(marker), JSON.stringify(control))}\n---\n`);
  assert.ok(existsSync(control), 'the js payload runs when evaluated (so its absence below means it was not)');
  rmSync(control);

  for (const p of payloads) {
    const oid = sb.git(attacker, ['hash-object', '-w', '--stdin'], { input: p.text }).trim();
    sb.git(attacker, ['update-index', '--add', '--cacheinfo', `100644,${oid},${p.path}`]);
  }
  sb.git(attacker, ['commit', '-q', '-m', 'innocuous media']);
  const attackerIndex = sb.git(attacker, ['ls-files', '-s']);

  // --- The victim: clone, install, index filled from HEAD, nothing checked out yet --------------
  sb.git(sb.root, ['clone', '-q', '--no-checkout', pathToFileURL(attacker).href, victim]);
  sb.panini(victim, ['install', '--local']);
  sb.git(victim, ['reset', '-q']);
  assert.equal(sb.git(victim, ['ls-files', '-s']), attackerIndex);
  // The victim's store holds a corrupt atom (simulating one fetched or damaged before): a manifest listing itself.
  plantAtom(victimStore, manifest([`Manifest 10 ${plantedLoop}`]), plantedLoop);

  const inStore = (rel: string): boolean => rel === 'victim/.git/panini' || rel.startsWith('victim/.git/panini/');
  const tracker = readTracker([planted, path.join(decoy, 'secret.txt')], sb.root);
  const before = snapshotTree(sb.root, inStore);

  for (const p of payloads) {
    const t0 = Date.now();
    const r = sb.tryGit(victim, ['checkout', '--', p.path], { timeoutMs: 30_000 });
    const context = `${p.path}:\n${r.stderr}`;
    assert.notEqual(r.status, 0, `checkout of ${context}`);
    assert.ok(r.stderr.includes(`git-panini: ${p.path}: `), `the error names the file: ${context}`);
    for (const re of p.expect) assert.match(r.stderr, re, context);
    assert.match(r.stderr, /hint: \S/, `says what to do: ${context}`);
    assert.match(r.stderr, new RegExp(`fatal: ${p.path.replace('.', '\\.')}: smudge filter panini failed`), context);
    assert.equal(existsSync(path.join(victim, p.path)), false, `nothing written in the worktree for ${p.path}`);
    assert.ok(Date.now() - t0 < 15_000, `${p.path} took ${Date.now() - t0} ms`);
  }

  assert.equal(existsSync(marker), false, 'no payload ran');
  if (tracker.works) assert.deepEqual(tracker.read(), [], 'files outside the store were read');
  else t.diagnostic('this file system records no access times: reads outside the store not checked');
  assert.deepEqual(diffSnapshots(before, snapshotTree(sb.root, inStore)), [], 'nothing outside the atom store changed, Git\'s index included');
  assert.equal(sb.git(victim, ['ls-files', '-s']), attackerIndex, 'the index holds the attacker\'s blobs');
  assert.equal(sb.tryGit(victim, ['diff', '--cached', '--quiet']).status, 0, 'nothing staged');
  const status = sb.tryGit(victim, ['status', '--porcelain']);
  assert.equal(status.status, 0, status.stderr);
  assert.equal(existsSync(path.join(decoy, 'stolen-store')), false, '.paniniconfig cannot move the store');

  // The store: only atoms that hash to their names (the planted corrupt one aside), no temp files.
  rmSync(path.join(victimAtoms, plantedLoop.slice(0, 2), plantedLoop.slice(2, 4), plantedLoop));
  const stored = assertStoreClean(victimStore);
  assert.ok(stored.has(short.hash), 'the attacker\'s well-formed atoms were fetched into the victim\'s store');
  for (const refusedAtom of [loopName, long.hash]) assert.ok(!stored.has(refusedAtom), `${refusedAtom} was refused, so never stored`);

  // The honest file checks out: the refusals above were the payloads', not the setup's.
  const ok = sb.tryGit(victim, ['checkout', '--', 'ok.bin']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(sha256(readFileSync(path.join(victim, 'ok.bin'))), sha256(honest));

  // --- A plain `git clone` with git-panini installed globally: the first hostile file stops the
  // checkout with a clear message (Git keeps the repository); nothing outside it changes. ------
  const globalConfig = sb.path('victim-gitconfig');
  writeFileSync(globalConfig, '');
  const env = { GIT_CONFIG_GLOBAL: globalConfig };
  sb.git(sb.root, ['panini', 'install', '--global'], { env });
  const cloned = sb.path('victim-clone');
  const notClone = (rel: string): boolean => rel === 'victim-clone' || rel.startsWith('victim-clone/') || inStore(rel) || rel === 'victim/ok.bin' || rel === 'victim/.git/index';
  const beforeClone = snapshotTree(sb.root, (rel) => notClone(rel) || rel === 'victim-gitconfig');
  const clone = sb.tryGit(sb.root, ['clone', pathToFileURL(attacker).href, cloned], { env, timeoutMs: 60_000 });
  assert.notEqual(clone.status, 0, 'the clone reports the failed checkout');
  assert.match(clone.stderr, /git-panini: [\w-]+\.bin: .+\n\s+hint: \S/, clone.stderr);
  assert.match(clone.stderr, /smudge filter panini failed/);
  assert.match(clone.stderr, /Clone succeeded, but checkout failed/);
  assert.equal(existsSync(marker), false, 'no payload ran');
  assert.deepEqual(diffSnapshots(beforeClone, snapshotTree(sb.root, (rel) => notClone(rel) || rel === 'victim-gitconfig')), [], 'nothing outside the clone changed');
  const cloneStore = path.join(cloned, '.git', 'panini');
  assertStoreClean(cloneStore);
  const cloneStatus = sb.tryGit(cloned, ['status', '--porcelain'], { env });
  assert.equal(cloneStatus.status, 0, cloneStatus.stderr);
  for (const p of payloads) {
    const file = path.join(cloned, p.path);
    if (existsSync(file)) assert.fail(`${p.path} was written (${statSync(file).size} bytes)`);
  }
  t.diagnostic(`${payloads.length} hostile files, ${Date.now() - started} ms`);
});
