/**
 * Sample tables in typed arrays (about 21 bytes a sample), so a file with a million samples costs
 * tens of MiB, not hundreds. Every count read from a file is capped by what its box can hold and by
 * a budget shared by all tracks before anything is allocated.
 */

/** A sync (random access) sample: stss, or trun/trex flags without sample_is_non_sync_sample. */
export const SAMPLE_SYNC = 1;
/** No other sample depends on this one (sdtp / sample flags is_depended_on = 2). */
export const SAMPLE_DISPOSABLE = 2;

/**
 * Samples kept per file, all tracks together (a 2-hour film at 25 fps with AAC audio has about
 * 520,000). Beyond it the rest of the media stays in Raw chunks: still stored and deduplicated,
 * only not frame by frame. Measured: storing 500,000 samples peaks at ~320 MiB RSS, 1,000,000 at
 * ~530 MiB (segments and leaf refs are JS objects), so the bound keeps clean under 500 MiB.
 */
export const MAX_SAMPLES = 1 << 19;

/** What is left of the per-file sample allowance. */
export interface SampleBudget {
  remaining: number;
}

export class SampleTable {
  count = 0;
  /** Absolute source offset of each sample (Float64: files may exceed 4 GiB). */
  offset: Float64Array;
  size: Uint32Array;
  /** Decode duration in the track's timescale. */
  duration: Uint32Array;
  /** Composition offset (ctts / trun), signed. */
  cts: Int32Array;
  flags: Uint8Array;

  constructor(capacity = 0) {
    this.offset = new Float64Array(capacity);
    this.size = new Uint32Array(capacity);
    this.duration = new Uint32Array(capacity);
    this.cts = new Int32Array(capacity);
    this.flags = new Uint8Array(capacity);
  }

  /** Makes room for `more` samples if the budget allows; returns how many may be pushed. */
  reserve(more: number, budget: SampleBudget): number {
    const allowed = Math.max(0, Math.min(more, budget.remaining));
    const need = this.count + allowed;
    if (need > this.offset.length) {
      const capacity = Math.max(need, Math.min(this.count * 2, this.count + budget.remaining));
      this.offset = grow(this.offset, new Float64Array(capacity));
      this.size = grow(this.size, new Uint32Array(capacity));
      this.duration = grow(this.duration, new Uint32Array(capacity));
      this.cts = grow(this.cts, new Int32Array(capacity));
      this.flags = grow(this.flags, new Uint8Array(capacity));
    }
    return allowed;
  }

  /** Appends one sample; the caller has reserved room for it. */
  push(offset: number, size: number, duration: number, cts: number, flags: number, budget: SampleBudget): void {
    const i = this.count++;
    this.offset[i] = offset;
    this.size[i] = size;
    this.duration[i] = duration;
    this.cts[i] = cts;
    this.flags[i] = flags;
    budget.remaining--;
  }
}

function grow<T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(from: T, to: T): T {
  to.set(from);
  return to;
}
