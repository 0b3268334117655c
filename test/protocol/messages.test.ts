// Encoders and message rules: every type round-trips; the header has the documented layout;
// each message type refuses missing, unknown and mistyped fields with a typed error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  crc32,
  encodeChunks,
  encodeFrame,
  encodeHello,
  encodeMessage,
  encodeRaw,
  encodeRequest,
  FrameType,
  HEADER_BYTES,
  type Message,
  parseFrame,
  ProtocolError,
  resyncMarker,
  RESYNC_BYTES,
  sealRaw,
  MEASUREMENT,
  VERSION,
} from '../../lib/protocol/index.js';
import { isMeasurement } from '../../lib/policy/index.js';
import { VERSION as POLICY_VERSION } from '../../lib/policy/names.js';
import { decodeAll, guestMessages, hostMessages, LIMITS, M1, messagesOf, plain } from './helpers.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

test('every guest and host message type round-trips through encoder and decoder', () => {
  for (const [from, messages] of [['guest', guestMessages()], ['host', hostMessages()]] as const) {
    const frames = messages.map((m) => encodeMessage(m));
    const decoded = messagesOf(decodeAll(frames, { from }));
    assert.equal(plain(decoded), plain(messages), from);
  }
  const types = new Set([...guestMessages(), ...hostMessages()].map((m) => m.type));
  assert.equal([...types].sort(), Object.keys(FrameType).sort(), 'the samples cover every frame type');
});

test('header layout: magic, type, flags, reserved, id, length, payload CRC, header CRC (all big-endian)', () => {
  const payload = Uint8Array.from([1, 2, 3]);
  const frame = encodeFrame(FrameType.DATA, 0x01020304, payload);
  assert.is(frame.length, HEADER_BYTES + 3);
  assert.equal(Array.from(frame.subarray(0, 16)), [0x56, 0x4f, 0x46, 0x31, 0x11, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 3]);
  const view = new DataView(frame.buffer);
  assert.is(view.getUint32(16), crc32(payload));
  assert.is(view.getUint32(20), crc32(frame.subarray(0, 20)));
  assert.equal(Array.from(frame.subarray(24)), [1, 2, 3]);
});

test('encodeChunks splits at maxFrame; the resync marker is HEADER + 64 KiB of 0xFF', () => {
  const data = new Uint8Array(10_000).map((_, i) => i & 0xff);
  const frames = encodeChunks('DATA', 4, data, 4096);
  assert.equal(frames.map((f) => f.length - HEADER_BYTES), [4096, 4096, 1808]);
  const back = messagesOf(decodeAll(frames, { from: 'guest' })).flatMap((m) => (m.type === 'DATA' ? Array.from(m.data) : []));
  assert.equal(back, Array.from(data));
  assert.equal(encodeChunks('STDOUT', 4, new Uint8Array(0)), []);
  const marker = resyncMarker();
  assert.is(marker.length, RESYNC_BYTES);
  assert.is(RESYNC_BYTES, 24 + 65536);
  assert.ok(marker.every((b) => b === 0xff));
});

