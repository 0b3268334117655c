// The daemon with real parts: a git policy repository, a store directory, bubblewrap, the
// audit file, and guests speaking the protocol over the VM unix sockets (test/daemon/helpers).
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, type Daemon } from '../../lib/daemon/index.js';
import { hostCgroups } from '../../lib/exec/index.js';
import { measureFile } from '../../lib/io/index.js';
import { encodeFrame, FrameType } from '../../lib/protocol/index.js';
import { list, openStore } from '../../lib/store/index.js';
import { requireTool, run, scratchDir, waitUntil } from '../../testbed/tools.js';
import { commitPolicy, control, Guest } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
requireTool('git', 'git');
const gcc = requireTool('gcc', 'gcc');
const scratch = scratchDir('vo-daemon-');
const repo = join(scratch.dir, 'policy');
const storeDir = join(scratch.dir, 'store');
const auditPath = join(scratch.dir, 'audit', 'audit.jsonl');
const runDir = join(scratch.dir, 'run');

const UUID_A = '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';
const UUID_B = '0b9d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4';
const bin: Record<string, { path: string; m: string; bytes: Uint8Array }> = {};
let daemon: Daemon;
const logLines: string[] = [];

function compile(name: string, source: string): string {
  const src = join(scratch.dir, `${name}.c`);
  writeFileSync(src, source);
  const out = join(scratch.dir, name);
  run(gcc, ['-O1', '-g', '-o', out, src]);
  return out;
}

async function add(name: string, path: string): Promise<void> {
  bin[name] = { path, m: (await measureFile(path)).measurement, bytes: readFileSync(path) };
}

const policyFiles = (toolStatus: string) => ({
  'binaries/hello.policy': `binary hello\nlimits wall=10s\nvms all\nversion 1 approved ${bin.hello!.m}\n`,
  'binaries/greet.policy': `binary greet\ninterpreter /bin/sh\nvms vm:vm-a\nversion 1 approved ${bin.greet!.m}\n`,
  'binaries/tool.policy': `binary tool\nvms all\nversion 1 ${toolStatus} ${bin.tool!.m}\n`,
  'binaries/spew.policy': `binary spew\ninterpreter /bin/sh\nlimits wall=20s output=1G\nvms all\nversion 1 approved ${bin.spew!.m}\n`,
  'binaries/nap.policy': `binary nap\ninterpreter /bin/sh\nlimits wall=20s\nvms all\nversion 1 approved ${bin.nap!.m}\n`,
});

function audit(): Array<Record<string, unknown>> {
  return readFileSync(auditPath, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}
const requestRecords = () => audit().filter((r) => r.event === 'request');

test.before(async () => {
  await add('hello', compile('hello', '#include <stdio.h>\n#include <stdlib.h>\nint main(int c, char **v) { printf("hello"); for (int i = 1; i < c; i++) printf(" %s", v[i]); printf("\\n"); fprintf(stderr, "on stderr\\n"); return c > 1 ? atoi(v[1]) : 0; }\n'));
  await add('tool', compile('tool', '#include <stdio.h>\nint main(void) { puts("tool 1"); return 0; }\n'));
  await add('unknown', compile('unknown', '#include <stdio.h>\nint main(void) { puts("never runs"); return 0; }\n'));
  const script = join(scratch.dir, 'greet.sh');
  writeFileSync(script, '#!/bin/sh\necho "greetings, $1"\nexit 3\n');
  await add('greet', script);
  const nap = join(scratch.dir, 'nap.sh');
  // Only the interpreter is in the sandbox (no /usr/bin/sleep): a shell loop keeps it running.
  writeFileSync(nap, '#!/bin/sh\necho napping\nwhile :; do :; done\n');
  await add('nap', nap);
  const spew = join(scratch.dir, 'spew.sh');
  writeFileSync(spew, `#!/bin/sh\ns=${'x'.repeat(1000)}\nwhile :; do echo "$s$s$s$s$s$s$s$s"; done\n`);
  await add('spew', spew);
  mkdirSync(join(repo, 'binaries'), { recursive: true });
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, policyFiles('approved'), 'approve hello, greet, tool');
  daemon = await startDaemon({
    runDir,
    policyRepo: repo,
    storeDir,
    auditLog: auditPath,
    sandbox: 'bwrap',
    limits: { maxFrame: 16384, uploadTimeoutMs: 2000, frameTimeoutMs: 500, maxConcurrent: 4 },
    bounds: { maxQueuedBytes: 2 * 1024 * 1024 },
    log: { error: (m) => logLines.push(`E ${m}`), warn: (m) => logLines.push(`W ${m}`), info: (m) => logLines.push(`I ${m}`), debug: () => {} },
  });
  await daemon.addVm({ name: 'vm-a', uuid: UUID_A });
  await daemon.addVm({ name: 'vm-b', uuid: UUID_B });
});

