// lib/store on real files: install re-measures what it writes, the layout and modes, verify,
// open, uninstall, refusals of unsafe store directories, recover.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedBinaryError } from '../../lib/errors.js';
import { measureFile } from '../../lib/io/index.js';
import { bufferReader } from '../../lib/measure/index.js';
import { install, installFile, list, open, openStore, recover, StoreError, uninstall, verify, type Store } from '../../lib/store/index.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';
import { buildHello, filesUnder, hexOf, sha256File, writeScript, type HelloBuilds } from './helpers.js';

const { dir, cleanup } = scratchDir('vo-store-');
// The sandbox user must be able to reach the store to prove it cannot write it.
chmodSync(dir, 0o755);
let hello: HelloBuilds;
let n = 0;
/** A fresh store for each test. */
function freshStore(): Store {
  return openStore(join(dir, `store-${++n}`), { create: true });
}

test.before(async () => {
  hello = await buildHello(dir);
});
test.after(cleanup);

test('install writes the canonical image under its measurement, read-only, with a manifest', async () => {
  const store = freshStore();
  const spec = { measurement: hello.measurement, name: 'hello', version: '1.0', installedAt: '2026-01-02T03:04:05.000Z' };
  const r = await installFile(store, spec, hello.debug);
  assert.is(r.action, 'installed');
  const obj = join(store.root, 'objects/sha256', hexOf(hello.measurement));
  assert.is(r.path, obj);
  // The object IS the canonical image: its plain sha256 is the measurement, and it measures the same.
  assert.is(sha256File(obj), hello.measurement);
  assert.is((await measureFile(obj)).measurement, hello.measurement);
  // Debug sections and section headers did not come along.
  assert.ok(statSync(obj).size < statSync(hello.debug).size, 'object smaller than the gcc -g build');
  assert.is(statSync(obj).mode & 0o7777, 0o444);
  for (const d of ['', 'objects', 'objects/sha256', 'manifests', 'manifests/blake3']) assert.is(statSync(join(store.root, d)).mode & 0o7777, 0o755, d);
  const manifestFile = join(store.root, 'manifests/sha256', `${hexOf(hello.measurement)}.json`);
  assert.is(statSync(manifestFile).mode & 0o7777, 0o444);
  assert.equal(JSON.parse(readFileSync(manifestFile, 'utf8')), { measurement: hello.measurement, name: 'hello', version: '1.0', format: 'elf', profile: 'v1', size: statSync(obj).size, installedAt: '2026-01-02T03:04:05.000Z' });
  // The canonical image still runs (copied out: the store's copy has no exec bit).
  const runnable = join(dir, `run-${n}`);
  copyFileSync(obj, runnable);
  chmodSync(runnable, 0o755);
  assert.is(run(runnable, []), 'hello from the store\n');

  const listed = list(store);
  assert.is(listed.length, 1);
  assert.equal([listed[0]!.measurement, listed[0]!.manifest?.name, listed[0]!.manifest?.version, listed[0]!.objectSize], [hello.measurement, 'hello', '1.0', statSync(obj).size]);
  const report = await verify(store);
  assert.ok(report.ok, JSON.stringify(report.items));
  assert.equal(report.items.map((i) => i.status), ['ok']);
  assert.equal(filesUnder(store.root), [`manifests/sha256/${hexOf(hello.measurement)}.json`, `objects/sha256/${hexOf(hello.measurement)}`]);
});

test('install is idempotent: same bytes (or a stripped build of them) → unchanged; a new version label → manifest only', async () => {
  const store = freshStore();
  const spec = { measurement: hello.measurement, name: 'hello', version: '1.0' };
  await installFile(store, spec, hello.debug);
  const obj = join(store.root, 'objects/sha256', hexOf(hello.measurement));
  const inode = statSync(obj).ino;
  assert.is((await installFile(store, spec, hello.stripped)).action, 'unchanged');
  // Nothing is read from the source when the object is already there and verifies.
  assert.is((await install(store, spec, bufferReader(new Uint8Array(0)))).action, 'unchanged');
  const relabel = await install(store, { ...spec, version: '1.0-r1' }, bufferReader(new Uint8Array(0)));
  assert.is(relabel.action, 'manifest-updated');
  assert.is(relabel.manifest.format, 'elf');
  assert.is(statSync(obj).ino, inode, 'object not rewritten');
  assert.is(list(store)[0]!.manifest?.version, '1.0-r1');
  assert.ok((await verify(store)).ok);
});

