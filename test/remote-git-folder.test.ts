/** git push / clone / fetch / pull end to end with a shared-folder store (see helpers/git-remote-suite.ts). */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FolderBackend } from '../src/store/folder.js';
import { tempDir } from './helpers/cli.js';
import { defineGitEndToEnd } from './helpers/git-remote-suite.js';
import { remoteAtoms } from './helpers/remote.js';

const { dir: root, dispose } = tempDir('panini-git-folder-');
after(dispose);
let count = 0;

defineGitEndToEnd('folder', {
  async freshConfig() {
    const dir = path.join(root, `store-${++count}`);
    mkdirSync(dir);
    return `[panini]\n\turl = ${pathToFileURL(dir).href}\n`;
  },
  env: {},
  async countAtoms(config) {
    const url = /url = (\S+)/.exec(config)![1]!;
    return (await remoteAtoms(new FolderBackend(fileURLToPath(url)))).size;
  },
});
