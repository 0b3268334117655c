// Choose the canonicalizer by magic bytes and build the plan for one input.
import { UnsupportedBinaryError } from '../errors.js';
import { DETECT_BYTES, detectFormat } from './detect.js';
import { planElf } from './elf.js';
import { planPe } from './pe.js';
import { planRaw } from './raw.js';
import { planWasm } from './wasm.js';
import type { ByteReader, CanonicalPlan, Profile } from './types.js';

export function planCanonical(reader: ByteReader, profile: Profile = 'v1'): CanonicalPlan {
  const head = new Uint8Array(DETECT_BYTES);
  const n = reader.read(head, 0);
  const format = detectFormat(head.subarray(0, Math.max(0, n)));
  if (profile === 'authenticode' && format !== 'pe') {
    throw new UnsupportedBinaryError(format, `the authenticode profile applies to PE files only; this is ${format === 'raw' ? 'not an ELF, PE or WebAssembly binary' : `${format === 'elf' ? 'an' : 'a'} ${format.toUpperCase()} binary`}`);
  }
  switch (format) {
    case 'elf':
      return planElf(reader);
    case 'pe':
      return planPe(reader, profile);
    case 'wasm':
      return planWasm(reader);
    case 'raw':
      return planRaw(reader);
  }
}
