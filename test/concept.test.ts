/**
 * Concept parsing is the door a clone comes in by: it must read YAML only, never run code, stay
 * fast on hostile YAML, and refuse any ref that could reach outside the store or not add up.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ContentRef } from '../src/atom.js';
import { buildConcept } from '../src/concept/build.js';
import { parseConcept, renderConcept, type Concept } from '../src/concept/concept.js';
import { decodeManifest, decodeTrackManifest, encodeManifest, expandRefs } from '../src/concept/manifest.js';
import { PaniniError } from '../src/errors.js';
import { sha256Hex } from '../src/hash.js';
import { missingAtoms, planLeaves } from '../src/reconstruct/reconstruct.js';
import { BufferSource } from '../src/source.js';
import { LocalStore } from '../src/store/local.js';
import { readFixture } from './helpers/fixtures.js';
import { runCli, tempDir, tempRepo } from './helpers/cli.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = '0123456789abcdef'.repeat(4);

/** A concept front matter with the given lines after the standard header. */
function frontMatter(lines: string[], header = { panini: '1', oid: `sha256:${HASH_A}`, size: '10' }): string {
  return ['---', `panini: ${header.panini}`, `oid: ${header.oid}`, `size: ${header.size}`, 'format: "binary"', ...lines, '---', ''].join('\n');
}

function ref(fields: Record<string, string | number>): string {
  return `  - {${Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join(', ')}}`;
}

const goodRef = { uri: `"atom://sha256:${HASH_A}"`, type: 'Raw', offset: 0, size: 10 };

function assertRefused(text: string, message: RegExp): void {
  const started = Date.now();
  assert.throws(() => parseConcept(text), (err: unknown) => {
    assert.ok(err instanceof PaniniError, `expected a PaniniError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
  assert.ok(Date.now() - started < 2000, 'refusal took too long');
}

describe('only YAML front matter is read, and nothing is evaluated', () => {
  const scratch = tempDir('panini-concept-');
  after(scratch.dispose);
  const marker = path.join(scratch.dir, 'evaluated');
  const g = globalThis as Record<string, unknown>;
  // Each payload, if evaluated, creates the marker file or sets a global.
  const jsPayload = `{ panini: 1, x: (globalThis.PANINI_PWNED = 1, require('fs').writeFileSync(${JSON.stringify(marker)}, 'js')) }`;
  const coffeePayload = `panini: 1\nx: do -> globalThis.PANINI_PWNED = 1`;
  const jsonPayload = `{"panini": 1, "oid": "sha256:${HASH_A}", "size": 0, "format": "x", "content_refs": [], "x": "\`touch ${marker}\`"}`;
  const cases: [string, string][] = [
    ['js', jsPayload], ['javascript', jsPayload], ['JS', jsPayload], [' js ', jsPayload],
    ['coffee', coffeePayload], ['coffeescript', coffeePayload], ['cson', coffeePayload],
    ['json', jsonPayload], ['toml', 'panini = 1'], ['unknown-engine', 'panini: 1'],
  ];
  for (const [lang, body] of cases) {
    test(`---${lang} is refused`, () => {
      for (const eol of ['\n', '\r\n']) {
        const text = `---${lang}${eol}${body.split('\n').join(eol)}${eol}---${eol}# body${eol}`;
        assertRefused(text, new RegExp(`front matter in '${lang.trim().toLowerCase()}' is refused`));
      }
      assert.equal(existsSync(marker), false, 'the payload ran');
      assert.equal(g.PANINI_PWNED, undefined, 'the payload ran');
    });
  }

  test('YAML tags that construct code are refused', () => {
    const text = frontMatter(['x: !!js/function "function () { globalThis.PANINI_PWNED = 1 }"', 'content_refs: []'], { panini: '1', oid: `sha256:${HASH_A}`, size: '0' });
    assertRefused(text, /not valid YAML/);
    assertRefused(text.replace('!!js/function', '!<tag:yaml.org,2002:js/function>'), /not valid YAML/);
    assert.equal(g.PANINI_PWNED, undefined);
  });

  test('__proto__ in front matter does not reach Object.prototype', () => {
    const text = frontMatter(['__proto__: {polluted: 1}', 'constructor: {prototype: {polluted: 1}}', 'content_refs:', ref(goodRef)]);
    try {
      parseConcept(text);
    } catch (err) {
      assert.ok(err instanceof PaniniError);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('smudge refuses a ---js concept without running it', () => {
    const repo = tempRepo(after);
    const text = `---js\n${jsPayload.replace('{ panini: 1,', '{ panini: 1, content_refs: [],')}\n---\n`;
    const r = runCli(['smudge', 'x.bin'], { cwd: repo.dir, input: text });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /front matter in 'js' is refused/);
    assert.equal(r.stdout.length, 0);
    assert.equal(existsSync(marker), false, 'the payload ran');
  });
});

