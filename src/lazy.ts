import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A module loaded at its first use, not at start. Git starts git-panini for every add, checkout
 * and hook, and most runs never use some modules: gray-matter (~20 ms), Node's child_process (which
 * loads net and dgram) or worker_threads (~0.5–2 ms each). `id` names a package or one of Node's
 * modules (a relative path would be resolved from this file).
 */
export function lazily<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(id) as T);
}