test('a wrong expected measurement is refused, naming both, and leaves nothing behind', async () => {
  const store = freshStore();
  const err = await install(store, { measurement: hello.otherMeasurement, name: 'hello', version: '1' }, bufferReader(readFileSync(hello.debug))).catch((e: unknown) => e);
  assert.instance(err, StoreError);
  const e = err as StoreError;
  assert.is(e.kind, 'mismatch');
  assert.is(e.code, 'EMALFORMED');
  assert.ok(e.message.includes(hello.measurement) && e.message.includes(hello.otherMeasurement), e.message);
  assert.is(e.actual, hello.measurement);
  assert.equal(filesUnder(store.root), []);
  // A malformed binary: the measurement core's typed error, and again nothing left.
  const truncated = readFileSync(hello.debug).subarray(0, 200);
  const err2 = await install(store, { measurement: hello.measurement, name: 'hello', version: '1' }, bufferReader(truncated)).catch((x: unknown) => x);
  assert.instance(err2, MalformedBinaryError);
  assert.equal(filesUnder(store.root), []);
  // A measurement that is not one never becomes a path.
  for (const bad of ['sha256:../../etc/passwd', 'md5:00', `sha256:${'A'.repeat(64)}`, 'sha256:abc']) {
    const e3 = await install(store, { measurement: bad, name: 'x', version: '1' }, bufferReader(new Uint8Array(1))).catch((x: unknown) => x);
    assert.instance(e3, StoreError, bad);
    assert.is((e3 as StoreError).kind, 'bad-measurement');
  }
  const e4 = await install(store, { measurement: hello.measurement, name: 'a\nb', version: '1' }, bufferReader(new Uint8Array(1))).catch((x: unknown) => x);
  assert.is((e4 as StoreError).kind, 'invalid');
  assert.equal(filesUnder(store.root), []);
});

test('the sandbox uid (65534) can read but not write, replace or add store files', async () => {
  const setpriv = requireTool('setpriv', 'util-linux');
  const store = freshStore();
  await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1' }, hello.debug);
  const obj = join(store.root, 'objects/sha256', hexOf(hello.measurement));
  const asNobody = (script: string) => spawnSync(setpriv, ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'sh', '-c', script, 'sh', obj, store.root], { encoding: 'utf8' });
  assert.is(asNobody('cat "$1" >/dev/null').status, 0, 'readable (so the check below is about writing)');
  for (const attempt of ['echo x >> "$1"', 'echo x > "$1"', 'mv "$1" "$1.x"', 'rm -f "$1"', 'touch "$2/objects/sha256/new"', 'touch "$2/manifests/sha256/new.json"', 'chmod 666 "$1"']) {
    const r = asNobody(attempt);
    assert.is.not(r.status, 0, `${attempt} succeeded as uid 65534`);
  }
  assert.is(sha256File(obj), hello.measurement);
  assert.ok((await verify(store)).ok);
});