describe('hostile YAML is harmless and fast', () => {
  /** Billion laughs: 9 levels of 9 aliases each (9^9 strings if expanded). */
  function laughs(key: string, merge: boolean): string[] {
    const lines = [`${key}0: &l0 ${merge ? '{a: lol, b: lol}' : '[lol, lol, lol, lol, lol, lol, lol, lol, lol]'}`];
    for (let i = 1; i <= 9; i++) {
      const prev = `*l${i - 1}`;
      lines.push(merge
        ? `${key}${i}: &l${i} {<<: [${Array(9).fill(prev).join(', ')}], k${i}: ${prev}}`
        : `${key}${i}: &l${i} [${Array(9).fill(prev).join(', ')}]`);
    }
    return lines;
  }

  for (const merge of [false, true]) {
    const kind = merge ? 'merge keys' : 'aliases';
    test(`billion laughs with ${kind} in extra keys`, () => {
      const text = frontMatter([...laughs('lol', merge), 'content_refs:', ref(goodRef)]);
      const started = Date.now();
      try {
        const c = parseConcept(text);
        assert.equal(c.size, 10);
      } catch (err) {
        assert.ok(err instanceof PaniniError, String(err));
      }
      assert.ok(Date.now() - started < 2000, `parsing took ${Date.now() - started} ms`);
    });

    test(`billion laughs with ${kind} as content_refs and info`, () => {
      const lines = laughs('lol', merge);
      assertRefused(frontMatter([...lines, 'content_refs: *l9']), /content_refs/);
      const started = Date.now();
      try {
        const c = parseConcept(frontMatter([...lines, 'info: *l9', 'content_refs:', ref(goodRef)]));
        for (const v of Object.values(c.info)) assert.ok(typeof v === 'string' || typeof v === 'number', 'info kept a nested value');
      } catch (err) {
        assert.match(String(err), /info must be a mapping/);
      }
      assert.ok(Date.now() - started < 2000, `parsing took ${Date.now() - started} ms`);
    });
  }

  test('a concept over 1 MiB is refused before parsing', () => {
    const filler = `# ${'x'.repeat(1024 * 1024)}\n`;
    assertRefused(frontMatter(['content_refs:', ref(goodRef)]) + filler, /larger than 1 MiB/);
  });
});

