// The host's per-connection state machine: which frames are valid when, upload accounting,
// concurrency and duplicate ids, cancel and session reset, and exactly one final reply.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeFrame, encodeMessage, FrameDecoder, FrameType, type HostAction, HostSession, type Message, ProtocolError, type RunRequest } from '../../lib/protocol/index.js';
import { LIMITS, M1 } from './helpers.js';

const hello: Message = { type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1], nonce: 'abcdefgh' } };
const upload = (id: number, size: number, extra: Partial<RunRequest> = {}): Message => ({ type: 'REQUEST', requestId: id, body: { argv: [], env: {}, upload: size, ...extra } });
const data = (id: number, n: number): Message => ({ type: 'DATA', requestId: id, data: new Uint8Array(n) });
const end = (id: number): Message => ({ type: 'DATA_END', requestId: id });

function ready(): HostSession {
  const session = new HostSession({ limits: LIMITS, software: 'virt-offload/test' });
  session.onMessage(hello);
  return session;
}

/** Compact view of actions: "begin 1", "send ERROR 3 busy", "abort 2"… */
function summary(actions: readonly HostAction[]): string[] {
  return actions.map((a) => {
    switch (a.type) {
      case 'send':
        return a.message.type === 'ERROR' ? `send ERROR ${a.message.requestId} ${a.message.body.code}` : `send ${a.message.type} ${a.message.requestId}`;
      case 'begin': case 'run': case 'abort':
        return `${a.type} ${a.requestId}`;
      case 'data':
        return `data ${a.requestId} ${a.chunk.length}`;
      case 'reset':
        return `reset ${a.aborted}${a.resumed ? ' resumed' : ''}`;
      case 'pong':
        return `pong ${a.requestId}`;
      case 'ignored':
        return `ignored ${a.frame} ${a.requestId}`;
    }
  });
}

const ticketOf = (actions: readonly HostAction[]): number => {
  const begin = actions.find((a) => a.type === 'begin');
  return begin !== undefined && begin.type === 'begin' ? begin.ticket : assert.unreachable('no begin') as never;
};

test('HELLO: answered with the host HELLO (echoed nonce, limits); every message it sends encodes', () => {
  const session = new HostSession({ limits: LIMITS });
  assert.not.ok(session.ready);
  const actions = session.onMessage(hello);
  assert.equal(summary(actions), ['reset 0', 'send HELLO 0']);
  const second = actions[1];
  const reply = second?.type === 'send' ? second.message : undefined;
  assert.ok(reply?.type === 'HELLO' && reply.body.role === 'host' && reply.body.nonce === 'abcdefgh' && reply.body.version === 1);
  assert.ok(encodeMessage(reply).length > 0);
  assert.ok(session.ready);
  assert.equal(summary(session.onMessage({ type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [2, 3], nonce: 'abcdefgh' } })), ['send ERROR 0 version']);
  assert.throws(() => new HostSession({ limits: { ...LIMITS, maxConcurrent: 0 } }), /maxConcurrent/);
});

test('REQUEST before HELLO is refused; PING is answered any time', () => {
  const session = new HostSession({ limits: LIMITS });
  assert.equal(summary(session.onMessage(upload(1, 10))), ['send ERROR 1 no-hello']);
  assert.equal(summary(session.onMessage({ type: 'PING', requestId: 4, data: new Uint8Array(2) })), ['send PONG 4']);
});

test('upload: REQUEST, DATA*, DATA_END with the announced size → run; output and one final reply', () => {
  const session = ready();
  const begin = session.onMessage(upload(1, 10));
  assert.equal(summary(begin), ['begin 1']);
  const ticket = ticketOf(begin);
  assert.equal(summary(session.onMessage(data(1, 4))), ['data 1 4']);
  assert.equal(summary(session.onMessage(data(1, 6))), ['data 1 6']);
  assert.equal(summary(session.onMessage(end(1))), ['run 1']);
  const out = session.output(ticket, 'STDOUT', new Uint8Array(LIMITS.maxFrame * 2 + 1));
  assert.equal(out.map((m) => (m.type === 'STDOUT' ? m.data.length : -1)), [LIMITS.maxFrame, LIMITS.maxFrame, 1]);
  const exit = { exitCode: 0, signal: null, durationMs: 5, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement: M1, name: 'tool', version: '1' };
  const final = session.finish(ticket, { type: 'EXIT', body: exit });
  assert.equal(final.map((m) => `${m.type} ${m.requestId}`), ['EXIT 1']);
  assert.ok(encodeMessage(final[0]!).length > 0);
  assert.equal(session.finish(ticket, { type: 'EXIT', body: exit }), [], 'a second final reply is not sent');
  assert.equal(session.output(ticket, 'STDERR', new Uint8Array(1)), []);
  assert.is(session.inFlight, 0);
});

