/** An error meant for the user: says what happened and what to do. Exit code 1 unless given. */
export class PaniniError extends Error {
  constructor(message: string, readonly hint?: string, readonly exitCode = 1) {
    super(message);
    this.name = 'PaniniError';
  }
  override toString(): string {
    return this.hint ? `${this.message}\n  hint: ${this.hint}` : this.message;
  }
}

/** The store itself cannot be written (disk full, read-only): every further write would fail too. */
export class StoreError extends PaniniError {
  constructor(message: string, hint: string) {
    super(message, hint);
    this.name = 'StoreError';
  }
}

/** An atom's bytes do not hash to its name, or it is missing. */
export class AtomError extends PaniniError {
  constructor(readonly hash: string, readonly kind: 'missing' | 'corrupt', hint?: string) {
    super(
      kind === 'missing' ? `atom ${hash} is missing from the store` : `atom ${hash} is corrupt (its bytes do not hash to its name)`,
      hint ?? (kind === 'missing'
        ? 'fetch it from the remote store (git panini fetch) or re-add the file it belongs to'
        : 'run `git panini fsck` to move corrupt atoms aside, then fetch them again (git panini fetch)'),
    );
    this.name = 'AtomError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof PaniniError) return err.toString();
  if (err instanceof Error) return err.message;
  return String(err);
}
