// The libvirt hook as libvirt runs it: the installed file (the CLI's `hook install` output) as a
// process, argv NAME OP SUBOP -, the domain XML on stdin, a minimal environment, against a
// real daemon control socket (startDaemon). The hot-plug route is a recording fake: what is
// under test is the hook → daemon path (the real route is in test/e2e/libvirt-hook.test.ts).
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, type Daemon, type VmStatus } from '../../lib/daemon/index.js';
import type { VmIdentity } from '../../lib/policy/index.js';
import { control } from '../daemon/helpers.js';
import { requireTool, run, scratchDir, waitUntil } from '../../testbed/tools.js';
import { domainXml, installHook, NS, optIn, RecordingRoute, runHook } from './helpers.js';

requireTool('git', 'git');
const scratch = scratchDir('vo-hook-');
const runDir = join(scratch.dir, 'run');
const downRunDir = join(scratch.dir, 'down');
// In a directory nobody made: the hook makes it (hook install does not).
const logFile = join(scratch.dir, 'log', 'hook.log');
let hookFile = '';
let downHook = '';
let daemon: Daemon;
const routes = new Map<string, RecordingRoute>();
const logLines: string[] = [];
const UUID = '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';

const vms = (): VmStatus[] => daemon.status().vms as VmStatus[];
const vm = (name: string): VmStatus | undefined => vms().find((v) => v.name === name);

test.before(async () => {
  const repo = join(scratch.dir, 'policy');
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  daemon = await startDaemon({
    runDir,
    policyRepo: repo,
    storeDir: join(scratch.dir, 'store'),
    auditLog: join(scratch.dir, 'audit.jsonl'),
    sandbox: 'bwrap',
    routeFor: (v: VmIdentity) => {
      const route = routes.get(v.name) ?? new RecordingRoute();
      routes.set(v.name, route);
      return route;
    },
    attachRetryDelaysMs: [50, 50, 50],
    log: { error: (m) => logLines.push(`E ${m}`), warn: (m) => logLines.push(`W ${m}`), info: (m) => logLines.push(`I ${m}`), debug: () => {} },
  });
  hookFile = installHook(join(scratch.dir, 'hooks'), runDir, ['--log-file', logFile]);
  downHook = installHook(join(scratch.dir, 'hooks-down'), downRunDir, ['--no-log-file']);
});

test.after(async () => {
  await daemon?.close();
  scratch.cleanup();
});

test('the installed hook is an executable file with an absolute interpreter and our config', () => {
  const text = readFileSync(hookFile, 'utf8');
  assert.is(text.split('\n')[0], `#!${process.execPath}`);
  assert.ok(text.includes(JSON.stringify(join(runDir, 'control.sock'))));
  assert.is(statSync(hookFile).mode & 0o777, 0o755);
});

test('a domain without our metadata: exit 0, silent, the daemon is not asked', async () => {
  for (const [op, sub] of [['prepare', 'begin'], ['started', 'begin'], ['stopped', 'end'], ['release', 'end']] as const) {
    const r = await runHook(hookFile, ['plain', op, sub, '-'], domainXml({ name: 'plain' }));
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout, '');
    assert.is(r.stderr, '');
  }
  // Metadata of someone else, even under our usual prefix.
  const other = await runHook(hookFile, ['plain', 'started', 'begin', '-'], domainXml({ name: 'plain', metadata: '<vo:offload xmlns:vo="http://example.org/other" enabled="yes"/>' }));
  assert.is(other.status, 0);
  assert.is(other.stderr, '');
  assert.is(vm('plain'), undefined);
  assert.is(routes.size, 0);
});

test('enabled="no" (and a missing enabled): nothing is done', async () => {
  for (const attrs of ['enabled="no" required="yes"', 'required="yes"']) {
    const prep = await runHook(downHook, ['off', 'prepare', 'begin', '-'], domainXml({ name: 'off', metadata: optIn(attrs) }));
    assert.is(prep.status, 0, 'not opted in: required does not apply');
    const r = await runHook(hookFile, ['off', 'started', 'begin', '-'], domainXml({ name: 'off', metadata: optIn(attrs) }));
    assert.is(r.status, 0);
    assert.is(r.stdout, '');
    // Its stop, with no daemon running: nothing to say.
    const stop = await runHook(downHook, ['off', 'stopped', 'end', '-'], domainXml({ name: 'off', metadata: optIn(attrs) }));
    assert.equal([stop.status, stop.stderr], [0, '']);
  }
  assert.is(vm('off'), undefined);
});

