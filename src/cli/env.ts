import { readFileSync } from 'node:fs';
import { FILTER_SETTINGS } from '../git/install.js';
import { gitText } from '../git/exec.js';
import { openContext } from './context.js';
import { SKIP_SMUDGE_ENV } from './smudge.js';
import { DEFAULT_MAX_ATOM_SIZE } from '../store/ingest.js';

/** Effective settings and where each came from (like `git lfs env`). */
export function run(): number {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  const ctx = openContext();
  const lines = [
    `git-panini/${pkg.version} (node ${process.version}; ${gitText(['version'])})`,
    '',
    `LocalWorkingDir=${ctx.repo?.top ?? ''}`,
    `LocalGitCommonDir=${ctx.repo?.commonDir ?? ''}`,
    `LocalStore=${ctx.store.root}`,
    `MaxAtomSize=${ctx.maxAtomSize ?? DEFAULT_MAX_ATOM_SIZE}`,
    `${SKIP_SMUDGE_ENV}=${process.env[SKIP_SMUDGE_ENV] ?? ''}`,
    '',
    'Settings (value  <- origin):',
  ];
  const entries = ctx.config.entries();
  if (entries.length === 0) lines.push('  (none set; defaults apply)');
  for (const [key, s] of entries) lines.push(`  ${key}=${s.value}  <- ${s.origin}`);
  lines.push('', 'Filter driver:');
  for (const [key] of FILTER_SETTINGS) {
    let value = '';
    try {
      value = gitText(['config', '--get', key]);
    } catch {
      value = '(not set: run `git panini install`)';
    }
    lines.push(`  ${key}=${value}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
