import { loadConfig, type Config } from '../git/config.js';
import { findRepo, storeRoot, type Repo } from '../git/repo.js';
import { PaniniError } from '../errors.js';
import { LocalStore } from '../store/local.js';

export interface Context {
  repo: Repo | null;
  config: Config;
  store: LocalStore;
  /** panini.maxAtomSize; undefined: ingest's default (DEFAULT_MAX_ATOM_SIZE). */
  readonly maxAtomSize: number | undefined;
}

/** Repository, settings and local store for a command. Outside a repo, PANINI_STORAGE names the store. */
export function openContext(cwd = process.cwd()): Context {
  const repo = findRepo(cwd);
  const config = loadConfig(repo);
  const storage = config.get('panini.storage');
  let root: string;
  if (repo) root = storeRoot(repo, storage);
  else if (storage) root = storage;
  else throw new PaniniError('not inside a Git repository, so there is no atom store', 'run the command inside a repository, or set PANINI_STORAGE to a store directory');
  return {
    repo, config, store: new LocalStore(root),
    // Read when first needed (by a clean): it may come from .paniniconfig, which costs git calls.
    get maxAtomSize() {
      return config.getInt('panini.maxAtomSize', undefined);
    },
  };
}
