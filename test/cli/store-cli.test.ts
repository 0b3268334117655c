// `virt-offload store ls|verify|gc` as a user runs them: the built CLI in a child process,
// against a store filled by lib/store and a policy directory of real *.policy files.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { installFile, list, openStore, type Store } from '../../lib/store/index.js';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';
import { buildHello, hexOf, writeScript, type HelloBuilds } from '../store/helpers.js';

const cli = join(repoRoot, 'dist/virt-offload.cjs');
const { dir, cleanup } = scratchDir('vo-store-cli-');
test.after(cleanup);

function vo(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let hello: HelloBuilds;
const m: Record<string, string> = {};
const path = (name: string) => join(dir, `${name}.sh`);
let n = 0;

/** A store holding hello 1.0 (ELF), tool 1 and tool 2 (scripts), old 0.9 (script). */
async function filledStore(): Promise<Store> {
  const store = openStore(join(dir, `store-${++n}`), { create: true });
  await installFile(store, { measurement: hello.measurement, name: 'hello', version: '1.0', installedAt: '2026-03-04T05:06:07.000Z' }, hello.debug);
  for (const [name, version, file] of [['tool', '1', 'tool1'], ['tool', '2', 'tool2'], ['old', '0.9', 'old']] as const) {
    await installFile(store, { measurement: m[file]!, name, version }, path(file));
  }
  return store;
}

test.before(async () => {
  hello = await buildHello(dir);
  for (const name of ['tool1', 'tool2', 'old']) m[name] = await writeScript(path(name), `echo ${name}`);
});

test('store ls: a header and one row per measurement; --json: one object each; an empty store prints nothing', async () => {
  const store = await filledStore();
  const r = vo(['store', 'ls', '--store', store.root]);
  assert.is(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n');
  assert.is(rows.length, 5);
  assert.match(rows[0]!, /^MEASUREMENT\s+NAME\s+VERSION\s+SIZE\s+INSTALLED-AT$/);
  const helloRow = rows.find((l) => l.startsWith(hello.measurement))!;
  assert.match(helloRow, /\shello\s+1\.0\s+\d+\s+2026-03-04T05:06:07\.000Z$/);
  assert.ok(rows.some((l) => l.startsWith(m.tool2!) && /\stool\s+2\s/.test(l)));

  const j = vo(['store', 'ls', '--json', '--store', store.root]);
  assert.is(j.status, 0, j.stderr);
  const objs = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.is(objs.length, 4);
  const h = objs.find((o) => o.measurement === hello.measurement)!;
  assert.equal(
    { name: h.name, version: h.version, installedAt: h.installedAt, format: h.format, complete: h.complete },
    { name: 'hello', version: '1.0', installedAt: '2026-03-04T05:06:07.000Z', format: 'elf', complete: true },
  );
  assert.is(h.size, list(store).find((o) => o.measurement === hello.measurement)!.objectSize);

  const empty = openStore(join(dir, 'empty'), { create: true });
  const e = vo(['store', 'ls', '--store', empty.root]);
  assert.equal([e.status, e.stdout, e.stderr], [0, '', '']);
});

test('store ls refuses a missing or unsafe store, naming the path (exit 1)', async () => {
  const missing = vo(['store', 'ls', '--store', join(dir, 'nope')]);
  assert.is(missing.status, 1);
  assert.ok(missing.stderr.includes(join(dir, 'nope')), missing.stderr);
  const store = await filledStore();
  chmodSync(store.root, 0o777);
  const unsafe = vo(['store', 'verify', '--store', store.root]);
  assert.is(unsafe.status, 1);
  assert.ok(unsafe.stderr.includes(store.root) && unsafe.stderr.includes('0777'), unsafe.stderr);
  chmodSync(store.root, 0o755);
  assert.is(vo(['store', 'ls', '--bogus']).status, 2);
});

test('store verify: exit 0 when all verify; a tampered object → exit 1 naming it; --json lists every file', async () => {
  const store = await filledStore();
  const ok = vo(['store', 'verify', '--store', store.root]);
  assert.is(ok.status, 0, ok.stderr);
  assert.is(ok.stdout, `store ${store.root}: 4 ok, 0 problems\n`);

  const obj = join(store.root, 'objects/sha256', hexOf(m.tool1!));
  chmodSync(obj, 0o644);
  writeFileSync(obj, '#!/bin/sh\necho tampered\n');
  chmodSync(obj, 0o444);
  const bad = vo(['store', 'verify', '--store', store.root]);
  assert.is(bad.status, 1);
  const lines = bad.stdout.trim().split('\n');
  assert.is(lines.length, 2);
  assert.ok(lines[0]!.startsWith(`differs  ${m.tool1} tool 1  ${obj}: `), lines[0]);
  assert.is(lines[1], `store ${store.root}: 3 ok, 1 problem`);
  assert.match(bad.stderr, /1 object differs from its measurement and will not be run/);

  const j = vo(['store', 'verify', '--json', '--store', store.root]);
  assert.is(j.status, 1);
  const items = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string; measurement: string });
  assert.equal(items.map((i) => i.status).sort(), ['differs', 'ok', 'ok', 'ok']);
  assert.is(items.find((i) => i.status === 'differs')!.measurement, m.tool1);
});

