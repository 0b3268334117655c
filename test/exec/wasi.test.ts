// WASI preview1 modules: node:wasi in a child node inside the same bubblewrap sandbox and
// cgroup limits as native binaries; no preopens, the module's env only from the caller.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeInheritedFds, run, type RunOptions } from '../../lib/exec/index.js';
import { requireTool, run as runTool, scratchDir } from '../../testbed/tools.js';
import { install, limits } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
const wat2wasm = requireTool('wat2wasm', 'wabt');
const scratch = scratchDir('vo-exec-wasi-');

const HELLO = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi from wasm, argc/envc=")
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 100) (i32.const 104)))
    (drop (call $environ_sizes_get (i32.const 108) (i32.const 112)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 24))
    (i32.store8 (i32.const 48) (i32.add (i32.const 48) (i32.load (i32.const 100))))
    (i32.store8 (i32.const 49) (i32.const 47))
    (i32.store8 (i32.const 50) (i32.add (i32.const 48) (i32.load (i32.const 108))))
    (i32.store8 (i32.const 51) (i32.const 10))
    (i32.store (i32.const 8) (i32.const 48))
    (i32.store (i32.const 12) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 200)))
    (call $proc_exit (i32.const 7))))`;

// Grows linear memory 1 MiB at a time and touches every byte, until memory.grow fails.
const HOG = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $old i32)
    (loop $grow
      (local.set $old (memory.grow (i32.const 16)))
      (if (i32.ne (local.get $old) (i32.const -1))
        (then
          (memory.fill (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1) (i32.const 1048576))
          (br $grow))))
    (call $proc_exit (i32.const 3))))`;

// Spins forever.
const SPIN = `(module (func (export "_start") (loop $l (br $l))) (memory (export "memory") 1))`;

const installed: Record<string, { path: string; measurement: string }> = {};

test.before(async () => {
  closeInheritedFds();
  for (const [name, wat] of Object.entries({ hello: HELLO, hog: HOG, spin: SPIN })) {
    writeFileSync(join(scratch.dir, `${name}.wat`), wat);
    runTool(wat2wasm, ['-o', join(scratch.dir, `${name}.wasm`), join(scratch.dir, `${name}.wat`)]);
    const path = join(scratch.dir, `${name}.installed`);
    installed[name] = { path, measurement: await install(join(scratch.dir, `${name}.wasm`), path) };
  }
});
test.after(() => scratch.cleanup());

function wasm(name: string, over: Partial<RunOptions> = {}) {
  return run({ binary: installed[name]!, argv: [], limits: limits(), sandbox: 'bwrap', interpreter: { kind: 'wasi' }, ...over });
}

test('a WASI module runs under node:wasi in the sandbox: args, env, stdout, exit code', async () => {
  const r = await wasm('hello', { argv: ['a', 'b'], env: { ONE: '1', TWO: '2' } });
  assert.is(r.stderr.toString(), '', 'no ExperimentalWarning or runner noise on the module stderr');
  // argv[0] is the module name; env is exactly what the caller gave (not node's PATH/LANG).
  assert.is(r.stdout.toString(), 'hi from wasm, argc/envc=3/2\n');
  assert.is(r.exitCode, 7);
});

test('a WASI module that grows its memory past the limit is killed', async () => {
  const r = await wasm('hog', { limits: limits({ memoryBytes: 128 << 20 }) });
  assert.is(r.limitsHit.memory, true);
  assert.is(r.signal, 'SIGKILL');
});

test('a spinning WASI module is killed at the wall limit', async () => {
  const r = await wasm('spin', { limits: limits({ wallMs: 1500 }) });
  assert.is(r.limitsHit.wall, true);
  assert.is(r.signal, 'SIGKILL');
});

test.run();
