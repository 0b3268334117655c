// Cutting a byte sequence at given points: how the property tests feed decoders and readers
// every way a stream can arrive.

/** `bytes` cut at `cuts` (each taken modulo length + 1, duplicates merged), as views in order. */
export function splitAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const p of [...points, bytes.length]) {
    parts.push(bytes.subarray(at, p));
    at = p;
  }
  return parts;
}
