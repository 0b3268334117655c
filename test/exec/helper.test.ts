// The exec helper process the daemon runs its sandboxes in: the whole sandbox suite through it,
// then what is its own: who forks bwrap, errors with their facts, the helper dying mid-run,
// shutting it down, and its message channel.
import { writeFileSync, readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ExecError, ExecHelper, serveExecHelper, type RunOptions, type RunResult } from '../../lib/exec/index.js';
import { encodeHelperMessage, HelperMessageReader, checkFromHelper, checkToHelper, MAX_HELPER_MESSAGE_BYTES } from '../../lib/exec/helper-wire.js';
import { repoRoot, scratchDir, waitUntil } from '../../testbed/tools.js';
import { buildProbe, cmdline, install, limits } from './helpers.js';
import { sandboxSuite } from './sandbox-suite.js';

const ENTRY = join(repoRoot, 'dist/lib/exec/helper-entry.js');
const logged: string[] = [];
const log = (level: string, line: string) => logged.push(`${level}: ${line}`);

// 1. Every sandbox promise, kept by runs in the helper process.
let shared: ExecHelper | undefined;
const sandbox = sandboxSuite('sandbox suite, through the exec helper process', () => (o) => shared!.run(o));
sandbox.before(async () => {
  shared = await ExecHelper.start({ script: ENTRY, log });
});
sandbox.after(async () => {
  await shared?.close();
});
sandbox.run();

// 2. What is the helper's own.
const own = suite('exec helper process');
const scratch = scratchDir('vo-helper-');
const storeDir = join(scratch.dir, 'store');
mkdirSync(storeDir);
const storePath = join(storeDir, 'probe');
let measurement = '';
let helper: ExecHelper;

own.before(async () => {
  measurement = await install(buildProbe(scratch.dir), storePath);
  helper = await ExecHelper.start({ script: ENTRY, log });
});
own.after(async () => {
  await helper.close();
  scratch.cleanup();
});

function probe(argv: string[], over: Partial<RunOptions> = {}): Promise<RunResult> {
  return helper.run({ binary: { path: storePath, measurement }, argv, limits: limits(), sandbox: 'bwrap', ...over });
}

function ppid(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

function pidsWith(marker: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number)
    .filter((pid) => cmdline(pid).includes(marker));
}

own('bwrap is forked by the helper, not by the calling process; output streams as it comes', async () => {
  let parent = -1;
  const chunks: string[] = [];
  const r = await probe(['echo', '3', 'x'], {
    onStart: (info) => {
      parent = ppid(info.pid);
    },
    onStdout: (c) => chunks.push(c.toString()),
  });
  assert.is(parent, helper.pid);
  assert.is.not(parent, process.pid);
  assert.is(r.exitCode, 3);
  assert.is(r.stdout.toString(), '[3][x]\n');
  assert.is(chunks.join(''), r.stdout.toString());
  assert.is(r.stderr.toString(), 'to stderr\n');
  assert.is(r.measurement, measurement);
});

