import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseJsonObject, ProtocolError } from '../../lib/protocol/index.js';
import { jsonReadOptions, shortRead, strictRead } from '../../lib/protocol/json.js';
import { plain } from './helpers.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const parse = (s: string): unknown => plain(parseJsonObject(utf8(s)));

function refused(input: string | Uint8Array, pattern: RegExp): void {
  const bytes = typeof input === 'string' ? utf8(input) : input;
  try {
    parseJsonObject(bytes, { offset: 5, type: 0x10, requestId: 3 });
  } catch (e) {
    assert.instance(e, ProtocolError);
    const err = e as ProtocolError;
    assert.is(err.kind, 'bad-json');
    assert.is(err.code, 'EMALFORMED');
    assert.is(err.requestId, 3);
    assert.match(err.message, pattern);
    return;
  }
  assert.unreachable(`accepted ${String(input)}`);
}

test('reads what JSON.parse reads, for objects within the depth limit', () => {
  for (const text of ['{}', ' {"a":1} ', '{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\ud834\\udd1e\\n"],"b":{"c":{"d":[]}}}', '{"":""}', '{"a":"\\/\\"\\\\\\b\\f\\r\\t"}']) {
    assert.equal(parse(text), JSON.parse(text), text);
  }
});

test('objects have a null prototype', () => {
  const o = parseJsonObject(utf8('{"a":{"b":1}}'));
  assert.is(Object.getPrototypeOf(o), null);
  assert.is(Object.getPrototypeOf(o['a']), null);
});

test('refuses prototype-pollution keys at any level, also when written with escapes', () => {
  refused('{"__proto__":{"x":1}}', /forbidden key "__proto__"/);
  refused('{"a":{"constructor":1}}', /forbidden key "constructor"/);
  refused('{"a":[{"prototype":1}]}', /forbidden key "prototype"/);
  refused('{"\\u005f_proto__":1}', /forbidden key "__proto__"/);
});

test('refuses duplicate keys (two parsers could read two different values)', () => {
  refused('{"a":1,"a":2}', /key "a" twice/);
  refused('{"a":1,"\\u0061":2}', /key "a" twice/);
});

test('refuses nesting deeper than 4 levels without recursing into it', () => {
  assert.ok(parse('{"a":{"b":{"c":[1]}}}'));
  assert.ok(parse('{"a":{"b":{"c":{"d":1}}}}'));
  refused('{"a":{"b":{"c":{"d":[]}}}}', /deeper than 4/);
  refused(`{"a":${'['.repeat(100_000)}`, /deeper than 4/);
});

test('refuses what is not exactly one JSON object', () => {
  for (const [text, pattern] of [
    ['[]', /not an object/],
    ['"x"', /not an object/],
    ['1', /not an object/],
    ['', /ends where a value/],
    ['{', /not a string|lacks/],
    ['{"a":1}x', /data after/],
    ['{"a":1}{}', /data after/],
    ["{'a':1}", /not a string/],
    ['{"a":01}', /lacks/],
    ['{"a":1,}', /not a string/],
    ['{"a":[1,]}', /unexpected character/],
    ['{"a":"\t"}', /control character/],
    ['{"a":"\\x"}', /invalid escape/],
    ['{"a":"\\u12"}', /bad \\u escape/],
    ['{"a":"\\ud800"}', /lone surrogate/],
    ['{"a":"\\udc00\\ud800"}', /lone surrogate/],
    ['{"a":NaN}', /unexpected character/],
    ['{"a":1e400}', /cannot hold exactly/],
    ['{"a":12345678901234567890}', /cannot hold exactly/],
    ['{"a":"unterminated}', /unterminated/],
    ['\ufeff{}', /byte-order mark/],
  ] as const) {
    refused(text, pattern);
  }
});

test('refuses ill-formed UTF-8: overlong, surrogate, stray continuation, truncated, above U+10FFFF', () => {
  const wrap = (...b: number[]): Uint8Array => Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, ...b, 0x22, 0x7d]);
  assert.equal(plain(parseJsonObject(wrap(0xc3, 0xa9, 0xf0, 0x9d, 0x84, 0x9e))), { a: 'é𝄞' });
  for (const bad of [[0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0xff]]) {
    refused(wrap(...bad), /not valid UTF-8/);
  }
  refused(Uint8Array.from([0x7b, 0x22, 0xc3]), /not valid UTF-8/);
});

