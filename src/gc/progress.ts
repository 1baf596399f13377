/**
 * A one-line progress display on stderr for long walks (gc, fsck): "<phase>: <done>/<total>",
 * redrawn at most five times a second, each finished phase left on its own line. Only on a
 * terminal, so scripts, hooks and --json output stay clean.
 */
import { isTerminal } from '../io.js';

const REDRAW_MS = 200;

export class PhaseProgress {
  private phase: string | null = null;
  private lastDraw = 0;
  private line = '';

  constructor(private readonly visible: boolean) {}

  static onStderr(): PhaseProgress {
    return new PhaseProgress(isTerminal(2));
  }

  update(phase: string, done: number, total?: number): void {
    if (!this.visible) return;
    if (phase !== this.phase && this.phase !== null) process.stderr.write(`\r${this.line}\x1b[K\n`);
    const now = Date.now();
    const finished = total !== undefined && done >= total;
    this.line = total === undefined ? `${phase}: ${done}` : `${phase}: ${done}/${total}${total > 0 ? ` (${Math.floor((done / total) * 100)}%)` : ''}`;
    if (phase === this.phase && !finished && now - this.lastDraw < REDRAW_MS) return;
    this.phase = phase;
    this.lastDraw = now;
    process.stderr.write(`\r${this.line}\x1b[K`);
  }

  /** Ends the current line (call before printing results). */
  finish(): void {
    if (this.visible && this.phase !== null) process.stderr.write(`\r${this.line}\x1b[K\n`);
    this.phase = null;
  }
}
