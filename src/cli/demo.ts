/**
 * `git panini demo`: a guided tour on a throwaway directory. Builds a repository from the sample
 * media, commits two versions, pushes to a bare origin (atoms go to a shared-folder store named by
 * the committed .paniniconfig), clones it elsewhere, checks both versions out, verifies every byte
 * and prints what deduplication saved.
 */
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { PaniniError } from '../errors.js';
import { git } from '../git/exec.js';
import { parseArgs } from './args.js';
import { formatBytes } from './stats.js';

const MEDIA = fileURLToPath(new URL('../../../demo/media/', import.meta.url));
const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

const V1: [string, string][] = [['photo.png', 'photo.png'], ['photo.jpg', 'photo.jpg'], ['bundle.zip', 'bundle-v1.zip'], ['intro-course.mp4', 'course-a.mp4']];
const V2: [string, string][] = [['photo.png', 'photo-tagged.png'], ['photo.jpg', 'photo-edited-exif.jpg'], ['bundle.zip', 'bundle-v2.zip'], ['intro-course.mp4', 'course-a.mp4'], ['second-course.mp4', 'course-b.mp4']];

export function run(args: string[]): number {
  const { flags } = parseArgs(args, ['keep']);
  const root = mkdtempSync(join(tmpdir(), 'git-panini-demo-'));
  const bin = join(root, 'bin');
  mkdirSync(bin);
  // The demo runs git-panini from this installation, whatever is on PATH.
  writeFileSync(join(bin, 'git-panini'), `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" "$@"\n`);
  chmodSync(join(bin, 'git-panini'), 0o755);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, GIT_CONFIG_NOSYSTEM: '1' };
  const say = (line: string): void => void process.stdout.write(line + '\n');
  const run = (cwd: string, ...cmd: string[]): string => {
    const r = git(cmd, { cwd, env });
    if (r.status !== 0) throw new PaniniError(`demo step \`git ${cmd.join(' ')}\` failed:\n${r.stderr.trim()}`);
    return r.stdout.toString();
  };
  try {
    const studio = join(root, 'studio');
    const origin = join(root, 'origin.git');
    const store = join(root, 'shared-atom-store');
    mkdirSync(studio);
    mkdirSync(store);
    run(root, 'init', '-q', '--bare', '-b', 'main', origin);
    run(studio, 'init', '-q', '-b', 'main');
    run(studio, 'config', 'user.name', 'Demo');
    run(studio, 'config', 'user.email', 'demo@example.invalid');
    say(`# 1. A studio repository (${studio})`);
    say(run(studio, 'panini', 'install', '--local').trim());
    say(run(studio, 'panini', 'track', '*.png', '*.jpg', '*.zip', '*.mp4').trim());
    writeFileSync(join(studio, '.paniniconfig'), `[panini]\n\turl = ${pathToFileURL(store).href}\n`);
    say(`.paniniconfig: panini.url = ${pathToFileURL(store).href}`);

    const place = (files: [string, string][]): void => {
      for (const [name, source] of files) copyFileSync(join(MEDIA, source), join(studio, name));
    };
    place(V1);
    run(studio, 'add', '.');
    run(studio, 'commit', '-q', '-m', 'v1: photo, bundle, first course');
    place(V2);
    run(studio, 'add', '.');
    run(studio, 'commit', '-q', '-m', 'v2: re-tagged photos, bundle update, second course with the same intro');
    say('\n# 2. Two commits; Git stores concepts. `git show HEAD:photo.png`:');
    say(run(studio, 'show', 'HEAD:photo.png').split('\n').slice(0, 12).join('\n') + '\n  ...');
    run(studio, 'remote', 'add', 'origin', origin);
    run(studio, 'push', '-q', 'origin', 'main');
    say('\n# 3. Pushed: the pre-push hook uploaded the atoms to the shared store.');

    const laptop = join(root, 'laptop');
    say(`\n# 4. A fresh clone (${laptop}) — only the committed .paniniconfig tells it where atoms are.`);
    run(root, 'clone', '-q', '-c', 'filter.panini.process=git-panini filter-process', '-c', 'filter.panini.required=true', origin, laptop);
    const check = (files: [string, string][], label: string): void => {
      for (const [name, source] of files) {
        const got = sha256(readFileSync(join(laptop, name)));
        if (got !== sha256(readFileSync(join(MEDIA, source)))) throw new PaniniError(`demo: ${name} in the clone differs from ${source}`);
      }
      say(`${label}: ${files.length} files byte-identical (SHA-256 checked)`);
    };
    check(V2, 'main');
    run(laptop, 'checkout', '-q', 'HEAD~1');
    check(V1, 'HEAD~1');
    run(laptop, 'checkout', '-q', 'main');

    say('\n# 5. Deduplication in the studio\'s store (`git panini stats`):');
    say(run(studio, 'panini', 'stats'));
    const distinct = new Map([...V1, ...V2].map(([, s]) => {
      const bytes = readFileSync(join(MEDIA, s));
      return [sha256(bytes), bytes.length] as const;
    }));
    const whole = [...distinct.values()].reduce((a, b) => a + b, 0);
    say(`Whole-file storage of the ${distinct.size} distinct file versions (what Git LFS keeps): ${formatBytes(whole)}`);
    say(flags.has('keep') ? `\nKept: ${root}` : '\nDone; the demo directory was removed (use --keep to look around).');
    return 0;
  } finally {
    if (!flags.has('keep')) rmSync(root, { recursive: true, force: true });
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