test('malformed XML, a DOCTYPE with entities, an unbound prefix, a wrong root: exit 0, one line, nothing done', async () => {
  const cases: Array<[string, string, RegExp]> = [
    ['truncated', domainXml({ name: 'bad', metadata: optIn() }).split('</metadata>')[0]!, /not well-formed/],
    ['unclosed tag', `<domain><name>bad</name><uuid>${UUID}</uuid><metadata>${optIn()}</domain>`, /not well-formed/],
    [
      'entity expansion',
      `<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><domain><name>&b;</name><uuid>${UUID}</uuid><metadata>${optIn()}</metadata></domain>`,
      /DOCTYPE/,
    ],
    ['external entity', `<!DOCTYPE domain SYSTEM "file:///etc/shadow"><domain><name>bad</name><metadata>${optIn()}</metadata></domain>`, /DOCTYPE/],
    ['undeclared entity', `<domain><name>&xxe;</name><uuid>${UUID}</uuid><metadata>${optIn()}</metadata></domain>`, /not well-formed/],
    ['unbound prefix', `<domain><name>bad</name><uuid>${UUID}</uuid><metadata><x xmlns:vo="${NS}"/><vo:offload enabled="yes"/></metadata></domain>`, /not well-formed/],
    ['wrong root', `<network><name>bad</name><metadata>${optIn()}</metadata></network>`, /not <domain>/],
    ['two opt-ins', `<domain><name>bad</name><uuid>${UUID}</uuid><metadata>${optIn()}${optIn('enabled="no"')}</metadata></domain>`, /two <offload>/],
    ['not XML at all', `\u0000\u0001binary ${NS}`, /not well-formed/],
  ];
  for (const [what, xml, expect] of cases) {
    const r = await runHook(hookFile, ['bad', 'started', 'begin', '-'], xml);
    assert.is(r.status, 0, what);
    assert.is(r.stdout, '', what);
    assert.match(r.stderr, expect, what);
    assert.is(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
  }
  assert.is(vm('bad'), undefined);
});

test('huge stdin: bounded read, drained, nothing done, exit 0', async () => {
  const huge = domainXml({ name: 'huge', metadata: optIn() }).replace('</domain>', `<description>${'x'.repeat(8 * 1024 * 1024)}</description></domain>`);
  const r = await runHook(hookFile, ['huge', 'started', 'begin', '-'], huge);
  assert.is(r.status, 0);
  assert.match(r.stderr, /more than the 1048576 read/);
  assert.is(vm('huge'), undefined);
});

test('started begin: add-vm, then the daemon attaches through its route after replying; stdout stays empty', async () => {
  const xml = domainXml({ name: 'web1', metadata: optIn('enabled="yes" required="no" port="virt-offload.0"') });
  const r = await runHook(hookFile, ['web1', 'started', 'begin', '-'], xml);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, '');
  assert.is(r.stderr, '');
  const status = vm('web1');
  assert.ok(status, 'the VM was added');
  assert.is(status!.uuid, UUID);
  assert.ok(statSync(status!.socket).isSocket());
  await waitUntil('the device is attached', () => vm('web1')?.device?.state === 'attached', 10_000);
  const route = routes.get('web1')!;
  assert.equal(route.attaches, [{ vm: 'web1', portName: 'virt-offload.0', socketPath: status!.socket }]);
  // The state is visible over the control socket too (what `status` users see).
  const reply = await control(daemon.controlPath, { cmd: 'status' });
  const listed = (reply.vms as Array<Record<string, unknown>>).find((v) => v.name === 'web1')!;
  assert.is((listed.device as Record<string, unknown>).state, 'attached');
  assert.is((listed.device as Record<string, unknown>).route, 'RecordingRoute');
});

test('reconnect begin after a daemon already has the VM: the route is asked again (it finds its port: idempotent), still attached', async () => {
  const r = await runHook(hookFile, ['web1', 'reconnect', 'begin', '-'], domainXml({ name: 'web1', metadata: optIn() }));
  assert.is(r.status, 0, r.stderr);
  await new Promise((d) => setTimeout(d, 150));
  assert.is(routes.get('web1')!.attaches.length, 2);
  assert.is(vm('web1')?.device?.state, 'attached');
  assert.is(vms().filter((v) => v.name === 'web1').length, 1, 'one VM, one socket');
});

