// The incremental decoder: any split of the stream gives the same messages; garbage is
// skipped and counted; oversized frames are refused before buffering; truncated frames wait;
// a client killed mid-frame is recovered from with the resync marker.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  crc32 as crcOf,
  type DecoderEvent,
  encodeCancel,
  encodeChunks,
  encodeFrame,
  encodeHello,
  encodeMessage,
  FrameDecoder,
  FrameType,
  HEADER_BYTES,
  ProtocolError,
  resyncMarker,
  sealRaw,
} from '../../lib/protocol/index.js';
import { splitAt } from '../helpers/split.js';
import { concat, decodeAll, errorsOf, garbageOf, guestMessages, hostMessages, messagesOf, plain } from './helpers.js';

const stream = concat(guestMessages().map((m) => encodeMessage(m)));
const expected = plain(guestMessages()) as unknown[];

test('fed byte by byte: the same messages, no garbage, nothing held at the end', () => {
  const decoder = new FrameDecoder({ from: 'guest' });
  const events = [];
  for (let i = 0; i < stream.length; i++) events.push(...decoder.feed(stream.subarray(i, i + 1)));
  assert.equal(plain(messagesOf(events)), expected);
  assert.is(garbageOf(events), 0);
  assert.is(decoder.buffered, 0);
  assert.is(decoder.offset, stream.length);
  assert.equal(decoder.stats, { frames: expected.length, garbageBytes: 0, errors: 0 });
  assert.equal(events.filter((e) => e.kind === 'message').map((e) => (e.kind === 'message' ? e.offset : -1))[1], encodeMessage(guestMessages()[0]!).length);
});

test('property: any split of the stream gives the same messages', () => {
  fc.assert(
    fc.property(fc.array(fc.nat(), { maxLength: 40 }), (cuts) => {
      assert.equal(plain(messagesOf(decodeAll(splitAt(stream, cuts), { from: 'guest' }))), expected);
    }),
    { numRuns: 300 },
  );
});

test('property: garbage before and between frames is skipped and counted exactly, in any split', () => {
  // Garbage without the letter V cannot contain a magic, so every byte of it is skipped.
  const garbage = fc.uint8Array({ maxLength: 300 }).map((g) => g.map((b) => (b === 0x56 ? 0x57 : b)));
  const frames = hostMessages().map((m) => encodeMessage(m));
  fc.assert(
    fc.property(fc.array(garbage, { minLength: frames.length + 1, maxLength: frames.length + 1 }), fc.array(fc.nat(), { maxLength: 30 }), (junk, cuts) => {
      const bytes = concat(frames.flatMap((f, i) => [junk[i]!, f]).concat([junk[frames.length]!]));
      const events = decodeAll(splitAt(bytes, cuts), { from: 'host', end: true });
      assert.equal(plain(messagesOf(events)), plain(hostMessages()));
      assert.is(garbageOf(events), junk.reduce((n, j) => n + j.length, 0));
      assert.equal(errorsOf(events), []);
    }),
    { numRuns: 200 },
  );
});

test('a magic inside garbage whose header CRC fails is skipped; one that is a real header is not', () => {
  const fake = Uint8Array.from([0x56, 0x4f, 0x46, 0x31, ...new Array(20).fill(0)]);
  const real = encodeCancel(3);
  const events = decodeAll([concat([Uint8Array.of(1, 2), fake, Uint8Array.of(0x56, 0x4f), real])], { from: 'guest' });
  assert.equal(plain(messagesOf(events)), [{ type: 'CANCEL', requestId: 3 }]);
  assert.is(garbageOf(events), 2 + 24 + 2);
  assert.equal(events.map((e) => e.kind), ['garbage', 'message']);
});

