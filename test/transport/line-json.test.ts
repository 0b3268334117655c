// The line-JSON transport on its own: framing limits, decoding refusals, and a connection's
// pending map (routing by id, timeouts, everything rejected once on close).
import { Duplex, PassThrough } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  decodeJsonLine,
  FrameError,
  JsonLineConnection,
  LineSplitter,
  TransportClosedError,
  TransportTimeoutError,
  type FrameErrorKind,
  type JsonObject,
} from '../../lib/transport/index.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

const framing = suite('LineSplitter and decodeJsonLine');

framing('lines split across chunks and several lines in one chunk', () => {
  const s = new LineSplitter(16);
  const got: string[] = [];
  for (const chunk of ['ab', 'c\nde', 'f\n\ngh', 'i\nj']) s.push(bytes(chunk), (l) => void got.push(text(l)));
  assert.equal(got, ['abc', 'def', '', 'ghi']);
  assert.is(s.buffered, 1);
});

framing('a line of exactly the limit passes; one byte more fails before any newline', () => {
  const s = new LineSplitter(4);
  const got: string[] = [];
  s.push(bytes('1234\n'), (l) => void got.push(text(l)));
  assert.equal(got, ['1234']);
  s.push(bytes('12'), () => {});
  s.push(bytes('34'), () => {});
  try {
    s.push(bytes('5'), () => assert.unreachable('no line expected'));
    assert.unreachable('expected FrameError');
  } catch (err) {
    assert.ok(err instanceof FrameError);
    assert.is(err.kind, 'too-large');
    assert.is(err.length, 5);
    assert.is(err.limit, 4);
    assert.is(err.code, 'EMALFORMED');
  }
  assert.is(s.buffered, 0, 'nothing held after the error');
});

framing('lines before an oversized one in the same chunk are delivered first', () => {
  const s = new LineSplitter(3);
  const got: string[] = [];
  assert.throws(
    () => s.push(bytes('ab\ncd\nefgh\nij\n'), (l) => void got.push(text(l))),
    (e: unknown) => e instanceof FrameError,
  );
  assert.equal(got, ['ab', 'cd']);
});

framing('onLine returning false stops the chunk', () => {
  const s = new LineSplitter(8);
  const got: string[] = [];
  s.push(bytes('a\nb\nc\n'), (l) => (got.push(text(l)), false));
  assert.equal(got, ['a']);
});

framing('decodeJsonLine: objects only, CRLF accepted, empty lines skipped', () => {
  assert.equal(decodeJsonLine(bytes('{"a": [1, {"b": null}]}\r'))?.message, { a: [1, { b: null }] });
  assert.is(decodeJsonLine(bytes('')), undefined);
  assert.is(decodeJsonLine(bytes('\r')), undefined);
  const refused: [Uint8Array, FrameErrorKind][] = [
    [bytes('[1]'), 'not-object'],
    [bytes('null'), 'not-object'],
    [bytes('42'), 'not-object'],
    [bytes('"x"'), 'not-object'],
    [bytes('true'), 'not-object'],
    [bytes('{"a": 1} {"b": 2}'), 'not-json'],
    [bytes('{"a": 1,}'), 'not-json'],
    [bytes("{'a': 1}"), 'not-json'],
    [new Uint8Array([0x7b, 0x22, 0xc3, 0x22, 0x3a, 0x31, 0x7d]), 'not-utf8'],
  ];
  for (const [line, kind] of refused) {
    try {
      decodeJsonLine(line);
      assert.unreachable(`${text(line)} accepted`);
    } catch (err) {
      assert.ok(err instanceof FrameError, String(err));
      assert.is(err.kind, kind, text(line));
    }
  }
});

framing.run();

const conn = suite('JsonLineConnection');

function pair(): { stream: Duplex; peerIn: PassThrough; peerOut: PassThrough } {
  const peerOut = new PassThrough(); // what the peer sends us
  const peerIn = new PassThrough(); // what we send the peer
  return { stream: Duplex.from({ readable: peerOut, writable: peerIn }), peerIn, peerOut };
}

