/**
 * Effective settings. Precedence, highest first: environment (PANINI_*), git config (any level),
 * the committed .paniniconfig (worktree file, else the index, else HEAD), built-in defaults.
 * A .paniniconfig comes with clones, so it may only set the keys listed in SHARED_KEYS.
 */
import { join } from 'node:path';
import { existsSync, lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
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
const MAX_CONFIG_FILE_BYTES = 64 * 1024;

/**
 * The variables of a Git config file, read as Git reads it (git-config(1), "CONFIGURATION FILE"; the
 * parser in Git's config.c): sections, subsections (`[a "b"]`, and the old `[a.b]`), a key alone
 * meaning true, values with quotes, escapes, comments and continued lines, CRLF, a UTF-8 BOM; keys
 * lowercased. Read without a `git config` process (~5 ms at every start). Undefined if there is no
 * such file; null where Git must decide: a symlink (unless `followSymlinks`), anything but a
 * regular file, a file larger than MAX_CONFIG_FILE_BYTES or with an include, and anything Git
 * would reject.
 */
export function readConfigFile(path: string, followSymlinks = false): [string, string][] | null | undefined {
  let text: string;
  try {
    const stat = followSymlinks ? statSync(path) : lstatSync(path);
    if (!stat.isFile() || stat.size > MAX_CONFIG_FILE_BYTES) return null;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '') ? undefined : null;
  }
  return parseConfig(text);
}

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';

// Git's grammar in pieces matched where the parser is (sticky): whole tokens at once, as native
// code, rather than a character at a time (a cold process parses a repository's config in ~0.4
// instead of ~0.8 ms).
/** Blanks and comments, up to what comes next. */
const BLANK = /(?:[ \t\r\n]|[#;][^\n]*)*/y;
/** A section header: a name, and a subsection in double quotes (with escapes), or none. */
const SECTION_HEADER = /\[([A-Za-z0-9.-]+)(?:\]|[ \t]+"((?:[^"\\\n]|\\[^\n])*)"\])/y;
/** A variable's name, and the blanks after it. */
const NAME = /([A-Za-z][A-Za-z0-9-]*)[ \t]*/y;

/** Git's config grammar over `text`, as config.c parses it; null where Git would fail or include another file. */
export function parseConfig(text: string): [string, string][] | null {
  // As Git reads a character: CRLF is a newline, and the end a last newline.
  const chars = text.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n') + '\n';
  if (chars.includes('\0')) return null;
  const variables: [string, string][] = [];
  let section: string | null = null;
  for (let at = 0; ;) {
    BLANK.lastIndex = at;
    BLANK.exec(chars);
    at = BLANK.lastIndex;
    if (at === chars.length) return variables;
    if (chars[at] === '[') {
      SECTION_HEADER.lastIndex = at;
      const header = SECTION_HEADER.exec(chars);
      if (!header) return null;
      at = SECTION_HEADER.lastIndex;
      const name = header[1]!.toLowerCase();
      if (name === 'include' || name === 'includeif') return null;
      section = header[2] === undefined ? name : `${name}.${header[2].replace(/\\(.)/g, '$1')}`;
      continue;
    }
    NAME.lastIndex = at;
    const key = NAME.exec(chars)?.[1];
    if (key === undefined || section === null) return null;
    at = NAME.lastIndex;
    let value = 'true';
    if (chars[at] === '\n') {
      at++;
    } else if (chars[at] !== '=') {
      return null;
    } else {
      const end = chars.indexOf('\n', at);
      const rest = chars.slice(at + 1, end);
      const parsed = rest.includes('"') || rest.includes('\\') ? parseValue(chars, at + 1) : ([plainValue(rest), end + 1] as const);
      if (!parsed) return null;
      [value, at] = parsed;
    }
    variables.push([`${section}.${key}`.toLowerCase(), value]); // subsection too: Config looks keys up lowercased
  }
}

/**
 * A value with no quote or backslash, as parse_value reads it: up to a comment, without the blanks
 * around it, each blank inside a space. In loops, not regular expressions, so that no line (a
 * cloned .paniniconfig is anyone's) costs more than its length.
 */
function plainValue(rest: string): string {
  let end = rest.length;
  for (const c of ['#', ';']) {
    const at = rest.indexOf(c);
    if (at >= 0 && at < end) end = at;
  }
  let start = 0;
  while (start < end && isSpace(rest[start]!)) start++;
  while (end > start && isSpace(rest[end - 1]!)) end--;
  const value = rest.slice(start, end);
  return value.includes('\t') || value.includes('\r') ? value.replace(/[\t\r]/g, ' ') : value;
}