test('a length over maxFrame is refused as soon as the header is complete, without waiting for the payload', () => {
  const decoder = new FrameDecoder({ from: 'guest', maxFrame: 4096 });
  const big = encodeFrame(FrameType.DATA, 7, new Uint8Array(4097));
  const events = decoder.feed(big.subarray(0, HEADER_BYTES));
  assert.is(events.length, 2);
  const first = events[0];
  const error = first?.kind === 'error' ? first.error : undefined;
  assert.instance(error, ProtocolError);
  assert.equal([error?.kind, error?.type, error?.requestId, error?.offset, error?.code], ['too-large', FrameType.DATA, 7, 0, 'EMALFORMED']);
  assert.ok(decoder.buffered < HEADER_BYTES, 'the refused header is not held');
  // The payload that follows is scanned as garbage; the next frame decodes.
  const rest = decoder.feed(concat([big.subarray(HEADER_BYTES), encodeCancel(7)]));
  assert.equal(plain(messagesOf(rest)), [{ type: 'CANCEL', requestId: 7 }]);
  assert.is(garbageOf([...events, ...rest]), big.length);
});

test('a tiny maxFrame (0, 10, 47): headers cut anywhere are still read, nothing is written past the buffer', () => {
  const frames = concat([encodeFrame(FrameType.DATA_END, 1), encodeFrame(FrameType.CANCEL, 2), encodeFrame(FrameType.DATA_END, 3)]);
  for (const maxFrame of [0, 10, 47]) {
    for (const cut of [1, 3, 5, 23, 25]) {
      const decoder = new FrameDecoder({ from: 'guest', maxFrame });
      const events: DecoderEvent[] = [];
      for (let at = 0; at < frames.length; at += cut) events.push(...decoder.feed(frames.subarray(at, at + cut)));
      assert.equal(messagesOf(events).map((m) => `${m.type} ${m.requestId}`), ['DATA_END 1', 'CANCEL 2', 'DATA_END 3'], `maxFrame ${maxFrame}, cut ${cut}`);
    }
  }
});

test('a header announcing 4 GiB never makes the decoder hold more than HEADER + maxFrame', () => {
  const decoder = new FrameDecoder({ from: 'guest', maxFrame: 1024 });
  const header = encodeFrame(FrameType.DATA, 1, new Uint8Array(0));
  const view = new DataView(header.buffer);
  view.setUint32(12, 0xffffffff);
  // Re-seal the header CRC so that the header is authentic and only its length is wrong.
  const fixed = encodeFrame(FrameType.DATA, 1, new Uint8Array(0));
  fixed.set(header.subarray(0, 20));
  new DataView(fixed.buffer).setUint32(20, crcOf(fixed.subarray(0, 20)));
  assert.equal(errorsOf(decoder.feed(fixed)), ['too-large']);
  decoder.feed(new Uint8Array(1 << 20).fill(0x41));
  assert.ok(decoder.buffered <= HEADER_BYTES + 1024);
});

test('a truncated frame waits for more; at end of stream it is reported as truncated', () => {
  const frame = encodeMessage(guestMessages()[3]!);
  const decoder = new FrameDecoder({ from: 'guest' });
  assert.equal(decoder.feed(frame.subarray(0, frame.length - 1)), []);
  assert.ok(decoder.inFrame);
  assert.is(decoder.buffered, frame.length - 1);
  const end = decoder.end();
  assert.equal(errorsOf(end), ['truncated']);
  assert.is(decoder.buffered, 0);
  assert.equal(new FrameDecoder({ from: 'guest' }).end(), []);
});

test('wrong direction, unknown type, flags set: refused, and decoding continues', () => {
  const exit = encodeMessage(hostMessages()[5]!);
  const unknown = encodeFrame(0x7f, 1, new Uint8Array(0));
  const flagged = encodeCancel(1);
  flagged[5] = 1;
  new DataView(flagged.buffer).setUint32(20, crcOf(flagged.subarray(0, 20)));
  const events = decodeAll([concat([exit, unknown, flagged, encodeCancel(2)])], { from: 'guest' });
  assert.equal(errorsOf(events), ['wrong-direction', 'unknown-type', 'bad-header']);
  assert.equal(plain(messagesOf(events)), [{ type: 'CANCEL', requestId: 2 }]);
});

/** A DATA frame of `bytes` sealed without its payload CRC (flags 0x01), as the TS client sends them. */
function uncheckedData(id: number, bytes: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + bytes.length);
  frame.set(bytes, HEADER_BYTES);
  return sealRaw('DATA', id, frame, 65536, { uncheckedPayload: true });
}

