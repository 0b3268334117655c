// CRC-32 must be the one busybox `crc32`, zlib and gzip compute: a shell client depends on it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { InternalError } from '../../lib/errors.js';
import { useNativeCrc32 } from '../../lib/guest/index.js';
import { crc32, crc32Implementation, crc32Portable, useCrc32Implementation } from '../../lib/protocol/index.js';
import { requireTool, run } from '../../testbed/tools.js';
import { execFileSync } from 'node:child_process';

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

test('check value of CRC-32/ISO-HDLC and the value busybox crc32 printed for "hello"', () => {
  assert.is(crc32(ascii('123456789')), 0xcbf43926);
  assert.is(crc32(ascii('hello')), 0x3610a686);
  assert.is(crc32(new Uint8Array(0)), 0);
});

test('matches the CRC-32 in the trailer gzip writes, for lengths around the 4-byte stride', () => {
  const gzip = requireTool('gzip', 'gzip');
  for (const length of [1, 2, 3, 4, 5, 7, 8, 1000, 65536 + 3]) {
    const data = new Uint8Array(length);
    for (let i = 0; i < length; i++) data[i] = (i * 131 + length) & 0xff;
    const gz = execFileSync(gzip, ['-c'], { input: data });
    const trailer = new DataView(gz.buffer, gz.byteOffset + gz.length - 8, 8);
    assert.is(crc32(data), trailer.getUint32(0, true), `length ${length}`);
  }
  assert.ok(run(gzip, ['--version']).length > 0);
});

test('continues across chunks', () => {
  const data = ascii('the quick brown fox jumps over the lazy dog');
  for (const cut of [0, 1, 5, 17, data.length]) {
    assert.is(crc32(data.subarray(cut), crc32(data.subarray(0, cut))), crc32(data), `cut at ${cut}`);
  }
});

/** Random bytes, seeded: a failure can be replayed. */
function randomBuffer(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

test('a wrong implementation is refused with the vector it fails, and the one in use stays', () => {
  useCrc32Implementation(undefined);
  const good = (b: Uint8Array, c: number): number => (b.length === 0 ? c >>> 0 : zlibCrc32(b, c));
  const wrong: [string, (b: Uint8Array, c: number) => number, RegExp][] = [
    ['constant', () => 0xcbf43926, /no bytes/],
    ['no continuation', (b) => zlibCrc32(b), /continuing/],
    ['raw zlib.crc32 on empty views', (b, c) => zlibCrc32(b, c), /0-byte view/],
    ['signed result', (b, c) => good(b, c) | 0, /123456789/],
    ['ignores byteOffset', (b, c) => good(new Uint8Array(b.buffer, 0, b.length), c), /"1234"|offset 3/],
    ['wrong on long input', (b, c) => (b.length > 100 ? good(b.subarray(1), c) : good(b, c)), /4096 bytes/],
    ['throws', () => {
      throw new Error('no');
    }, /threw no/],
  ];
  for (const [name, fn, why] of wrong) {
    assert.throws(() => useCrc32Implementation(fn, name), (err: unknown) => err instanceof InternalError && err.message.includes(name) && why.test(err.message), name);
    assert.is(crc32Implementation(), 'portable', name);
  }
  assert.is(crc32(ascii('123456789')), 0xcbf43926);
});

test('zlib.crc32 registered from the Node side: the same results as the portable one on random buffers, in pieces too', () => {
  assert.is(useNativeCrc32(), 'zlib');
  assert.is(crc32Implementation(), 'zlib');
  for (let seed = 1; seed <= 40; seed++) {
    const data = randomBuffer(seed, (seed * 7919) % 70000);
    const whole = crc32Portable(data);
    assert.is(crc32(data), whole, `seed ${seed}`);
    const cut = (seed * 104729) % (data.length + 1);
    assert.is(crc32(data.subarray(cut), crc32(data.subarray(0, cut))), whole, `seed ${seed}, cut at ${cut}`);
    assert.is(crc32(data.subarray(cut), crc32Portable(data.subarray(0, cut))), whole, `seed ${seed}, portable then native`);
  }
  useCrc32Implementation(undefined);
  assert.is(crc32Implementation(), 'portable');
  assert.is(crc32(ascii('123456789')), 0xcbf43926);
});

test.run();