test.after(async () => {
  await daemon?.close();
  scratch.cleanup();
});

test('sockets: control and VM sockets exist with mode 0600, in directories others may search but not list', () => {
  for (const p of [daemon.controlPath, join(runDir, 'vm', 'vm-a.sock'), join(runDir, 'vm', 'vm-b.sock')]) {
    const st = statSync(p);
    assert.ok(st.isSocket(), p);
    assert.is(st.mode & 0o777, 0o600, p);
  }
  // QEMU may run unprivileged: libvirt hands it the socket file, the directories must let it through.
  for (const dir of [runDir, join(runDir, 'vm')]) assert.is(statSync(dir).mode & 0o777, 0o711, dir);
});

test('a second daemon on the same run directory is refused, and the first keeps its sockets', async () => {
  try {
    await startDaemon({ runDir, policyRepo: repo, storeDir, auditLog: auditPath, sandbox: 'bwrap' });
    assert.unreachable('a second daemon started');
  } catch (err) {
    assert.match((err as Error).message, `${daemon.controlPath}: another virt-offload daemon is serving it; stop that daemon first, or give this one another --run-dir`);
  }
  assert.is((await control(daemon.controlPath, { cmd: 'ping' })).ok, true);
  assert.ok(statSync(join(runDir, 'vm', 'vm-a.sock')).isSocket());
});