function open(stream: Duplex, others: JsonObject[], maxLineBytes = 1024): JsonLineConnection {
  return new JsonLineConnection(stream, {
    name: 'test peer',
    replyId: (m) => (typeof m['id'] === 'string' ? m['id'] : undefined),
    onMessage: (m) => void others.push(m),
    maxLineBytes,
  });
}

conn('replies are routed by id in any order; other messages go to onMessage', async () => {
  const { stream, peerOut } = pair();
  const others: JsonObject[] = [];
  const c = open(stream, others);
  const a = c.request('a', { q: 1, id: 'a' }, 1000);
  const b = c.request('b', { q: 2, id: 'b' }, 1000);
  assert.is(c.pendingCount, 2);
  peerOut.write('{"id": "b", "r": 2}\n{"note": true}\n{"id": "zzz"}\n{"id": "a", "r": 1}\n');
  assert.equal(await a, { id: 'a', r: 1 });
  assert.equal(await b, { id: 'b', r: 2 });
  assert.equal(others, [{ note: true }, { id: 'zzz' }]);
  assert.is(c.pendingCount, 0);
  await rejectsDuplicate(c);
  await c.close();
});

async function rejectsDuplicate(c: JsonLineConnection): Promise<void> {
  const first = c.request('dup', { id: 'dup' }, 50).catch((e: unknown) => e);
  const second = await c.request('dup', { id: 'dup' }, 50).catch((e: unknown) => e);
  assert.ok(second instanceof RangeError, 'a pending id cannot be reused');
  assert.ok((await first) instanceof TransportTimeoutError);
}

conn('a timeout rejects one request and forgets its id', async () => {
  const { stream } = pair();
  const c = open(stream, []);
  const err = await c.request('t', { id: 't' }, 30).catch((e: unknown) => e);
  assert.ok(err instanceof TransportTimeoutError);
  assert.is(err.id, 't');
  assert.is(err.timeoutMs, 30);
  assert.is(c.pendingCount, 0);
  assert.ok(c.isOpen);
  await c.close();
});

conn('a frame error closes the connection once and rejects all pending with its reason', async () => {
  const { stream, peerOut } = pair();
  const closes: TransportClosedError[] = [];
  const c = new JsonLineConnection(stream, {
    name: 'test peer',
    replyId: () => undefined,
    onMessage: () => {},
    onClose: (e) => closes.push(e),
    maxLineBytes: 8,
  });
  const pending = [1, 2, 3].map((i) => c.request(`r${i}`, { id: `r${i}` }, Infinity).catch((e: unknown) => e));
  peerOut.write('{"a":"12345678"}\n');
  const errors = await Promise.all(pending);
  assert.ok(errors.every((e) => e === errors[0]) && errors[0] instanceof TransportClosedError);
  const closed = errors[0] as TransportClosedError;
  assert.is(closed.reason, 'protocol');
  assert.ok(closed.cause instanceof FrameError);
  assert.is(closes.length, 1);
  assert.is(await c.closed, closed);
  assert.not.ok(c.isOpen);
  assert.throws(() => c.send({}), (e: unknown) => e === closed);
  assert.is(await c.request('late', {}, 10).catch((e: unknown) => e), closed);
});

conn('the peer ending its side is reason eof; our close() is reason local', async () => {
  const one = pair();
  const c1 = open(one.stream, []);
  one.peerOut.end();
  assert.is((await c1.closed).reason, 'eof');
  const two = pair();
  const c2 = open(two.stream, []);
  const pending = c2.request('x', { id: 'x' }, Infinity).catch((e: unknown) => e);
  await c2.close('bye');
  const err = await pending;
  assert.ok(err instanceof TransportClosedError);
  assert.is(err.reason, 'local');
  assert.match(err.message, /test peer: bye/);
});

conn.run();
