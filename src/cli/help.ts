import { readFileSync } from 'node:fs';

const USAGE = `usage: git panini <command> [options]

Large files stored as deduplicated, content-addressed atoms.

Getting started:
  demo [--keep]              build a throwaway repo from sample media, push, clone, print dedup stats
  install [--local|--global|--system] [--skip-repo]
                             configure the filter driver (global by default) and this repo's hooks
  uninstall [--local|--global|--system]
  track [<pattern>...]       store matching files through git-panini (.gitattributes); no args: list
  untrack <pattern>...
  status [--json]            tracked files: staged vs committed, atoms local or missing
  ls-files [<tree-ish>] [-l] [-s] [--json]
  env                        effective settings and where each comes from

Remote store (panini.url = file:///path or s3://bucket/prefix):
  push [<remote> [<ref>...]] [--all] [--quiet]
                             upload the atoms of commits the Git remote lacks (--all: every ref's history)
  fetch [<ref>...] [--all] [--quiet]
                             download the atoms HEAD's files need (or the refs', or all history)
  pull [--quiet]             fetch, then rebuild tracked files still left as concepts in the worktree
  transfer                   Git LFS custom transfer agent (lfs.standalonetransferagent=panini,
                             lfs.customtransfer.panini.path=git-panini, ...panini.args=transfer)

Knowledge notes:
  add-content <concept.md> <file>      attach a file's atoms to a hand-written note

Plumbing used by Git:
  clean [path]               file bytes on stdin -> concept on stdout
  smudge [path]              concept on stdin -> file bytes on stdout (verified)
  filter-process             long-running filter (filter.panini.process)
  pre-push <remote> <url>    Git's pre-push hook: upload the pushed commits' atoms

Inspecting:
  get-content <path|concept> [--component audio|video|keyframes|metadata] [-o FILE]
                                       rebuild the file, or extract one component (fetches only its atoms)
  list-atoms <path|concept> [--json]   atoms of a file, in file order
  verify-content <path|concept>...     rebuild and check every atom and the file's SHA-256
  stats [--json]                       atoms, bytes stored, logical bytes, dedup ratio by type
  fsck [--all] [--json]                check every atom HEAD and the index need (--all: all gc keeps):
                                       present and hashing right; damaged ones moved to <store>/bad/

Cleaning up:
  gc [--dry-run] [--prune=<date>] [--json] [--remote]   (alias gc-atoms)
                             delete atoms no ref, reflog, stash, index or worktree reaches, once older than
                             the grace period (--prune=now|never|2.weeks.ago|<date>, panini.gc.pruneExpire;
                             panini.gc.reflog=false ignores reflogs); --remote: the same in the remote store,
                             keeping what any Git remote's ref reaches (set panini.gc.exclusiveRemote=true)

Environment:
  PANINI_STORAGE     atom store directory (outside a repository, or to override panini.storage)
  PANINI_SKIP_SMUDGE=1  check out concepts instead of files
  PANINI_TRACE=1     print stack traces on errors, and what the filter process did as it ends
`;

export function run(): number {
  process.stdout.write(USAGE);
  return 0;
}

export function version(): number {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`git-panini ${pkg.version} (node ${process.version})\n`);
  return 0;
}