/** A value from `at` to its line's end (config.c's parse_value): the value and where the next line starts, or null. */
function parseValue(chars: string, at: number): [string, number] | null {
  let value = '';
  let quoted = false;
  let comment = false;
  let spaces = 0;
  for (;;) {
    const c = chars[at++];
    if (c === undefined) return null;
    if (c === '\n') return quoted ? null : [value, at];
    if (comment) continue;
    if (isSpace(c) && !quoted) {
      if (value.length > 0) spaces++; // kept, as single spaces, only if more of the value follows
      continue;
    }
    if (!quoted && (c === '#' || c === ';')) {
      comment = true;
      continue;
    }
    value += ' '.repeat(spaces);
    spaces = 0;
    if (c === '\\') {
      const escaped = chars[at++];
      if (escaped === '\n') continue;
      const meaning = escaped === undefined ? undefined : ({ t: '\t', b: '\b', n: '\n', '\\': '\\', '"': '"' } as Record<string, string>)[escaped];
      if (meaning === undefined) return null;
      value += meaning;
    } else if (c === '"') {
      quoted = !quoted;
    } else {
      value += c;
    }
  }
}

export function loadConfig(repo: Repo | null, env: NodeJS.ProcessEnv = process.env): Config {
  const settings = new Map<string, Setting>();
  for (const [k, s] of configFromFiles(repo, env) ?? configFromGit(repo, env)) if (k.startsWith('panini.')) settings.set(k, s);
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v) settings.set(key, { value: v, origin: `env:${name}` });
  }
  return new Config(settings, repo ? () => readPaniniConfigFile(repo) : undefined);
}

function configFromGit(repo: Repo | null, env: NodeJS.ProcessEnv): [string, Setting][] {
  const r = git(['config', '-z', '--show-origin', '--get-regexp', '^panini\\.'], { cwd: repo?.top ?? repo?.commonDir, env });
  return r.status === 0 ? parseZ(r.stdout, (o) => o, true) : [];
}

/**
 * Git's settings read from its files and its environment as Git reads them, in its order (system,
 * global, the repository's, then `git -c`), without a `git config` process; null where Git must
 * decide: a repository plainRepoAt did not read, a system file whose place is not known, a file
 * readConfigFile leaves to Git, anything odd in the environment.
 */
function configFromFiles(repo: Repo | null, env: NodeJS.ProcessEnv): [string, Setting][] | null {
  if (!repo?.ownConfig || env.GIT_CONFIG !== undefined) return null;
  const system = systemConfigPath(env);
  const global = globalConfigPaths(env);
  if (system === undefined || !global) return null;
  const read: [string, Setting][] = [];
  for (const path of system === null ? global : [system, ...global]) {
    const variables = path === '/dev/null' ? [] : readConfigFile(path, true);
    if (variables === null) return null;
    for (const [key, value] of variables ?? []) read.push([key, { value, origin: `file:${path}` }]);
  }
  const own = `file:${join(repo.commonDir, 'config')}`;
  for (const [key, value] of repo.ownConfig) read.push([key, { value, origin: own }]);
  const commandLine = commandLineConfig(env);
  if (!commandLine) return null;
  for (const [key, value] of commandLine) read.push([key, { value, origin: 'command line:' }]);
  return read;
}

/** Where a Git installed by a Linux distribution (prefix /usr) lies, and finds itself when it runs a filter or hook. */
const DISTRIBUTION_GITS = new Set(['/usr/bin/git', '/usr/lib/git-core/git', '/usr/libexec/git-core/git']);

/** Git's system config file: null if Git reads none, undefined if where it lies is not known (Git was built elsewhere). */
function systemConfigPath(env: NodeJS.ProcessEnv): string | null | undefined {
  const none = gitBoolean(env.GIT_CONFIG_NOSYSTEM);
  if (none !== false) return none === true ? null : undefined;
  if (env.GIT_CONFIG_SYSTEM !== undefined) return env.GIT_CONFIG_SYSTEM || undefined;
  return process.platform === 'linux' && DISTRIBUTION_GITS.has(gitOnPath(env.PATH) ?? '') ? '/etc/gitconfig' : undefined;
}

/** The real path of the `git` a program started with this PATH runs, or null. */
function gitOnPath(path: string | undefined): string | null {
  try {
    for (const dir of (path ?? '').split(':')) {
      const candidate = join(dir || '.', 'git');
      const stat = statSync(candidate, { throwIfNoEntry: false });
      if (stat?.isFile() && (stat.mode & 0o111) !== 0) return realpathSync(candidate);
    }
  } catch {
    // a directory that cannot be read, a file gone meanwhile: not known
  }
  return null;
}

