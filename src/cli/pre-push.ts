/**
 * Git's pre-push hook (installed by `git panini install`): before Git sends refs, uploads every atom
 * the pushed commits need that the remote store lacks. Git passes the remote's name and URL as
 * arguments and one line per ref on stdin: `<local ref> <local sha> <remote ref> <remote sha>`.
 * A non-zero exit makes Git refuse the push.
 */
import { isTerminal, readFd } from '../io.js';
import { formatBytes } from './stats.js';
import { openContext } from './context.js';
import { conceptsInCommits, isLocalCommit, ZERO_OID } from '../transfer/commits.js';
import { pushConcepts } from '../transfer/push.js';

export async function run(args: string[]): Promise<number> {
  const [remoteName = '', remoteUrl = remoteName] = args;
  const updates = readStdin().split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 4);
  const ctx = openContext();
  const cwd = ctx.repo?.top ?? ctx.repo?.commonDir;
  if (!cwd) return 0;
  const include = updates.map((f) => f[1]!).filter((sha) => !ZERO_OID.test(sha)); // all zeros: a deleted ref
  const exclude = updates.map((f) => f[3]!).filter((sha) => !ZERO_OID.test(sha) && isLocalCommit(cwd, sha));
  // What the remote-tracking refs say the remote has. Git passes a bare URL as both arguments
  // (githooks(5)); a named remote has remote-tracking refs.
  if (remoteName && remoteName !== remoteUrl) exclude.push(`--remotes=${remoteName}`);
  const warn = (line: string): void => void process.stderr.write(line + '\n');
  const concepts = conceptsInCommits(cwd, include, exclude, warn);
  if (concepts.length === 0) return 0;
  if (!ctx.config.get('panini.url')) {
    warn(`git-panini: no remote store is configured (panini.url): the atoms of ${concepts.length} file(s) in this push stay in this clone only, and clones will get their concepts, not their bytes.`);
    warn('  set panini.url (commit it in .paniniconfig so clones find it), then run `git panini push`.');
    return 0;
  }
  const result = await pushConcepts(ctx, concepts, { label: 'git-panini: uploading atoms' });
  if (result.uploaded > 0 && isTerminal(2)) warn(`git-panini: uploaded ${result.uploaded} atoms (${formatBytes(result.bytes)}); ${result.needed - result.uploaded} were already in the remote store`);
  return 0;
}

function readStdin(): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (let n = readFd(0, buf); n > 0; n = readFd(0, buf)) chunks.push(Buffer.from(buf.subarray(0, n)));
  return Buffer.concat(chunks).toString('utf8');
}
