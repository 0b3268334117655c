// What the exec helper refuses before anything starts, and the paths it takes instead:
// tampered store files, wrong format/interpreter pairings, argv/env over the limits, no
// sandbox without a named unsandboxed profile.
import { spawnSync, type StdioOptions } from 'node:child_process';
import { appendFileSync, chmodSync, closeSync, copyFileSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeInheritedFds, ExecError, hostCgroups, run, type ExecErrorKind, type RunOptions } from '../../lib/exec/index.js';
import { requireTool, scratchDir } from '../../testbed/tools.js';
import { buildProbe, install, limits } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
const scratch = scratchDir('vo-exec-refuse-');
const dir = scratch.dir;
const storePath = join(dir, 'probe.installed');
let measurement = '';
let source = '';

test.before(async () => {
  closeInheritedFds();
  source = buildProbe(dir);
  measurement = await install(source, storePath);
});
test.after(() => scratch.cleanup());

function runDirs(): number {
  const layout = hostCgroups()!;
  return readdirSync(layout.pidsParent).filter((n) => n.startsWith('run-')).length;
}

async function refused(options: RunOptions, kind: ExecErrorKind, message?: RegExp): Promise<ExecError> {
  let started = false;
  const before = runDirs();
  try {
    await run({ ...options, onStart: () => void (started = true) });
  } catch (err) {
    assert.instance(err, ExecError);
    const e = err as ExecError;
    assert.is(e.kind, kind, e.message);
    if (message) assert.match(e.message, message);
    assert.is(started, false, 'nothing was started');
    assert.is(runDirs(), before, 'no cgroup left behind');
    return e;
  }
  assert.unreachable(`expected an ExecError (${kind})`);
  throw new Error('unreachable');
}

function opts(path: string, m: string, over: Partial<RunOptions> = {}): RunOptions {
  return { binary: { path, measurement: m }, argv: ['echo', '0', 'ok'], limits: limits(), sandbox: 'bwrap', ...over };
}

test('a store file changed after install is refused before anything runs', async () => {
  const tampered = join(dir, 'tampered');
  copyFileSync(storePath, tampered);
  const bytes = readFileSync(tampered);
  // Change one byte of code: the machine code sits in the executable segment, far from the headers.
  const at = bytes.indexOf(Buffer.from('ERR %s %s'));
  assert.ok(at > 0);
  bytes[at] = 'X'.charCodeAt(0);
  writeFileSync(tampered, bytes);
  const e = await refused(opts(tampered, measurement), 'tampered', /measures sha256:[0-9a-f]{64}, not sha256:/);
  assert.is(e.measurement, measurement);
  assert.ok(e.actual !== undefined && e.actual !== measurement);
});

test('data appended to a store file (same measurement) is refused: the store holds canonical images only', async () => {
  const appended = join(dir, 'appended');
  copyFileSync(storePath, appended);
  appendFileSync(appended, Buffer.from('hidden payload'));
  await refused(opts(appended, measurement), 'tampered', /not the canonical image/);
});

test('a symlink in place of the store file is refused', async () => {
  const link = join(dir, 'link');
  symlinkSync(storePath, link);
  await refused(opts(link, measurement), 'tampered', /symbolic link/);
});