test('stopped end / release end: the VM and its socket are removed, no detach (QEMU is gone), route closed', async () => {
  const socket = vm('web1')!.socket;
  const stopped = await runHook(hookFile, ['web1', 'stopped', 'end', '-'], domainXml({ name: 'web1', metadata: optIn() }));
  assert.is(stopped.status, 0, stopped.stderr);
  assert.is(vm('web1'), undefined);
  assert.not.ok(existsSync(socket));
  assert.is(routes.get('web1')!.detaches.length, 0);
  assert.ok(routes.get('web1')!.closed);
  const release = await runHook(hookFile, ['web1', 'release', 'end', 'destroyed'], domainXml({ name: 'web1', metadata: optIn() }));
  assert.is(release.status, 0, release.stderr);
  assert.is(release.stderr, '');
});

test('a stop of another domain that now carries the name (other UUID) leaves the VM alone', async () => {
  const r = await runHook(hookFile, ['web2', 'started', 'begin', '-'], domainXml({ name: 'web2', metadata: optIn() }));
  assert.is(r.status, 0, r.stderr);
  const stop = await runHook(hookFile, ['web2', 'stopped', 'end', '-'], domainXml({ name: 'web2', uuid: '0b9d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4', metadata: optIn() }));
  assert.is(stop.status, 0);
  assert.ok(vm('web2'), 'still there');
  await control(daemon.controlPath, { cmd: 'remove-vm', name: 'web2', stopped: true });
});

test('any prefix bound to our namespace counts; a name that differs from argv is refused', async () => {
  const xml = domainXml({ name: 'pfx', metadata: `<x:offload xmlns:x="${NS}" enabled="yes"/>` });
  const r = await runHook(hookFile, ['pfx', 'started', 'begin', '-'], xml);
  assert.is(r.status, 0, r.stderr);
  assert.ok(vm('pfx'));
  await control(daemon.controlPath, { cmd: 'remove-vm', name: 'pfx', stopped: true });
  const liar = await runHook(hookFile, ['other', 'started', 'begin', '-'], domainXml({ name: 'pfx2', metadata: optIn() }));
  assert.is(liar.status, 0);
  assert.match(liar.stderr, /not the domain libvirt named/);
  assert.is(vm('pfx2'), undefined);
  assert.is(vm('other'), undefined);
});

test('a domain name the daemon refuses: one line, exit 0 (or 1 at started when required)', async () => {
  const weird = 'has space';
  const r = await runHook(hookFile, [weird, 'started', 'begin', '-'], domainXml({ name: weird, metadata: optIn() }));
  assert.is(r.status, 0);
  assert.match(r.stderr, /refused add-vm: VM name must match/);
  const req = await runHook(hookFile, [weird, 'started', 'begin', '-'], domainXml({ name: weird, metadata: optIn('enabled="yes" required="yes"') }));
  assert.is(req.status, 1);
});

test('daemon down, required="no": one clear line on stderr, exit 0, at every operation', async () => {
  for (const [op, sub] of [['prepare', 'begin'], ['started', 'begin'], ['reconnect', 'begin'], ['stopped', 'end']] as const) {
    const r = await runHook(downHook, ['down1', op, sub, '-'], domainXml({ name: 'down1', metadata: optIn('enabled="yes" required="no"') }));
    assert.is(r.status, 0, `${op}: ${r.stderr}`);
    assert.is(r.stdout, '');
    if (op === 'prepare') assert.is(r.stderr, '', 'prepare does not ask when not required');
    else {
      assert.is(r.stderr.trim().split('\n').length, 1);
      assert.match(r.stderr, /daemon is not running/);
    }
    assert.ok(r.ms < 1500, `${op} took ${r.ms} ms`);
  }
});