/** Git's global config files in the order it reads them, or null if HOME or GIT_CONFIG_GLOBAL is odd. */
function globalConfigPaths(env: NodeJS.ProcessEnv): string[] | null {
  if (env.GIT_CONFIG_GLOBAL !== undefined) return env.GIT_CONFIG_GLOBAL ? [env.GIT_CONFIG_GLOBAL] : null;
  const home = env.HOME;
  if (home === '') return null;
  const xdg = env.XDG_CONFIG_HOME ? join(env.XDG_CONFIG_HOME, 'git', 'config') : home ? join(home, '.config', 'git', 'config') : null;
  return [...(xdg ? [xdg] : []), ...(home ? [join(home, '.gitconfig')] : [])];
}

/** A boolean as Git reads one from its environment (unset: false); undefined if Git would refuse it. */
function gitBoolean(value: string | undefined): boolean | undefined {
  if (value === undefined || /^(false|no|off|)$/i.test(value)) return false;
  if (/^(true|yes|on)$/i.test(value)) return true;
  return /^-?\d+$/.test(value) ? Number(value) !== 0 : undefined;
}

/** More `git -c` settings than this are left to Git. */
const MAX_COMMAND_LINE_SETTINGS = 1000;

/**
 * The settings of `git -c` (and `--config-env`) as Git hands them to the programs it runs:
 * GIT_CONFIG_COUNT's pairs, then GIT_CONFIG_PARAMETERS (shell-quoted, `'key'='value'` or the older
 * `'key=value'`). Null if Git would refuse them.
 */
export function commandLineConfig(env: NodeJS.ProcessEnv): [string, string][] | null {
  const settings: [string, string][] = [];
  const count = env.GIT_CONFIG_COUNT;
  if (count !== undefined) {
    if (!/^\d{1,4}$/.test(count) || Number(count) > MAX_COMMAND_LINE_SETTINGS) return null;
    for (let i = 0; i < Number(count); i++) {
      const key = env[`GIT_CONFIG_KEY_${i}`];
      const value = env[`GIT_CONFIG_VALUE_${i}`];
      if (key === undefined || value === undefined || !isConfigKey(key)) return null;
      settings.push([key.toLowerCase(), value]);
    }
  }
  let rest = env.GIT_CONFIG_PARAMETERS ?? '';
  while (rest !== '' && settings.length <= MAX_COMMAND_LINE_SETTINGS) {
    const first = unquoteWord(rest);
    if (!first) return null;
    let key = first.word;
    let value: string | undefined;
    rest = first.rest;
    if (rest.startsWith('=')) {
      rest = rest.slice(1);
      if (rest.startsWith("'")) {
        const second = unquoteWord(rest);
        if (!second) return null;
        [value, rest] = [second.word, second.rest];
      }
    } else {
      const eq = key.indexOf('=');
      if (eq >= 0) [key, value] = [key.slice(0, eq), key.slice(eq + 1)];
    }
    if (rest !== '' && !isSpace(rest[0]!)) return null;
    if (!isConfigKey(key)) return null;
    settings.push([key.toLowerCase(), value ?? 'true']);
    rest = rest.replace(/^[ \t\n\r]+/, '');
  }
  return rest === '' ? settings : null;
}

/** A key as `git -c` takes it: section, maybe a subsection, and a name that starts with a letter. */
const isConfigKey = (key: string): boolean => /^[A-Za-z0-9-]+(\.[^\n]*)?\.[A-Za-z][A-Za-z0-9-]*$/.test(key);

/** One word quoted as Git's sq_quote quotes (`'it'\''s'`), and what follows it; null if it is not one. */
function unquoteWord(text: string): { word: string; rest: string } | null {
  const m = /^'([^']*)'((?:\\[!']'[^']*')*)/.exec(text);
  if (!m) return null;
  const word = m[1]! + m[2]!.replace(/\\([!'])'([^']*)'/g, '$1$2');
  return { word, rest: text.slice(m[0].length) };
}

function readPaniniConfigFile(repo: Repo): [string, Setting][] {
  const cwd = repo.top ?? repo.commonDir;
  const candidates: [string[], string][] = [];
  const file = repo.top ? join(repo.top, '.paniniconfig') : null;
  if (file && existsSync(file)) {
    const read = readConfigFile(file);
    if (read) return read.filter(([key]) => key.startsWith('panini.')).map(([key, value]) => [key, { value, origin: '.paniniconfig' }]);
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
