import { PaniniError } from '../errors.js';

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

/**
 * Minimal option parsing: --flag, --key=value, --key value (for keys listed in `valued`), -o value.
 * Unknown options are an error so typos do not pass silently.
 */
export function parseArgs(args: readonly string[], known: readonly string[], valued: readonly string[] = []): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=');
      const name = (eq >= 0 ? a.slice(0, eq) : a).replace(/^--?/, '');
      if (!known.includes(name) && !valued.includes(name)) throw new PaniniError(`unknown option ${a}`, 'see `git panini help`');
      if (eq >= 0) flags.set(name, a.slice(eq + 1));
      else if (valued.includes(name)) {
        const v = args[++i];
        if (v === undefined) throw new PaniniError(`option ${a} needs a value`);
        flags.set(name, v);
      } else flags.set(name, true);
    } else positional.push(a);
  }
  return { positional, flags };
}
