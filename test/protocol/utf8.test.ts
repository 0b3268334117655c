// UTF-8 of the protocol core: the portable codec and the platform's (TextDecoder with fatal and
// ignoreBOM, registered by lib/transport) agree on every input; candidates that differ on the
// known cases (lenient, BOM-dropping, throwing) are refused and the portable one stays.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InternalError } from '../../lib/errors.js';
import { decodeUtf8Portable, encodeUtf8Portable, useUtf8Implementation, utf8Implementation, type Utf8Implementation } from '../../lib/protocol/index.js';
import { useNativeUtf8 } from '../../lib/transport/index.js';

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const native: Utf8Implementation = {
  decode(bytes) {
    try {
      return fatal.decode(bytes);
    } catch {
      return undefined;
    }
  },
  encode: (text) => new TextEncoder().encode(text),
};

/** Bytes that are often nearly UTF-8: encoded text with bytes changed, cut or inserted. */
const nearlyUtf8 = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }), fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
  .map(([units, edits]) => {
    const bytes = [...encodeUtf8Portable(String.fromCharCode(...units))];
    for (const [at, value] of edits) bytes.splice(at % (bytes.length + 1), at % 3 === 0 ? 1 : 0, value);
    return Uint8Array.from(bytes);
  });

test('the platform codec agrees with the portable one: decode (random and nearly-UTF-8 bytes), encode (any code units, lone surrogates too)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), nearlyUtf8), (bytes) => {
      assert.is(native.decode(bytes), decodeUtf8Portable(bytes));
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }), (units) => {
      const text = String.fromCharCode(...units);
      assert.equal([...native.encode(text)], [...encodeUtf8Portable(text)]);
    }),
    { numRuns: 2000 },
  );
});

test('useNativeUtf8 registers TextDecoder; candidates that differ on known sequences are refused', () => {
  useUtf8Implementation(undefined);
  assert.is(utf8Implementation(), 'portable');
  const lenient = new TextDecoder('utf-8', { ignoreBOM: true });
  const bomDropping = new TextDecoder('utf-8', { fatal: true });
  const wrong: [string, Utf8Implementation, RegExp][] = [
    ['lenient', { decode: (b) => lenient.decode(b), encode: native.encode }, /accepts the ill-formed sequence/],
    [
      'drops a BOM',
      {
        decode(b) {
          try {
            return bomDropping.decode(b);
          } catch {
            return undefined;
          }
        },
        encode: native.encode,
      },
      /byte-order mark/,
    ],
    ['throws', { decode: () => { throw new Error('no'); }, encode: native.encode }, /threw no/],
  ];
  for (const [name, impl, why] of wrong) {
    assert.throws(() => useUtf8Implementation(impl, name), (err: unknown) => err instanceof InternalError && err.message.includes(name) && why.test(err.message), name);
    assert.is(utf8Implementation(), 'portable', name);
  }
  assert.is(useNativeUtf8(), 'textdecoder');
  assert.is(utf8Implementation(), 'textdecoder');
});

test.run();