test('a run directory others could write, a symlink, or a vm/ symlink is refused before any socket is made', async () => {
  const start = (dir: string) => startDaemon({ runDir: dir, policyRepo: repo, storeDir, auditLog: auditPath, sandbox: 'bwrap' });
  const refused = async (dir: string, expected: string) => {
    try {
      const d = await start(dir);
      await d.close();
      assert.unreachable(`a daemon started on ${dir}`);
    } catch (err) {
      assert.match((err as Error).message, expected);
    }
    assert.not.ok(existsSync(join(dir, 'control.sock')), `no control socket in ${dir}`);
  };
  const open = join(scratch.dir, 'run-open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  await refused(open, `run directory ${open} is group- or world-writable (mode 0777)`);
  const target = join(scratch.dir, 'run-target');
  mkdirSync(target, { mode: 0o711 });
  const linked = join(scratch.dir, 'run-link');
  symlinkSync(target, linked);
  await refused(linked, `run directory ${linked} is a symbolic link`);
  // vm/ pointing elsewhere would have its target chmod'ed and the VM sockets made there.
  const withVmLink = join(scratch.dir, 'run-vm-link');
  mkdirSync(withVmLink, { mode: 0o711 });
  const elsewhere = join(scratch.dir, 'elsewhere');
  mkdirSync(elsewhere, { mode: 0o700 });
  symlinkSync(elsewhere, join(withVmLink, 'vm'));
  await refused(withVmLink, `VM socket directory ${join(withVmLink, 'vm')} is a symbolic link`);
  assert.is(statSync(elsewhere).mode & 0o777, 0o700, 'the symlink target was not chmod-ed');
  // Under a directory others may write (no sticky bit), the run directory could be swapped.
  const parent = join(scratch.dir, 'open-parent');
  mkdirSync(parent);
  chmodSync(parent, 0o773);
  await refused(join(parent, 'run'), `directory ${parent} above the run directory ${join(parent, 'run')} is group- or world-writable without the sticky bit`);
  assert.not.ok(existsSync(join(parent, 'run')), 'checked before anything is made there');
});

test('an audit log in a directory others could write (or under one, without the sticky bit) is refused; a group-writable one above passes', async () => {
  const start = (log: string) => startDaemon({ runDir: join(scratch.dir, 'run-audit'), policyRepo: repo, storeDir, auditLog: log, sandbox: 'bwrap' });
  const refused = async (log: string, expected: string) => {
    try {
      const d = await start(log);
      await d.close();
      assert.unreachable(`a daemon started with the audit log ${log}`);
    } catch (err) {
      assert.match((err as Error).message, expected);
    }
    assert.not.ok(existsSync(log), `nothing written at ${log}`);
    assert.not.ok(existsSync(join(scratch.dir, 'run-audit')), 'checked before the run directory is made');
  };
  const open = join(scratch.dir, 'audit-open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  await refused(join(open, 'audit.jsonl'), `audit log directory ${open} is group- or world-writable (mode 0777)`);
  const target = join(scratch.dir, 'audit-target');
  mkdirSync(target, { mode: 0o750 });
  const linked = join(scratch.dir, 'audit-link');
  symlinkSync(target, linked);
  await refused(join(linked, 'audit.jsonl'), `audit log directory ${linked} is a symbolic link`);
  // Not made yet, under a directory others may write: it could be swapped once made.
  const parent = join(scratch.dir, 'audit-open-parent');
  mkdirSync(parent);
  chmodSync(parent, 0o777);
  await refused(join(parent, 'log', 'audit.jsonl'), `directory ${parent} above the audit log directory ${join(parent, 'log')} is world-writable without the sticky bit`);
  assert.not.ok(existsSync(join(parent, 'log')), 'checked before the directory is made');
  // Group-writable above it is allowed only when root owns that directory.
  const foreignGroup = join(scratch.dir, 'audit-foreign-group');
  mkdirSync(foreignGroup);
  chmodSync(foreignGroup, 0o775);
  chownSync(foreignGroup, 65534, 65534);
  await refused(join(foreignGroup, 'log', 'audit.jsonl'), `${foreignGroup}`);
  // A group-writable directory above (Ubuntu's /var/log: root:syslog 0775) is allowed.
  const groupParent = join(scratch.dir, 'audit-group-parent');
  mkdirSync(groupParent);
  chmodSync(groupParent, 0o775);
  const d = await start(join(groupParent, 'virt-offload', 'audit.jsonl'));
  await d.close();
  assert.is(statSync(join(groupParent, 'virt-offload')).mode & 0o777, 0o750);
});

test('an approved ELF uploaded by a VM runs sandboxed: stdout, stderr and exit code come back, one audit record', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  const r = await g.submit({ bytes: bin.hello!.bytes }, ['7', 'a b']);
  assert.is(r.final.type, 'EXIT', JSON.stringify(r.final));
  assert.is(r.finals, 1);
  assert.is(r.stdout, 'hello 7 a b\n');
  assert.is(r.stderr, 'on stderr\n');
  if (r.final.type !== 'EXIT') return;
  assert.is(r.final.body.exitCode, 7);
  assert.is(r.final.body.measurement, bin.hello!.m);
  assert.is(r.final.body.name, 'hello');
  const recs = requestRecords().filter((x) => x.measurement === bin.hello!.m);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.decision, 'allow');
  assert.is(recs[0]!.vm, 'vm-a');
  assert.is(recs[0]!.exitCode, 7);
  assert.is(recs[0]!.bytes, bin.hello!.bytes.length);
  // The time the upload took to arrive (first DATA → DATA_END), 0.1 ms resolution.
  const uploadMs = recs[0]!.uploadMs as number;
  assert.type(uploadMs, 'number');
  assert.ok(uploadMs >= 0 && uploadMs <= (recs[0]!.durationMs as number) + 1 && Math.round(uploadMs * 10) === uploadMs * 10, `uploadMs ${uploadMs}`);
  assert.is(recs[0]!.commit, run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim());
  // The run was made in the VM's share group (its runs share one cgroup's CPU time).
  const layout = hostCgroups()!;
  for (const parent of [layout.memoryParent, layout.pidsParent, layout.cpuParent]) assert.ok(existsSync(join(parent, 'vm-vm-a')), `${parent}/vm-vm-a`);
  // Installed: `submit --measurement` now runs it without an upload.
  assert.ok(list(openStore(storeDir)).some((o) => o.measurement === bin.hello!.m));
  // The install is a store change, audited like a reconciliation's (`audit --action install`).
  const installs = audit().filter((x) => x.event === 'store' && x.action === 'install' && x.measurement === bin.hello!.m);
  assert.is(installs.length, 1);
  assert.equal([installs[0]!.name, installs[0]!.version, installs[0]!.vm, installs[0]!.reason, installs[0]!.commit], ['hello', '1', 'vm-a', 'uploaded by VM vm-a', recs[0]!.commit]);
  const again = await g.submit({ measurement: bin.hello!.m }, ['0']);
  assert.is(again.final.type, 'EXIT');
  assert.is(again.stdout, 'hello 0\n');
  const byMeasurement = requestRecords().filter((x) => x.measurement === bin.hello!.m);
  assert.is(byMeasurement.length, 2);
  assert.not.ok('uploadMs' in byMeasurement[1]!, 'no uploadMs without an upload');
  g.close();
});

test('a script runs with the interpreter its policy names; its scope is the VM of the socket, not what the guest says', async () => {
  const a = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await a.hello();
  const r = await a.submit({ bytes: bin.greet!.bytes }, ['world']);
  assert.is(r.final.type, 'EXIT', JSON.stringify(r.final));
  assert.is(r.stdout, 'greetings, world\n');
  if (r.final.type === 'EXIT') assert.is(r.final.body.exitCode, 3);
  a.close();
  const b = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await b.hello();
  const id = b.send({ bytes: bin.greet!.bytes }, ['world'], 'vm-a');
  const d = await b.reply(id);
  assert.is(d.final.type, 'DENIED');
  if (d.final.type === 'DENIED') assert.is(d.final.body.code, 'not-approved-for-vm');
  b.close();
});