test('argv and env are checked against the limits and the rules', async () => {
  await refused(opts(storePath, measurement, { argv: ['a', 'b', 'c'], limits: limits({ args: 2 }) }), 'bad-request', /3 arguments given; the policy allows 2/);
  await refused(opts(storePath, measurement, { argv: ['x'.repeat(100)], limits: limits({ argBytes: 64 }) }), 'bad-request', /101 bytes; the policy allows 64/);
  await refused(opts(storePath, measurement, { argv: ['a\0b'] }), 'bad-request', /NUL/);
  await refused(opts(storePath, measurement, { env: { LD_PRELOAD: '/tmp/x.so' } }), 'bad-request', /LD_PRELOAD is refused/);
  await refused(opts(storePath, measurement, { env: { 'A=B': 'c' } }), 'bad-request', /name/);
  // What makes the C library load files of the caller's choosing, and the sandbox's PATH.
  for (const name of ['GCONV_PATH', 'LOCPATH', 'GLIBC_TUNABLES', 'MALLOC_CHECK_', 'TMPDIR', 'PATH']) {
    await refused(opts(storePath, measurement, { env: { [name]: '/tmp' } }), 'bad-request', new RegExp(`environment variable ${name} is refused`));
  }
  for (const tz of ['/tmp/zone', ':/tmp/zone', ':UTC', 'a/../b']) {
    await refused(opts(storePath, measurement, { env: { TZ: tz } }), 'bad-request', /environment variable TZ is refused \(a TZ naming a file/);
  }
  const ok = await run(opts(storePath, measurement, { argv: ['env'], env: { GREETING: 'hi', TZ: 'UTC0' } }));
  assert.match(ok.stdout.toString(), /^GREETING=hi$/m);
  await refused(opts(storePath, 'sha256:abc'), 'bad-request', /not a measurement/);
});

test('format and interpreter must match: ELF direct, script with its named interpreter, WASM with wasi', async () => {
  const script = join(dir, 'script.sh');
  writeFileSync(script, '#!/bin/sh\necho "script [$1] [$2]"\nread line\necho "got $line"\nexit 5\n');
  const scriptM = await install(script, join(dir, 'script.installed'));
  await refused(opts(join(dir, 'script.installed'), scriptM), 'not-runnable', /script runs only with the interpreter its policy names/);
  await refused(opts(storePath, measurement, { interpreter: { kind: 'path', path: '/bin/sh' } }), 'not-runnable', /runs scripts, not elf/);
  await refused(opts(storePath, measurement, { interpreter: { kind: 'wasi' } }), 'not-runnable', /WebAssembly modules only/);
  await refused(opts(join(dir, 'script.installed'), scriptM, { interpreter: { kind: 'path', path: '/no/such/interpreter' } }), 'not-runnable', /not an executable file/);

  // An interpreter reads variables as code (BASH_ENV, ENV, PERL5OPT…): a script gets none.
  const sh = { kind: 'path', path: '/bin/sh' } as const;
  for (const env of [{ BASH_ENV: '$(id)' }, { ENV: '/tmp/x' }, { HARMLESS: 'yes' }] as Record<string, string>[]) {
    await refused(opts(join(dir, 'script.installed'), scriptM, { interpreter: sh, env }), 'bad-request', /environment variables are refused for a script \(interpreter \/bin\/sh may read them as code/);
  }
  const r = await run(opts(join(dir, 'script.installed'), scriptM, { argv: ['one', 'two words'], stdin: 'input\n', interpreter: { kind: 'path', path: '/bin/sh' } }));
  assert.is(r.stdout.toString(), 'script [one] [two words]\ngot input\n');
  assert.is(r.exitCode, 5);
});

test('bubblewrap cannot build the sandbox: sandbox-failed with what it said, also when stderr is streamed', async () => {
  // A stand-in that passes the start-up probe (no --info-fd) and fails every real run, as a
  // bwrap does on a host that refuses it something.
  const fake = join(dir, 'fake-bwrap');
  writeFileSync(fake, '#!/bin/sh\ncase "$*" in *--info-fd*) echo "bwrap: Creating new namespace failed: fake" >&2; exit 1;; esac\nexit 0\n', { mode: 0o755 });
  chmodSync(dir, 0o711); // bwrap runs as 65534 when we are root
  const streamed: Buffer[] = [];
  const e = await refused(opts(storePath, measurement, { argv: ['echo'], config: { bwrapPath: fake }, onStderr: (c) => streamed.push(c) }), 'sandbox-failed', /bubblewrap could not build the sandbox for .*: bwrap: Creating new namespace failed: fake/);
  assert.is(e.path, storePath);
});

test('bwrap that cannot be started (EACCES after the probe passed): ExecError no-sandbox, not an unhandled rejection', async () => {
  // The probe passes once per path and is remembered; then the file stops being executable.
  const fake = join(dir, 'flaky-bwrap');
  writeFileSync(fake, '#!/bin/sh\ncase "$*" in *--info-fd*) exit 1;; esac\nexit 0\n', { mode: 0o755 });
  chmodSync(dir, 0o711);
  await refused(opts(storePath, measurement, { argv: ['echo'], config: { bwrapPath: fake } }), 'sandbox-failed');
  chmodSync(fake, 0o644);
  let unhandled: unknown;
  const onUnhandled = (reason: unknown) => (unhandled = reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    await refused(opts(storePath, measurement, { argv: ['echo'], config: { bwrapPath: fake } }), 'no-sandbox', /cannot start .*flaky-bwrap: spawn .*EACCES/);
    await new Promise((done) => setTimeout(done, 50));
    assert.is(unhandled, undefined, String(unhandled));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a PT_INTERP outside the system library directories is refused', async () => {
  const evil = buildProbe(dir, ['-Wl,--dynamic-linker=/tmp/evil/ld.so'], 'evil-interp');
  const m = await install(evil, join(dir, 'evil.installed'));
  await refused(opts(join(dir, 'evil.installed'), m), 'not-runnable', /PT_INTERP '\/tmp\/evil\/ld.so'/);
});

test('an ELF of another machine is refused, sandboxed or not (execvp would run it as a /bin/sh script)', async () => {
  // A static probe whose e_machine says aarch64, with a shell line in it: the kernel refuses
  // it (ENOEXEC) and execvp(3) then hands it to /bin/sh.
  const bytes = readFileSync(buildProbe(dir, ['-static'], 'foreign-probe'));
  bytes.writeUInt16LE(183, 18);
  const foreign = join(dir, 'foreign');
  writeFileSync(foreign, Buffer.concat([bytes, Buffer.from('\necho RAN-AS-SHELL-SCRIPT\n')]));
  const m = await install(foreign, join(dir, 'foreign.installed'));
  const why = /is an ELF64 LE aarch64 executable; this host runs ELF64 LE x86-64/;
  await refused(opts(join(dir, 'foreign.installed'), m), 'not-runnable', why);
  await refused(opts(join(dir, 'foreign.installed'), m, { sandbox: { unsandboxed: 'ops-approved' } }), 'not-runnable', why);
});

test('a static executable runs with no loader at all', async () => {
  const stat = buildProbe(dir, ['-static'], 'static-probe');
  const m = await install(stat, join(dir, 'static.installed'));
  const r = await run(opts(join(dir, 'static.installed'), m, { argv: ['echo', '0', 'static'] }));
  assert.is(r.stdout.toString(), '[0][static]\n');
});

test('no sandbox: refused unless an unsandboxed profile is named; the named profile still drops to 65534 with limits', async () => {
  const missing = { bwrapPath: join(dir, 'no-bwrap-here') };
  await refused(opts(storePath, measurement, { config: missing }), 'no-sandbox', /no sandbox available/);
  await refused(opts(storePath, measurement, { sandbox: { unsandboxed: '' } }), 'no-sandbox', /explicitly named profile/);
  await refused(opts(storePath, measurement, { config: { cgroups: null } }), 'no-sandbox', /cannot be enforced/);

  const r = await run(opts(storePath, measurement, { argv: ['status'], sandbox: { unsandboxed: 'ops-approved' }, config: missing }));
  assert.is(r.sandbox, 'unsandboxed:ops-approved');
  assert.match(r.stdout.toString(), /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
  const hog = await run(opts(storePath, measurement, { argv: ['memhog', '256'], limits: limits({ memoryBytes: 32 << 20 }), sandbox: { unsandboxed: 'ops-approved' } }));
  assert.is(hog.limitsHit.memory, true);
  assert.is(hog.signal, 'SIGKILL');
});

test('an fd the process inherited without close-on-exec is refused (it would reach the program)', () => {
  // Hand a child node fd 202 (dup2'd by spawn, so without close-on-exec), as a careless
  // supervisor would. (Node itself marks low inherited fds close-on-exec, not high ones.)
  const script = `
    import { run } from ${JSON.stringify(new URL('../../lib/exec/index.js', import.meta.url).href)};
    try {
      await run({ binary: { path: ${JSON.stringify(storePath)}, measurement: ${JSON.stringify(measurement)} }, argv: ['echo'], limits: ${JSON.stringify(limits())}, sandbox: 'bwrap' });
      console.log('RAN');
    } catch (e) { console.log(e.kind, e.message); }`;
  const fd = openSync('/dev/null', 'r');
  try {
    const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...Array<'ignore'>(199).fill('ignore'), fd];
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio, encoding: 'utf8' });
    assert.match(r.stdout, /^leaky-fd fd 202 \(\/dev\/null\) is open without close-on-exec/, r.stdout + r.stderr);
  } finally {
    closeSync(fd);
  }
});

test('the installed file is never executed in place: a non-executable store file runs', async () => {
  const noexec = join(dir, 'noexec');
  copyFileSync(storePath, noexec);
  chmodSync(noexec, 0o400);
  const r = await run(opts(noexec, measurement));
  assert.is(r.stdout.toString(), '[0][ok]\n');
});

test.run();