describe('refs are validated before anything touches the store', () => {
  const uriCases: [string, string][] = [
    ['path traversal', '"atom://sha256:../../etc/passwd"'],
    ['traversal padded to 64 characters', `"atom://sha256:../../../../${'a'.repeat(52)}"`],
    ['upper-case hex', `"atom://sha256:${HASH_A.toUpperCase()}"`],
    ['non-hex', `"atom://sha256:${'g'.repeat(64)}"`],
    ['63 digits', `"atom://sha256:${'a'.repeat(63)}"`],
    ['65 digits', `"atom://sha256:${'a'.repeat(65)}"`],
    ['a trailing newline', `"atom://sha256:${HASH_A}\\n"`],
    ['a query', `"atom://sha256:${HASH_A}?x=1"`],
    ['another algorithm', `"atom://sha1:${'a'.repeat(40)}"`],
    ['another scheme', '"file:///etc/passwd"'],
    ['no uri', '~'],
    ['a number', '12345'],
  ];
  for (const [label, uri] of uriCases) {
    test(`uri with ${label} is refused`, () => {
      assertRefused(frontMatter(['content_refs:', ref({ ...goodRef, uri })]), /content_refs\[0\]\.uri must be atom:\/\/sha256:<64 lowercase hex>/);
    });
  }

  const numberCases: [string, Record<string, string | number>[], RegExp][] = [
    ['a negative offset', [{ ...goodRef, offset: -1 }], /offset must be 0/],
    ['an offset past 2^53', [{ ...goodRef, offset: 2 ** 53 + 2 }], /offset must be 0/],
    ['a fractional offset', [{ ...goodRef, offset: 0.5 }], /offset must be 0/],
    ['an offset given as text', [{ ...goodRef, offset: '"0"' }], /offset must be 0/],
    ['a hexadecimal offset of 1', [{ ...goodRef, offset: '0x1' }], /offset must be 0/],
    ['a zero size', [{ ...goodRef, size: 0 }], /size must be positive/],
    ['a negative size', [{ ...goodRef, size: -10 }], /size must be positive/],
    ['a fractional size', [{ ...goodRef, size: 9.5 }], /size must be positive/],
    ['an infinite size', [{ ...goodRef, size: '.inf' }], /size must be positive/],
    ['a size past 2^53', [{ ...goodRef, size: 2 ** 53 + 2 }], /size must be positive/],
    ['a size past the file', [{ ...goodRef, size: 11 }], /size must be positive and stay within/],
    ['a gap between refs', [{ ...goodRef, size: 4 }, { ...goodRef, offset: 5, size: 5 }], /content_refs\[1\]\.offset must be 4/],
    ['overlapping refs', [{ ...goodRef, size: 6 }, { ...goodRef, offset: 4, size: 6 }], /content_refs\[1\]\.offset must be 6/],
    ['refs out of order', [{ ...goodRef, offset: 5, size: 5 }, { ...goodRef, offset: 0, size: 5 }], /content_refs\[0\]\.offset must be 0/],
    ['refs that fall short of the size', [{ ...goodRef, size: 9 }], /content_refs cover 9 bytes but size is 10/],
  ];
  for (const [label, refs, message] of numberCases) {
    test(`${label} is refused`, () => {
      assertRefused(frontMatter(['content_refs:', ...refs.map(ref)]), message);
    });
  }

  for (const type of ['Evil', 'raw', '__proto__', 'constructor', '"Raw "', '~', '1']) {
    test(`atom type ${type} is refused`, () => {
      assertRefused(frontMatter(['content_refs:', ref({ ...goodRef, type })]), /content_refs\[0\]\.type .* is not an atom type/);
    });
  }

  test('a ref that is not a mapping, or refs that are not a list', () => {
    assertRefused(frontMatter(['content_refs:', `  - "atom://sha256:${HASH_A}"`]), /content_refs\[0\] is not a mapping/);
    assertRefused(frontMatter([`content_refs: "atom://sha256:${HASH_A}"`]), /content_refs must be a list/);
    assertRefused(frontMatter([]), /content_refs must be a list/);
  });

  test('too many refs', () => {
    const refs = Array.from({ length: 5000 }, (_, i) => ref({ ...goodRef, offset: i, size: 1 }));
    assertRefused(frontMatter(['content_refs:', ...refs], { panini: '1', oid: `sha256:${HASH_A}`, size: '5000' }), /more than 4096 content_refs/);
  });

  const headerCases: [string, { panini: string; oid: string; size: string }, RegExp][] = [
    ['an unknown version', { panini: '2', oid: `sha256:${HASH_A}`, size: '10' }, /unknown format version 2/],
    ['a version given as text', { panini: '"1"', oid: `sha256:${HASH_A}`, size: '10' }, /unknown format version "1"/],
    ['an oid without its algorithm', { panini: '1', oid: HASH_A, size: '10' }, /oid must be sha256:<64 lowercase hex>/],
    ['an upper-case oid', { panini: '1', oid: `sha256:${HASH_A.toUpperCase()}`, size: '10' }, /oid must be/],
    ['a traversal oid', { panini: '1', oid: 'sha256:../../../etc/passwd', size: '10' }, /oid must be/],
    ['a negative size', { panini: '1', oid: `sha256:${HASH_A}`, size: '-10' }, /size must be a whole number/],
    ['a fractional size', { panini: '1', oid: `sha256:${HASH_A}`, size: '10.5' }, /size must be a whole number/],
    ['a size past 2^53', { panini: '1', oid: `sha256:${HASH_A}`, size: String(2 ** 53 + 2) }, /size must be a whole number/],
  ];
  for (const [label, header, message] of headerCases) {
    test(`${label} is refused`, () => {
      assertRefused(frontMatter(['content_refs:', ref(goodRef)], header), message);
    });
  }

  test('the messages say what to do', () => {
    try {
      parseConcept(frontMatter(['content_refs:', ref({ ...goodRef, uri: '"atom://sha256:../../etc/passwd"' })]));
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof PaniniError);
      assert.match(err.message, /^not a valid git-panini concept: /);
      assert.ok(err.hint && err.hint.length > 10, 'no hint');
    }
  });
});

