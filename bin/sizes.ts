// Sizes on the command line: bytes, or a whole number of K, M or G (powers of 1024), as the
// policy format writes them (policies/README.md, limits).
const UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** `text` in bytes ("64M" → 67108864), or undefined when it is not such a size. */
export function parseByteSize(text: string): number | undefined {
  const m = /^(0|[1-9][0-9]{0,15})([KMG]?)$/.exec(text);
  if (m === null) return undefined;
  const value = Number(m[1]) * UNITS[m[2]!]!;
  return Number.isSafeInteger(value) ? value : undefined;
}