test('store gc --repo: removes what the policy does not approve, keeps the rest; fails closed on a bad or empty policy', async () => {
  const git = requireTool('git', 'git');
  const store = await filledStore();
  const repo = join(dir, `repo-${n}`);
  mkdirSync(join(repo, 'binaries'), { recursive: true });
  writeFileSync(join(repo, 'binaries/hello.policy'), `binary hello\nvms all\nversion 1.0 approved ${hello.measurement}\n`);
  writeFileSync(join(repo, 'binaries/tool.policy'), `binary tool\nvms vm:a\nversion 1 superseded by=2 ${m.tool1}\nversion 2 approved ${m.tool2}\n`);
  // "old" is not in the policy at all.
  run(git, ['init', '-q'], { cwd: repo });
  run(git, ['-c', 'user.name=t', '-c', 'user.email=t@example.org', 'add', '.'], { cwd: repo });
  run(git, ['-c', 'user.name=t', '-c', 'user.email=t@example.org', 'commit', '-q', '-m', 'policy'], { cwd: repo });
  const commit = run(git, ['rev-parse', 'HEAD'], { cwd: repo }).trim();
  const auditLog = join(dir, `audit-${n}.jsonl`);

  // A policy that does not build: nothing removed.
  const broken = join(dir, `broken-${n}`);
  mkdirSync(broken);
  writeFileSync(join(broken, 'tool.policy'), 'binary tool\nversion 1 approved not-a-measurement\n');
  const b = vo(['store', 'gc', '--repo', broken, '--store', store.root, '--audit-log', auditLog]);
  assert.is(b.status, 1);
  assert.match(b.stderr, /tool\.policy:2: /);
  assert.match(b.stderr, /nothing removed/);
  // A directory without policy files: refused rather than emptying the store.
  const none = join(dir, `none-${n}`);
  mkdirSync(none);
  const e = vo(['store', 'gc', '--repo', none, '--store', store.root, '--audit-log', auditLog]);
  assert.is(e.status, 1);
  assert.match(e.stderr, /no \*\.policy files/);
  assert.is(list(store).length, 4);

  const r = vo(['store', 'gc', '--json', '--repo', repo, '--store', store.root, '--audit-log', auditLog]);
  assert.is(r.status, 0, r.stderr);
  const records = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const byName = Object.fromEntries(records.map((x) => [x.name, x]));
  assert.is(records.length, 2);
  assert.equal(byName.tool, { action: 'uninstall', measurement: m.tool1, name: 'tool', version: '1', reason: 'superseded by 2', commit });
  assert.equal(byName.old, { action: 'uninstall', measurement: m.old, name: 'old', version: '0.9', reason: 'not in the policy', commit });
  assert.equal(list(store).map((o) => o.manifest?.name).sort(), ['hello', 'tool']);
  assert.is(vo(['store', 'verify', '--store', store.root]).status, 0);

  // Each removal is in the audit log, and `virt-offload audit` reads it back.
  const audited = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(audited.map((a) => [a.action, a.name, a.reason, a.command]).sort(), [['uninstall', 'old', 'not in the policy', 'store gc'], ['uninstall', 'tool', 'superseded by 2', 'store gc']]);
  assert.ok(audited.every((a) => typeof a.time === 'string' && !Number.isNaN(Date.parse(a.time as string))));
  assert.ok(audited.every((a) => a.event === 'store'), 'the same event as the daemon\'s store changes');
  const shown = vo(['audit', '--audit-log', auditLog, '--action', 'uninstall', '--json']);
  assert.is(shown.status, 0, shown.stderr);
  assert.is(shown.stdout.trim().split('\n').length, 2);
  const lastOne = vo(['audit', '--audit-log', auditLog, '--last', '1']);
  assert.is(lastOne.status, 0, lastOne.stderr);
  assert.match(lastOne.stdout, /^\S+ uninstall event="store" measurement="sha256:[0-9a-f]{64}" name="(tool|old)"/);
  assert.is(vo(['audit', '--audit-log', auditLog, '--since', 'yesterday-ish']).status, 2);
  const maybe = vo(['audit', '--audit-log', auditLog, '--decision', 'maybe']);
  assert.is(maybe.status, 2);
  assert.match(maybe.stderr, /--decision maybe: expected allow, deny, error/);
  assert.is(vo(['audit', '--audit-log', auditLog, '--action', 'delete']).status, 2);
  // A store that is not there, even its parent: said plainly.
  const absent = vo(['store', 'ls', '--store', join(dir, 'no-parent', 'store')]);
  assert.is(absent.status, 1);
  assert.match(absent.stderr, /no store at .*no-parent\/store \(create it with the daemon, or check --store\)/);

  // Text output; a second run has nothing to do.
  const again = vo(['store', 'gc', '--repo', repo, '--store', store.root, '--audit-log', auditLog]);
  assert.is(again.status, 0, again.stderr);
  assert.is(again.stdout, `store ${store.root}: 0 removed, 2 approved kept (policy commit ${commit.slice(0, 12)})\n`);
  assert.is(again.stderr, '');
  // A policy file nobody committed: gc follows the work tree, and says so.
  writeFileSync(join(repo, 'binaries/extra.policy'), `binary extra\nvms all\nversion 1 approved sha256:${'0e'.repeat(32)}\n`);
  const dirty = vo(['store', 'gc', '--repo', repo, '--store', store.root, '--audit-log', auditLog]);
  assert.is(dirty.status, 0, dirty.stderr);
  assert.match(dirty.stderr, /warning: .* has uncommitted changes to \*\.policy files; gc follows them/);
  assert.is(vo(['store', 'gc', '--store', store.root, '--audit-log', auditLog]).status, 2, 'missing --repo is a usage error');
  assert.ok(readFileSync(join(store.root, 'objects/sha256', hexOf(m.tool2!))).length > 0);
});

test.run();
