import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseJsonObject, ProtocolError } from '../../lib/protocol/index.js';
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

test.run();
