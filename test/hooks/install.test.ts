// `virt-offload hook install|uninstall` run as shipped (dist/virt-offload.cjs) against scratch
// hook directories: atomic write, mode, interpreter, idempotence, the SIGHUP advice, refusal to
// replace or remove a file it did not write, --json.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot, scratchDir } from '../../testbed/tools.js';

const CLI = join(repoRoot, 'dist/virt-offload.cjs');
const scratch = scratchDir('vo-hookinst-');
test.after(() => scratch.cleanup());

function cli(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'hook', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const json = (args: readonly string[]): Record<string, unknown> => {
  const r = cli([...args, '--json']);
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};

test('install into an empty hooks dir: executable file, absolute interpreter, SIGHUP advice; again: unchanged', () => {
  const dir = join(scratch.dir, 'a');
  const first = cli(['install', '--hooks-dir', dir, '--run-dir', '/run/vo-x', '--no-log-file']);
  assert.is(first.status, 0, first.stderr);
  assert.match(first.stdout, /^installed .*qemu\.d\/virt-offload \(interpreter \/.*node, control socket \/run\/vo-x\/control\.sock\)$/m);
  assert.match(first.stdout, /SIGHUP/);
  const file = join(dir, 'qemu.d', 'virt-offload');
  assert.is(statSync(file).mode & 0o777, 0o755);
  const text = readFileSync(file, 'utf8');
  assert.ok(text.startsWith(`#!${process.execPath}\n`));
  assert.ok(text.includes('var VIRT_OFFLOAD_HOOK_CONFIG = {"control":"/run/vo-x/control.sock"};'));
  assert.equal(readdirSync(join(dir, 'qemu.d')), ['virt-offload'], 'no temp file left');
  const again = json(['install', '--hooks-dir', dir, '--run-dir', '/run/vo-x', '--no-log-file']);
  assert.equal(again, { action: 'unchanged', path: file, interpreter: process.execPath, control: '/run/vo-x/control.sock', logFile: null, libvirtdReloadNeeded: false });
  const changed = json(['install', '--hooks-dir', dir, '--run-dir', '/run/vo-y']);
  assert.is(changed.action, 'updated');
  assert.is(changed.logFile, '/var/log/virt-offload/hook.log');
  assert.ok(readFileSync(file, 'utf8').includes('/run/vo-y/control.sock'));
});

test('no SIGHUP advice when another qemu hook already exists', () => {
  const dir = join(scratch.dir, 'b');
  mkdirSync(dir);
  writeFileSync(join(dir, 'qemu'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const r = json(['install', '--hooks-dir', dir]);
  assert.is(r.action, 'installed');
  assert.is(r.libvirtdReloadNeeded, false);
  const dir2 = join(scratch.dir, 'c');
  mkdirSync(join(dir2, 'qemu.d'), { recursive: true });
  writeFileSync(join(dir2, 'qemu.d', '10-other'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  assert.is(json(['install', '--hooks-dir', dir2]).libvirtdReloadNeeded, false);
  const dir3 = join(scratch.dir, 'd');
  mkdirSync(join(dir3, 'qemu.d'), { recursive: true });
  writeFileSync(join(dir3, 'qemu.d', 'README'), 'not executable\n', { mode: 0o644 });
  assert.is(json(['install', '--hooks-dir', dir3]).libvirtdReloadNeeded, true);
});

test('a file we did not write is neither replaced nor removed', () => {
  const dir = join(scratch.dir, 'e');
  mkdirSync(join(dir, 'qemu.d'), { recursive: true });
  const foreign = join(dir, 'qemu.d', 'virt-offload');
  writeFileSync(foreign, '#!/bin/sh\n# mine\nexit 0\n', { mode: 0o755 });
  const install = cli(['install', '--hooks-dir', dir]);
  assert.is(install.status, 1);
  assert.match(install.stderr, /was not written by virt-offload; refusing to replace it/);
  const uninstall = cli(['uninstall', '--hooks-dir', dir]);
  assert.is(uninstall.status, 1);
  assert.match(uninstall.stderr, /refusing to remove it/);
  assert.is(readFileSync(foreign, 'utf8'), '#!/bin/sh\n# mine\nexit 0\n');
});

test('uninstall removes our file; again: absent, exit 0', () => {
  const dir = join(scratch.dir, 'a');
  assert.equal(json(['uninstall', '--hooks-dir', dir]), { action: 'removed', path: join(dir, 'qemu.d', 'virt-offload') });
  assert.not.ok(existsSync(join(dir, 'qemu.d', 'virt-offload')));
  const again = cli(['uninstall', '--hooks-dir', dir]);
  assert.is(again.status, 0);
  assert.match(again.stdout, /not installed/);
});

test('usage errors: relative paths, a --node that is not executable', () => {
  const rel = cli(['install', '--hooks-dir', join(scratch.dir, 'f'), '--run-dir', 'run']);
  assert.is(rel.status, 2);
  assert.match(rel.stderr, /--run-dir run: must be an absolute path/);
  const notExec = join(scratch.dir, 'node-not-exec');
  writeFileSync(notExec, '');
  chmodSync(notExec, 0o644);
  const node = cli(['install', '--hooks-dir', join(scratch.dir, 'f'), '--node', notExec]);
  assert.is(node.status, 2);
  assert.match(node.stderr, /not an executable file/);
  assert.not.ok(existsSync(join(scratch.dir, 'f', 'qemu.d', 'virt-offload')));
});

test('a --hooks-dir that is a file: exit 1 with the path, no stack trace', () => {
  const file = join(scratch.dir, 'a-file');
  writeFileSync(file, '');
  for (const action of ['install', 'uninstall']) {
    const r = cli([action, '--hooks-dir', file]);
    assert.is(r.status, 1, r.stderr);
    assert.is(r.stderr, `virt-offload: ${file}/qemu.d/virt-offload: a component of the path is not a directory (check --hooks-dir)\n`);
  }
});

test.run();