test('daemon down, required="yes": prepare begin and started begin fail (the start stops), reconnect does not kill the VM', async () => {
  const xml = domainXml({ name: 'down2', metadata: optIn('enabled="yes" required="yes"') });
  const prepare = await runHook(downHook, ['down2', 'prepare', 'begin', '-'], xml);
  assert.is(prepare.status, 1);
  assert.match(prepare.stderr, /daemon is not running.*\(required="yes"\): refusing to start it/);
  const started = await runHook(downHook, ['down2', 'started', 'begin', '-'], xml);
  assert.is(started.status, 1);
  const reconnect = await runHook(downHook, ['down2', 'reconnect', 'begin', '-'], xml);
  assert.is(reconnect.status, 0);
  // A required value we cannot read counts as required (fail closed).
  const unclear = await runHook(downHook, ['down2', 'prepare', 'begin', '-'], domainXml({ name: 'down2', metadata: optIn('enabled="yes" required="maybe"') }));
  assert.is(unclear.status, 1);
  assert.match(unclear.stderr, /required="maybe"/);
});

test('required="yes" with the daemon up: prepare begin pings and passes', async () => {
  const r = await runHook(hookFile, ['req', 'prepare', 'begin', '-'], domainXml({ name: 'req', metadata: optIn('enabled="yes" required="yes"') }));
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  assert.is(vm('req'), undefined, 'prepare only checks');
});

test('operations the hook does not act on (migrate, restore: libvirt reads stdout as the new XML) print nothing', async () => {
  for (const op of ['migrate', 'restore', 'start', 'attach']) {
    const r = await runHook(hookFile, ['mig', op, 'begin', '-'], domainXml({ name: 'mig', metadata: optIn() }));
    assert.is(r.status, 0);
    assert.is(r.stdout, '');
    assert.is(r.stderr, '');
  }
  assert.is(vm('mig'), undefined);
});

test('attach retries while the domain is not ready, then succeeds; a route that keeps failing shows failed in status', async () => {
  routes.set('slow', new RecordingRoute(2));
  const r = await runHook(hookFile, ['slow', 'started', 'begin', '-'], domainXml({ name: 'slow', uuid: '11111111-2222-4333-8444-555555555555', metadata: optIn() }));
  assert.is(r.status, 0, r.stderr);
  await waitUntil('slow attached', () => vm('slow')?.device?.state === 'attached', 10_000);
  assert.is(vm('slow')!.device!.attempts, 3);

  routes.set('broken', new RecordingRoute(100, 'no virtio-serial controller'));
  const b = await runHook(hookFile, ['broken', 'started', 'begin', '-'], domainXml({ name: 'broken', uuid: '21111111-2222-4333-8444-555555555555', metadata: optIn() }));
  assert.is(b.status, 0, 'the hook returned before the attach was tried');
  await waitUntil('broken failed', () => vm('broken')?.device?.state === 'failed', 10_000);
  const reply = await control(daemon.controlPath, { cmd: 'status' });
  const device = (reply.vms as Array<Record<string, unknown>>).find((v) => v.name === 'broken')!.device as Record<string, unknown>;
  assert.is(device.state, 'failed');
  assert.is(device.attempts, 4);
  assert.match(String(device.error), /no virtio-serial controller/);
  assert.ok(logLines.some((l) => l.startsWith('E VM broken: ATTACH FAILED after 4 attempt(s)')));
});

test('remove-vm from the CLI side (not stopped) detaches an attached device before closing the socket', async () => {
  const reply = await control(daemon.controlPath, { cmd: 'remove-vm', name: 'slow' });
  assert.equal(reply, { ok: true, removed: true });
  assert.equal(routes.get('slow')!.detaches, [{ vm: 'slow', portName: 'virt-offload.0' }]);
  await control(daemon.controlPath, { cmd: 'remove-vm', name: 'broken' });
  assert.is(routes.get('broken')!.detaches.length, 0, 'never attached: nothing to detach');
});

test('a stop while the attach is still retrying cancels it', async () => {
  const route = new RecordingRoute(100);
  routes.set('flap', route);
  const xml = domainXml({ name: 'flap', uuid: '31111111-2222-4333-8444-555555555555', metadata: optIn() });
  assert.is((await runHook(hookFile, ['flap', 'started', 'begin', '-'], xml)).status, 0);
  await waitUntil('a first attempt', () => route.attaches.length >= 1, 10_000);
  assert.is((await runHook(hookFile, ['flap', 'stopped', 'end', '-'], xml)).status, 0);
  const tries = route.attaches.length;
  await new Promise((d) => setTimeout(d, 300));
  assert.is(route.attaches.length, tries, 'no attempt after the removal');
  assert.is(vm('flap'), undefined);
});