// The short way (JSON.parse and one walk) must read every text exactly as the strict reader
// does, or leave it to the strict reader: the same value (null prototypes, key order) or the
// same error, word for word.

type Outcome = { value: unknown; protos: string } | { error: string };

function outcome(bytes: Uint8Array, shortWay: boolean): Outcome {
  jsonReadOptions.shortWay = shortWay;
  try {
    const value = parseJsonObject(bytes, { offset: 1, type: 0x20, requestId: 2 });
    return { value: JSON.stringify(value, keepNegativeZero), protos: protos(value) };
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    return { error: `${e.kind} ${e.message}` };
  } finally {
    jsonReadOptions.shortWay = true;
  }
}

/** JSON.stringify writes -0 as 0: tell them apart. */
function keepNegativeZero(_key: string, v: unknown): unknown {
  return Object.is(v, -0) ? '(-0)' : v;
}

/** The prototype of every object and array, in walk order, with its keys in order. */
function protos(v: unknown): string {
  if (typeof v !== 'object' || v === null) return '';
  const kind = Array.isArray(v) ? 'A' : Object.getPrototypeOf(v) === null ? 'N' : 'P';
  return `${kind}(${Object.keys(v).join(',')})[${Object.values(v).map(protos).join(';')}]`;
}

function agree(text: string | Uint8Array): void {
  const bytes = typeof text === 'string' ? utf8(text) : text;
  assert.equal(outcome(bytes, true), outcome(bytes, false), typeof text === 'string' ? text : String(text));
}

test('the short way agrees with the strict reader on hand-picked texts', () => {
  for (const text of [
    '{}', ' {"a":1} ', '{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\ud834\\udd1e\\n"],"b":{"c":{"d":[]}}}', '{"":""}',
    '{"a":1,"a":2}', '{"a":1,"\\u0061":2}', '{"a":{"b":1},"c":{"b":1}}', '{"a":"x:y","b":"\\":"}', '{"a:":1,"a:":2}',
    '{"__proto__":{"x":1}}', '{"a":{"constructor":1}}', '{"a":[{"prototype":1}]}', '{"\\u005f_proto__":1}', '{"toString":1,"hasOwnProperty":2}',
    '{"a":{"b":{"c":[1]}}}', '{"a":{"b":{"c":{"d":1}}}}', '{"a":{"b":{"c":{"d":[]}}}}', `{"a":${'['.repeat(100_000)}`, `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`,
    '[]', '"x"', '1', '', '{', '{"a":1}x', '{"a":01}', '{"a":1,}', '{"a":"\t"}', '{"a":"\\x"}', '{"a":"\\u12"}',
    '{"a":"\\ud800"}', '{"a":"\\udc00\\ud800"}', '{"\\ud800":1}', '{"a":NaN}', '{"a":1e400}', '{"a":-1e400}', '{"a":12345678901234567890}',
    '{"a":9007199254740991}', '{"a":9007199254740992}', '{"a":9007199254740993.0}', '{"a":1e20}', '{"a":1.5e300}', '{"a":-0}', '{"a":1.0}',
    '\ufeff{}', '\ufeff{"a":1}', '{"2":1,"1":2,"b":3,"a":4}', '{"a":"unterminated}', '{"a" : 1 ,\\n\\t"b":\\r[ ]}',
  ]) agree(text);
});

/** JSON texts of objects: nested values with keys and strings that stress the checks. */
const key = fc.oneof(
  fc.constantFrom('a', 'b', '', ':', '"', '\\\\', '__proto__', 'constructor', 'prototype', 'toString', '0', '1', 'é', '𝄞', '\ud800', '\udc00'),
  fc.string({ maxLength: 6, unit: 'binary' }),
);
const leaf = fc.oneof(
  fc.string({ maxLength: 8, unit: 'binary' }),
  fc.constantFrom(0, -0, 1.5, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e20, 1e300, true, false, null, 'a:b', '"', '\\\\'),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const tree = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('node'), { maxLength: 4 }),
    fc.array(fc.tuple(key, tie('node')), { maxLength: 4 }).map((pairs) => ({ pairs })),
  ),
})).node;

