// The long fuzz mode: `npm run fuzz -- --seconds 600`. Same properties as fuzz.test.ts.
import { parseArgs } from 'node:util';
import { fuzzFor } from './fuzz-harness.js';
import { elfSeeds, peSeeds, wasmSeeds } from './fuzz-seeds.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '300' } } });
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error(`fuzz: --seconds must be a positive number, got ${values.seconds}`);
  process.exit(2);
}
console.log(`fuzzing the ELF, PE and WebAssembly canonicalizers for ${seconds}s`);
fuzzFor(seconds, { elf: elfSeeds(), wasm: wasmSeeds(), pe: peSeeds() }, (line) => console.log(line));
console.log('fuzz: no failures');
