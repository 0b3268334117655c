// The part of the measurement core's public face that needs no Node: what the other pure
// modules (policy, protocol) may import. index.ts re-exports it together with digest.ts,
// which imports node:crypto and so cannot be followed by the pure typecheck.
export { ALGORITHMS, formatMeasurement, isAlgorithm, MEASUREMENT_PATTERN, tryParseMeasurement } from './measurement.js';
export type { Algorithm, Measurement } from './measurement.js';