test('a tampered object is reported by verify and refused by open; reinstall repairs it', async () => {
  const store = freshStore();
  await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1.0' }, hello.debug);
  const obj = join(store.root, 'objects/sha256', hexOf(hello.measurement));
  const good = await open(store, hello.measurement);
  assert.is(good.size, statSync(obj).size);
  assert.is(good.manifest.name, 'hello');
  const head = new Uint8Array(4);
  readSync(good.fd, head, 0, 4, 0);
  assert.equal([...head], [0x7f, 0x45, 0x4c, 0x46]);
  good.close();

  chmodSync(obj, 0o644);
  const bytes = readFileSync(obj);
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
  writeFileSync(obj, bytes);
  chmodSync(obj, 0o444); // put back as it was: only the hash can tell
  const report = await verify(store);
  assert.is(report.ok, false);
  assert.is(report.items.length, 1);
  assert.is(report.items[0]!.status, 'differs');
  assert.is(report.items[0]!.path, obj);
  assert.is(report.items[0]!.name, 'hello');
  const err = await open(store, hello.measurement).catch((e: unknown) => e);
  assert.instance(err, StoreError);
  assert.is((err as StoreError).kind, 'corrupt');
  assert.ok((err as StoreError).message.includes(obj), (err as StoreError).message);

  // Same bytes but writable: also refused.
  const r = await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1.0' }, hello.stripped);
  assert.is(r.action, 'repaired');
  assert.ok((await verify(store)).ok);
  chmodSync(obj, 0o644);
  assert.equal((await verify(store)).items.map((i) => [i.status, i.detail]), [['bad-file', 'object has mode 0644, not 0444']]);
  assert.is(((await open(store, hello.measurement).catch((e: unknown) => e)) as StoreError).kind, 'corrupt');
  chmodSync(obj, 0o444);

  // A damaged manifest: verify says so, open refuses.
  const mf = join(store.root, 'manifests/sha256', `${hexOf(hello.measurement)}.json`);
  chmodSync(mf, 0o644);
  writeFileSync(mf, '{"measurement": "sha256:00", "name": "x"}');
  assert.equal((await verify(store)).items.map((i) => i.status), ['bad-manifest']);
  assert.is(((await open(store, hello.measurement).catch((e: unknown) => e)) as StoreError).kind, 'corrupt');
  // A symlink in place of the object is not followed.
  const m2 = await writeScript(join(dir, `s-${n}.sh`), 'echo two');
  await installFile(store, { measurement: m2, name: 'two', version: '1' }, join(dir, `s-${n}.sh`));
  const obj2 = join(store.root, 'objects/sha256', hexOf(m2));
  const moved = join(dir, `moved-${n}`);
  renameSync(obj2, moved);
  symlinkSync(moved, obj2);
  assert.is(((await open(store, m2).catch((e: unknown) => e)) as StoreError).kind, 'corrupt');
  assert.ok((await verify(store)).items.some((i) => i.path === obj2 && i.status === 'bad-file'));
});

test('uninstall removes manifest and object; blake3 measurements work the same', async () => {
  const store = freshStore();
  const blake = (await measureFile(hello.debug, { algo: 'blake3' })).measurement;
  await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1' }, hello.debug);
  const r = await installFile(store, { measurement: blake, name: 'hello', version: '1' }, hello.debug);
  assert.is(r.action, 'installed');
  assert.ok(existsSync(join(store.root, 'objects/blake3', hexOf(blake))));
  // Both names hold the same canonical bytes.
  assert.equal(readFileSync(join(store.root, 'objects/blake3', hexOf(blake))), readFileSync(join(store.root, 'objects/sha256', hexOf(hello.measurement))));
  assert.equal(list(store).map((o) => o.measurement), [hello.measurement, blake]);
  assert.ok((await verify(store)).ok);
  const u = uninstall(store, hello.measurement);
  assert.equal([u.removed, u.manifest?.name], [true, 'hello']);
  assert.equal(list(store).map((o) => o.measurement), [blake]);
  assert.is(uninstall(store, hello.measurement).removed, false);
  assert.is(((await open(store, hello.measurement).catch((e: unknown) => e)) as StoreError).kind, 'missing');
  uninstall(store, blake);
  assert.equal(filesUnder(store.root), []);
  assert.ok((await verify(store)).ok);
});

