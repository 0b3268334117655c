// Public face of the patch module: apply VCDIFF (RFC 3284) deltas to an old binary.
export { applyVcdiff, MAX_TARGET_BYTES } from './apply.js';
export type { ApplyOptions } from './apply.js';
export { PatchError } from './errors.js';
export { inspectVcdiff, MAX_WINDOWS } from './vcdiff-check.js';
export type { VcdiffSummary } from './vcdiff-check.js';