test('a stop seen with enabled="no" in the live definition still removes the VM; a start after a missed stop attaches again', async () => {
  const xml = (attrs?: string) => domainXml({ name: 'flip', uuid: '41111111-2222-4333-8444-555555555555', metadata: optIn(attrs) });
  assert.is((await runHook(hookFile, ['flip', 'started', 'begin', '-'], xml())).status, 0);
  await waitUntil('attached', () => vm('flip')?.device?.state === 'attached', 5000);
  assert.is((await runHook(hookFile, ['flip', 'stopped', 'end', '-'], xml('enabled="no"'))).status, 0);
  assert.is(vm('flip'), undefined, 'removed although the live XML says enabled="no"');
  // A stop the daemon never saw (it was down, or the hook failed): the next QEMU has no port.
  assert.is((await runHook(hookFile, ['flip', 'started', 'begin', '-'], xml())).status, 0);
  await waitUntil('attached', () => vm('flip')?.device?.state === 'attached', 5000);
  assert.is((await runHook(hookFile, ['flip', 'started', 'begin', '-'], xml())).status, 0);
  await waitUntil('asked again', () => routes.get('flip')!.attaches.length === 3, 5000);
  await waitUntil('attached', () => vm('flip')?.device?.state === 'attached', 5000);
});

test('a start under a name the daemon holds with another UUID (a redefined domain whose stop was missed): the new UUID replaces it', async () => {
  const first = '51111111-2222-4333-8444-555555555555';
  const second = '51111111-2222-4333-8444-555555555556';
  await daemon.addVm({ name: 'redefined', uuid: first });
  const r = await runHook(hookFile, ['redefined', 'started', 'begin', '-'], domainXml({ name: 'redefined', uuid: second, metadata: optIn('enabled="yes" required="yes"') }));
  assert.is(r.status, 0, r.stderr);
  assert.is(vm('redefined')?.uuid, second, 'the hook asks with replace: libvirt names the domain starting now');
  await waitUntil('attached', () => vm('redefined')?.device?.state === 'attached', 5000);
  assert.is(await daemon.removeVm('redefined', { stopped: true }), true);
});

/** A second daemon for one test, with its own run directory and installed hook. */
async function otherDaemon(name: string, options: { routeFor?: (v: VmIdentity) => RecordingRoute; attachRetryDelaysMs?: number[] }): Promise<{ daemon: Daemon; hook: string }> {
  const repo = join(scratch.dir, `policy-${name}`);
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  const dir = join(scratch.dir, `run-${name}`);
  const d = await startDaemon({ runDir: dir, policyRepo: repo, storeDir: join(scratch.dir, 'store'), auditLog: join(scratch.dir, `audit-${name}.jsonl`), sandbox: 'bwrap', ...options });
  return { daemon: d, hook: installHook(join(scratch.dir, `hooks-${name}`), dir, ['--no-log-file']) };
}

test('a restart while the attach waits to retry: the stop answers at once and the new socket stays', async () => {
  const route = new RecordingRoute(100);
  const { daemon: d, hook } = await otherDaemon('restart', { routeFor: () => route, attachRetryDelaysMs: [4000, 4000] });
  try {
    const xml = domainXml({ name: 'quick', uuid: '51111111-2222-4333-8444-555555555555', metadata: optIn() });
    assert.is((await runHook(hook, ['quick', 'started', 'begin', '-'], xml)).status, 0);
    await waitUntil('a first attempt', () => route.attaches.length >= 1, 10_000);
    // libvirt runs the stop's hook, then the next start's: the stop must not wait for the retry
    // (the hook would give up after 3 s, and libvirt with it).
    const t = performance.now();
    assert.is((await runHook(hook, ['quick', 'stopped', 'end', '-'], xml)).status, 0);
    assert.ok(performance.now() - t < 2000, `the stop took ${Math.round(performance.now() - t)} ms (the retry wait is 4000)`);
    assert.is((await runHook(hook, ['quick', 'started', 'begin', '-'], xml)).status, 0);
    const reachable = async (what: string) => {
      const socket = (d.status().vms as VmStatus[]).find((v) => v.name === 'quick')?.socket;
      assert.ok(socket !== undefined && statSync(socket).isSocket(), `${what}: the VM's socket exists: ${socket}`);
      await new Promise<void>((done, fail) => {
        const c = connect(socket!, () => {
          c.destroy();
          done();
        });
        c.on('error', fail);
      });
    };
    await reachable('restarted');
    // A removal still under way when the next add arrives (a slow detach, a hook that gave up):
    // the add waits for it, and the end of the removal does not unlink the new socket.
    const removal = d.removeVm('quick', { stopped: true });
    const added = d.addVm({ name: 'quick', uuid: '51111111-2222-4333-8444-555555555555' });
    assert.is(await removal, true);
    await added;
    await reachable('added during a removal');
  } finally {
    await d.close();
  }
});

