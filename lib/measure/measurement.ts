// The written form of a measurement: `<algo>:<lowercase hex>`, e.g. `sha256:9f86…`.
export type Algorithm = 'sha256' | 'blake3';
export const ALGORITHMS: readonly Algorithm[] = ['sha256', 'blake3'];

/**
 * The exact written form: a known algorithm and its digest in lowercase hex (both digests
 * are 256 bits). The policy format and the guest protocol use this same pattern.
 */
export const MEASUREMENT_PATTERN = /^(?:sha256|blake3):[0-9a-f]{64}$/;

export interface Measurement {
  readonly algo: Algorithm;
  readonly hex: string;
}

export function formatMeasurement(algo: Algorithm, hexDigest: string): string {
  return `${algo}:${hexDigest}`;
}

/** Parse `<algo>:<hex>`; undefined unless the algorithm is known and the digest has its exact length. */
export function tryParseMeasurement(text: string): Measurement | undefined {
  if (!MEASUREMENT_PATTERN.test(text)) return undefined;
  const colon = text.indexOf(':');
  return { algo: text.slice(0, colon) as Algorithm, hex: text.slice(colon + 1) };
}

export function isAlgorithm(value: string): value is Algorithm {
  return (ALGORITHMS as readonly string[]).includes(value);
}
