// The `virt-offload measure` command as a user runs it: the built CLI in a child process.
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';

const cli = join(repoRoot, 'dist/virt-offload.cjs');
const { dir, cleanup } = scratchDir('vo-cli-');
const script = join(dir, 'hello.sh');
writeFileSync(script, '#!/bin/sh\necho hello\n');
chmodSync(script, 0o750);

function vo(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function voBytes(args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { maxBuffer: 1 << 30 });
}

test.after(cleanup);

test('default output is sha256sum-compatible, and sha256sum -c accepts it for raw files', () => {
  const r = vo(['measure', script, join(repoRoot, 'package.json')]);
  assert.is(r.status, 0, r.stderr);
  const sha = run(requireTool('sha256sum', 'coreutils'), [script, join(repoRoot, 'package.json')]);
  assert.is(r.stdout.replace(/^sha256:/gm, ''), sha);
  const checkFile = join(dir, 'sums');
  writeFileSync(checkFile, r.stdout.replace(/^sha256:/gm, ''));
  run('sha256sum', ['-c', '--quiet', checkFile]);
});

test('--json prints one object per file with the documented fields', () => {
  const r = vo(['measure', '--json', script, script]);
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 2);
  const obj = JSON.parse(lines[0]!) as Record<string, unknown>;
  for (const key of ['path', 'measurement', 'format', 'profile', 'size', 'hashedBytes', 'algo']) assert.ok(key in obj, `missing ${key}`);
  assert.is(obj.path, script);
  assert.is(obj.format, 'raw');
  assert.is(obj.profile, 'v1');
  assert.is(obj.size, statSync(script).size);
  assert.is(obj.hashedBytes, statSync(script).size);
  assert.match(obj.measurement as string, /^sha256:[0-9a-f]{64}$/);
});

test('--algo blake3 prints blake3:<hex> (BLAKE3 test vector for empty input)', () => {
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  const r = vo(['measure', '--algo', 'blake3', empty]);
  assert.is(r.status, 0, r.stderr);
  // From the BLAKE3 specification's test vectors (input length 0).
  assert.is(r.stdout, `blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262  ${empty}\n`);
});

test('--canonical - streams the measured bytes: their sha256 is the measurement', () => {
  const r = voBytes(['measure', '--canonical', '-', process.execPath]);
  assert.is(r.status, 0, r.stderr.toString());
  const printed = r.stderr.toString().split(/\s+/)[0];
  assert.is(`sha256:${createHash('sha256').update(r.stdout).digest('hex')}`, printed);
  assert.ok(r.stdout.length < statSync(process.execPath).size, 'canonical image of node should be smaller than the file');
});

test('--canonical - into a pipe its reader closes early (| head): exit 141, no message', () => {
  const big = join(dir, 'big.bin');
  writeFileSync(big, Buffer.alloc(4 << 20, 0x41));
  const piped = spawnSync('bash', ['-c', 'set -o pipefail; "$0" "$1" measure --canonical - "$2" | head -c 10 >/dev/null', process.execPath, cli, big], { encoding: 'utf8' });
  assert.is(piped.status, 141, piped.stderr);
  assert.not.match(piped.stderr, /EPIPE|cannot write/);
});

test('--canonical OUT writes the file atomically with the input mode (no group/other write)', () => {
  const out = join(dir, 'canon.sh');
  const r = vo(['measure', '--canonical', out, script]);
  assert.is(r.status, 0, r.stderr);
  assert.equal(readFileSync(out), readFileSync(script));
  assert.is(statSync(out).mode & 0o7777, 0o750);
});

test('exit 1 names the file and the reason; other files are still measured', () => {
  const r = vo(['measure', join(dir, 'missing'), script, dir]);
  assert.is(r.status, 1);
  assert.match(r.stderr, `${join(dir, 'missing')}: no such file (ENOENT)`);
  assert.match(r.stderr, `${dir}: not a regular file`);
  assert.match(r.stdout, script);
});

test('a FIFO is refused at once, not waited on', () => {
  const fifo = join(dir, 'fifo');
  run('mkfifo', [fifo]);
  const r = spawnSync(process.execPath, [cli, 'measure', fifo], { encoding: 'utf8', timeout: 10_000 });
  assert.is(r.status, 1, `exit ${r.status}, signal ${r.signal}`);
  assert.match(r.stderr, `${fifo}: not a regular file`);
});

test('--json reports failures as objects too', () => {
  const r = vo(['measure', '--json', join(dir, 'missing')]);
  assert.is(r.status, 1);
  const obj = JSON.parse(r.stdout) as { path: string; error: { code: string; message: string } };
  assert.is(obj.error.code, 'EIO');
  assert.match(obj.error.message, 'no such file');
});

test('exit 2 on usage errors, naming the option and value', () => {
  const cases: [string[], string][] = [
    [['measure', '--algo', 'md5', script], "'md5' is invalid"],
    [['measure', '--canonical', join(dir, 'x'), script, script], 'exactly one FILE'],
    [['measure'], "missing required argument 'file'"],
    [['measure', '--frobnicate', script], "unknown option '--frobnicate'"],
    [['nonsense'], "unknown command 'nonsense'"],
  ];
  for (const [args, fragment] of cases) {
    const r = vo(args);
    assert.is(r.status, 2, `${args.join(' ')} → ${r.status} ${r.stderr}`);
    assert.match(r.stderr, fragment);
  }
});

test('--help and --version exit 0', () => {
  const help = vo(['measure', '--help']);
  assert.is(help.status, 0);
  assert.match(help.stdout, '--canonical');
  assert.match(help.stdout, 'Exit codes');
  const version = vo(['--version']);
  assert.is(version.status, 0);
  assert.match(version.stdout, /^virt-offload \d+\.\d+\.\d+/);
});

test('--profile authenticode on a non-PE file is refused with exit 1', () => {
  const r = vo(['measure', '--profile', 'authenticode', script]);
  assert.is(r.status, 1);
  assert.match(r.stderr, 'applies to PE files only');
  const elf = vo(['measure', '--profile', 'authenticode', process.execPath]);
  assert.is(elf.status, 1);
  assert.match(elf.stderr, 'applies to PE files only; this is an ELF binary');
});

test('a path with a newline is escaped the way sha256sum escapes it', () => {
  const odd = join(dir, 'a\nb');
  writeFileSync(odd, 'x');
  const r = vo(['measure', odd]);
  const sha = run('sha256sum', [odd]);
  assert.is(r.stdout, sha.replace(/^\\/, '\\sha256:'));
});

test.run();