/** Writes a tree as JSON text; `{pairs}` are objects whose keys may repeat. */
function write(v: unknown, style: number): string {
  const sp = style % 3 === 0 ? '' : style % 3 === 1 ? ' ' : '\n\t';
  if (Array.isArray(v)) return `[${sp}${v.map((x) => write(x, style)).join(`,${sp}`)}${sp}]`;
  if (typeof v === 'object' && v !== null) {
    const pairs = (v as { pairs: [string, unknown][] }).pairs;
    return `{${sp}${pairs.map(([k, x]) => `${writeString(k, style)}${sp}:${sp}${write(x, style)}`).join(`,${sp}`)}${sp}}`;
  }
  return typeof v === 'string' ? writeString(v, style) : String(JSON.stringify(v));
}

/** JSON.stringify escapes lone surrogates as \\uXXXX; style 2 also escapes every letter a. */
function writeString(s: string, style: number): string {
  const text = JSON.stringify(s);
  return style % 2 === 0 ? text : text.replace(/a/g, '\\u0061');
}

test('the short way agrees with the strict reader on generated objects (fast-check)', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(key, tree), { maxLength: 5 }), fc.nat(5), (pairs, style) => {
      agree(write({ pairs }, style));
    }),
    { numRuns: 3000 },
  );
});

test('the short way agrees with the strict reader on texts with one character changed, dropped or added', () => {
  const alphabet = '{}[]":,\\u0123456789abcdefnrtlsuxE.-+ \t\n\ufeff\ud800\udc00é';
  fc.assert(
    fc.property(fc.array(fc.tuple(key, tree), { minLength: 1, maxLength: 4 }), fc.nat(5), fc.nat(), fc.nat(2), fc.nat(alphabet.length - 1), (pairs, style, at, how, c) => {
      const text = write({ pairs }, style);
      const i = at % (text.length + 1);
      const ch = alphabet[c]!;
      agree(how === 0 ? text.slice(0, i) + ch + text.slice(i + 1) : how === 1 ? text.slice(0, i) + text.slice(i + 1) : text.slice(0, i) + ch + text.slice(i));
    }),
    { numRuns: 3000 },
  );
});

test('on any string, also one no UTF-8 decoder makes (raw lone surrogates), the short way returns what the strict reader returns, or leaves it to it', () => {
  const strictOrNot = (text: string): unknown => {
    try {
      return JSON.stringify(strictRead(text), keepNegativeZero);
    } catch {
      return 'refused';
    }
  };
  for (const text of ['{"a":"\ud83d\\ude00"}', '{"a":"\\ud83d\ude00"}', '{"\ud800":1}', '{"a":"\udc00"}', '{"a":"😀"}']) {
    const short = shortRead(text);
    if (short !== undefined) assert.is(JSON.stringify(short, keepNegativeZero), strictOrNot(text), text);
  }
  assert.is(shortRead('{"a":"\ud83d\\ude00"}'), undefined);
  fc.assert(
    fc.property(fc.array(fc.tuple(key, tree), { maxLength: 4 }), fc.nat(5), fc.nat(), fc.constantFrom('\ud800', '\udc00', '\ud83d', '\ude00', '😀'), (pairs, style, at, raw) => {
      const text = write({ pairs }, style);
      const i = at % (text.length + 1);
      const mutated = text.slice(0, i) + raw + text.slice(i);
      const short = shortRead(mutated);
      if (short !== undefined) assert.is(JSON.stringify(short, keepNegativeZero), strictOrNot(mutated), mutated);
    }),
    { numRuns: 2000 },
  );
});

test('the short way takes the usual messages itself (it is not always falling back)', () => {
  for (const text of [
    '{"argv":["-n","x"],"env":{"LANG":"C"},"measurement":"sha256:ab","session":"n1"}',
    '{"role":"host","version":1,"nonce":"n1","limits":{"maxFrame":65536,"maxUpload":1048576},"resumed":true}',
    '{"code":0,"signal":null,"durationMs":3.5,"limitsHit":{"memory":false}}',
  ]) {
    const o = shortRead(text);
    assert.ok(o !== undefined, text);
    assert.is(Object.getPrototypeOf(o), null);
  }
  for (const text of ['{"a":1,"a":2}', '{"a":"\\ud800"}', '{"a":{"b":{"c":{"d":[]}}}}', '{"__proto__":1}', '{"a":1e20}']) assert.is(shortRead(text), undefined, text);
});

test.run();