describe('render → parse round-trips', () => {
  function roundTrip(c: Pick<Concept, 'oid' | 'size' | 'format' | 'info' | 'refs'>): Concept {
    const text = renderConcept(c, { Raw: c.refs.length });
    const parsed = parseConcept(text);
    assert.equal(parsed.oid, c.oid);
    assert.equal(parsed.size, c.size);
    assert.equal(parsed.format, c.format);
    assert.deepEqual(parsed.info, c.info);
    assert.deepEqual(parsed.refs, c.refs);
    assert.equal(renderConcept(parsed, { Raw: c.refs.length }), text, 'rendering the parsed concept changed it');
    return parsed;
  }

  test('every atom type, awkward info strings and numbers', () => {
    const types: ContentRef['type'][] = ['Container', 'Metadata', 'ImageData', 'IFrame', 'PFrame', 'BFrame', 'AudioChunk', 'Subtitle', 'Compressed', 'Raw', 'Manifest'];
    const refs: ContentRef[] = types.map((type, i) => ({ hash: i % 2 ? HASH_A : HASH_B, type, offset: i * 1000, size: 1000 }));
    roundTrip({
      oid: HASH_B,
      size: types.length * 1000,
      format: 'a "quoted": format',
      info: {
        width: 4032, height: 3024, duration_s: 5.023, zero: 0, negative: -7, big: 2 ** 53 - 1, tiny: 1e-7,
        title: 'line one\nline two\t"quoted" \\ # not a comment: still text',
        unicode: 'café 🎬 \u2028', yes: 'yes', nothing: 'null', number_text: '0x1F', empty: '',
      },
      refs,
    });
  });

  test('an empty file', () => {
    roundTrip({ oid: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0, format: 'empty', info: {}, refs: [] });
  });

  test('refs of the largest sizes a concept allows', () => {
    const size = 2 ** 48;
    roundTrip({ oid: HASH_A, size, format: 'binary', info: {}, refs: [{ hash: HASH_A, type: 'Manifest', offset: 0, size: size - 1 }, { hash: HASH_B, type: 'Raw', offset: size - 1, size: 1 }] });
  });

  test('concepts built from fixtures', () => {
    const scratch = tempDir('panini-concept-');
    after(scratch.dispose);
    const store = new LocalStore(scratch.dir);
    for (const name of ['photo.png', 'photo.jpg', 'bundle-v1.zip', 'course-a.mp4', 'anim.png', 'random.bin']) {
      const built = buildConcept(new BufferSource(readFixture(name)), store);
      const parsed = parseConcept(built.text);
      assert.equal(parsed.size, built.ingest.size, name);
      assert.equal(parsed.oid, built.ingest.oid, name);
      assert.equal(parsed.format, built.ingest.format, name);
      assert.deepEqual(parsed.info, built.ingest.info, name);
      assert.deepEqual(parsed.refs, built.refs, name);
    }
  });
});

