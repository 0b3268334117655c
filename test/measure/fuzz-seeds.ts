// Real binaries to mutate: built here with the real toolchains, so mutations start from
// inputs that pass every check and then break one thing at a time.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { debianSignedEfiFiles } from '../helpers/debian-efi.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';

const C_PROGRAM = `#include <stdio.h>
static const char *names[] = { "alpha", "beta", "gamma" };
int main(int argc, char **argv) { for (int i = 0; i < 3; i++) printf("%s %d\\n", names[i], argc); return argc > 1; }
`;

const WAT_MODULE = `(module
  (memory (export "memory") 1)
  (data (i32.const 16) "hello")
  (func $add (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "main") (result i32) i32.const 2 i32.const 3 call $add)
  (table 1 funcref) (elem (i32.const 0) $add))
`;

export function elfSeeds(): Uint8Array[] {
  const gcc = requireTool('gcc', 'gcc');
  const strip = requireTool('strip', 'binutils');
  const { dir, cleanup } = scratchDir('vo-fuzz-elf-');
  try {
    writeFileSync(join(dir, 'p.c'), C_PROGRAM);
    run(gcc, ['-O1', '-g', '-o', join(dir, 'p'), join(dir, 'p.c')]);
    run(strip, ['-o', join(dir, 'p.stripped'), join(dir, 'p')]);
    run(gcc, ['-O1', '-shared', '-fPIC', '-o', join(dir, 'p.so'), join(dir, 'p.c')]);
    return ['p.stripped', 'p.so'].map((f) => new Uint8Array(readFileSync(join(dir, f))));
  } finally {
    cleanup();
  }
}

export function wasmSeeds(): Uint8Array[] {
  const wat2wasm = requireTool('wat2wasm', 'wabt');
  const { dir, cleanup } = scratchDir('vo-fuzz-wasm-');
  try {
    writeFileSync(join(dir, 'm.wat'), WAT_MODULE);
    run(wat2wasm, ['--debug-names', '-o', join(dir, 'm.wasm'), join(dir, 'm.wat')]);
    run(wat2wasm, ['-o', join(dir, 'plain.wasm'), join(dir, 'm.wat')]);
    return ['m.wasm', 'plain.wasm'].map((f) => new Uint8Array(readFileSync(join(dir, f))));
  } finally {
    cleanup();
  }
}

/**
 * Debian's signed EFI binaries (real PE32+ files with symbol and certificate tables); the
 * two smallest, so that each mutation copies little.
 */
export function peSeeds(): Uint8Array[] {
  const files = debianSignedEfiFiles()
    .map((path) => ({ path, size: statSync(path).size }))
    .sort((a, b) => a.size - b.size)
    .slice(0, 2);
  return files.map(({ path }) => new Uint8Array(readFileSync(path)));
}