test('measurement request: begin and run at once, no upload frames allowed', () => {
  const session = ready();
  const actions = session.onMessage({ type: 'REQUEST', requestId: 5, body: { argv: ['x'], env: {}, measurement: M1 } });
  assert.equal(summary(actions), ['begin 5', 'run 5']);
  assert.equal(summary(session.onMessage(data(5, 1))), ['abort 5', 'send ERROR 5 out-of-order']);
  assert.is(session.inFlight, 0);
});

test('out-of-order and wrong-size uploads are refused with one ERROR; stray frames afterwards are dropped', () => {
  const session = ready();
  session.onMessage(upload(1, 10));
  assert.equal(summary(session.onMessage(data(1, 11))), ['abort 1', 'send ERROR 1 upload-size']);
  assert.equal(summary(session.onMessage(data(1, 1))), ['ignored DATA 1']);
  assert.equal(summary(session.onMessage(end(1))), ['ignored DATA_END 1']);
  session.onMessage(upload(2, 10));
  session.onMessage(data(2, 9));
  assert.equal(summary(session.onMessage(end(2))), ['abort 2', 'send ERROR 2 upload-size']);
  session.onMessage(upload(3, 0));
  assert.equal(summary(session.onMessage(end(3))), ['run 3']);
  assert.equal(summary(session.onMessage(end(3))), ['abort 3', 'send ERROR 3 out-of-order']);
  assert.equal(summary(session.onMessage({ type: 'CANCEL', requestId: 99 })), ['ignored CANCEL 99']);
});

test('limits: upload size, argument count and bytes (UTF-8, env included), concurrency', () => {
  const session = ready();
  assert.equal(summary(session.onMessage(upload(1, LIMITS.maxUpload + 1))), ['send ERROR 1 too-large']);
  assert.equal(summary(session.onMessage(upload(1, 1, { argv: new Array(LIMITS.maxArgs + 1).fill('a') }))), ['send ERROR 1 limit']);
  // 256 bytes allowed: one argument of 255 bytes (+1) fits; a 2-byte character pushes it over.
  assert.equal(summary(session.onMessage(upload(1, 1, { argv: ['a'.repeat(255)] }))), ['begin 1']);
  assert.equal(summary(session.onMessage(upload(2, 1, { argv: ['é'.repeat(128)] }))), ['send ERROR 2 limit']);
  assert.equal(summary(session.onMessage(upload(2, 1, { argv: [], env: { A: 'b'.repeat(252) } }))), ['begin 2']);
  assert.equal(summary(session.onMessage(upload(3, 1))), ['send ERROR 3 busy']);
  session.onMessage({ type: 'CANCEL', requestId: 1 });
  assert.equal(summary(session.onMessage(upload(3, 1))), ['begin 3']);
});

test('a duplicate request id ends the request in flight with one ERROR and does not start the new one', () => {
  const session = ready();
  const ticket = ticketOf(session.onMessage(upload(1, 10)));
  assert.equal(summary(session.onMessage(upload(1, 10))), ['abort 1', 'send ERROR 1 duplicate-id']);
  assert.is(session.inFlight, 0);
  assert.equal(session.finish(ticket, { type: 'ERROR', body: { code: 'internal', message: 'x' } }), []);
});

