/**
 * Effective settings. Precedence, highest first: environment (PANINI_*), git config (any level),
 * the committed .paniniconfig (worktree file, else the index, else HEAD), built-in defaults.
 * A .paniniconfig comes with clones, so it may only set the keys listed in SHARED_KEYS.
 */
import { join } from 'node:path';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { git } from './exec.js';
import type { Repo } from './repo.js';

export interface Setting {
  value: string;
  origin: string;
}

/** Keys a committed .paniniconfig may set: where the shared store is and how to reach it. */
export const SHARED_KEYS = new Set([
  'panini.url', 'panini.s3.endpoint', 'panini.s3.region', 'panini.s3.forcepathstyle', 'panini.concurrency',
  'panini.maxatomsize', 'panini.retries', 'panini.timeout',
]);

const ENV_KEYS: Record<string, string> = {
  PANINI_STORAGE: 'panini.storage',
  PANINI_URL: 'panini.url',
};

export class Config {
  private shared: Map<string, Setting> | undefined;
  /**
   * `settings`: from git config and the environment. `readShared`: the committed .paniniconfig's
   * settings, read at the first look-up that needs them (two git calls a checkout from the local
   * store never needs); they only fill SHARED_KEYS the others leave unset.
   */
  constructor(private readonly settings: Map<string, Setting>, private readonly readShared: () => [string, Setting][] = () => []) {}

  get(key: string): string | undefined {
    const k = key.toLowerCase();
    return (this.settings.get(k) ?? (SHARED_KEYS.has(k) ? this.sharedSettings().get(k) : undefined))?.value;
  }

  getInt<T extends number | undefined>(key: string, fallback: T): number | T {
    const v = this.get(key);
    if (v === undefined) return fallback;
    const m = /^(\d+)\s*([kmg]i?b?)?$/i.exec(v.trim());
    if (!m) return fallback;
    const unit = (m[2] ?? '').toLowerCase()[0];
    const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
    return Number(m[1]) * mult;
  }

  getBool(key: string, fallback: boolean): boolean {
    const v = this.get(key)?.toLowerCase();
    if (v === undefined) return fallback;
    return ['true', 'yes', 'on', '1'].includes(v);
  }

  entries(): [string, Setting][] {
    const all = new Map([...this.sharedSettings(), ...this.settings]);
    return [...all.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  }

  private sharedSettings(): Map<string, Setting> {
    this.shared ??= new Map(this.readShared().filter(([k]) => SHARED_KEYS.has(k)));
    return this.shared;
  }
}

function parseZ(out: Buffer, origin: (first: string) => string | null, withOrigin: boolean): [string, Setting][] {
  const parts = out.toString().split('\0');
  const result: [string, Setting][] = [];
  for (let i = 0; i + (withOrigin ? 1 : 0) < parts.length; i += withOrigin ? 2 : 1) {
    const from = withOrigin ? parts[i]! : '';
    const kv = parts[withOrigin ? i + 1 : i]!;
    if (!kv) continue;
    const nl = kv.indexOf('\n');
    const key = (nl < 0 ? kv : kv.slice(0, nl)).toLowerCase();
    const value = nl < 0 ? 'true' : kv.slice(nl + 1);
    const o = origin(from);
    if (o !== null) result.push([key, { value, origin: o }]);
  }
  return result;
}

/** A larger file is left to Git. */
const MAX_SIMPLE_CONFIG_BYTES = 64 * 1024;
/** A section header: a name, and a subsection in plain double quotes (no escapes). */
const SECTION = /^\[([A-Za-z0-9.-]+)(?:[ \t]+"([^"\\\n]*)")?\]$/;
/** A variable, alone (true) or with a value that has no quote, backslash or comment character. */
const VARIABLE = /^([A-Za-z][A-Za-z0-9-]*)[ \t]*(?:=[ \t]*([^"\\#;]*))?$/;

/**
 * The variables of a Git config file written plainly, as a .paniniconfig is (sections, `key =
 * value` lines, comment lines), read without a `git config` process (~9 ms, on the path of every
 * clone's first download). Null for anything else: quoting, escapes, inline comments, includes,
 * other characters; Git reads those.
 */
export function readSimpleConfig(path: string): [string, string][] | null {
  let text: string;
  try {
    const stat = lstatSync(path);
    if (!stat.isFile() || stat.size > MAX_SIMPLE_CONFIG_BYTES) return null; // a symlink, or anything odd: as Git reads it
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  if (!/^[\t\n\r\x20-\x7e]*$/.test(text)) return null;
  const variables: [string, string][] = [];
  let section: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = SECTION.exec(line);
    if (header) {
      const name = header[1]!.toLowerCase();
      if (name === 'include' || name === 'includeif' || name.startsWith('.') || name.endsWith('.')) return null;
      section = header[2] === undefined ? name : `${name}.${header[2]}`;
      continue;
    }
    const variable = VARIABLE.exec(line);
    if (!variable || section === null) return null;
    variables.push([`${section}.${variable[1]!}`.toLowerCase(), variable[2] === undefined ? 'true' : variable[2].trimEnd()]);
  }
  return variables;
}

export function loadConfig(repo: Repo | null, env: NodeJS.ProcessEnv = process.env): Config {
  const settings = new Map<string, Setting>();
  const r = git(['config', '-z', '--show-origin', '--get-regexp', '^panini\\.'], { cwd: repo?.top ?? repo?.commonDir });
  if (r.status === 0) for (const [k, s] of parseZ(r.stdout, (o) => o, true)) settings.set(k, s);
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v) settings.set(key, { value: v, origin: `env:${name}` });
  }
  return new Config(settings, repo ? () => readPaniniConfigFile(repo) : undefined);
}

function readPaniniConfigFile(repo: Repo): [string, Setting][] {
  const cwd = repo.top ?? repo.commonDir;
  const candidates: [string[], string][] = [];
  const file = repo.top ? join(repo.top, '.paniniconfig') : null;
  if (file && existsSync(file)) {
    const simple = readSimpleConfig(file);
    if (simple) return simple.filter(([key]) => key.startsWith('panini.')).map(([key, value]) => [key, { value, origin: '.paniniconfig' }]);
    candidates.push([['--file', file], '.paniniconfig']);
  }
  candidates.push([['--blob', ':.paniniconfig'], 'index:.paniniconfig'], [['--blob', 'HEAD:.paniniconfig'], 'HEAD:.paniniconfig']);
  for (const [args, origin] of candidates) {
    const r = git(['config', '-z', ...args, '--get-regexp', '^panini\\.'], { cwd });
    if (r.status === 0) return parseZ(r.stdout, () => origin, false);
    if (r.status === 1 && args[0] === '--file') return []; // file exists but sets nothing of ours
  }
  return [];
}