test('encoders refuse what the decoder would refuse', () => {
  assert.throws(() => encodeRequest(0, { argv: [], env: {}, upload: 1 }), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-id');
  assert.throws(() => encodeRequest(1, { argv: [], env: {}, upload: 1, measurement: M1 }), (e: unknown) => e instanceof ProtocolError && /exactly one/.test(e.message));
  assert.throws(() => encodeRequest(1, { argv: ['x'.repeat(5000)], env: {}, upload: 1 }, 4096), (e: unknown) => e instanceof ProtocolError && e.kind === 'too-large');
  assert.throws(() => encodeHello({ role: 'host', version: 1, nonce: 'abcdefgh', limits: { ...LIMITS, maxFrame: 70_000 } }), /maxFrame/);
  assert.throws(() => encodeMessage({ type: 'DATA', requestId: 0, data: new Uint8Array(1) }), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-id');
  assert.throws(() => encodeMessage({ type: 'PING', requestId: 1, data: new Uint8Array(65) }), (e: unknown) => e instanceof ProtocolError && e.kind === 'too-large');
});

/** parseFrame on a JSON payload of `type`; returns the error (asserting it is a ProtocolError). */
function refusal(type: keyof typeof FrameType, json: unknown, requestId = 1): ProtocolError {
  const payload = typeof json === 'string' ? utf8(json) : utf8(JSON.stringify(json));
  try {
    parseFrame({ type: FrameType[type], requestId, payload, offset: 100 });
  } catch (e) {
    assert.instance(e, ProtocolError);
    const err = e as ProtocolError;
    assert.is(err.offset, 100);
    assert.is(err.type, FrameType[type]);
    assert.is(err.requestId, requestId);
    return err;
  }
  return assert.unreachable(`${type} ${JSON.stringify(json)} accepted`) as never;
}

const request = { argv: ['a'], env: { A: 'b' }, name: 'tool', upload: 10 };
const exit = { exitCode: 0, signal: null, durationMs: 1, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement: M1, name: 'tool', version: '1' };

test('REQUEST: strict fields', () => {
  for (const [bad, pattern] of [
    [{ ...request, extra: 1 }, /unknown member "extra"/],
    [{ env: {}, upload: 1 }, /"argv" is missing/],
    [{ ...request, argv: 'a' }, /"argv" must be a list/],
    [{ ...request, argv: [1] }, /argv\[0\] is not a string/],
    [{ ...request, argv: ['a\u0000b'] }, /NUL/],
    [{ ...request, env: [] }, /"env" is not an object/],
    [{ ...request, env: { '1A': 'x' } }, /environment name/],
    [{ ...request, env: { 'A=B': 'x' } }, /environment name/],
    [{ ...request, env: { A: 1 } }, /environment value/],
    [{ ...request, name: '../x' }, /"name"/],
    [{ ...request, upload: -1 }, /"upload" must be an integer/],
    [{ ...request, upload: 1.5 }, /"upload" must be an integer/],
    [{ ...request, upload: '10' }, /"upload" must be an integer/],
    [{ argv: [] }, /exactly one/],
    [{ argv: [], measurement: 'sha256:ABC' }, /"measurement"/],
    [{ argv: [], measurement: M1.toUpperCase() }, /"measurement"/],
  ] as const) {
    const err = refusal('REQUEST', bad);
    assert.is(err.kind, 'bad-field', JSON.stringify(bad));
    assert.match(err.message, pattern);
  }
  assert.match(refusal('REQUEST', '{"argv":[],"upload":1,"env":{"__proto__":"x"}}').message, /forbidden key/);
  assert.is(refusal('REQUEST', '{"argv":[],"upload":1,"upload":2}').kind, 'bad-json');
});

test('REQUEST: env is a null-prototype object; `constructor` as a name is refused', () => {
  const m = parseFrame({ type: FrameType.REQUEST, requestId: 1, payload: utf8(JSON.stringify(request)), offset: 0 }) as Extract<Message, { type: 'REQUEST' }>;
  assert.is(Object.getPrototypeOf(m.body.env), null);
  assert.ok(Object.isFrozen(m.body) && Object.isFrozen(m.body.argv) && Object.isFrozen(m.body.env));
  assert.is(refusal('REQUEST', '{"argv":[],"upload":1,"env":{"constructor":"x"}}').kind, 'bad-json');
});

test('EXIT, DENIED, ERROR: strict fields', () => {
  for (const [type, bad, pattern] of [
    ['EXIT', { ...exit, more: true }, /unknown member "more"/],
    ['EXIT', { ...exit, exitCode: null }, /both null/],
    ['EXIT', { ...exit, exitCode: 256 }, /"exitCode"/],
    ['EXIT', { ...exit, signal: 'KILL' }, /"signal"/],
    ['EXIT', { ...exit, durationMs: -1 }, /"durationMs"/],
    ['EXIT', { ...exit, limitsHit: { wall: false, memory: false, pids: false } }, /"output" is missing/],
    ['EXIT', { ...exit, limitsHit: { wall: 0, memory: false, pids: false, output: false } }, /"wall" is not true or false/],
    ['EXIT', { ...exit, limitsHit: { wall: false, memory: false, pids: false, output: false, cpu: true } }, /unknown member "cpu"/],
    ['EXIT', { ...exit, version: '' }, /"version"/],
    ['DENIED', { measurement: M1, code: 'revoked' }, /"reason" is missing/],
    ['DENIED', { measurement: M1, code: 'Revoked', reason: '' }, /"code"/],
    ['DENIED', { measurement: M1, code: 'revoked', reason: 'x'.repeat(4097) }, /longer than 4096/],
    ['ERROR', { code: 'busy' }, /"message" is missing/],
    ['ERROR', { code: 'busy', message: 'x', requestId: 3 }, /unknown member "requestId"/],
  ] as const) {
    const err = refusal(type, bad);
    assert.is(err.kind, 'bad-field', `${type} ${JSON.stringify(bad)}`);
    assert.match(err.message, pattern);
  }
});

test('HELLO: unknown members ignored (version negotiation), required ones checked, id must be 0', () => {
  const guest = { role: 'guest', versions: [1, 7], nonce: 'abcdefgh', future: { x: 1 } };
  const m = parseFrame({ type: FrameType.HELLO, requestId: 0, payload: utf8(JSON.stringify(guest)), offset: 0 });
  assert.equal(plain(m), { type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1, 7], nonce: 'abcdefgh' } });
  const host = { role: 'host', version: 1, nonce: 'abcdefgh', limits: { ...LIMITS, maxFuture: 3 } };
  const h = parseFrame({ type: FrameType.HELLO, requestId: 0, payload: utf8(JSON.stringify(host)), offset: 0 });
  assert.equal(plain(h), { type: 'HELLO', requestId: 0, body: { role: 'host', version: 1, nonce: 'abcdefgh', limits: { ...LIMITS } } });
  for (const [bad, pattern] of [
    [{ role: 'guest', versions: [], nonce: 'abcdefgh' }, /"versions"/],
    [{ role: 'guest', versions: [0], nonce: 'abcdefgh' }, /"versions"/],
    [{ role: 'guest', versions: [1], nonce: 'short' }, /"nonce"/],
    [{ role: 'vm', versions: [1], nonce: 'abcdefgh' }, /"role"/],
    [{ ...host, limits: { ...LIMITS, maxFrame: 100 } }, /"maxFrame"/],
    [{ ...host, limits: { ...LIMITS, maxConcurrent: undefined } }, /"maxConcurrent" is missing/],
  ] as const) {
    assert.match(refusal('HELLO', bad, 0).message, pattern);
  }
  assert.is(refusal('HELLO', guest, 5).kind, 'bad-id');
  assert.match(refusal('HELLO', '{"role":"guest","versions":[1],"nonce":"abcdefgh","__proto__":{}}', 0).message, /forbidden key/);
});

