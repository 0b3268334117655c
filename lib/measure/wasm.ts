// STUB: replaced by the real canonicalizer.
import { UnsupportedBinaryError } from '../errors.js';
import type { ByteReader, CanonicalPlan } from './types.js';

export function planWasm(reader: ByteReader): CanonicalPlan {
  throw new UnsupportedBinaryError('wasm', `not implemented yet (${reader.size} bytes)`);
}