own('a refusal comes back as the same ExecError, with its facts', async () => {
  const other = join(storeDir, 'other');
  // Not the file the measurement was installed under.
  writeFileSync(other, '#!/bin/sh\necho swapped\n', { mode: 0o444 });
  try {
    await helper.run({ binary: { path: other, measurement }, argv: ['echo'], limits: limits(), sandbox: 'bwrap' });
    assert.unreachable('a tampered file ran');
  } catch (err) {
    assert.instance(err, ExecError);
    const e = err as ExecError;
    assert.is(e.kind, 'tampered');
    assert.is(e.path, other);
    assert.is(e.measurement, measurement);
    assert.match(e.actual ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.match(e.message, /measures sha256:.*not sha256:/);
  }
  try {
    await probe(['echo'], { env: { LD_PRELOAD: '/x.so' } });
    assert.unreachable('LD_PRELOAD accepted');
  } catch (err) {
    assert.is((err as ExecError).kind, 'bad-request');
    assert.match((err as Error).message, /LD_PRELOAD is refused/);
  }
});

own('the helper dies mid-run: the run fails as helper-failed, its sandbox is gone, the next run starts a new helper', async () => {
  const marker = `helper-death-${process.pid}-${Date.now()}`;
  const first = helper.pid!;
  let started = false;
  const running = probe(['sleeper', marker, '2'], {
    onStart: () => {
      started = true;
    },
  });
  await waitUntil('the sleepers to start', () => started && pidsWith(marker).length >= 3);
  process.kill(first, 'SIGKILL');
  try {
    await running;
    assert.unreachable('the run survived its helper');
  } catch (err) {
    assert.instance(err, ExecError);
    assert.is((err as ExecError).kind, 'helper-failed');
    assert.match((err as Error).message, new RegExp(`exec helper \\(pid ${first}\\) ended \\(signal SIGKILL\\) during the run`));
  }
  // bwrap dies with its parent (--die-with-parent), and the sandbox's pid 1 with bwrap.
  await waitUntil('the sandbox to end with the helper', () => pidsWith(marker).length === 0, 5000, () => pidsWith(marker).join(' '));
  const again = await probe(['echo', '0', 'after']);
  assert.is(again.stdout.toString(), '[0][after]\n');
  assert.is(helper.starts, 2);
  assert.ok(helper.pid !== undefined && helper.pid !== first);
  assert.ok(logged.some((l) => l.startsWith('error: ') && l.includes(`exec helper ${first} ended (signal SIGKILL) with 1 run(s) in progress`)), logged.join('\n'));
});

own('close() ends the runs in progress and the helper process', async () => {
  const h = await ExecHelper.start({ script: ENTRY, log });
  const pid = h.pid!;
  const marker = `helper-close-${process.pid}-${Date.now()}`;
  let started = false;
  const running = h.run({ binary: { path: storePath, measurement }, argv: ['sleeper', marker, '1'], limits: limits(), sandbox: 'bwrap', onStart: () => (started = true) });
  await waitUntil('the run to start', () => started);
  await h.close();
  const r = await running;
  assert.is(r.aborted, true);
  assert.is(pidsWith(marker).length, 0);
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
  try {
    await h.run({ binary: { path: storePath, measurement }, argv: ['echo'], limits: limits(), sandbox: 'bwrap' });
    assert.unreachable('a closed helper ran');
  } catch (err) {
    assert.is((err as ExecError).kind, 'helper-failed');
  }
});

own('a helper that cannot start is refused with what was started', async () => {
  const broken = join(scratch.dir, 'not-a-helper.cjs');
  writeFileSync(broken, 'process.exit(3);\n');
  try {
    await ExecHelper.start({ script: broken });
    assert.unreachable('started');
  } catch (err) {
    assert.is((err as ExecError).kind, 'helper-failed');
    assert.match((err as Error).message, /cannot start the exec helper \(.*not-a-helper\.cjs\): it ended \(exit code 3\) before it was ready/);
  }
});

own.run();

// 3. The channel and the helper's side of it, with run() replaced (unit tests of one module).
const wire = suite('exec helper channel');

wire('messages survive any split of the byte stream, typed arrays included', () => {
  const messages = [
    { t: 'out', id: 1, fd: 1, data: new Uint8Array([0, 1, 2, 255]) },
    { t: 'done', id: 1, result: { exitCode: 0, signal: null } },
    { t: 'log', level: 'warn', line: 'é\u{1F600}' },
  ] as const;
  const bytes = Buffer.concat(messages.map((m) => encodeHelperMessage(m as never)));
  for (const step of [1, 3, 7, bytes.length]) {
    const reader = new HelperMessageReader('test');
    const got: unknown[] = [];
    for (let i = 0; i < bytes.length; i += step) got.push(...reader.push(bytes.subarray(i, i + step)));
    assert.is(got.length, 3, `step ${step}`);
    assert.equal([...(got[0] as { data: Uint8Array }).data], [0, 1, 2, 255]);
    assert.equal(got[2], messages[2]);
    assert.is(reader.pending, 0);
  }
});

wire('a length over the ceiling and ill-formed messages are refused with the facts', () => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(MAX_HELPER_MESSAGE_BYTES + 1);
  assert.throws(() => new HelperMessageReader('exec helper output').push(head), /exec helper output: a message announces \d+ bytes, over the \d+-byte ceiling/);
  assert.is(checkFromHelper({ t: 'out', id: 1, fd: 3, data: new Uint8Array(1) }), 'out without fd 1|2 and bytes');
  assert.is(checkFromHelper({ t: 'done', id: 0, result: {} }), 'message "done" without a positive integer id');
  assert.is(checkFromHelper({ t: 'weird', id: 1 }), 'unknown message type "weird"');
  assert.is(checkToHelper({ t: 'run', id: 2, request: { binary: {} } }), 'run 2: request without binary or limits');
  assert.is(checkToHelper([1]), 'not a message with a positive integer id');
});

