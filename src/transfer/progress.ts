/**
 * One status line on stderr for push, fetch and pull: atoms, bytes, rate. Shown only on a terminal
 * and without --quiet, so hooks, scripts and logs stay clean.
 */
import { formatBytes } from '../cli/stats.js';
import { isTerminal } from '../io.js';

const REDRAW_MS = 200;

export class Progress {
  private atoms = 0;
  private bytes = 0;
  private totalAtoms = 0;
  private totalBytes = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;

  /** `onAdvance` hears of every atom moved (the Git LFS agent turns them into progress events). */
  constructor(private readonly label: string, private readonly visible: boolean, private readonly onAdvance?: (bytes: number) => void) {}

  static forCommand(label: string, quiet: boolean): Progress {
    return new Progress(label, !quiet && isTerminal(2));
  }

  addTotal(atoms: number, bytes: number): void {
    this.totalAtoms += atoms;
    this.totalBytes += bytes;
    this.draw(false);
  }

  /** One atom moved (or `atoms` of them, `bytes` in all). */
  advance(bytes: number, atoms = 1): void {
    this.atoms += atoms;
    this.bytes += bytes;
    this.onAdvance?.(bytes);
    this.draw(false);
  }

  /** Final line (only if anything was shown or moved). */
  finish(): void {
    if (this.drawn || this.atoms > 0) this.draw(true);
    if (this.drawn) process.stderr.write('\n');
  }

  private draw(force: boolean): void {
    if (!this.visible) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.drawn = true;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const line = `${this.label}: ${this.atoms}/${this.totalAtoms} atoms, ${formatBytes(this.bytes)}/${formatBytes(this.totalBytes)}, ${formatBytes(Math.round(this.bytes / seconds))}/s`;
    process.stderr.write(`\r${line}\x1b[K`);
  }
}