test('an unapproved binary is DENIED with its measurement; the audit record is on disk before the reply arrives', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const id = g.send({ bytes: bin.unknown!.bytes });
  let onDisk: Array<Record<string, unknown>> = [];
  const denied = await g.waitFor((m) => {
    if (m.requestId !== id || m.type !== 'DENIED') return false;
    onDisk = requestRecords(); // read synchronously as the DENIED frame is decoded
    return true;
  });
  assert.is(denied.type, 'DENIED');
  if (denied.type !== 'DENIED') return;
  assert.is(denied.body.measurement, bin.unknown!.m);
  assert.is(denied.body.code, 'unknown-measurement');
  const rec = onDisk.filter((r) => r.measurement === bin.unknown!.m);
  assert.is(rec.length, 1, 'audit record written before the reply');
  assert.is(rec[0]!.decision, 'deny');
  assert.is(rec[0]!.vm, 'vm-b');
  assert.is(rec[0]!.code, 'unknown-measurement');
  assert.not.ok(list(openStore(storeDir)).some((o) => o.measurement === bin.unknown!.m), 'a denied binary is not installed');
  g.close();
});

test('an upload the measurement core refuses (ELF header only): ERROR unmeasurable, audited, nothing installed', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const before = requestRecords().length;
  const r = await g.submit({ bytes: bin.hello!.bytes.subarray(0, 64) });
  assert.is(r.final.type, 'ERROR');
  if (r.final.type === 'ERROR') {
    assert.is(r.final.body.code, 'unmeasurable');
    assert.match(r.final.body.message, /program header/i);
  }
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.decision, 'error');
  assert.is(recs[0]!.code, 'unmeasurable');
  assert.is(recs[0]!.bytes, 64);
  g.close();
});

test('revoke: a policy commit + reload denies the next request and removes the binary from the store', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  const ok = await g.submit({ bytes: bin.tool!.bytes });
  assert.is(ok.final.type, 'EXIT');
  assert.is(ok.stdout, 'tool 1\n');
  assert.ok(list(openStore(storeDir)).some((o) => o.measurement === bin.tool!.m));
  const commit = commitPolicy(repo, policyFiles('revoked reason="leaks the host name"'), 'revoke tool 1');
  const reply = await control(daemon.controlPath, { cmd: 'reload' });
  assert.is(reply.ok, true);
  assert.is(reply.commit, commit);
  assert.not.ok(list(openStore(storeDir)).some((o) => o.measurement === bin.tool!.m), 'uninstalled by the reconciliation');
  assert.ok(audit().some((r) => r.event === 'store' && r.action === 'uninstall' && r.measurement === bin.tool!.m && r.commit === commit));
  for (const what of [{ bytes: bin.tool!.bytes }, { measurement: bin.tool!.m }]) {
    const r = await g.submit(what);
    assert.is(r.final.type, 'DENIED');
    if (r.final.type === 'DENIED') {
      assert.is(r.final.body.code, 'revoked');
      assert.match(r.final.body.reason, /leaks the host name/);
    }
  }
  g.close();
});

test('an update uploaded by the guest: the superseded version kept until then is uninstalled right after', async () => {
  const v1 = compile('upd1', '#include <stdio.h>\nint main(void) { puts("upd 1"); return 0; }\n');
  const v2 = compile('upd2', '#include <stdio.h>\nint main(void) { puts("upd 2"); return 0; }\n');
  const m1 = (await measureFile(v1)).measurement;
  const m2 = (await measureFile(v2)).measurement;
  const inStore = (m: string) => list(openStore(storeDir)).some((o) => o.measurement === m);
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  commitPolicy(repo, { 'binaries/upd.policy': `binary upd\nvms all\nversion 1 approved ${m1}\n` }, 'approve upd 1');
  assert.is((await control(daemon.controlPath, { cmd: 'reload' })).ok, true);
  assert.is((await g.submit({ bytes: readFileSync(v1) })).stdout, 'upd 1\n');
  assert.ok(inStore(m1));

  // Version 2 approved, 1 superseded: the host has no bytes of 2 yet, so 1 stays installed.
  commitPolicy(repo, { 'binaries/upd.policy': `binary upd\nvms all\nversion 1 superseded by=2 ${m1}\nversion 2 approved ${m2}\n` }, 'upd 2');
  assert.is((await control(daemon.controlPath, { cmd: 'reload' })).ok, true);
  assert.ok(inStore(m1), 'kept until its successor is installed');
  const old = await g.submit({ measurement: m1 });
  assert.is(old.final.type, 'DENIED', 'but no longer runs');

  // The guest uploads 2: it runs, and 1 leaves the store without another reload.
  assert.is((await g.submit({ bytes: readFileSync(v2) })).stdout, 'upd 2\n');
  for (let i = 0; i < 100 && inStore(m1); i++) await new Promise((r) => setTimeout(r, 50));
  assert.not.ok(inStore(m1), 'superseded version uninstalled once its successor was installed');
  assert.ok(inStore(m2));
  assert.ok(audit().some((r) => r.event === 'store' && r.action === 'uninstall' && r.measurement === m1 && /superseded/.test(String(r.reason))), 'the uninstall is audited');
  g.close();
});

