// lib/guest's submit() against a fake host (lib/protocol's HostSession behind a unix socket):
// the whole conversation of one offload, and each way it can end.
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { submit, type SubmitOptions } from '../../lib/guest/index.js';
import { UsageError } from '../../lib/errors.js';
import { encodeChunks, encodeHello, encodeMessage, encodeRaw, encodeRequest, type Message, RESYNC_BYTES } from '../../lib/protocol/index.js';
import { concat } from '../helpers/bytes.js';
import { scratchDir } from '../../testbed/tools.js';
import { collector, type FakeHost, LIMITS, startFakeHost } from './fake-host.js';

const { dir, cleanup } = scratchDir('vo-submit-');
test.after(cleanup);

const M1 = `sha256:${'ab'.repeat(32)}`;
let hosts: FakeHost[] = [];
test.after.each(async () => {
  for (const h of hosts) await h.close();
  hosts = [];
});

async function host(options: Parameters<typeof startFakeHost>[0]): Promise<FakeHost> {
  const h = await startFakeHost(options);
  hosts.push(h);
  return h;
}

function binary(name: string, size: number): { path: string; bytes: Uint8Array } {
  const bytes = new Uint8Array(size).map((_, i) => (i * 37 + (i >> 8)) & 0xff);
  if (size > 100) bytes.set([0x56, 0x4f, 0x46, 0x31], 50); // a frame magic inside the upload changes nothing
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

async function go(h: FakeHost, o: Partial<SubmitOptions>) {
  const out = collector();
  const err = collector();
  const result = await submit({ port: h.path, argv: [], stdout: out.stream, stderr: err.stream, timeouts: { helloRetryMs: 300, handshakeMs: 5000 }, ...o });
  return { result, stdout: out.text(), stdoutBytes: out.bytes(), stderr: err.text() };
}

test('upload in maxFrame chunks, output streamed in order, the remote exit code returned', async () => {
  const tool = binary('tool', 10_000);
  const big = new Uint8Array(100_000).map((_, i) => 65 + (i % 26));
  let seen: { argv: readonly string[]; name?: string; upload: Uint8Array } | undefined;
  const h = await host({
    onRun: (ctx) => {
      seen = { argv: ctx.request.argv, upload: ctx.upload, ...(ctx.request.name === undefined ? {} : { name: ctx.request.name }) };
      ctx.send({ type: 'PING', requestId: 9, data: Uint8Array.of(1, 2, 3) });
      ctx.stdout('hello\n');
      ctx.stderr('warn\n');
      ctx.stdout(big);
      ctx.exit(3);
    },
  });
  const r = await go(h, { file: tool.path, name: 'tool', argv: ['-x', 'héllo wörld', ''] });
  assert.is(r.result.status, 3, r.stderr);
  assert.is(r.result.outcome, 'exit');
  assert.is(r.stderr, 'warn\n');
  assert.is(r.stdoutBytes.length, 6 + big.length);
  assert.is(r.stdout.slice(0, 6), 'hello\n');
  assert.ok(Buffer.from(big).equals(r.stdoutBytes.subarray(6)));
  assert.ok(seen !== undefined);
  assert.equal([...seen.argv], ['-x', 'héllo wörld', '']);
  assert.is(seen.name, 'tool');
  assert.ok(Buffer.from(tool.bytes).equals(seen.upload), 'the host received the file unchanged');
  const types = h.received.map((m) => m.type);
  assert.equal(types, ['HELLO', 'REQUEST', 'DATA', 'DATA', 'DATA', 'DATA_END', 'PONG'], types.join(' '));
  const sizes = h.received.flatMap((m) => (m.type === 'DATA' ? [m.data.length] : []));
  assert.equal(sizes, [4096, 4096, 10_000 - 8192], 'DATA frames of at most the host maxFrame');
  const pong = h.received[6];
  assert.ok(pong?.type === 'PONG' && pong.requestId === 9 && Array.from(pong.data).join() === '1,2,3');
  assert.equal(r.result.limits, LIMITS);
});

test('an empty file uploads as REQUEST{upload:0} and DATA_END', async () => {
  const empty = binary('empty', 0);
  const h = await host({ onRun: (ctx) => ctx.exit(ctx.upload.length) });
  const r = await go(h, { file: empty.path });
  assert.is(r.result.status, 0, r.stderr);
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST', 'DATA_END']);
});

test('denied → 77, the measurement and the reason on stderr, no output', async () => {
  const tool = binary('denied-tool', 3000);
  let measured = '';
  const h = await host({
    onRun: (ctx) => {
      measured = ctx.measurement;
      ctx.deny('unknown-measurement', 'not in the policy (commit 0123abcd)');
    },
  });
  const r = await go(h, { file: tool.path });
  assert.is(r.result.status, 77);
  assert.is(r.result.outcome, 'denied');
  assert.match(measured, /^sha256:[0-9a-f]{64}$/);
  assert.ok(r.stderr.includes(measured), r.stderr);
  assert.match(r.stderr, /denied \(unknown-measurement\): not in the policy \(commit 0123abcd\)/);
  assert.is(r.stdout, '');
});

test('--measurement sends no upload; host ERROR → 70 with its code and message', async () => {
  let request: unknown;
  const h = await host({
    onRun: (ctx) => {
      request = { ...ctx.request, env: { ...ctx.request.env } };
      ctx.error('exec-failed', 'bwrap could not start');
    },
  });
  const r = await go(h, { measurement: M1, argv: ['a'] });
  assert.is(r.result.status, 70);
  assert.is(r.result.outcome, 'error');
  assert.match(r.stderr, /exec-failed: bwrap could not start/);
  // Sent right behind the HELLO, naming it.
  const first = h.received[0];
  assert.ok(first?.type === 'HELLO' && first.body.role === 'guest');
  assert.equal(request, { argv: ['a'], env: {}, measurement: M1, session: first.body.nonce });
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST']);
});

test('a signal that ended the program → 125', async () => {
  const h = await host({ onRun: (ctx) => ctx.exit(null, 'SIGKILL') });
  const r = await go(h, { measurement: M1 });
  assert.is(r.result.status, 125);
  assert.match(r.stderr, /SIGKILL/);
});

test('the host disconnecting mid-run → 71, output so far kept', async () => {
  const h = await host({
    onRun: (ctx) => {
      ctx.stdout('partial\n');
      setTimeout(() => ctx.disconnect(), 50);
    },
  });
  const r = await go(h, { measurement: M1 });
  assert.is(r.result.status, 71);
  assert.is(r.result.outcome, 'channel');
  assert.is(r.stdout, 'partial\n');
  assert.match(r.stderr, /closed the channel before replying/);
});

test('a host that connects late: HELLO retried with the marker and a new nonce until answered', async () => {
  const h = await host({ deafMs: 700, onRun: (ctx) => ctx.exit(0) });
  const started = Date.now();
  const r = await go(h, { measurement: M1, timeouts: { helloRetryMs: 200, handshakeMs: 5000 } });
  assert.is(r.result.status, 0, r.stderr);
  assert.ok(Date.now() - started >= 700);
  assert.ok(h.dropped >= 2 * (RESYNC_BYTES + 24), `the first HELLOs were lost (${h.dropped} bytes dropped)`);
  const hellos = h.received.filter((m) => m.type === 'HELLO');
  assert.ok(hellos.length >= 1);
  assert.equal(h.received.slice(-2).map((m) => m.type), ['HELLO', 'REQUEST'], 'the request follows the answered HELLO');
});

test('the first HELLO goes alone (no 64 KiB marker) when the host is ready; resyncFirst sends the marker first', async () => {
  const plain = await host({ onRun: (ctx) => ctx.exit(0) });
  const r = await go(plain, { measurement: M1 });
  assert.is(r.result.status, 0, r.stderr);
  assert.is(plain.garbage, 0, 'no marker');
  assert.equal(plain.received.map((m) => m.type), ['HELLO', 'REQUEST']);
  const marked = await host({ onRun: (ctx) => ctx.exit(0) });
  const m = await go(marked, { measurement: M1, resyncFirst: true });
  assert.is(m.result.status, 0, m.stderr);
  assert.is(marked.garbage, RESYNC_BYTES, 'one marker before the HELLO');
});

test('after a client killed mid-frame, the HELLO sent alone is swallowed; the retry after the marker is answered', async () => {
  // What a client killed 100 bytes into a 4096-byte DATA frame left in the host's decoder.
  const cut = encodeRaw('DATA', 1, new Uint8Array(4096).fill(7)).subarray(0, 124);
  const h = await host({ leftover: cut, onRun: (ctx) => ctx.exit(0) });
  const started = Date.now();
  const r = await go(h, { measurement: M1, timeouts: { helloRetryMs: 300, handshakeMs: 5000 } });
  assert.is(r.result.status, 0, r.stderr);
  assert.ok(Date.now() - started >= 300, 'answered after one retry');
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST'], 'the first HELLO was lost in the unfinished frame');
  // With the marker first, no wait.
  const k = await host({ leftover: cut, onRun: (ctx) => ctx.exit(0) });
  const t = Date.now();
  const again = await go(k, { measurement: M1, resyncFirst: true, timeouts: { helloRetryMs: 3000, handshakeMs: 5000 } });
  assert.is(again.result.status, 0, again.stderr);
  assert.ok(Date.now() - t < 3000, 'no retry needed');
});

test('no host answer within the handshake time → 71', async () => {
  const h = await host({ deafMs: 60_000 });
  const r = await go(h, { measurement: M1, timeouts: { helloRetryMs: 100, handshakeMs: 400 } });
  assert.is(r.result.status, 71);
  assert.match(r.stderr, /no answer from the host within 400 ms/);
});

test('a file over the host maxUpload, or too many arguments, is refused before anything is uploaded → 70 (the REQUEST sent behind the HELLO is cancelled)', async () => {
  const tool = binary('big-tool', 5000);
  const h = await host({ limits: { ...LIMITS, maxUpload: 4999 } });
  const r = await go(h, { file: tool.path });
  assert.is(r.result.status, 70);
  assert.is(r.result.outcome, 'refused');
  assert.match(r.stderr, /is 5000 bytes; the host accepts uploads of at most 4999 bytes/);
  const args = await go(h, { measurement: M1, argv: Array.from({ length: 9 }, (_, i) => `a${i}`) });
  assert.is(args.result.status, 70);
  assert.match(args.stderr, /9 arguments; the host allows at most 8/);
  const bytes = await go(h, { measurement: M1, argv: ['x'.repeat(300)] });
  assert.is(bytes.result.status, 70);
  assert.match(bytes.stderr, /the arguments take 301 bytes; the host allows at most 256/);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST', 'CANCEL', 'HELLO', 'REQUEST', 'CANCEL', 'HELLO', 'REQUEST', 'CANCEL'], 'no DATA; each early REQUEST cancelled');
  // The host refused each itself too (its own limits): nothing ran.
  assert.not.ok(h.actions.some((a) => a.type === 'abort'));
});

test('the REQUEST goes right behind the first HELLO: the host has both before it answers', async () => {
  let seen: string[] = [];
  const h = await host({ onHello: (_nonce, received) => (seen = received.map((m) => m.type)) });
  const r = await go(h, { measurement: M1 });
  assert.is(r.result.status, 0);
  // When the host answered the HELLO, the REQUEST was already on its way: one round trip.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST']);
  assert.equal(seen, ['HELLO']);
});

test('a slow host (answers after the retry): the retry resumes the session; the request runs once, its output arrives whole', async () => {
  let runs = 0;
  const h = await host({
    holdMs: 400,
    // Still running when the retries' HELLOs are read: they must not end it.
    onRun: (ctx) => {
      runs++;
      ctx.stdout('once\n');
      setTimeout(() => ctx.exit(0), 150);
    },
  });
  const r = await go(h, { measurement: M1, timeouts: { helloRetryMs: 100, handshakeMs: 5000 } });
  assert.is(r.result.status, 0, r.stderr);
  assert.is(r.stdout, 'once\n');
  assert.is(runs, 1, 'not run twice');
  const hellos = h.received.filter((m) => m.type === 'HELLO');
  assert.ok(hellos.length >= 2, 'the HELLO was sent again meanwhile');
  assert.equal(h.received.filter((m) => m.type === 'REQUEST').length, 1, 'the REQUEST was not sent again');
  assert.ok(hellos.slice(1).every((m, i) => m.body.role === 'guest' && m.body.resume === (hellos[i]!.body as { nonce: string }).nonce), 'each retry resumes the one before');
  assert.not.ok(h.actions.some((a) => a.type === 'abort'), 'nothing was aborted');
});

test("a dead client's frame swallows the start of the HELLO: the REQUEST behind it is read in that client's session, refused as stale, not run; sent again after the answer, run once", async () => {
  let runs = 0;
  // The dead client: its HELLO, an upload request, and a DATA frame cut 50 bytes short,
  // which the first 50 bytes of our HELLO will complete (and fail its CRC).
  const data = encodeChunks('DATA', 7, new Uint8Array(250).fill(0x41), 4096)[0]!;
  const leftover = concat([
    encodeHello({ role: 'guest', versions: [1], nonce: 'deadclient' }, 4096),
    encodeRequest(7, { argv: [], env: {}, upload: 100_000 }, 4096),
    data.subarray(0, data.length - 50),
  ]);
  const h = await host({
    leftover,
    onRun: (ctx) => {
      runs++;
      ctx.exit(0);
    },
  });
  const r = await go(h, { measurement: M1, timeouts: { helloRetryMs: 150, handshakeMs: 5000 } });
  assert.is(r.result.status, 0, r.stderr);
  assert.is(runs, 1, 'run once');
  const requests = h.received.filter((m) => m.type === 'REQUEST' && m.requestId === 1);
  assert.is(requests.length, 2, 'the swallowed REQUEST was read (and refused), then sent again');
  const nonces = h.received.flatMap((m) => (m.type === 'HELLO' && m.body.role === 'guest' && m.body.nonce !== 'deadclient' ? [m.body.nonce] : []));
  const second = requests[1];
  assert.ok(second?.type === 'REQUEST' && second.body.session === nonces[nonces.length - 1], 'the second names the last HELLO');
});


test('abort (Ctrl-C) during a run sends CANCEL and returns 130', async () => {
  const ac = new AbortController();
  const h = await host({
    onRun: (ctx) => {
      ctx.stdout('running\n');
      setTimeout(() => ac.abort(), 50);
    },
  });
  const r = await go(h, { measurement: M1, signal: ac.signal });
  assert.is(r.result.status, 130);
  assert.is(r.stdout, 'running\n');
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST', 'CANCEL']);
});

test('stale frames of an earlier client and a host HELLO for another nonce are skipped', async () => {
  const stale: Message[] = [
    { type: 'STDOUT', requestId: 1, data: new TextEncoder().encode('stale output\n') },
    { type: 'HELLO', requestId: 0, body: { role: 'host', version: 1, nonce: 'someone-else', limits: { ...LIMITS, maxUpload: 1 } } },
    { type: 'EXIT', requestId: 1, body: { exitCode: 9, signal: null, durationMs: 1, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement: M1, name: 'old', version: '1' } },
  ];
  const preamble = Buffer.concat([Buffer.from([1, 2, 0x56, 3]), ...stale.map((m) => encodeMessage(m)), Buffer.from('VOF1 garbage')]);
  const h = await host({ preamble, onRun: (ctx) => ctx.exit(5) });
  const r = await go(h, { measurement: M1 });
  assert.is(r.result.status, 5, r.stderr);
  assert.is(r.stdout, '');
  assert.is(r.result.limits?.maxUpload, LIMITS.maxUpload, 'the limits of the HELLO that echoes our nonce');
});

test('stale output holding a frame header that checks out does not swallow the host HELLOs for good: it is abandoned', async () => {
  // The start of an earlier client's STDOUT frame of 60000 bytes, the rest of it never sent.
  const stale = encodeRaw('STDOUT', 1, new Uint8Array(60_000), 65_536).subarray(0, 40);
  const h = await host({ preamble: stale, onRun: (ctx) => ctx.exit(4) });
  const t0 = performance.now();
  const r = await go(h, { measurement: M1 });
  assert.is(r.result.status, 4, `${r.result.message ?? ''} ${r.stderr}`);
  assert.ok(performance.now() - t0 < 4000, `took ${Math.round(performance.now() - t0)} ms`);
});

async function rejects(f: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await f();
  } catch (err) {
    assert.instance(err, UsageError);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable('expected a UsageError');
}

test('an already-open duplex stream works as the port', async () => {
  const h = await host({ onRun: (ctx) => { ctx.stdout('via duplex\n'); ctx.exit(0); } });
  const socket = connect(h.path);
  await new Promise((resolve) => socket.once('connect', resolve));
  const r = await go(h, { measurement: M1, port: socket });
  assert.is(r.result.status, 0, r.stderr);
  assert.is(r.stdout, 'via duplex\n');
  assert.ok(socket.destroyed, 'submit closes the channel it was given');
});

test('a reply read before the write of the REQUEST is reported done still counts', async () => {
  // A port device's write completion can be reported after the reader has the host's reply
  // (both run in libuv's pool): a duplex that acknowledges writes late reproduces that.
  const h = await host({ onRun: (ctx) => ctx.deny('revoked', 'gone') });
  const socket = connect(h.path);
  await new Promise((resolve) => socket.once('connect', resolve));
  const lateAck = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      socket.write(chunk);
      setTimeout(done, 150);
    },
    destroy(err, done) {
      socket.destroy();
      done(err);
    },
  });
  socket.on('data', (d: Buffer) => lateAck.push(d));
  socket.on('close', () => lateAck.push(null));
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 5000); // a dropped reply would wait for ever: give up as Ctrl-C would
  const r = await go(h, { measurement: M1, port: lateAck, signal: ac.signal, timeouts: { helloRetryMs: 2000, handshakeMs: 5000 } });
  clearTimeout(timer);
  assert.is(r.result.status, 77, r.stderr);
});

test('bad options throw UsageError; an unreadable file → 66 without contacting the host', async () => {
  const h = await host({});
  await rejects(() => go(h, {}), /either a file to upload or --measurement/);
  await rejects(() => go(h, { measurement: 'sha256:12' }), /--measurement/);
  await rejects(() => go(h, { measurement: M1, name: '../x' }), /--name/);
  const r = await go(h, { file: join(dir, 'missing') });
  assert.is(r.result.status, 66);
  assert.match(r.stderr, /cannot read .*missing/);
  const port = await go(h, { measurement: M1, port: join(dir, 'no-such-port') });
  assert.is(port.result.status, 71);
  assert.match(port.stderr, /no-such-port/);
  assert.equal(h.received, []);
});

test.run();
