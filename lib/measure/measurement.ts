// The written form of a measurement: `<algo>:<lowercase hex>`, e.g. `sha256:9f86…`.
export type Algorithm = 'sha256' | 'blake3';
export const ALGORITHMS: readonly Algorithm[] = ['sha256', 'blake3'];

const DIGEST_HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, blake3: 64 };
const MEASUREMENT = /^(sha256|blake3):([0-9a-f]+)$/;

export interface Measurement {
  readonly algo: Algorithm;
  readonly hex: string;
}

export function formatMeasurement(algo: Algorithm, hexDigest: string): string {
  return `${algo}:${hexDigest}`;
}

/** Parse `<algo>:<hex>`; undefined unless the algorithm is known and the digest has its exact length. */
export function tryParseMeasurement(text: string): Measurement | undefined {
  const m = MEASUREMENT.exec(text);
  if (m === null) return undefined;
  const algo = m[1] as Algorithm;
  const hexDigest = m[2]!;
  return hexDigest.length === DIGEST_HEX_LENGTH[algo] ? { algo, hex: hexDigest } : undefined;
}

export function isAlgorithm(value: string): value is Algorithm {
  return (ALGORITHMS as readonly string[]).includes(value);
}