test('a run the host cannot start: the guest gets the code and where to look, not host paths; the audit has the reason', async () => {
  const script = join(scratch.dir, 'badint.sh');
  writeFileSync(script, '#!/bin/sh\necho never\n');
  const m = (await measureFile(script)).measurement;
  commitPolicy(repo, { 'binaries/badint.policy': `binary badint\ninterpreter /opt/vo-missing/sh\nvms all\nversion 1 approved ${m}\n` }, 'approve badint');
  assert.is((await control(daemon.controlPath, { cmd: 'reload' })).ok, true);
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  const r = await g.submit({ bytes: readFileSync(script) });
  g.close();
  if (r.final.type !== 'ERROR') return assert.unreachable(`expected ERROR, got ${r.final.type}`);
  const text = JSON.stringify(r.final.body);
  assert.not.match(text, /\/opt\/vo-missing|\/sys\/fs\/cgroup/, `no host facts for the guest: ${text}`);
  assert.not.ok(text.includes(scratch.dir), `no host paths for the guest: ${text}`);
  assert.match(text, /audit log \(VM vm-a, request \d+\)/);
  const record = requestRecords().find((x) => x.measurement === m);
  assert.match(String(record?.reason), /\/opt\/vo-missing\/sh/, 'the admin gets the reason');
});

test('a broken policy commit: reload fails loudly, the last good snapshot stays in force', async () => {
  const good = run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();
  commitPolicy(repo, { 'binaries/broken.policy': 'binary broken\nversion 1 aproved sha256:00\n' }, 'a typo');
  const r = await daemon.reload();
  assert.is(r.ok, false);
  assert.is(r.commit, good);
  assert.match(r.error ?? '', /broken\.policy:2/);
  assert.is((r.error ?? '').split('broken.policy:2').length, 2, `the one error said once: ${r.error}`);
  assert.ok(logLines.some((l) => l.startsWith('E POLICY RELOAD FAILED, keeping the last good policy')));
  const status = await control(daemon.controlPath, { cmd: 'status' });
  assert.is((status.policy as Record<string, unknown>).commit, good);
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const ran = await g.submit({ measurement: bin.hello!.m }, ['5']);
  assert.is(ran.final.type, 'EXIT', 'still decided with the good snapshot');
  g.close();
  run('git', ['-C', repo, 'rm', '-q', 'binaries/broken.policy']);
  commitPolicy(repo, {}, 'fix the typo');
  assert.is((await daemon.reload()).ok, true);
});

test('garbage and oversized frames: that connection is dropped, another VM is still served', async () => {
  const bad = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await bad.hello();
  const good = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await good.hello();
  const junk = new Uint8Array(256 * 1024).fill(0x41);
  for (let i = 0; i < 8 && !bad.socket.destroyed; i++) bad.write(junk);
  await bad.closed;
  assert.ok(logLines.some((l) => /VM vm-a: disconnecting .* garbage/.test(l)));

  const big = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await big.hello();
  // Authentic headers announcing 1 GiB payloads: refused at the header, each one an error.
  const header = encodeFrame(FrameType.DATA, 1, new Uint8Array(0));
  const view = new DataView(header.buffer, header.byteOffset);
  view.setUint32(12, 1 << 30);
  const { crc32 } = await import('../../lib/protocol/index.js');
  view.setUint32(20, crc32(header.subarray(0, 20)));
  for (let i = 0; i < 40 && !big.socket.destroyed; i++) big.write(header);
  await big.closed;
  assert.ok(big.messages.some((m) => m.type === 'ERROR' && m.body.code === 'malformed'));

  const r = await good.submit({ measurement: bin.hello!.m }, ['1']);
  assert.is(r.final.type, 'EXIT');
  assert.is(r.stdout, 'hello 1\n');
  good.close();
  // The VM whose guest misbehaved can connect again.
  const again = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await again.hello();
  assert.is((await again.submit({ measurement: bin.hello!.m })).final.type, 'EXIT');
  again.close();
});

