// Profile v1 for anything that is not ELF, PE or WebAssembly (scripts, data): the whole file.
import { PlanBuilder } from './plan-builder.js';
import type { ByteReader, CanonicalPlan } from './types.js';

export function planRaw(reader: ByteReader): CanonicalPlan {
  const builder = new PlanBuilder('raw', 'v1', reader.size);
  builder.keep(reader.size, 'whole file (not ELF, PE or WebAssembly)');
  return builder.finish();
}
