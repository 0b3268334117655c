// STUB: replaced by the real canonicalizer.
import { UnsupportedBinaryError } from '../errors.js';
import type { ByteReader, CanonicalPlan } from './types.js';

export function planElf(reader: ByteReader): CanonicalPlan {
  throw new UnsupportedBinaryError('elf', `not implemented yet (${reader.size} bytes)`);
}
