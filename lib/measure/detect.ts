// Format detection by magic bytes only, never by file name.
import type { BinaryFormat } from '../errors.js';

/** How many leading bytes detectFormat looks at. */
export const DETECT_BYTES = 4;

/**
 * ELF: 7f 45 4c 46. WebAssembly: 00 61 73 6d. PE: "MZ" (the PE parser then insists on a
 * valid "PE\0\0" header; an MZ file without one is refused, not measured as raw, so a PE
 * cannot dodge the PE rules by corrupting its header). Everything else is raw.
 */
export function detectFormat(head: Uint8Array): BinaryFormat {
  const [b0, b1, b2, b3] = head;
  if (b0 === 0x7f && b1 === 0x45 && b2 === 0x4c && b3 === 0x46) return 'elf';
  if (b0 === 0x00 && b1 === 0x61 && b2 === 0x73 && b3 === 0x6d) return 'wasm';
  if (b0 === 0x4d && b1 === 0x5a) return 'pe';
  return 'raw';
}
