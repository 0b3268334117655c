// CRC-32 must be the one busybox `crc32`, zlib and gzip compute: a shell client depends on it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32 } from '../../lib/protocol/index.js';
import { requireTool, run } from '../helpers/tools.js';
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

test.run();
