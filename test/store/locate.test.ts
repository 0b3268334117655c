// locate(): an installed object found by name without hashing it, for a caller that measures
// the bytes itself before using them (the daemon, whose exec helper re-measures the file). It
// refuses what open() refuses, except a content change, which only hashing finds.
import { chmodSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { installFile, locate, openStore, StoreError, type Store } from '../../lib/store/index.js';
import { scratchDir } from '../../testbed/tools.js';
import { buildHello, hexOf, type HelloBuilds } from './helpers.js';

const { dir, cleanup } = scratchDir('vo-store-locate-');
let hello: HelloBuilds;
let n = 0;

async function installed(): Promise<{ store: Store; path: string }> {
  const store = openStore(join(dir, `store-${++n}`), { create: true });
  const r = await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1.0' }, hello.debug);
  return { store, path: r.path };
}

function refusal(store: Store, measurement: string): StoreError | undefined {
  try {
    locate(store, measurement);
    return undefined;
  } catch (err) {
    assert.instance(err, StoreError);
    return err as StoreError;
  }
}
const kindOf = (store: Store, measurement: string): string => refusal(store, measurement)?.kind ?? 'found';

test.before(async () => {
  hello = await buildHello(dir);
});
test.after(cleanup);

test('an installed object: its path, size and manifest', async () => {
  const { store, path } = await installed();
  const o = locate(store, hello.measurement);
  assert.is(o.path, path);
  assert.is(o.path, join(store.root, 'objects/sha256', hexOf(hello.measurement)));
  assert.is(o.size, o.manifest.size);
  assert.is(o.manifest.name, 'hello');
});

test('refusals: not installed, no object, wrong mode, a symlink, a size that disagrees with the manifest', async () => {
  const { store, path } = await installed();
  assert.is(kindOf(store, `sha256:${'ab'.repeat(32)}`), 'missing');
  renameSync(path, `${path}.away`);
  assert.is(kindOf(store, hello.measurement), 'missing');
  renameSync(`${path}.away`, path);
  chmodSync(path, 0o644);
  assert.is(kindOf(store, hello.measurement), 'corrupt');
  chmodSync(path, 0o444);
  assert.is(kindOf(store, hello.measurement), 'found');
  const other = join(dir, `elsewhere-${n}`);
  mkdirSync(other);
  renameSync(path, join(other, 'obj'));
  symlinkSync(join(other, 'obj'), path);
  assert.is(kindOf(store, hello.measurement), 'corrupt');
  assert.match(refusal(store, hello.measurement)!.message, /symbolic link/);
  const second = await installed();
  chmodSync(second.path, 0o644);
  writeFileSync(second.path, 'short');
  chmodSync(second.path, 0o444);
  assert.is(kindOf(second.store, hello.measurement), 'corrupt');
});

test.run();