describe('a manifest bomb (a few manifests listing the same child over and over)', () => {
  test('the presence check visits each manifest once, a walk after it reads none again, a walk over another reader each once', () => {
    const { dir, dispose } = tempDir('panini-bomb-');
    after(dispose);
    const store = new LocalStore(path.join(dir, 'store'));
    const leafBytes = Buffer.from('x');
    const leaf: ContentRef = { hash: sha256Hex(leafBytes), type: 'Raw', offset: 0, size: 1 };
    store.put(leaf.hash, leafBytes);
    // Four levels of 1,000 copies each: 10^12 bytes declared by four small atoms.
    let level: ContentRef = leaf;
    for (let depth = 0; depth < 4; depth++) {
      const bytes = encodeManifest(Array.from({ length: 1000 }, () => level));
      const hash = sha256Hex(bytes);
      store.put(hash, bytes);
      level = { hash, type: 'Manifest', offset: 0, size: level.size * 1000 };
    }
    let reads = 0;
    const counting = { has: (h: string) => store.has(h), get: (h: string) => (reads++, store.get(h)) };
    const started = Date.now();
    assert.deepEqual(missingAtoms({ refs: [level] }, counting), []);
    assert.equal(reads, 4, 'each manifest read once');
    assert.ok(Date.now() - started < 2000, `presence check took ${Date.now() - started} ms`);
    reads = 0;
    let n = 0;
    for (const _ of expandRefs([level], counting)) if (++n === 100_000) break;
    assert.equal(n, 100_000);
    assert.equal(reads, 0, 'expansion re-uses the manifests the presence check decoded');
    let freshReads = 0;
    const fresh = { has: (h: string) => store.has(h), get: (h: string) => (freshReads++, store.get(h)) };
    n = 0;
    for (const _ of expandRefs([level], fresh)) if (++n === 100_000) break;
    assert.equal(freshReads, 4, 'a walk over another reader reads each manifest once');
    const planning = Date.now();
    assert.equal(planLeaves({ refs: [level] }, store), null, 'too many leaves to plan: the caller walks twice instead');
    assert.ok(Date.now() - planning < 2000, `planning gave up after ${Date.now() - planning} ms`);
  });

  test('a plan lists the leaves in order with the missing ones, or names a missing manifest alone', () => {
    const { dir, dispose } = tempDir('panini-plan-');
    after(dispose);
    const store = new LocalStore(path.join(dir, 'store'));
    const [a, b] = [Buffer.from('leaf a'), Buffer.from('leaf b, not stored')];
    const leafA: ContentRef = { hash: sha256Hex(a), type: 'Raw', offset: 0, size: a.length };
    const leafB: ContentRef = { hash: sha256Hex(b), type: 'Raw', offset: a.length, size: b.length };
    store.put(leafA.hash, a);
    const manifest = encodeManifest([leafA, leafB, leafA]);
    const top: ContentRef = { hash: sha256Hex(manifest), type: 'Manifest', offset: 0, size: 2 * a.length + b.length };
    assert.deepEqual(planLeaves({ refs: [top] }, store)?.missing, [top.hash], 'the manifest is missing: what lies below it is unknown');
    store.put(top.hash, manifest);
    const plan = planLeaves({ refs: [top] }, store)!;
    assert.deepEqual(plan.leaves.map((l) => [l.hash, l.offset]), [[leafA.hash, 0], [leafB.hash, a.length], [leafA.hash, a.length + b.length]]);
    assert.deepEqual(plan.missing, [leafB.hash]);
    assert.deepEqual(plan.missing, missingAtoms({ refs: [top] }, store), 'the same answer as the presence check');
  });
});


