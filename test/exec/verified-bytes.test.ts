// run() with bytes the caller measured in its own memory (verifyBytes(): the daemon's upload
// path): what runs is the canonical image that was hashed, not the file named as its path,
// and the size ceiling applies as it does to a file.
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeInheritedFds, ExecError, run, verifyBytes } from '../../lib/exec/index.js';
import { measureFile } from '../../lib/io/index.js';
import { garbageCollector, requireTool, scratchDir } from '../../testbed/tools.js';
import { buildProbe, limits } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
const scratch = scratchDir('vo-exec-bytes-');
let source = '';

test.before(() => {
  closeInheritedFds();
  source = buildProbe(scratch.dir);
});
test.after(() => scratch.cleanup());

test('verifyBytes measures like a file (debug data excluded) and run() executes those bytes', async () => {
  const bytes = readFileSync(source);
  const v = await verifyBytes(bytes, '/nowhere/probe');
  assert.is(v.measurement, (await measureFile(source)).measurement);
  assert.is(v.format, 'elf');
  assert.ok(v.size < bytes.length, 'the -g build carries debug sections that are not part of the canonical image');
  assert.is(v.chunks.reduce((n, c) => n + c.length, 0), v.size);
  // The bytes were copied as they were hashed: changing the caller's buffer afterwards changes nothing.
  bytes.fill(0);
  const r = await run({ binary: { verified: v }, argv: ['echo', '0', 'in-memory'], limits: limits(), sandbox: 'bwrap' });
  assert.is(r.exitCode, 0, r.stderr.toString());
  assert.is(r.stdout.toString(), '[0][in-memory]\n');
  assert.is(r.measurement, v.measurement);
});

test('the hashed bytes are kept in one buffer that fits them, however many pieces the file has', async () => {
  // A module of 100 000 empty custom sections (300 KB): a copy per hashed piece held 100 000s
  // of small buffers, ~150x the upload, before any policy check.
  const n = 100_000;
  const module = new Uint8Array(8 + 3 * n);
  module.set([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  for (let i = 0; i < n; i++) module.set([0x00, 0x01, 0x00], 8 + 3 * i);
  const v = await verifyBytes(module, '/nowhere/many.wasm');
  assert.is(v.chunks.length, 1);
  assert.is(v.chunks[0]!.length, v.size);
  assert.is(v.chunks[0]!.buffer.byteLength, v.size, 'no larger buffer behind it');
  // And an ELF whose debug data is dropped does not keep the input-sized buffer alive.
  const elf = await verifyBytes(readFileSync(source), '/nowhere/probe');
  assert.ok(elf.chunks[0]!.buffer.byteLength - elf.size <= Math.max(64 * 1024, elf.size / 8), `${elf.chunks[0]!.buffer.byteLength} bytes held for ${elf.size}`);
});

test('once run() has resolved, nothing of the run holds the measured image (the daemon would keep every upload)', async () => {
  const gc = garbageCollector();
  const image = await (async () => {
    const v = await verifyBytes(readFileSync(source), '/nowhere/probe');
    const r = await run({ binary: { verified: v }, argv: ['echo', '0', 'x'], limits: limits(), sandbox: 'bwrap' });
    assert.is(r.exitCode, 0, r.stderr.toString());
    return new WeakRef(v.chunks[0]!.buffer);
  })();
  // A few turns for the streams' own close callbacks, far less than any fallback timer.
  for (let i = 0; i < 5; i++) await new Promise((done) => setImmediate(done));
  gc();
  assert.is(image.deref(), undefined, 'the image is still reachable after the run ended');
});

test('a run that could not start holds nothing either (no sandbox, the spawn refused)', async () => {
  const gc = garbageCollector();
  // An interpreter uid 65534 may not execute (mode 0010): the spawn fails with EACCES.
  const interp = join(scratch.dir, 'sh-0010');
  copyFileSync('/bin/sh', interp);
  chmodSync(interp, 0o010);
  const image = await (async () => {
    const v = await verifyBytes(new TextEncoder().encode('#!/bin/sh\necho hi\n'), '/nowhere/script');
    const err = await run({ binary: { verified: v }, limits: limits({ wallMs: 20_000 }), interpreter: { kind: 'path', path: interp }, sandbox: { unsandboxed: 'test' } }).catch((e: unknown) => e);
    // Refused at the spawn itself, after the run's timers were armed (not before it began).
    assert.instance(err, ExecError);
    assert.is((err as ExecError).kind, 'sandbox-failed', (err as Error).message);
    assert.match((err as Error).message, /EACCES/);
    return new WeakRef(v.chunks[0]!.buffer);
  })();
  for (let i = 0; i < 5; i++) await new Promise((done) => setImmediate(done));
  gc();
  assert.is(image.deref(), undefined, 'the image is still reachable (the 20 s wall timer)');
});

test('the size ceiling applies to measured bytes too; nothing starts', async () => {
  const v = await verifyBytes(readFileSync(source), join(scratch.dir, 'probe.installed'));
  const err = await run({ binary: { verified: v }, limits: limits(), sandbox: 'bwrap', config: { maxBinaryBytes: v.size - 1 }, onStart: () => assert.unreachable('started') }).catch((e: unknown) => e);
  assert.instance(err, ExecError);
  assert.is((err as ExecError).kind, 'too-large');
  assert.match((err as ExecError).message, /probe\.installed is \d+ bytes/);
});

test('a file the measurement core refuses gives its typed error, not a run', async () => {
  const path = join(scratch.dir, 'broken');
  const bytes = readFileSync(source).subarray(0, 200);
  writeFileSync(path, bytes);
  const err = await verifyBytes(bytes, path).catch((e: unknown) => e);
  assert.instance(err, Error);
  assert.not.instance(err, ExecError);
});

test.run();
