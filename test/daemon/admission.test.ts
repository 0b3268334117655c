// The daemon's own bounds on what guests may start: a request rate per VM and an upload budget
// shared by all VMs (lib/daemon/admission.ts). Refusals are ERROR busy, before the request is
// in flight: no audit record, and the guest may try again.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RequestRate, UploadBudget } from '../../lib/daemon/admission.js';
import { startDaemon, type Daemon } from '../../lib/daemon/index.js';
import { encodeCancel, encodeFrame, encodeRequest, FrameType, HostSession, type RunRequest } from '../../lib/protocol/index.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';
import { LIMITS } from '../protocol/helpers.js';
import { commitPolicy, Guest } from './helpers.js';

test('RequestRate: a burst, then one token per 1/rate seconds', () => {
  let now = 0;
  const rate = new RequestRate(10, 3, () => now);
  assert.equal([rate.take(), rate.take(), rate.take(), rate.take()], [true, true, true, false]);
  now += 100; // one token
  assert.equal([rate.take(), rate.take()], [true, false]);
  now += 10_000; // refills to the burst, not beyond
  assert.equal([rate.take(), rate.take(), rate.take(), rate.take()], [true, true, true, false]);
  assert.throws(() => new RequestRate(0, 1), /must be positive/);
});

test('UploadBudget: reserve up to the limit, release gives it back', () => {
  const b = new UploadBudget(1000);
  assert.ok(b.tryReserve(600));
  assert.not.ok(b.tryReserve(500));
  assert.ok(b.tryReserve(400));
  b.release(600);
  assert.is(b.reserved, 400);
  assert.ok(b.tryReserve(600));
});

test('HostSession asks admit() last, only for a request every protocol check passed; a refusal is ERROR busy, not in flight', () => {
  const asked: RunRequest[] = [];
  const session = new HostSession({ limits: LIMITS, admit: (r) => (asked.push(r), r.argv[0] === 'no' ? 'over the rate' : undefined) });
  session.onMessage({ type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1], nonce: 'abcdefgh' } });
  const refused = session.onMessage({ type: 'REQUEST', requestId: 1, body: { argv: ['no'], env: {}, upload: 10 } });
  assert.equal(refused.map((a) => (a.type === 'send' && a.message.type === 'ERROR' ? `${a.message.body.code}: ${a.message.body.message}` : a.type)), ['busy: over the rate']);
  assert.is(session.inFlight, 0);
  session.onMessage({ type: 'REQUEST', requestId: 2, body: { argv: [], env: {}, upload: LIMITS.maxUpload + 1 } });
  assert.is(asked.length, 1, 'a request the protocol refuses (too-large) is not offered');
  const ok = session.onMessage({ type: 'REQUEST', requestId: 3, body: { argv: [], env: {}, upload: 10 } });
  assert.equal(ok.map((a) => a.type), ['begin']);
});

requireTool('git', 'git');
requireTool('bwrap', 'bubblewrap');
const scratch = scratchDir('vo-admission-');
const repo = join(scratch.dir, 'policy');
const auditPath = join(scratch.dir, 'audit.jsonl');
let daemon: Daemon;
const M = `sha256:${'cd'.repeat(32)}`;

test.before(async () => {
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'other.policy': `binary other\nvms all\nversion 1 approved sha256:${'ab'.repeat(32)}\n` }, 'a policy');
  daemon = await startDaemon({
    runDir: join(scratch.dir, 'run'),
    policyRepo: repo,
    storeDir: join(scratch.dir, 'store'),
    auditLog: auditPath,
    sandbox: 'bwrap',
    limits: { maxUpload: 1000, maxConcurrent: 4 },
    uploadBudget: 1000,
    // One request in 5 s after a burst of 5: the 8 sequential submits below cannot earn a
    // token back however slowly this machine runs them. 1 s of upload idleness: a steady
    // sender 300 ms apart stays far inside it even when a busy host delays a timer.
    bounds: { maxRequestsPerSecond: 0.2, requestBurst: 5, uploadIdleMs: 1000 },
  });
});
test.after(async () => {
  await daemon?.close();
  scratch.cleanup();
});

const records = () => readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.event === 'request');

test('a VM over its request rate gets ERROR busy for the excess, with no audit record; another VM is not affected', async () => {
  const a = await Guest.connect(await daemon.addVm({ name: 'vm-a', uuid: '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162' }));
  const b = await Guest.connect(await daemon.addVm({ name: 'vm-b', uuid: '0b9d7c1e-2a3f-4b5c-8d6e-7f8091a2b3c4' }));
  await a.hello();
  await b.hello();
  const before = records().length;
  // Sequential, so maxConcurrent is never what refuses them.
  const finals: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await a.submit({ measurement: M });
    finals.push(r.final.type === 'ERROR' ? `ERROR ${r.final.body.code}` : r.final.type);
  }
  assert.equal(finals.slice(0, 5), ['DENIED', 'DENIED', 'DENIED', 'DENIED', 'DENIED']);
  assert.equal(finals.slice(5), ['ERROR busy', 'ERROR busy', 'ERROR busy'], finals.join(', '));
  assert.is(records().length - before, finals.filter((f) => f === 'DENIED').length, 'one record per admitted request only');
  assert.is((await b.submit({ measurement: M })).final.type, 'DENIED', 'vm-b has its own rate');
  a.close();
  b.close();
});

