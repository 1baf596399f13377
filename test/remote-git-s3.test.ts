/**
 * git push / clone / fetch / pull end to end with an S3 store (s3rver on 127.0.0.1): the clone
 * finds the bucket, endpoint and path style in the committed .paniniconfig; credentials come
 * from the environment only (see helpers/git-remote-suite.ts).
 */
import { openRemote } from '../src/store/remote.js';
import { defineGitEndToEnd } from './helpers/git-remote-suite.js';
import { remoteAtoms, storeContext } from './helpers/remote.js';
import { S3_CREDENTIALS, useS3Suite } from './helpers/s3-server.js';

const suite = useS3Suite('panini-git-s3-');
const root = suite.root;
let count = 0;

defineGitEndToEnd('s3', {
  async freshConfig() {
    return `[panini]\n\turl = s3://${suite.s3.bucket}/git-${++count}\n[panini "s3"]\n\tendpoint = ${suite.s3.endpoint}\n\tforcePathStyle = true\n`;
  },
  env: S3_CREDENTIALS,
  async countAtoms(config) {
    const url = /url = (\S+)/.exec(config)![1]!;
    const backend = (await openRemote(storeContext(`${root}/probe`, { 'panini.url': url, 'panini.s3.endpoint': suite.s3.endpoint, 'panini.s3.forcePathStyle': 'true' })))!;
    try {
      return (await remoteAtoms(backend)).size;
    } finally {
      backend.close();
    }
  },
});
