// Fuzz properties of the decoder and the host session on hostile input: random bytes and
// mutations of valid streams, in random splits. Nothing but ProtocolError events come out
// (feed itself never throws), the decoder never holds more than HEADER + maxFrame, every byte
// is accounted for, and every message the session asks to send encodes.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeFrame as encodeFrameRaw, encodeMessage, FrameDecoder, FrameType, HEADER_BYTES, HostSession, parseFrame, ProtocolError, type DecoderEvent } from '../../lib/protocol/index.js';
import { concat, guestMessages, LIMITS } from './helpers.js';

const RUNS = Number(process.env.PROTOCOL_FUZZ_RUNS ?? 1000);
const valid = concat(guestMessages().map((m) => encodeMessage(m)));

/** Feed `chunks` to a decoder and a host session; check the invariants after every step. */
function drive(chunks: readonly Uint8Array[], maxFrame: number): void {
  const decoder = new FrameDecoder({ from: 'guest', maxFrame });
  const session = new HostSession({ limits: LIMITS });
  let fed = 0;
  let accounted = 0;
  const take = (events: DecoderEvent[]): void => {
    for (const e of events) {
      if (e.kind === 'garbage') accounted += e.length;
      else if (e.kind === 'error') {
        assert.instance(e.error, ProtocolError);
        assert.is(e.error.code, 'EMALFORMED');
        for (const a of session.onError(e.error)) if (a.type === 'send') encodeMessage(a.message);
      } else {
        for (const a of session.onMessage(e.message)) if (a.type === 'send') encodeMessage(a.message);
      }
    }
  };
  for (const chunk of chunks) {
    take(decoder.feed(chunk));
    fed += chunk.length;
    assert.ok(decoder.buffered <= HEADER_BYTES + maxFrame, `holds ${decoder.buffered} bytes`);
    assert.is(decoder.offset, fed);
  }
  take(decoder.abandonPartial());
  take(decoder.end());
  assert.is(decoder.buffered, 0);
  // Every byte fed was either part of a decoded or refused frame, or counted as garbage.
  assert.ok(accounted <= fed);
}

const chunked = (bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array[]> =>
  fc.tuple(bytes, fc.array(fc.nat(), { maxLength: 20 })).map(([b, cuts]) => {
    const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
    return [...points, b.length].map((p, i, all) => b.subarray(i === 0 ? 0 : all[i - 1], p));
  });

test(`random bytes: only ProtocolError events, bounded buffer (${RUNS} runs)`, () => {
  fc.assert(
    fc.property(chunked(fc.uint8Array({ maxLength: 6000 })), fc.constantFrom(0, 16, 1024, 4096), (chunks, maxFrame) => drive(chunks, maxFrame)),
    { numRuns: RUNS },
  );
});

test(`mutated valid streams (flipped, inserted, deleted bytes): same invariants (${RUNS} runs)`, () => {
  const mutated = fc
    .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'insert', 'delete')), { minLength: 1, maxLength: 8 })
    .map((edits) => {
      let bytes = Array.from(valid);
      for (const [at, value, kind] of edits) {
        const i = at % Math.max(bytes.length, 1);
        if (kind === 'flip') bytes[i] = (bytes[i] ?? 0) ^ (value | 1);
        else if (kind === 'insert') bytes.splice(i, 0, value);
        else bytes.splice(i, 1);
      }
      return Uint8Array.from(bytes);
    });
  fc.assert(fc.property(chunked(mutated), (chunks) => drive(chunks, 4096)), { numRuns: RUNS });
});

test('frames with valid CRCs but random JSON payloads are refused with typed errors', () => {
  fc.assert(
    fc.property(fc.constantFrom(0x01, 0x10), fc.nat(5), fc.jsonValue({ maxDepth: 6 }), (type, id, value) => {
      const payload = new TextEncoder().encode(JSON.stringify(value) ?? 'null');
      // Build the frame through the raw encoder so the JSON is not validated on the way out.
      drive([concat([encodeFrameRaw(type, id, payload)])], 65536);
    }),
    { numRuns: RUNS },
  );
});


test(`parseFrame on every type with random payloads and ids throws nothing but ProtocolError (${RUNS} runs)`, () => {
  const payload = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json({ maxDepth: 6 }).map((t) => new TextEncoder().encode(t)));
  fc.assert(
    fc.property(fc.constantFrom(...Object.values(FrameType)), fc.constantFrom(0, 1, 0xffffffff), payload, (type, requestId, bytes) => {
      try {
        parseFrame({ type, requestId, payload: bytes, offset: 0 });
      } catch (e) {
        assert.instance(e, ProtocolError);
      }
    }),
    { numRuns: RUNS },
  );
});

test.run();