test('the upload budget is shared by all VMs and charged as bytes arrive: an upload that would overrun it ends with ERROR busy, audited', async () => {
  const a = await Guest.connect(await daemon.addVm({ name: 'vm-c', uuid: '11111111-2222-4333-8444-555555555555' }));
  const b = await Guest.connect(await daemon.addVm({ name: 'vm-d', uuid: '11111111-2222-4333-8444-666666666666' }));
  await a.hello();
  await b.hello();
  // Announced and not sent: holds nothing.
  a.write(encodeRequest(1, { argv: [], env: {}, upload: 1000 }, 4096));
  // vm-d sends 800 of its 900 bytes: they are held.
  b.write(encodeRequest(1, { argv: [], env: {}, upload: 900 }, 4096));
  b.write(encodeFrame(FrameType.DATA, 1, new Uint8Array(800)));
  await new Promise((done) => setTimeout(done, 100));
  // 800 + 300 > 1000: vm-c's bytes would overrun the budget.
  const before = records().length;
  a.write(encodeFrame(FrameType.DATA, 1, new Uint8Array(300)));
  const over = await a.reply(1);
  assert.is(over.final.type, 'ERROR');
  if (over.final.type === 'ERROR') {
    assert.is(over.final.body.code, 'busy');
    assert.match(over.final.body.message, /the host holds 800 bytes of uploads from its VMs \(limit 1000\); try again shortly/);
  }
  const recs = records().slice(before);
  assert.equal(recs.map((r) => [r.vm, r.code]), [['vm-c', 'busy']]);
  // vm-d's upload ends (cancelled): its 800 bytes go back, and vm-c's next upload fits.
  b.write(encodeCancel(1));
  assert.is((await b.reply(1)).final.type, 'ERROR');
  a.write(encodeRequest(2, { argv: [], env: {}, upload: 900 }, 4096));
  a.write(encodeFrame(FrameType.DATA, 2, new Uint8Array(900)));
  a.write(encodeCancel(2));
  const fits = await a.reply(2);
  assert.ok(fits.final.type === 'ERROR' && fits.final.body.code === 'cancelled', JSON.stringify(fits.final));
  a.close();
  b.close();
});

test('an upload that sends nothing for uploadIdleMs ends with ERROR timeout (audited), and its bytes go back to the budget', async () => {
  const a = await Guest.connect(await daemon.addVm({ name: 'vm-e', uuid: '11111111-2222-4333-8444-777777777777' }));
  await a.hello();
  const before = records().length;
  const t0 = Date.now();
  a.write(encodeRequest(1, { argv: [], env: {}, upload: 900 }));
  a.write(encodeFrame(FrameType.DATA, 1, new Uint8Array(500)));
  const stalled = await a.reply(1);
  assert.is(stalled.final.type, 'ERROR');
  if (stalled.final.type === 'ERROR') {
    assert.is(stalled.final.body.code, 'timeout');
    assert.match(stalled.final.body.message, /upload of request 1 stalled: no bytes for 1000 ms \(500 of 900 bytes\)/);
  }
  assert.ok(Date.now() - t0 < 5000, 'long before uploadTimeoutMs');
  assert.equal(records().slice(before).map((r) => r.code), ['timeout']);
  // Its 500 bytes went back: 900 fit in the 1000-byte budget again.
  a.write(encodeRequest(2, { argv: [], env: {}, upload: 900 }));
  a.write(encodeFrame(FrameType.DATA, 2, new Uint8Array(900)));
  a.write(encodeCancel(2));
  const fits = await a.reply(2);
  assert.ok(fits.final.type === 'ERROR' && fits.final.body.code === 'cancelled', JSON.stringify(fits.final));
  // A slow but steady upload is not cut: each DATA frame restarts the wait (6 × 300 ms > 1000 ms).
  a.write(encodeRequest(3, { argv: [], env: {}, upload: 600 }));
  for (let i = 0; i < 6; i++) {
    await new Promise((done) => setTimeout(done, 300));
    a.write(encodeFrame(FrameType.DATA, 3, new Uint8Array(100).fill(0x41 + i)));
  }
  a.write(encodeFrame(FrameType.DATA_END, 3));
  const steady = await a.reply(3);
  assert.is(steady.final.type, 'DENIED', JSON.stringify(steady.final));
  a.close();
});

test.run();