test('raw and empty types: id and length rules', () => {
  const frame = (type: keyof typeof FrameType, requestId: number, length: number) => () =>
    parseFrame({ type: FrameType[type], requestId, payload: new Uint8Array(length), offset: 0 });
  assert.throws(frame('DATA_END', 1, 1), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-length');
  assert.throws(frame('CANCEL', 1, 3), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-length');
  assert.throws(frame('PING', 0, 65), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-length');
  for (const type of ['DATA', 'DATA_END', 'CANCEL', 'STDOUT', 'STDERR', 'REQUEST', 'EXIT', 'DENIED'] as const) {
    assert.throws(frame(type, 0, 0), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-id', type);
  }
  assert.not.throws(frame('PING', 0, 64));
});

test('the measurement and version shapes equal the policy ones (protocol may not import policy; this keeps them in step)', () => {
  for (const text of [M1, `blake3:${'0'.repeat(64)}`, M1.toUpperCase(), `sha256:${'a'.repeat(63)}`, `sha512:${'a'.repeat(64)}`, `${M1} `, 'sha256:', '']) {
    assert.is(MEASUREMENT.test(text), isMeasurement(text), text);
  }
  for (const text of ['1', '1.2.3', '2024.01~rc1+git_x-y', '', '-1', 'a'.repeat(64), 'a'.repeat(65), '1 2']) {
    assert.is(VERSION.test(text), POLICY_VERSION.test(text), text);
  }
});

test('sealRaw: a frame built in place (header room + payload, inside a larger buffer) is the frame encodeRaw builds', () => {
  const payload = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
  const block = new Uint8Array(16 + HEADER_BYTES + payload.length + 8).fill(0xaa);
  const frame = block.subarray(16, 16 + HEADER_BYTES + payload.length);
  frame.set(payload, HEADER_BYTES);
  assert.is(sealRaw('DATA', 3, frame, 4096), frame);
  assert.equal([...frame], [...encodeRaw('DATA', 3, payload, 4096)]);
  assert.ok(block.subarray(0, 16).every((b) => b === 0xaa) && block.subarray(16 + frame.length).every((b) => b === 0xaa), 'nothing outside the frame written');
  assert.throws(() => sealRaw('DATA', 0, frame), (e: unknown) => e instanceof ProtocolError && e.kind === 'bad-id');
  assert.throws(() => sealRaw('DATA', 1, frame, 999), (e: unknown) => e instanceof ProtocolError && e.kind === 'too-large');
  assert.throws(() => sealRaw('DATA', 1, new Uint8Array(HEADER_BYTES - 1)), (e: unknown) => e instanceof ProtocolError);
  assert.equal([...sealRaw('STDOUT', 9, new Uint8Array(HEADER_BYTES))], [...encodeRaw('STDOUT', 9, new Uint8Array(0))]);
});

test.run();