/** Set header byte `at` to `value` and re-seal the header CRC (a well-formed header with other contents). */
function patchHeader(frame: Uint8Array, at: number, value: number): Uint8Array {
  const out = frame.slice();
  out[at] = value;
  new DataView(out.buffer).setUint32(20, crcOf(out.subarray(0, 20)));
  return out;
}

test('unchecked DATA (flags 0x01, CRC field 0) is accepted as DATA; its payload is not CRC-tested', () => {
  const payload = new Uint8Array(3000).map((_, i) => (i * 7) & 0xff);
  const frame = uncheckedData(5, payload);
  assert.is(frame[5], 1, 'flag set');
  assert.is(new DataView(frame.buffer).getUint32(16), 0, 'CRC field 0');
  const events = decodeAll([concat([frame, encodeCancel(5)])], { from: 'guest' });
  assert.equal(errorsOf(events), []);
  const [data, cancel] = messagesOf(events);
  assert.ok(data?.type === 'DATA' && data.requestId === 5);
  assert.equal(data.type === 'DATA' ? [...data.data] : [], [...payload]);
  assert.is(cancel?.type, 'CANCEL');
});

test('the unchecked flag anywhere but DATA, a non-zero CRC with it, or any other flag bit: refused as bad-header', () => {
  const onCancel = patchHeader(encodeCancel(1), 5, 1);
  const withCrc = patchHeader(patchHeader(uncheckedData(2, new Uint8Array([1, 2, 3])), 16, 0x12), 5, 1);
  const otherBit = patchHeader(uncheckedData(3, new Uint8Array([1])), 5, 0x03);
  const events = decodeAll([concat([onCancel, withCrc, otherBit, encodeCancel(4)])], { from: 'guest' });
  assert.equal(errorsOf(events), ['bad-header', 'bad-header', 'bad-header']);
  assert.equal(plain(messagesOf(events)), [{ type: 'CANCEL', requestId: 4 }]);
  assert.throws(() => sealRaw('STDOUT', 1, new Uint8Array(HEADER_BYTES + 1), 65536, { uncheckedPayload: true }), /only DATA/);
});

test('an unchecked DATA frame cut short by a killed client and completed by the marker: delivered as DATA, then the next HELLO is found', () => {
  // What the payload CRC no longer catches for unchecked frames: the garbage goes to the dead
  // client's request, which the next HELLO aborts (a new session); nothing else is lost.
  const cut = uncheckedData(9, new Uint8Array(40000).fill(0x41)).subarray(0, HEADER_BYTES + 1000);
  const hello = encodeHello({ role: 'guest', versions: [1], nonce: 'after-resync' }, 4096);
  const events = decodeAll([concat([cut, resyncMarker(), hello])], { from: 'guest' });
  const messages = messagesOf(events);
  assert.is(messages.length, 2);
  assert.ok(messages[0]?.type === 'DATA' && messages[0].requestId === 9);
  assert.ok(messages[1]?.type === 'HELLO' && messages[1].body.role === 'guest' && messages[1].body.nonce === 'after-resync');
});

test('a complete frame with bad JSON is refused whole, with its request id; the next frame decodes', () => {
  const bad = encodeFrame(FrameType.REQUEST, 42, new TextEncoder().encode('{"argv":[],"upload":1,"__proto__":{}}'));
  const events = decodeAll([concat([bad, encodeCancel(42)])], { from: 'guest' });
  const error = events.find((e) => e.kind === 'error');
  assert.ok(error !== undefined && error.kind === 'error' && error.error.requestId === 42 && error.error.kind === 'bad-json');
  assert.equal(plain(messagesOf(events)), [{ type: 'CANCEL', requestId: 42 }]);
  assert.is(garbageOf(events), 0);
});