test('a refused REQUEST quoting a guest\'s emoji name: the ERROR for the request in flight still encodes', () => {
  // The refusal quotes the name cut to 80 units: a cut inside a surrogate pair once made the
  // ERROR fail its own encoding check, and the request went without its final reply.
  const session = ready();
  ticketOf(session.onMessage(upload(5, 10)));
  const payload = new TextEncoder().encode(JSON.stringify({ argv: [], env: {}, upload: 10, name: `a${'\u{1F600}'.repeat(60)}` }));
  const events = new FrameDecoder({ from: 'guest', maxFrame: LIMITS.maxFrame }).feed(encodeFrame(FrameType.REQUEST, 5, payload));
  const refused = events.find((e) => e.kind === 'error');
  assert.ok(refused !== undefined && refused.kind === 'error', JSON.stringify(events));
  const actions = session.onError(refused.error);
  assert.equal(summary(actions), ['abort 5', 'send ERROR 5 malformed']);
  for (const a of actions) if (a.type === 'send') assert.ok(encodeMessage(a.message).length > 0);
  // Cut between two characters, not replaced after the fact.
  const sent = actions[1]?.type === 'send' && actions[1].message.type === 'ERROR' ? actions[1].message.body.message : '';
  assert.match(sent, /"a\u{1F600}+\.\.\. does not match/u);
  assert.not.match(sent, /\uFFFD/);
});

test('CANCEL ends the request with ERROR cancelled; a reused id gets a new ticket, the old ticket is stale', () => {
  const session = ready();
  const old = ticketOf(session.onMessage({ type: 'REQUEST', requestId: 1, body: { argv: [], env: {}, measurement: M1 } }));
  assert.equal(summary(session.onMessage({ type: 'CANCEL', requestId: 1 })), ['abort 1', 'send ERROR 1 cancelled']);
  const fresh = ticketOf(session.onMessage({ type: 'REQUEST', requestId: 1, body: { argv: [], env: {}, measurement: M1 } }));
  assert.is.not(fresh, old);
  assert.equal(session.output(old, 'STDOUT', new Uint8Array(3)), [], 'late output of the cancelled run goes nowhere');
  assert.is(session.output(fresh, 'STDOUT', new Uint8Array(3)).length, 1);
});

test('a new HELLO aborts every request of the previous session before answering', () => {
  const session = ready();
  session.onMessage(upload(1, 10));
  session.onMessage({ type: 'REQUEST', requestId: 2, body: { argv: [], env: {}, measurement: M1 } });
  assert.equal(summary(session.onMessage(hello)), ['abort 1', 'abort 2', 'reset 2', 'send HELLO 0']);
  assert.is(session.inFlight, 0);
  assert.equal(summary(session.onMessage(data(1, 1))), ['ignored DATA 1']);
});

test('decoder errors: a live request named by the error fails; otherwise the guest is told', () => {
  const session = ready();
  session.onMessage(upload(1, 10));
  const err = new ProtocolError('bad-checksum', 'payload CRC-32 does not match', { offset: 0, type: 0x11, requestId: 1 });
  assert.equal(summary(session.onError(err)), ['abort 1', 'send ERROR 1 malformed']);
  assert.equal(summary(session.onError(new ProtocolError('too-large', 'x', { requestId: 9 }))), ['send ERROR 9 malformed']);
  assert.equal(summary(session.onError(new ProtocolError('bad-json', 'x'))), ['send ERROR 0 malformed']);
});

test('daemon misuse is an internal error: EXIT before the upload ended, output while uploading', () => {
  const session = ready();
  const ticket = ticketOf(session.onMessage(upload(1, 10)));
  assert.throws(() => session.output(ticket, 'STDOUT', new Uint8Array(1)), /before its upload ended/);
  assert.throws(() => session.finish(ticket, { type: 'DENIED', body: { measurement: M1, code: 'revoked', reason: 'r' } }), /before its upload ended/);
  assert.equal(session.finish(ticket, { type: 'ERROR', body: { code: 'timeout', message: 'upload took too long' } }).length, 1);
});

const measured = (id: number, extra: Partial<RunRequest> = {}): Message => ({ type: 'REQUEST', requestId: id, body: { argv: [], env: {}, measurement: M1, ...extra } });
const helloOf = (nonce: string, resume?: string): Message => ({ type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1], nonce, ...(resume === undefined ? {} : { resume }) } });
const hostHello = (actions: readonly HostAction[]) => {
  const sent = actions.find((a) => a.type === 'send' && a.message.type === 'HELLO');
  return sent?.type === 'send' && sent.message.type === 'HELLO' && sent.message.body.role === 'host' ? sent.message.body : assert.unreachable('no host HELLO') as never;
};

test('REQUEST naming its session: run in that session, refused (stale-session, not in flight) in any other', () => {
  const session = ready();
  assert.equal(summary(session.onMessage(measured(1, { session: 'abcdefgh' }))), ['begin 1', 'run 1']);
  assert.equal(summary(session.onMessage(measured(2, { session: 'otherone' }))), ['send ERROR 2 stale-session']);
  assert.is(session.inFlight, 1);
  // Without the member (the busybox client): as before.
  assert.equal(summary(session.onMessage(measured(3))), ['begin 3', 'run 3']);
});

test('HELLO resuming the current session keeps its requests; resuming any other starts afresh', () => {
  const session = ready();
  session.onMessage(measured(1, { session: 'abcdefgh' }));
  // The same client's retry, after its first HELLO was answered late: request 1 goes on.
  let actions = session.onMessage(helloOf('second12', 'abcdefgh'));
  assert.equal(summary(actions), ['reset 0 resumed', 'send HELLO 0']);
  assert.is(hostHello(actions).resumed, true);
  assert.is(session.inFlight, 1);
  // Requests now name the new nonce; the old one is stale.
  assert.equal(summary(session.onMessage(measured(2, { session: 'abcdefgh' }))), ['send ERROR 2 stale-session']);
  assert.equal(summary(session.onMessage(measured(2, { session: 'second12' }))), ['begin 2', 'run 2']);
  // A HELLO resuming a session that is not the current one: a new client; requests end.
  actions = session.onMessage(helloOf('third123', 'abcdefgh'));
  assert.equal(summary(actions), ['abort 1', 'abort 2', 'reset 2', 'send HELLO 0']);
  assert.is(hostHello(actions).resumed, false);
  // No resume asked: no `resumed` in the answer.
  assert.is(hostHello(session.onMessage(helloOf('fourth12'))).resumed, undefined);
  // Before any HELLO there is nothing to resume.
  const fresh = new HostSession({ limits: LIMITS });
  assert.is(hostHello(fresh.onMessage(helloOf('first123', 'abcdefgh'))).resumed, false);
});

test.run();