test('a refusal that quotes a guest\'s emoji text still reaches the guest: the request in flight gets its one final reply', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const { encodeRequest } = await import('../../lib/protocol/index.js');
  const before = requestRecords().length;
  g.write(encodeRequest(5, { argv: [], env: {}, upload: 1000 }, 16384));
  // The same id again, with a name the host refuses and quotes, cut to 80 characters.
  const payload = new TextEncoder().encode(JSON.stringify({ argv: [], env: {}, upload: 10, name: `a${'\u{1F600}'.repeat(60)}` }));
  g.write(encodeFrame(FrameType.REQUEST, 5, payload));
  const r = await g.reply(5);
  assert.is(r.final.type, 'ERROR');
  if (r.final.type === 'ERROR') {
    assert.is(r.final.body.code, 'malformed');
    assert.match(r.final.body.message, /"name" "a\u{1F600}+\.\.\. does not match/u);
  }
  assert.is(r.finals, 1);
  await new Promise((done) => setTimeout(done, 100));
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  // The upload in flight was aborted by the refused frame; its record says why.
  assert.is(recs[0]!.code, 'aborted');
  assert.match(String(recs[0]!.reason), /"name" "a\u{1F600}+\.\.\. does not match/u);
  assert.not.ok(logLines.some((l) => l.includes('cannot encode')), logLines.filter((l) => l.includes('cannot encode')).join('\n'));
  assert.is((await g.submit({ measurement: bin.hello!.m })).final.type, 'EXIT');
  g.close();
});

test('an upload that stalls ends with ERROR timeout and an audit record; a stalled frame is abandoned', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const { encodeRequest } = await import('../../lib/protocol/index.js');
  const before = requestRecords().length;
  g.write(encodeRequest(41, { argv: [], env: {}, upload: 1000 }, 16384));
  // Half a frame, then silence: the frame timeout drops it, the upload timeout ends the request.
  g.write(encodeFrame(FrameType.DATA, 41, new Uint8Array(10)).subarray(0, 12));
  const r = await g.reply(41);
  assert.is(r.final.type, 'ERROR');
  if (r.final.type === 'ERROR') assert.is(r.final.body.code, 'timeout');
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.code, 'timeout');
  // The connection still works after both timeouts.
  assert.is((await g.submit({ measurement: bin.hello!.m })).final.type, 'EXIT');
  g.close();
});