test('unsafe store directories are refused, naming the path and mode', () => {
  const base = join(dir, `unsafe-${++n}`);
  mkdirSync(base, { mode: 0o755 });
  const missing = join(base, 'none');
  assert.is(((tryOpen(missing) as StoreError).kind), 'missing');
  const root = join(base, 'store');
  openStore(root, { create: true });
  chmodSync(root, 0o777);
  const e1 = tryOpen(root) as StoreError;
  assert.is(e1.kind, 'unsafe');
  assert.ok(e1.message.includes(root) && e1.message.includes('0777'), e1.message);
  chmodSync(root, 0o755);
  chmodSync(join(root, 'objects/sha256'), 0o775);
  const e2 = tryOpen(root) as StoreError;
  assert.ok(e2.message.includes(join(root, 'objects/sha256')) && e2.message.includes('0775'), e2.message);
  chmodSync(join(root, 'objects/sha256'), 0o755);
  const link = join(base, 'link');
  symlinkSync(root, link);
  const e3 = tryOpen(link) as StoreError;
  assert.ok(e3.kind === 'unsafe' && e3.message.includes('symbolic link'), e3.message);
  // A parent anyone can write (without the sticky bit) could swap the store.
  chmodSync(base, 0o777);
  const e4 = tryOpen(root) as StoreError;
  assert.ok(e4.kind === 'unsafe' && e4.message.includes(base), e4.message);
  // Refused before anything is made under it, the directories above the new store included.
  const unmade = join(base, 'new', 'store');
  try {
    openStore(unmade, { create: true });
    assert.unreachable('a store was made under a directory anyone can write');
  } catch (err) {
    assert.ok(err instanceof StoreError && err.kind === 'unsafe' && err.message.includes(base), String(err));
  }
  assert.not.ok(existsSync(join(base, 'new')), 'nothing made before the check');
  chmodSync(base, 0o1777); // like /tmp
  openStore(root);
  chmodSync(base, 0o755);
  // Created with a hostile umask, the store is still 0755.
  const old = process.umask(0o000);
  try {
    const s = openStore(join(base, 'umask'), { create: true });
    assert.is(statSync(s.root).mode & 0o7777, 0o755);
    assert.is(statSync(join(s.root, 'manifests/sha256')).mode & 0o7777, 0o755);
  } finally {
    process.umask(old);
  }
});

function tryOpen(root: string): unknown {
  try {
    openStore(root);
  } catch (err) {
    return err;
  }
  throw new Error(`openStore(${root}) did not refuse`);
}

test('recover removes temp files and half-done installs; verify reports them first', async () => {
  const store = freshStore();
  await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1' }, hello.debug);
  const m2 = await writeScript(join(dir, `r-${n}.sh`), 'echo r');
  await installFile(store, { measurement: m2, name: 'r', version: '1' }, join(dir, `r-${n}.sh`));
  const m3 = await writeScript(join(dir, `q-${n}.sh`), 'echo q');
  await installFile(store, { measurement: m3, name: 'q', version: '1' }, join(dir, `q-${n}.sh`));
  writeFileSync(join(store.root, 'objects/sha256/.tmp-0123456789abcdef'), 'partial');
  writeFileSync(join(store.root, 'manifests/blake3/.tmp-feedfacefeedface'), '{');
  run('rm', ['-f', join(store.root, 'manifests/sha256', `${hexOf(m2)}.json`)]); // uninstall cut short
  run('rm', ['-f', join(store.root, 'objects/sha256', hexOf(m3))]); // never happens in order; still handled
  const before = await verify(store);
  assert.is(before.ok, false);
  assert.equal(before.items.map((i) => i.status).sort(), ['missing-manifest', 'missing-object', 'ok', 'stray-temp', 'stray-temp']);
  // A margin leaves fresh files alone (a gc beside a live daemon).
  assert.is(recover(store, { minAgeMs: 60_000 }).removed.length, 0);
  const r = recover(store);
  assert.equal(r.removed.map((x) => x.why).sort(), ['manifest-without-object', 'object-without-manifest', 'temp', 'temp']);
  const after = await verify(store);
  assert.ok(after.ok, JSON.stringify(after.items));
  assert.equal(list(store).map((o) => o.measurement), [hello.measurement]);
});

test.run();
