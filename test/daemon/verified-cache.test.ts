// The daemon's cache of measured images: a hit returns the bytes measured before (the file
// is not read again, so a rewritten file changes nothing), a miss measures the file (and
// refuses one that does not match), the bytes held stay under the bound, forget() drops.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ExecError } from '../../lib/exec/index.js';
import { measureFile } from '../../lib/io/index.js';
import { VerifiedCache } from '../../lib/daemon/verified-cache.js';
import { scratchDir } from '../../testbed/tools.js';

const scratch = scratchDir('vo-verified-cache-');
test.after(() => scratch.cleanup());

async function file(name: string, text: string): Promise<{ path: string; measurement: string }> {
  const path = join(scratch.dir, name);
  writeFileSync(path, text);
  return { path, measurement: (await measureFile(path)).measurement };
}

const textOf = (chunks: readonly Uint8Array[]): string => Buffer.concat(chunks.map((c) => Buffer.from(c))).toString('utf8');

test('a hit returns the image measured before; the file is not read again', async () => {
  const cache = new VerifiedCache();
  const a = await file('a.sh', '#!/bin/sh\necho a\n');
  const first = await cache.load(a.path, a.measurement);
  assert.is(textOf(first.chunks), '#!/bin/sh\necho a\n');
  assert.equal([cache.hits, cache.misses, cache.size], [0, 1, 1]);
  // Rewritten after it was measured: what runs is still the measured image.
  writeFileSync(a.path, '#!/bin/sh\necho EVIL\n');
  const second = await cache.load(a.path, a.measurement);
  assert.is(textOf(second.chunks), '#!/bin/sh\necho a\n');
  assert.is(second.measurement, a.measurement);
  assert.equal([cache.hits, cache.misses], [1, 1]);
  // The same bytes found at another path (reinstalled): named by the path asked for.
  assert.is((await cache.load('/elsewhere/a', a.measurement)).path, '/elsewhere/a');
});

test('a miss measures the file: one that does not match is refused and not kept', async () => {
  const cache = new VerifiedCache();
  const a = await file('b.sh', '#!/bin/sh\necho b\n');
  writeFileSync(a.path, '#!/bin/sh\necho changed\n');
  try {
    await cache.load(a.path, a.measurement);
    assert.unreachable('a file that does not match its measurement must be refused');
  } catch (err) {
    assert.instance(err, ExecError);
  }
  assert.is(cache.size, 0);
});

test('the bytes held stay under the bound (least recently used go first); forget drops', async () => {
  const big = (n: number) => `#!/bin/sh\n#${'x'.repeat(n)}\n`;
  const files = await Promise.all([0, 1, 2].map((i) => file(`c${i}.sh`, big(400 + i))));
  const cache = new VerifiedCache(1000);
  await cache.load(files[0]!.path, files[0]!.measurement);
  await cache.load(files[1]!.path, files[1]!.measurement);
  assert.is(cache.size, 2);
  await cache.load(files[0]!.path, files[0]!.measurement); // now the most recent
  await cache.load(files[2]!.path, files[2]!.measurement); // over 1000 bytes: files[1] goes
  assert.is(cache.size, 2);
  assert.ok(cache.bytes <= 1000, `${cache.bytes} bytes held`);
  const misses = cache.misses;
  await cache.load(files[0]!.path, files[0]!.measurement);
  assert.is(cache.misses, misses, 'files[0] was kept');
  await cache.load(files[1]!.path, files[1]!.measurement);
  assert.is(cache.misses, misses + 1, 'files[1] had gone');
  cache.forget(files[1]!.measurement);
  cache.forget();
  assert.equal([cache.size, cache.bytes], [0, 0]);
  // An image larger than the whole bound is not kept at all.
  const huge = await file('huge.sh', big(2000));
  await cache.load(huge.path, huge.measurement);
  assert.is(cache.size, 0);
});

test.run();