wire('serveExecHelper: runs, streams, reports failures; at the end of its input it aborts what runs and is done after', async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const seen: unknown[] = [];
  const reader = new HelperMessageReader('test');
  output.on('data', (c: Buffer) => seen.push(...reader.push(c)));
  const aborted: number[] = [];
  const fake = (o: RunOptions): Promise<RunResult> => {
    const argv = o.argv ?? [];
    if (argv[0] === 'fail') return Promise.reject(new ExecError('not-runnable', 'nope', { path: '/p', measurement: 'sha256:00' }));
    if (argv[0] === 'bug') return Promise.reject(new TypeError('broken'));
    o.onStart?.({ pid: 1, sandboxInitPid: 2, cgroupDirs: [] });
    o.onStdout?.(Buffer.from('out'));
    if (argv[0] === 'wait') {
      return new Promise((resolve) =>
        o.signal!.addEventListener('abort', () => {
          aborted.push(Number(argv[1]));
          resolve({ exitCode: null, signal: 'SIGKILL', aborted: true } as unknown as RunResult);
        }),
      );
    }
    return Promise.resolve({ exitCode: 0, stdout: Buffer.from('out'), stderr: Buffer.alloc(0) } as unknown as RunResult);
  };
  const server = serveExecHelper(input, output, fake);
  const req = (id: number, argv: string[]) => input.write(encodeHelperMessage({ t: 'run', id, request: { binary: { path: '/p', measurement: 'sha256:00' }, argv, limits: limits(), sandbox: 'bwrap' } }));
  req(1, ['ok']);
  req(2, ['fail']);
  req(3, ['bug']);
  req(4, ['wait', '4']);
  req(5, ['wait', '5']);
  input.write(encodeHelperMessage({ t: 'abort', id: 4 }));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(aborted, [4]);
  let done = false;
  void server.done.then(() => (done = true));
  assert.is(done, false);
  input.end();
  await server.done;
  assert.equal(aborted, [4, 5]);
  const types = seen.map((m) => `${(m as { t: string }).t}${(m as { id?: number }).id ?? ''}`);
  assert.equal(types.filter((t) => t.endsWith('1')), ['start1', 'out1', 'done1']);
  assert.ok(types.includes('fail2') && types.includes('fail3') && types.includes('done4') && types.includes('done5'), types.join(' '));
  const fail2 = seen.find((m) => (m as { t: string; id: number }).t === 'fail' && (m as { id: number }).id === 2) as { error: unknown };
  assert.equal(fail2.error, { kind: 'not-runnable', message: 'nope', path: '/p', measurement: 'sha256:00' });
  const fail3 = seen.find((m) => (m as { t: string; id: number }).t === 'fail' && (m as { id: number }).id === 3) as { error: { kind: string; message: string } };
  assert.is(fail3.error.kind, 'helper-failed');
  assert.match(fail3.error.message, /TypeError: broken/);
  const done1 = seen.find((m) => (m as { t: string }).t === 'done') as { result: Record<string, unknown> };
  assert.not.ok('stdout' in done1.result, 'output travels once, as out messages');
  assert.ok(seen.some((m) => (m as { t: string; line?: string }).t === 'log' && /the daemon went away: aborting 1 run\(s\)/.test((m as { line: string }).line)));
});

wire.run();
