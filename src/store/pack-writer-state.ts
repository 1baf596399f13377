/** Indexes into the Int32Array that PackWriter's main thread and its worker share. */
export const FAILED = 0; // 1 once a write failed
export const RUNNING = 1; // 1 once the worker runs
export const DIGESTED = 2; // 1 once the file's digest is ready
export const PROGRESS = 3; // bumped whenever the worker frees a slot, names pieces or digests
export const SLOT_STATE = 4; // SLOT_STATE + i: 1 while slot i is in use
