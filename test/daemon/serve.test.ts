// `virt-offload serve` as a process (the bundled CLI): JSON logs on stderr, the control socket,
// a guest request, SIGHUP and a new HEAD commit reload the policy, SIGTERM stops it cleanly.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { withoutMallocTuning } from '../../lib/daemon/index.js';
import { measureFile } from '../../lib/io/index.js';
import { repoRoot, requireTool, run, scratchDir, waitUntil as waitUntilPolled } from '../../testbed/tools.js';
import { commitPolicy, control, Guest } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
requireTool('git', 'git');
const scratch = scratchDir('vo-serve-');
const repo = join(scratch.dir, 'policy');
const runDir = join(scratch.dir, 'run');
const logs: Array<Record<string, unknown>> = [];
let child: ChildProcess;
let m = '';
let script: Buffer;

const waitUntil = (what: string, ok: () => boolean): Promise<void> => waitUntilPolled(what, ok, 15_000, () => `logs: ${JSON.stringify(logs.slice(-5))}`);

test.before(async () => {
  const path = join(scratch.dir, 'say.sh');
  script = Buffer.from('#!/bin/sh\necho "said: $*"\n');
  writeFileSync(path, script);
  m = (await measureFile(path)).measurement;
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'say.policy': `binary say\ninterpreter /bin/sh\nvms all\nversion 1 approved ${m}\n` }, 'approve say');
  child = spawn(process.execPath, [join(repoRoot, 'dist/virt-offload.cjs'), 'serve', '--run-dir', runDir, '--repo', repo, '--store', join(scratch.dir, 'store'), '--audit-log', join(scratch.dir, 'audit.jsonl'), '--watch-interval', '200', '--max-upload', '32M', '--json'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // Started by hand, without the unit's GLIBC_TUNABLES: it says how to set it.
    env: withoutMallocTuning(process.env),
  });
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      logs.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      buf = buf.slice(nl + 1);
    }
  });
  await waitUntil('the control socket', () => existsSync(join(runDir, 'control.sock')) && logs.some((l) => /serving/.test(String(l.message))));
});

test.after(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
  scratch.cleanup();
});

test('serve: control socket, a guest request, JSON logs with levels', async () => {
  const added = await control(join(runDir, 'control.sock'), { cmd: 'add-vm', name: 'guest1', uuid: '11111111-2222-4333-8444-555555555555' });
  assert.is(added.ok, true);
  const g = await Guest.connect(added.socket as string);
  await g.hello();
  const r = await g.submit({ bytes: script }, ['hi', 'there']);
  assert.is(r.final.type, 'EXIT', JSON.stringify(r.final));
  assert.is(r.stdout, 'said: hi there\n');
  g.close();
  assert.ok(logs.every((l) => typeof l.time === 'string' && ['error', 'warn', 'info', 'debug'].includes(String(l.level))));
  assert.ok(logs.some((l) => l.level === 'info' && /policy loaded/.test(String(l.message))));
  const status = await control(join(runDir, 'control.sock'), { cmd: 'status' });
  assert.is((status.limits as { maxUpload: number }).maxUpload, 32 * 1024 * 1024, '--max-upload 32M');
  // Started without GLIBC_TUNABLES (as by hand): status says so, and the log how to set it.
  assert.equal([(status.memory as { mallocTuned: boolean }).mallocTuned, (status.memory as { mmapThresholdBytes: number | null }).mmapThresholdBytes], [false, null]);
  const hint = logs.find((l) => /GLIBC_TUNABLES does not set glibc\.malloc\.mmap_threshold/.test(String(l.message)));
  assert.ok(hint !== undefined, JSON.stringify(logs.map((l) => l.message)));
  assert.is(hint.level, 'info');
  assert.match(String(hint.message), /set GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=32768 in its environment, as examples\/virt-offload\.service does/);
});

test('serve: SIGHUP reloads; a new HEAD commit is picked up by the watcher; a bad commit is logged as an error', async () => {
  const loads = () => logs.filter((l) => /policy loaded/.test(String(l.message))).length;
  const before = loads();
  child.kill('SIGHUP');
  await waitUntil('the SIGHUP reload', () => loads() > before);
  const head = commitPolicy(repo, { 'say.policy': `binary say\ninterpreter /bin/sh\nvms all\nversion 1 revoked reason="test" ${m}\n` }, 'revoke say');
  await waitUntil('the watcher reload', () => logs.some((l) => l.commit === head && /policy loaded/.test(String(l.message))));
  commitPolicy(repo, { 'say.policy': 'binary say\nversion 1 approoved\n' }, 'broken');
  await waitUntil('the failed reload', () => logs.some((l) => l.level === 'error' && /POLICY RELOAD FAILED, keeping the last good policy/.test(String(l.message))));
  const status = await control(join(runDir, 'control.sock'), { cmd: 'status' });
  assert.is((status.policy as Record<string, unknown>).commit, head);
});

test('serve: a mistyped --repo or --require-signed, or a file as --patch-dir, stops it at once (1); --max-upload takes K, M, G', () => {
  const cli = join(repoRoot, 'dist/virt-offload.cjs');
  const base = ['serve', '--run-dir', join(scratch.dir, 'run-bad'), '--store', join(scratch.dir, 'store-bad'), '--audit-log', join(scratch.dir, 'audit-bad.jsonl')];
  const cases: [string[], RegExp][] = [
    [['--repo', join(scratch.dir, 'no-such-repo')], /--repo .*no-such-repo: no such file or directory/],
    [['--repo', repo, '--require-signed', join(scratch.dir, 'no-signers')], /--require-signed .*no-signers: no such file or directory/],
    [['--repo', repo, '--patch-dir', join(repo, '.git', 'HEAD')], /--patch-dir .*HEAD: not a directory/],
  ];
  for (const [args, message] of cases) {
    const r = spawnSync(process.execPath, [cli, ...base, ...args], { encoding: 'utf8', timeout: 20_000 });
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, message);
  }
  const size = spawnSync(process.execPath, [cli, ...base, '--repo', repo, '--max-upload', '64Q'], { encoding: 'utf8', timeout: 20_000 });
  assert.is(size.status, 2);
  assert.match(size.stderr, /--max-upload 64Q: expected a size: bytes, or a whole number of K, M or G/);
});

test('serve: SIGTERM stops it with exit 0 and removes its sockets', async () => {
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  child.kill('SIGTERM');
  assert.is(await exited, 0);
  assert.not.ok(existsSync(join(runDir, 'control.sock')));
  assert.not.ok(existsSync(join(runDir, 'vm', 'guest1.sock')));
});

test.run();
