// The busybox client of docs/protocol.md, run for real under busybox (applets only on PATH)
// against host frames made by lib/protocol; what it writes must decode to the messages the
// host session accepts. Keeps the documented recipe honest.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeMessage, FrameDecoder, HostSession, type Message, RESYNC_BYTES } from '../../lib/protocol/index.js';
import { repoRoot, requireTool, scratchDir } from '../../testbed/tools.js';
import { concat, errorsOf, garbageOf, LIMITS, M1, messagesOf, plain } from './helpers.js';

const APPLETS = ['sh', 'printf', 'dd', 'od', 'crc32', 'tr', 'head', 'sed', 'grep', 'wc', 'mktemp', 'cat', 'rm', 'date', 'echo'];
const NONCE = 'shell-test-nonce';

function script(): string {
  const doc = readFileSync(join(repoRoot, 'docs', 'protocol.md'), 'utf8');
  const m = /<!-- vo-run:begin -->\n```sh\n([\s\S]*?)```\n<!-- vo-run:end -->/.exec(doc);
  if (m === null) throw new Error('docs/protocol.md has no vo-run block between its markers');
  return m[1]!;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  sent: Message[];
  garbage: number;
  errors: string[];
}

/** Run the script with `args`, the host's frames `reply` on its input; decode what it wrote. */
function runScript(args: readonly string[], reply: readonly Message[], files: Record<string, Uint8Array> = {}): Run {
  const busybox = requireTool('busybox', 'busybox-static');
  const { dir, cleanup } = scratchDir('vo-shell-');
  try {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const applet of APPLETS) symlinkSync(busybox, join(bin, applet));
    writeFileSync(join(dir, 'vo-run'), script());
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
    // Garbage and a stale frame first: the script must skip them and wait for its HELLO.
    const stale: Message = { type: 'STDOUT', requestId: 1, data: new TextEncoder().encode('stale output\n') };
    const wrongHello: Message = { type: 'HELLO', requestId: 0, body: { role: 'host', version: 1, nonce: 'someone-else', limits: LIMITS } };
    const hello: Message = { type: 'HELLO', requestId: 0, body: { role: 'host', version: 1, nonce: NONCE, limits: LIMITS } };
    const input = concat([Uint8Array.of(1, 2, 0x56, 3), ...[stale, wrongHello, hello, ...reply].map((m) => encodeMessage(m))]);
    writeFileSync(join(dir, 'in'), input);
    const r = spawnSync(busybox, ['sh', join(dir, 'vo-run'), ...args], {
      cwd: dir,
      env: { PATH: bin, VO_IN: join(dir, 'in'), VO_OUT: join(dir, 'out'), VO_NONCE: NONCE },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const decoder = new FrameDecoder({ from: 'guest' });
    const events = [...decoder.feed(readFileSync(join(dir, 'out'))), ...decoder.end()];
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, sent: messagesOf(events), garbage: garbageOf(events), errors: errorsOf(events) };
  } finally {
    cleanup();
  }
}

const exitBody = { exitCode: 3, signal: null, durationMs: 4, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement: M1, name: 'tool', version: '1' };

test('upload: marker, HELLO, REQUEST, DATA in maxFrame chunks, DATA_END; output streamed; exit code passed on', () => {
  const binary = new Uint8Array(10_000).map((_, i) => (i * 37 + (i >> 8)) & 0xff);
  binary.set([0x56, 0x4f, 0x46, 0x31], 5000); // a magic inside the upload changes nothing
  const enc = new TextEncoder();
  const run = runScript(['tool.bin', '-x', 'héllo wörld'], [
    { type: 'PING', requestId: 5, data: Uint8Array.of(1, 2) },
    { type: 'STDOUT', requestId: 1, data: enc.encode('hello\n') },
    { type: 'STDERR', requestId: 1, data: enc.encode('warn\n') },
    { type: 'STDOUT', requestId: 2, data: enc.encode('not mine\n') },
    { type: 'EXIT', requestId: 1, body: exitBody },
  ], { 'tool.bin': binary });
  assert.is(run.stderr, 'warn\n');
  assert.is(run.stdout, 'hello\n');
  assert.is(run.status, 3);
  assert.is(run.garbage, RESYNC_BYTES, 'the resync marker comes first');
  assert.equal(run.errors, []);
  const types = run.sent.map((m) => m.type);
  assert.equal(types, ['HELLO', 'REQUEST', 'DATA', 'DATA', 'DATA', 'DATA_END', 'PONG']);
  assert.equal(plain(run.sent[0]), { type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1], nonce: NONCE } });
  assert.equal(plain(run.sent[1]), { type: 'REQUEST', requestId: 1, body: { argv: ['-x', 'héllo wörld'], env: {}, upload: 10_000 } });
  const uploaded = concat(run.sent.flatMap((m) => (m.type === 'DATA' ? [m.data] : [])));
  assert.equal(Array.from(uploaded), Array.from(binary));
  assert.equal(plain(run.sent[6]), { type: 'PONG', requestId: 5, data: { bytes: [1, 2] } });
  // The host session accepts the whole conversation and asks the daemon to run request 1.
  const session = new HostSession({ limits: LIMITS });
  const actions = run.sent.flatMap((m) => session.onMessage(m)).map((a) => a.type);
  assert.ok(actions.includes('run'), actions.join(' '));
});

test('--measurement: no upload; DENIED → exit 77 with the reason; ERROR → 70; signal → 125', () => {
  const denied = runScript(['--measurement', M1, 'a'], [{ type: 'DENIED', requestId: 1, body: { measurement: M1, code: 'revoked', reason: 'revoked by commit 1234abcd' } }]);
  assert.is(denied.status, 77);
  assert.match(denied.stderr, /denied: .*revoked by commit 1234abcd/);
  assert.equal(plain(denied.sent.map((m) => m.type)), ['HELLO', 'REQUEST']);
  assert.equal(plain(denied.sent[1]), { type: 'REQUEST', requestId: 1, body: { argv: ['a'], env: {}, measurement: M1 } });
  const error = runScript(['--measurement', M1], [{ type: 'ERROR', requestId: 1, body: { code: 'busy', message: 'too many' } }]);
  assert.is(error.status, 70);
  assert.match(error.stderr, /"code":"busy"/);
  const killed = runScript(['--measurement', M1], [{ type: 'EXIT', requestId: 1, body: { ...exitBody, exitCode: null, signal: 'SIGKILL' } }]);
  assert.is(killed.status, 125);
  const silent = runScript(['--measurement', M1], []);
  assert.is(silent.status, 71, 'the stream ends without a reply');
});

test.run();
