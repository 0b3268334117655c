// Public face of the measurement core. Other modules import only from here.
export { planCanonical } from './canonical.js';
export { detectFormat } from './detect.js';
export { alignedScratch, createHasher, hashPlan, measure, SCRATCH_BYTES, sharedScratch } from './digest.js';
export type { Hasher, MeasureOptions, MeasureResult } from './digest.js';
export { formatExplanation } from './explain.js';
export { ALGORITHMS, formatMeasurement, isAlgorithm, MEASUREMENT_PATTERN, tryParseMeasurement } from './pure.js';
export type { Algorithm, Measurement } from './pure.js';
export { bufferReader, chunksReader } from './read.js';
export { streamCanonical } from './stream.js';
export { PROFILES } from './types.js';
export type { BinaryFormat, ByteReader, CanonicalPlan, Disposition, ExplainedRange, Piece, Profile } from './types.js';
