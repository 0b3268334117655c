// STUB: replaced by the real canonicalizer.
import { UnsupportedBinaryError } from '../errors.js';
import type { ByteReader, CanonicalPlan, Profile } from './types.js';

export function planPe(reader: ByteReader, profile: Profile): CanonicalPlan {
  throw new UnsupportedBinaryError('pe', `not implemented yet (${reader.size} bytes, ${profile})`);
}
