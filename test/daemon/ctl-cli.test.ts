// `virt-offload status|reload|vm add|vm remove` against a running daemon's control socket.
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mallocTuned, startDaemon, type Daemon } from '../../lib/daemon/index.js';
import { voAsync } from '../../testbed/offload-host.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';
import { commitPolicy, Guest } from './helpers.js';

requireTool('git', 'git');
const scratch = scratchDir('vo-ctl-');
const repo = join(scratch.dir, 'policy');
const runDir = join(scratch.dir, 'run');
const UUID = '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';
const M = `sha256:${'ab'.repeat(32)}`;
let daemon: Daemon;

test.before(async () => {
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'tool.policy': `binary tool\nvms all\nversion 1 approved ${M}\n` }, 'approve tool');
  daemon = await startDaemon({ runDir, policyRepo: repo, storeDir: join(scratch.dir, 'store'), auditLog: join(scratch.dir, 'audit.jsonl'), sandbox: 'bwrap' });
});
test.after(async () => {
  await daemon?.close();
  scratch.cleanup();
});

const vo = (...args: string[]) => voAsync([...args, '--run-dir', runDir]);

test('vm add: the socket is created and its path printed; status shows the policy and the VM; vm remove takes it away', async () => {
  const added = await vo('vm', 'add', 'web1', '--uuid', UUID);
  assert.is(added.status, 0, added.stderr);
  const socket = join(runDir, 'vm', 'web1.sock');
  assert.is(added.stdout, `web1: socket ${socket}\n`);
  assert.ok(statSync(socket).isSocket());

  const head = run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();
  const status = await vo('status');
  assert.is(status.status, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^policy: commit ${head} \\(loaded `, 'm'));
  assert.match(status.stdout, /^VMs: 1$/m);
  assert.match(status.stdout, new RegExp(`^  web1  ${UUID}\\n    socket ${socket}: nobody connected$`, 'm'));
  // The daemon runs in this process: untuned unless the environment sets GLIBC_TUNABLES (the unit does), and status says so.
  const untuned = mallocTuned(process.env) ? '' : ' \\(glibc malloc untuned: GLIBC_TUNABLES, see the README\\)';
  assert.match(status.stdout, new RegExp(`^memory: \\d+\\.\\d MiB resident${untuned}; uploads held 0\\.0 MiB of \\d+\\.\\d MiB; measured images cached: 0 \\(0\\.0 MiB of 32\\.0 MiB; 0 hits, 0 misses\\)$`, 'm'));
  const json = JSON.parse((await vo('status', '--json')).stdout) as { ok: boolean; vms: { name: string }[]; memory: { residentBytes: number; mallocTuned: boolean; uploadsHeldBytes: number; uploadBudgetBytes: number; imageCache: Record<string, number> } };
  assert.is(json.ok, true);
  assert.equal(json.vms.map((v) => v.name), ['web1']);
  assert.ok(json.memory.residentBytes > 10 * 1024 * 1024, `resident ${json.memory.residentBytes}`);
  assert.is(json.memory.uploadsHeldBytes, 0);
  assert.is(json.memory.mallocTuned, mallocTuned(process.env));
  assert.ok(json.memory.uploadBudgetBytes >= 64 * 1024 * 1024, `budget ${json.memory.uploadBudgetBytes}`);
  assert.equal(json.memory.imageCache, { binaries: 0, bytes: 0, maxBytes: 32 * 1024 * 1024, hits: 0, misses: 0 });

  const removed = await vo('vm', 'remove', 'web1');
  assert.is(removed.status, 0, removed.stderr);
  assert.throws(() => statSync(socket), /ENOENT/);
  const again = await vo('vm', 'remove', 'web1');
  assert.is(again.status, 1);
  assert.match(again.stderr, /the daemon has no VM web1/);
});

test('reload: prints the commit in force; a broken policy commit fails with 1 and says the last good one stays', async () => {
  const head = run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();
  const ok = await vo('reload');
  assert.is(ok.status, 0, ok.stderr);
  assert.is(ok.stdout, `policy reloaded: commit ${head}, 0 store change(s)\n`);
  writeFileSync(join(repo, 'tool.policy'), 'binary tool\nversion 1 approved nonsense\n');
  commitPolicy(repo, {}, 'break it');
  const bad = await vo('reload');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /the reload failed: /);
  assert.match(bad.stderr, `the policy in force is still commit ${head}`);
  const status = await vo('status');
  assert.match(status.stdout, /^  last reload FAILED: /m);
});

test('uncommitted *.policy edits in force are said so: status, the reload record, every decision record', async () => {
  commitPolicy(repo, { 'tool.policy': `binary tool\nvms all\nversion 1 approved ${M}\n` }, 'good again');
  const head = run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();
  writeFileSync(join(repo, 'tool.policy'), `binary tool\nvms all\nversion 1 approved ${M}\nversion 2 approved sha256:${'ef'.repeat(32)}\n`);
  assert.is((await vo('reload')).status, 0);
  const status = await vo('status');
  assert.match(status.stdout, `policy: commit ${head} + UNCOMMITTED changes to *.policy files (loaded `);
  const g = await Guest.connect(await daemon.addVm({ name: 'vm-u', uuid: '0b9d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4' }));
  await g.hello();
  await g.submit({ measurement: `sha256:${'01'.repeat(32)}` });
  g.close();
  const records = readFileSync(join(scratch.dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const reload = records.filter((r) => r.event === 'policy-reload').at(-1)!;
  assert.equal([reload.commit, reload.uncommitted], [head, true]);
  const decision = records.filter((r) => r.event === 'request').at(-1)!;
  assert.equal([decision.commit, decision.uncommitted, decision.decision], [head, true, 'deny']);
  // Committed: the flag goes.
  commitPolicy(repo, {}, 'version 2');
  assert.is((await vo('reload')).status, 0);
  assert.not.match((await vo('status')).stdout, /UNCOMMITTED/);
});

test('vm add --owner: the socket is handed to that user (QEMU of another user, no libvirt), by name or number', async () => {
  const socket = join(runDir, 'vm', 'web-own.sock');
  const byNumber = await vo('vm', 'add', 'web-own', '--uuid', UUID, '--owner', '65534:65533');
  assert.is(byNumber.status, 0, byNumber.stderr);
  assert.equal([statSync(socket).uid, statSync(socket).gid, statSync(socket).mode & 0o777], [65534, 65533, 0o600]);
  // Again, by name: nobody and its primary group from /etc/passwd (idempotent add, new owner).
  const nobody = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'))!.split(':');
  assert.is((await vo('vm', 'add', 'web-own', '--uuid', UUID, '--owner', 'nobody')).status, 0);
  assert.equal([statSync(socket).uid, statSync(socket).gid], [Number(nobody[2]), Number(nobody[3])]);
  assert.is((await vo('vm', 'remove', 'web-own')).status, 0);
  for (const [owner, why] of [['a:b:c', 'expected USER or USER:GROUP'], ['no-such-user-vo', 'no user no-such-user-vo in /etc/passwd'], ['0:no-such-group-vo', 'no group no-such-group-vo in /etc/group'], ['4294967295', 'uid 4294967295 is not a valid id'], [':0', 'expected USER']]) {
    const r = await vo('vm', 'add', 'web-own', '--uuid', UUID, '--owner', owner!);
    assert.is(r.status, 2, `${owner}: ${r.stderr}`);
    assert.match(r.stderr, why!);
  }
  assert.is(daemon.status().vms.some((v) => v.name === 'web-own'), false, 'nothing was added by a refused --owner');
});

test('usage errors → 2 before the daemon is asked; no daemon → 1 naming the socket', async () => {
  for (const args of [['vm', 'add', 'web1'], ['vm', 'add', 'bad name', '--uuid', UUID], ['vm', 'add', 'web1', '--uuid', 'nope'], ['vm', 'add', 'web1', '--uuid', UUID, '--port', 'p']]) {
    const r = await vo(...args);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const none = await voAsync(['status', '--run-dir', join(scratch.dir, 'nowhere')]);
  assert.is(none.status, 1);
  assert.match(none.stderr, `the virt-offload daemon is not running (nothing listens on ${join(scratch.dir, 'nowhere', 'control.sock')}: ENOENT)`);
});

test.run();