test('8 VMs in parallel: every request gets exactly one final reply and one audit record', async () => {
  const names = Array.from({ length: 8 }, (_, i) => `par-${i}`);
  const socks = await Promise.all(names.map((n, i) => control(daemon.controlPath, { cmd: 'add-vm', name: n, uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` })));
  for (const s of socks) assert.is(s.ok, true);
  const before = requestRecords().length;
  const results = await Promise.all(
    socks.map(async (s, i) => {
      const g = await Guest.connect(s.socket as string);
      await g.hello();
      const ids = [g.send({ bytes: bin.hello!.bytes }, [String(i)]), g.send({ bytes: bin.unknown!.bytes }), g.send({ measurement: bin.hello!.m }, ['0', `vm${i}`])];
      const replies = await Promise.all(ids.map((id) => g.reply(id)));
      g.close();
      return replies;
    }),
  );
  results.forEach((replies, i) => {
    assert.equal(replies.map((r) => [r.final.type, r.finals]), [['EXIT', 1], ['DENIED', 1], ['EXIT', 1]], `vm ${i}`);
    assert.is(replies[0]!.stdout, `hello ${i}\n`);
    assert.is(replies[2]!.stdout, `hello 0 vm${i}\n`);
  });
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 24);
  for (const n of names) assert.is(recs.filter((r) => r.vm === n).length, 3, n);
  const status = await control(daemon.controlPath, { cmd: 'status' });
  assert.ok((status.vms as unknown[]).length >= 10);
  const layout = hostCgroups()!;
  for (const n of names) assert.ok(existsSync(join(layout.cpuParent, `vm-${n}`)), `the share group of ${n}`);
  for (const n of names) assert.equal(await control(daemon.controlPath, { cmd: 'remove-vm', name: n }), { ok: true, removed: true });
  // Their runs ended before the replies: a removed VM's share group goes with it.
  for (const n of names) for (const p of [layout.memoryParent, layout.pidsParent, layout.cpuParent]) assert.not.ok(existsSync(join(p, `vm-${n}`)), `${p}/vm-${n} removed`);
});

test('CANCEL of a running request: ERROR cancelled at once, the run killed, one audit record', async () => {
  const { encodeCancel } = await import('../../lib/protocol/index.js');
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  const before = requestRecords().length;
  const id = g.send({ bytes: bin.nap!.bytes });
  await g.waitFor((m) => m.requestId === id && m.type === 'STDOUT');
  const sleeping = () => run('sh', ['-c', 'pgrep -f "^/bin/sh /run/virt-offload/prog$" || true']).trim();
  await waitUntil('the program runs before the cancel', () => sleeping() !== '', 10_000);
  const t0 = Date.now();
  g.write(encodeCancel(id));
  const r = await g.reply(id);
  // At once: the program spins until its 20 s wall limit otherwise.
  assert.ok(Date.now() - t0 < 10_000, `the cancel took ${Date.now() - t0} ms`);
  assert.is(r.final.type, 'ERROR');
  if (r.final.type === 'ERROR') assert.is(r.final.body.code, 'cancelled');
  assert.is(r.finals, 1);
  await new Promise((done) => setTimeout(done, 300));
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.decision, 'allow');
  assert.is(recs[0]!.code, 'aborted');
  await waitUntil('the sandboxed program is gone', () => sleeping() === '', 10_000, sleeping);
  // The connection goes on.
  assert.is((await g.submit({ measurement: bin.hello!.m })).final.type, 'EXIT');
  g.close();
});

test('a VM removed while its run goes on: the run is killed, and its share group goes when the run has ended', async () => {
  const socket = await daemon.addVm({ name: 'vm-short', uuid: '7a9d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4' });
  const g = await Guest.connect(socket);
  await g.hello();
  const id = g.send({ bytes: bin.nap!.bytes });
  await g.waitFor((m) => m.requestId === id && m.type === 'STDOUT');
  const layout = hostCgroups()!;
  const group = join(layout.pidsParent, 'vm-vm-short');
  assert.ok(existsSync(group), 'the run is in its share group');
  assert.is(await daemon.removeVm('vm-short', { stopped: true }), true);
  await waitUntil('the share group removed', () => !existsSync(group), 10_000);
  for (const parent of [layout.memoryParent, layout.pidsParent, layout.cpuParent]) assert.not.ok(existsSync(join(parent, 'vm-vm-short')), `${parent}/vm-vm-short removed`);
  g.close();
});

test('a new guest HELLO aborts the previous session\'s run: program killed, one audit record, no reply for it', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-a.sock'));
  await g.hello();
  const before = requestRecords().length;
  const id = g.send({ bytes: bin.nap!.bytes });
  await g.waitFor((m) => m.requestId === id && m.type === 'STDOUT');
  await g.hello();
  const running = () => run('sh', ['-c', 'pgrep -f "^/bin/sh /run/virt-offload/prog$" || true']).trim();
  await waitUntil('the run of the old session killed', () => running() === '', 10_000, running);
  await new Promise((done) => setTimeout(done, 200));
  assert.not.ok(g.messages.some((m) => m.requestId === id && ['EXIT', 'DENIED', 'ERROR'].includes(m.type)), 'no reply to a client that is gone');
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.code, 'aborted');
  assert.match(String(recs[0]!.reason), /new session/);
  g.close();
});

test('a guest that does not read its output is disconnected and its run killed; the daemon does not buffer without bound', async () => {
  const g = await Guest.connect(join(runDir, 'vm', 'vm-b.sock'));
  await g.hello();
  const before = requestRecords().length;
  g.socket.pause();
  g.send({ bytes: bin.spew!.bytes });
  const running = () => run('sh', ['-c', 'pgrep -f "^/bin/sh /run/virt-offload/prog$" || true']).trim();
  const t0 = Date.now();
  while (!logLines.some((l) => /VM vm-b: disconnecting .* does not read/.test(l)) && Date.now() - t0 < 15_000) await new Promise((done) => setTimeout(done, 50));
  assert.ok(logLines.some((l) => /VM vm-b: disconnecting .* does not read/.test(l)));
  await waitUntil('the run killed', () => running() === '', 10_000, running);
  const recs = requestRecords().slice(before);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.code, 'disconnected');
  g.close();
});

test('no policy loaded (the repository does not parse): every request is DENIED no-policy', async () => {
  const dir = join(scratch.dir, 'second');
  mkdirSync(join(dir, 'repo'), { recursive: true });
  writeFileSync(join(dir, 'repo', 'x.policy'), 'binary x\nversion 1 approved nonsense\n');
  const lines: string[] = [];
  const d2 = await startDaemon({
    runDir: join(dir, 'run'),
    policyRepo: join(dir, 'repo'),
    storeDir: join(dir, 'store'),
    auditLog: join(dir, 'audit.jsonl'),
    sandbox: 'bwrap',
    log: { error: (m) => lines.push(m), warn: () => {}, info: () => {}, debug: () => {} },
  });
  try {
    assert.ok(lines.some((l) => l.startsWith('POLICY RELOAD FAILED, NO POLICY IS LOADED')));
    const g = await Guest.connect(await d2.addVm({ name: 'vm-a', uuid: UUID_A }));
    await g.hello();
    const r = await g.submit({ bytes: bin.hello!.bytes });
    assert.is(r.final.type, 'DENIED');
    if (r.final.type === 'DENIED') {
      assert.is(r.final.body.code, 'no-policy');
      assert.is(r.final.body.measurement, bin.hello!.m);
    }
    g.close();
  } finally {
    await d2.close();
  }
});

test('a name already added with another UUID is refused unless replace: the UUID is the VM\'s identity for the policy', async () => {
  const first = '9b8d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4';
  const second = '9b8d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c5';
  const socket = await daemon.addVm({ name: 'vm-swap', uuid: first });
  const g = await Guest.connect(socket);
  await g.hello();
  const uuidOf = () => daemon.status().vms.find((v) => v.name === 'vm-swap')?.uuid;
  try {
    await daemon.addVm({ name: 'vm-swap', uuid: second });
    assert.unreachable('a second UUID for the name was accepted');
  } catch (err) {
    assert.match((err as Error).message, `already added with UUID ${first}, not ${second}`);
    assert.match((err as Error).message, '--replace');
  }
  assert.is(uuidOf(), first, 'the first VM is kept');
  assert.is((await daemon.addVm({ name: 'vm-swap', uuid: first })).length > 0, true, 'the same name and UUID again: still idempotent');
  // Through the control socket, as `virt-offload vm add` and the hook ask.
  const refused = await control(daemon.controlPath, { cmd: 'add-vm', name: 'vm-swap', uuid: second });
  assert.is(refused.ok, false);
  assert.match(String(refused.error), 'already added with UUID');
  assert.is((await control(daemon.controlPath, { cmd: 'add-vm', name: 'vm-swap', uuid: second, replace: 'yes' })).ok, false, 'replace must be a boolean');
  const replaced = await control(daemon.controlPath, { cmd: 'add-vm', name: 'vm-swap', uuid: second, replace: true });
  assert.is(replaced.ok, true, JSON.stringify(replaced));
  assert.is(uuidOf(), second, 'replaced');
  await g.closed; // the old VM's connection went with it
  assert.is(await daemon.removeVm('vm-swap'), true);
});

test('a policy directory with no git commit is not enforced: every request is DENIED no-policy, and the log says why', async () => {
  const dir = join(scratch.dir, 'uncommitted');
  const policyDir = join(dir, 'repo');
  mkdirSync(policyDir, { recursive: true });
  // A policy that would approve the program, in a plain directory: reviewed by nobody.
  writeFileSync(join(policyDir, 'hello.policy'), `binary hello\nvms all\nversion 1 approved ${bin.hello!.m}\n`);
  const lines: string[] = [];
  const quiet = () => {};
  const start = () => startDaemon({ runDir: join(dir, 'run'), policyRepo: policyDir, storeDir: join(dir, 'store'), auditLog: join(dir, 'audit.jsonl'), sandbox: 'bwrap', log: { error: (m) => lines.push(m), warn: quiet, info: quiet, debug: quiet } });
  let d2 = await start();
  try {
    assert.ok(lines.some((l) => l.includes(`policy repository ${policyDir} has no git commit`)), lines.join('\n'));
    const g = await Guest.connect(await d2.addVm({ name: 'vm-a', uuid: UUID_A }));
    await g.hello();
    const r = await g.submit({ bytes: bin.hello!.bytes });
    assert.is(r.final.type, 'DENIED');
    if (r.final.type === 'DENIED') assert.is(r.final.body.code, 'no-policy');
    g.close();
    // A git repository with nothing committed yet: the same.
    run('git', ['init', '-q', policyDir]);
    await d2.close();
    lines.length = 0;
    d2 = await start();
    assert.ok(lines.some((l) => l.includes('has no git commit')), lines.join('\n'));
    assert.is(d2.status().policy.loaded, false);
  } finally {
    await d2.close();
  }
});

test('control socket: bad commands get errors, not crashes', async () => {
  assert.is((await control(daemon.controlPath, { cmd: 'add-vm', name: '../etc', uuid: UUID_A })).ok, false);
  assert.is((await control(daemon.controlPath, { cmd: 'add-vm', name: 'x', uuid: 'nope' })).ok, false);
  assert.is((await control(daemon.controlPath, { cmd: 'launch' })).ok, false);
  assert.is((await control(daemon.controlPath, { cmd: 'status' })).ok, true);
});

test.run();