test('resync: a client killed mid-DATA; the next client sends the marker and HELLO and is understood', () => {
  const maxFrame = 65536;
  const data = encodeChunks('DATA', 1, new Uint8Array(maxFrame).fill(0x56), maxFrame)[0]!;
  const hello = encodeHello({ role: 'guest', versions: [1], nonce: 'second-client' });
  for (const cut of [3, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 1000, data.length - 1]) {
    const decoder = new FrameDecoder({ from: 'guest', maxFrame });
    const events = [...decoder.feed(data.subarray(0, cut))];
    events.push(...decoder.feed(resyncMarker()), ...decoder.feed(hello));
    const messages = messagesOf(events);
    assert.equal(plain(messages), [{ type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1], nonce: 'second-client' } }], `cut at ${cut}`);
    assert.equal(errorsOf(events), cut >= HEADER_BYTES ? ['bad-checksum'] : [], `cut at ${cut}`);
    assert.is(decoder.buffered, 0);
  }
});

test('a frame failing its payload CRC is skipped whole: nested fake frames cost one check, not one each', () => {
  // Authentic headers every 24 bytes, each announcing a payload to the end of the buffer with
  // a wrong CRC. Rescanning inside a failed frame would CRC up to 64 KiB for each of them.
  const bytes = new Uint8Array(HEADER_BYTES + 65536);
  const count = Math.floor(bytes.length / HEADER_BYTES);
  for (let i = 0; i < count; i++) {
    const header = encodeFrame(FrameType.DATA, 1, new Uint8Array(0)).subarray(0, HEADER_BYTES);
    const view = new DataView(header.buffer, header.byteOffset);
    view.setUint32(12, bytes.length - (i + 1) * HEADER_BYTES);
    view.setUint32(16, 1);
    view.setUint32(20, crcOf(header.subarray(0, 20)));
    bytes.set(header, i * HEADER_BYTES);
  }
  const decoder = new FrameDecoder({ from: 'guest' });
  const events = [...decoder.feed(bytes), ...decoder.feed(encodeCancel(9))];
  assert.equal(errorsOf(events), ['bad-checksum']);
  assert.is(garbageOf(events), bytes.length);
  assert.equal(plain(messagesOf(events)), [{ type: 'CANCEL', requestId: 9 }]);
});

test('resync without the marker: abandonPartial() (the frame timeout) drops the partial frame and finds the HELLO in what it held', () => {
  const data = encodeChunks('DATA', 1, new Uint8Array(4000).fill(1), 4096)[0]!;
  const hello = encodeHello({ role: 'guest', versions: [1], nonce: 'after-timeout' });
  const decoder = new FrameDecoder({ from: 'guest', maxFrame: 4096 });
  assert.equal(decoder.feed(concat([data.subarray(0, 100), hello])), [], 'the HELLO is swallowed as payload for now');
  const events = decoder.abandonPartial();
  assert.equal(messagesOf(events).map((m) => m.type), ['HELLO']);
  assert.is(garbageOf(events), 100);
  assert.is(decoder.buffered, 0);
});

test('abandonPartial() of a maxFrame-sized frame missing its last byte: the frames inside it are found, a cut header kept', () => {
  // The partial frame is put back together in its own buffer: a maxFrame payload fits, and what
  // follows in it (a cut header) is kept for the next feed.
  const data = encodeChunks('DATA', 1, new Uint8Array(65536).fill(7), 65536)[0]!;
  const hello = encodeHello({ role: 'guest', versions: [1], nonce: 'after-a-big-one' });
  const held = concat([data.subarray(0, data.length - 1 - hello.length - 5), hello, hello.subarray(0, 5)]);
  const decoder = new FrameDecoder({ from: 'guest' });
  assert.equal(decoder.feed(held), []);
  const events = [...decoder.abandonPartial(), ...decoder.feed(hello.subarray(5))];
  assert.equal(messagesOf(events).map((m) => m.type), ['HELLO', 'HELLO']);
  assert.is(decoder.buffered, 0);
});

test('an idle decoder holds a few dozen bytes, not a frame (a connection keeps one for its life)', () => {
  const before = process.memoryUsage().arrayBuffers;
  const decoders = Array.from({ length: 1000 }, () => new FrameDecoder({ from: 'guest' }));
  const perDecoder = (process.memoryUsage().arrayBuffers - before) / decoders.length;
  assert.ok(perDecoder < 1024, `${Math.round(perDecoder)} bytes of buffers per decoder`);
});

test.run();
