#!/usr/bin/env node
/**
 * `git panini <command>`: dispatches to one module per command, loaded on demand so Git's many
 * short calls (hooks, single-shot filters) pay only for what they use.
 */
import '../extra-ca-certs.js';
import { errorMessage } from '../errors.js';

type CommandModule = { run(args: string[]): Promise<number> | number };

const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  clean: () => import('./clean.js'),
  smudge: () => import('./smudge.js'),
  'filter-process': () => import('./filter-process.js'),
  'pre-push': () => import('./pre-push.js'),
  push: () => import('./push.js'),
  fetch: () => import('./fetch.js'),
  pull: () => import('./pull.js'),
  transfer: () => import('./transfer.js'),
  install: () => import('./install.js'),
  uninstall: () => import('./uninstall.js'),
  track: () => import('./track.js'),
  untrack: () => import('./untrack.js'),
  status: () => import('./status.js'),
  'ls-files': () => import('./ls-files.js'),
  env: () => import('./env.js'),
  'add-content': () => import('./add-content.js'),
  demo: () => import('./demo.js'),
  'get-content': () => import('./get-content.js'),
  'list-atoms': () => import('./list-atoms.js'),
  'verify-content': () => import('./verify-content.js'),
  stats: () => import('./stats.js'),
  gc: () => import('./gc.js'),
  'gc-atoms': () => import('./gc.js'),
  fsck: () => import('./fsck.js'),
  help: () => import('./help.js'),
  version: () => import('./help.js').then((m) => ({ run: m.version })),
};

async function main(argv: string[]): Promise<number> {
  const [name = 'help', ...args] = argv;
  const load = COMMANDS[name === '--help' || name === '-h' ? 'help' : name === '--version' ? 'version' : name];
  if (!load) {
    process.stderr.write(`git-panini: '${name}' is not a git-panini command. See 'git panini help'.\n`);
    return 2;
  }
  return (await load()).run(args);
}

/**
 * Commands that write to fd 1 themselves (Git's filters): they never make `process.stdout`, whose
 * stream for a pipe costs ~2 ms of Node's modules at every start.
 */
const RAW_STDOUT = new Set(['clean', 'smudge', 'filter-process']);

// A reader that stops early (`git panini ls-files | head`) closes the pipe: stop quietly with
// SIGPIPE's status, as Git does, rather than with a stack trace.
if (!RAW_STDOUT.has(process.argv[2] ?? '')) {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(141);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`git-panini: ${errorMessage(err)}\n`);
    if (process.env.PANINI_TRACE) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    process.exitCode = 1;
  },
);
