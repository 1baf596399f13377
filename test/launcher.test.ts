/**
 * The launcher bin/git-panini (what `npm install -g` links onto PATH): Node starts without parsing
 * NODE_EXTRA_CA_CERTS, yet HTTPS to an S3 store signed by a private CA named only there still works,
 * for the pre-push hook and for the filter that a clone starts.
 * A reader closing the pipe early ends any command quietly.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { cliPath, hermeticEnv, tempDir } from './helpers/cli.js';
import { fixturesDir, readFixture } from './helpers/fixtures.js';
import { GitSandbox, sha256, sha256File } from './helpers/git.js';
import { S3_CREDENTIALS, startS3Server } from './helpers/s3-server.js';

const NODE_WARNING = /Ignoring extra certs/;

test('through the launcher, Node starts without reading NODE_EXTRA_CA_CERTS', (t) => {
  const sb = new GitSandbox(t.after.bind(t));
  const env = { NODE_EXTRA_CA_CERTS: sb.path('no-such-bundle.pem') };
  const direct = spawnSync(process.execPath, [cliPath, 'version'], { env: hermeticEnv(env) });
  assert.match(direct.stderr.toString(), NODE_WARNING, 'Node itself reads the file as it starts');
  const launched = spawnSync('git-panini', ['version'], { env: hermeticEnv({ ...sb.env, ...env }) });
  assert.equal(launched.status, 0, launched.stderr.toString());
  assert.match(launched.stdout.toString(), /^git-panini /);
  assert.doesNotMatch(launched.stderr.toString(), NODE_WARNING);
});

test('a reader that closes the pipe early (`| head`) ends the command quietly, with SIGPIPE\'s status', () => {
  // `true` exits before Node has started, so the first write meets a closed pipe.
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${cliPath}" help | true; exit \${PIPESTATUS[0]}`], { env: hermeticEnv() });
  assert.equal(r.stderr.toString(), '', 'no stack trace');
  assert.equal(r.status, 141);
});

test('S3 over HTTPS with a private CA given only in NODE_EXTRA_CA_CERTS: push and clone', { timeout: 120_000 }, async (t) => {
  const certs = tempDir('panini-tls-');
  t.after(certs.dispose);
  const keyFile = path.join(certs.dir, 'key.pem');
  const certFile = path.join(certs.dir, 'cert.pem');
  const made = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=git-panini test CA', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ]);
  assert.equal(made.status, 0, `openssl could not make the test certificate: ${made.stderr}`);
  const s3 = await startS3Server({ tls: { keyFile, certFile } });
  t.after(() => s3.stop());

  const sb = new GitSandbox(t.after.bind(t));
  const origin = sb.initRepo('origin.git', { bare: true });
  const work = sb.initRepo('work');
  sb.panini(work, ['track', '*.png']);
  writeFileSync(path.join(work, '.paniniconfig'), `[panini]\n\turl = s3://${s3.bucket}/tls\n[panini "s3"]\n\tendpoint = ${s3.endpoint}\n\tforcePathStyle = true\n`);
  copyFileSync(path.join(fixturesDir, 'photo.png'), path.join(work, 'photo.png'));
  sb.git(work, ['add', '.']);
  sb.git(work, ['commit', '-q', '-m', 'photo']);
  sb.git(work, ['remote', 'add', 'origin', origin]);

  const untrusted = sb.tryGit(work, ['push', '-q', 'origin', 'main'], { env: S3_CREDENTIALS });
  assert.notEqual(untrusted.status, 0, 'without the CA the hook cannot reach the store');
  assert.match(untrusted.stderr, /TLS certificate is not trusted[\s\S]*NODE_EXTRA_CA_CERTS/);

  const trusted = { ...S3_CREDENTIALS, NODE_EXTRA_CA_CERTS: certFile };
  sb.git(work, ['push', '-q', 'origin', 'main'], { env: trusted });
  const { dir: clone, checkout } = sb.clone(origin, 'clone', { env: trusted });
  assert.equal(checkout.status, 0, checkout.stderr);
  assert.equal(sha256File(path.join(clone, 'photo.png')), sha256(readFixture('photo.png')));
});
