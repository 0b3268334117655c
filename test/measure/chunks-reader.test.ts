// chunksReader: an upload's frames read as one byte sequence give the same bytes as the joined
// buffer for every read position and size (fast-check over random splits), and measuring the
// chunks gives the same measurement as measuring the joined bytes.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bufferReader, chunksReader, measure } from '../../lib/measure/index.js';
import { splitAt } from '../helpers/split.js';

test('every read of a split sequence equals the same read of the joined bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.tuple(fc.nat(700), fc.nat(300)), { maxLength: 20 }), (bytes, cuts, reads) => {
      const chunks = chunksReader(splitAt(bytes, cuts));
      const whole = bufferReader(bytes);
      assert.is(chunks.size, whole.size);
      for (const [position, length] of reads) {
        const a = new Uint8Array(length);
        const b = new Uint8Array(length);
        assert.is(chunks.read(a, position), whole.read(b, position));
        assert.equal(a, b);
      }
    }),
    { numRuns: 300 },
  );
});

test('measuring the chunks of a real ELF gives the measurement of the joined file', async () => {
  const elf = new Uint8Array(readFileSync('/usr/bin/true'));
  const parts = splitAt(elf, [1, 64, 65, 4096, 10_000, 20_000, elf.length - 1]);
  const a = await measure(chunksReader(parts), { algo: 'sha256', profile: 'v1' });
  const b = await measure(bufferReader(elf), { algo: 'sha256', profile: 'v1' });
  assert.is(a.measurement, b.measurement);
  assert.is(a.format, 'elf');
});

test.run();