test('a stop while an attach call is in flight (libvirt busy with the domain): answered at once, the route closed after the call', async () => {
  let release = (): void => undefined;
  const route = new RecordingRoute();
  route.hold = new Promise<void>((r) => (release = r));
  const { daemon: d, hook } = await otherDaemon('inflight', { routeFor: () => route });
  try {
    const xml = domainXml({ name: 'busy', uuid: '81111111-2222-4333-8444-555555555555', metadata: optIn() });
    assert.is((await runHook(hook, ['busy', 'started', 'begin', '-'], xml)).status, 0);
    await waitUntil('the attach call', () => route.attaches.length === 1, 5000);
    const t = performance.now();
    assert.is((await runHook(hook, ['busy', 'stopped', 'end', '-'], xml)).status, 0);
    assert.is((await runHook(hook, ['busy', 'started', 'begin', '-'], xml)).status, 0);
    assert.ok(performance.now() - t < 2000, `stop + restart took ${Math.round(performance.now() - t)} ms with a call in flight`);
    assert.is(route.closed, false, 'not closed under the call in flight');
    release();
    await waitUntil('closed after the call', () => route.closed, 5000);
  } finally {
    release();
    await d.close();
  }
});

test('a daemon without a hot-plug route: a domain that requires the device does not start; one that does not is told', async () => {
  const { daemon: d, hook } = await otherDaemon('noroute', {});
  try {
    const required = domainXml({ name: 'need', uuid: '61111111-2222-4333-8444-555555555555', metadata: optIn('enabled="yes" required="yes"') });
    const prep = await runHook(hook, ['need', 'prepare', 'begin', '-'], required);
    assert.is(prep.status, 1);
    assert.match(prep.stderr, /cannot hot-plug devices \(it was started without --libvirt\).*refusing to start it/);
    const started = await runHook(hook, ['need', 'started', 'begin', '-'], required);
    assert.is(started.status, 1);
    const optional = await runHook(hook, ['opt', 'started', 'begin', '-'], domainXml({ name: 'opt', uuid: '71111111-2222-4333-8444-555555555555', metadata: optIn() }));
    assert.is(optional.status, 0);
    assert.match(optional.stderr, /cannot hot-plug devices.*the offload device is not attached \(not required: the domain goes on\)/);
  } finally {
    await d.close();
  }
});

test('the hook log file has a line per event it acted on and failed', () => {
  const text = readFileSync(logFile, 'utf8');
  assert.match(text, /domain "bad" started begin: cannot read the domain XML/);
});

test('the control socket refuses a bad attach request shape', async () => {
  assert.is((await control(daemon.controlPath, { cmd: 'add-vm', name: 'x1', uuid: UUID, attach: 'yes' })).ok, false);
  for (const owner of [0, 'root', { uid: -1 }, { uid: 1.5 }, { uid: 0, gid: 2 ** 32 }, { uid: 0, user: 'x' }, [0]]) {
    const r = await control(daemon.controlPath, { cmd: 'add-vm', name: 'x1', uuid: UUID, owner });
    assert.is(r.ok, false, JSON.stringify(owner));
    assert.match(String(r.error), /^add-vm: "owner/);
  }
  assert.is((await control(daemon.controlPath, { cmd: 'add-vm', name: 'x1', uuid: UUID, attach: true, port: '../x' })).ok, false);
  assert.is(vm('x1'), undefined);
  assert.equal((await control(daemon.controlPath, { cmd: 'ping' })).ok, true);
});

test.run();