describe('manifest atoms are decoded strictly', () => {
  const child = sha256Hex(Buffer.from('a child'));
  const manifest = (...lines: string[]): Buffer => Buffer.from(['panini-manifest 1', ...lines].join('\n') + '\n');

  test('what encodeManifest writes decodes to the same children', () => {
    const children: ContentRef[] = [
      { hash: child, type: 'IFrame', offset: 0, size: 123_456_789_012_345 },
      { hash: sha256Hex(Buffer.from('b')), type: 'AudioChunk', offset: 0, size: 7 },
    ];
    assert.deepEqual(decodeManifest(encodeManifest(children), 'm'), children.map(({ hash, type, size }) => ({ hash, type, size })));
  });

  const refused: [string, Buffer, RegExp][] = [
    ['another header', Buffer.from(`panini-manifest 2\nRaw 5 ${child}\n`), /unknown header/],
    ['no final newline', Buffer.from(`panini-manifest 1\nRaw 5 ${child}`), /missing final newline/],
    ['no children', manifest(), /no children/],
    ['an unknown type', manifest(`Script 5 ${child}`), /line 2/],
    ['two spaces', manifest(`Raw  5 ${child}`), /line 2/],
    ['a space after the size', manifest(`Raw 5  ${child}`), /line 2/],
    ['a trailing space', manifest(`Raw 5 ${child} `), /line 2/],
    ['a size of 16 digits', manifest(`Raw 1234567890123456 ${child}`), /line 2/],
    ['a negative size', manifest(`Raw -5 ${child}`), /line 2/],
    ['a size of zero', manifest(`Raw 0 ${child}`), /line 2: empty child/],
    ['uppercase hex', manifest(`Raw 5 ${child.toUpperCase()}`), /line 2/],
    ['a short hash', manifest(`Raw 5 ${child.slice(1)}`), /line 2/],
    ['a path for a hash', manifest('Raw 5 ../../../../etc/passwd'), /line 2/],
    ['a carriage return', manifest(`Raw 5 ${child}\r`), /line 2/],
    ['an empty line', manifest(`Raw 5 ${child}`, '', `Raw 5 ${child}`), /line 3/],
    ['a bad hash after good lines', manifest(`Raw 5 ${child}`, `Raw 5 ${child}`, `Raw 5 g${child.slice(1)}`), /line 4/],
    ['an unknown type after a good line', manifest(`Raw 5 ${child}`, `Script 5 ${child}`), /line 3/],
  ];
  for (const [what, bytes, why] of refused) {
    test(`refused: ${what}`, () => {
      assert.throws(() => decodeManifest(bytes, 'm'), (err: unknown) => err instanceof PaniniError && /manifest atom m is malformed/.test(err.message) && why.test(err.message));
    });
  }

  const track = (...lines: string[]): Buffer => Buffer.from(['panini-manifest 1 track', ...lines].join('\n') + '\n');
  test('a track manifest: offsets and sizes decoded; each decoder refuses the other kind', () => {
    assert.deepEqual(decodeTrackManifest(track(`IFrame 40 5 ${child}`, `PFrame 90 7 ${child}`), 't'), [
      { type: 'IFrame', offset: 40, size: 5, hash: child },
      { type: 'PFrame', offset: 90, size: 7, hash: child },
    ]);
    assert.throws(() => decodeTrackManifest(manifest(`Raw 5 ${child}`), 't'), /unknown header/);
    assert.throws(() => decodeManifest(track(`Raw 0 5 ${child}`), 'm'), /unknown header/);
  });
  const trackRefused: [string, Buffer, RegExp][] = [
    ['one number', track(`Raw 5 ${child}`), /line 2/],
    ['three numbers', track(`Raw 1 2 3 ${child}`), /line 2/],
    ['offsets not increasing', track(`Raw 10 5 ${child}`, `Raw 10 5 ${child}`), /line 3: offsets must increase/],
    ['a size of zero', track(`Raw 10 0 ${child}`), /line 2: empty child/],
    ['no children', track(), /no children/],
  ];
  for (const [what, bytes, why] of trackRefused) {
    test(`track manifest refused: ${what}`, () => {
      assert.throws(() => decodeTrackManifest(bytes, 't'), (err: unknown) => err instanceof PaniniError && /track manifest atom t is malformed/.test(err.message) && why.test(err.message));
    });
  }
});
