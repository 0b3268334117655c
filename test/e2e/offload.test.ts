// The whole offload flow with a real guest: a git policy repository edited with the CLI
// (`policy add`, `policy revoke`, `policy update --patch` with an xdelta3 VCDIFF, commits),
// a real `virt-offload serve` (store, audit log, bubblewrap), and the tiny guest with node
// under QEMU/TCG whose port virt-offload.0 is the daemon's socket for VM guest-a (QEMU connects
// to it at start and reconnects every second). From inside the guest, with the shipped
// `virt-offload submit` (node) and examples/busybox-submit.sh:
//  - an approved binary runs: stdout, stderr and the exit code come back;
//  - an unapproved one is denied (exit 77) with the measurement `virt-offload measure` gives;
//  - a version revoked by a commit stops running once the daemon has loaded that commit
//    (HEAD watch; the test polls the control socket's status), and leaves the store;
//  - an update approved as a VCDIFF patch is built by the daemon from the installed old version
//    and the delta (--patch-dir), the old version leaves the store, and the new one runs by
//    measurement (nothing uploaded);
//  - every request has exactly one audit record with vm, measurement, decision, policy commit
//    and exit code.
// Needs gcc, git, xdelta3, bubblewrap, util-linux and what test/e2e/guest-boot.test.ts needs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureGuestImage } from '../../testbed/guest-image.js';
import { type Guest, startGuest } from '../../testbed/guest-vm.js';
import {
  buildC,
  cliPath,
  commitAll,
  initPolicyRepo,
  measureOnHost,
  readAudit,
  type ServeProcess,
  startServe,
  storeList,
  vo,
  waitUntil,
} from '../../testbed/offload-host.js';
import { repoRoot, requireTool, scratchDir, vcdiffDelta } from '../../testbed/tools.js';

const HELLO_C = `#include <stdio.h>
int main(int argc, char **argv) {
  printf("hello %s from the host:", VERSION);
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  printf("\\n");
  fprintf(stderr, "hello-%s: this line went to stderr\\n", VERSION);
  return 3;
}
`;
const GREET_C = `#include <stdio.h>
int main(void) { puts("greetings from the host"); return 0; }
`;
const STRANGER_C = `#include <stdio.h>
int main(void) { puts("nobody approved me"); return 0; }
`;

const VM = 'guest-a';
const VM_UUID = '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';
const scratch = scratchDir('vo-e2e-');
const dir = scratch.dir;
const repo = join(dir, 'policy');
const store = join(dir, 'store');
const auditLog = join(dir, 'audit.jsonl');
const tools = join(dir, 'tools');
let daemon: ServeProcess | undefined;
let guest: Guest | undefined;
const m: Record<'hello1' | 'hello2' | 'greet' | 'stranger', string> = { hello1: '', hello2: '', greet: '', stranger: '' };
/** What each request this file makes should have left in the audit log, in order. */
const expected: Array<{ decision: string; measurement: string; commit: string; exitCode?: number; code?: string }> = [];
let commit1 = '';

/** A command in the guest; its console output and the `rc=` it printed. */
async function inGuest(script: string): Promise<{ output: string; rc: number }> {
  const r = await guest!.exec(`${script}; echo "rc=$?"`, 90_000);
  const rc = /^rc=(\d+)$/m.exec(r.output);
  if (!rc) throw new Error(`no rc= in the guest's output:\n${r.output}`);
  return { output: r.output, rc: Number(rc[1]) };
}
const nodeSubmit = (args: string): Promise<{ output: string; rc: number }> => inGuest(`node /opt/vo/virt-offload.cjs submit ${args}`);
const shellSubmit = (args: string): Promise<{ output: string; rc: number }> => inGuest(`sh /opt/vo/vo-run ${args}`);

test.before(async () => {
  requireTool('xdelta3', 'xdelta3');
  mkdirSync(tools);
  buildC(join(tools, 'hello-1'), HELLO_C, { VERSION: '"1"' });
  buildC(join(tools, 'hello-2'), HELLO_C, { VERSION: '"2"' });
  buildC(join(tools, 'greet'), GREET_C);
  buildC(join(tools, 'stranger'), STRANGER_C);
  m.hello1 = measureOnHost(join(tools, 'hello-1'));
  m.hello2 = measureOnHost(join(tools, 'hello-2'));
  m.greet = measureOnHost(join(tools, 'greet'));
  m.stranger = measureOnHost(join(tools, 'stranger'));

  initPolicyRepo(repo);
  vo(['policy', 'add', join(tools, 'hello-1'), '--name', 'hello', '--version', '1', '--vm', 'all', '--repo', repo]);
  vo(['policy', 'add', join(tools, 'greet'), '--name', 'greet', '--version', '1', '--vm', `vm:${VM}`, '--repo', repo]);
  commit1 = commitAll(repo, 'approve hello 1 and greet 1');

  daemon = await startServe({ repo, store, auditLog, runDir: join(dir, 'run'), patchDir: join(repo, 'patches') });
  assert.is(await daemon.policyCommit(), commit1);
  const socketPath = await daemon.addVm(VM, VM_UUID);

  const image = await ensureGuestImage({ withNode: true });
  guest = await startGuest({
    image,
    virtioPorts: [{ name: 'virt-offload.0', socketPath, reconnectSeconds: 1 }],
    extraFiles: [
      // The shipped bundles: the entry point loads ./commands/submit.cjs next to it.
      { path: '/opt/vo/virt-offload.cjs', hostPath: cliPath },
      { path: '/opt/vo/commands/submit.cjs', hostPath: join(repoRoot, 'dist', 'commands', 'submit.cjs') },
      { path: '/opt/vo/vo-run', hostPath: join(repoRoot, 'examples', 'busybox-submit.sh'), mode: 0o755 },
      ...['hello-1', 'greet', 'stranger'].map((t) => ({ path: `/opt/vo/${t}`, hostPath: join(tools, t), mode: 0o755 })),
    ],
  });
});

test.after(async () => {
  await guest?.stop();
  await daemon?.stop();
  scratch.cleanup();
});

test('an approved binary runs on the host: stdout, stderr and the exit code come back (TS client and busybox client)', async () => {
  const r = await nodeSubmit("/opt/vo/hello-1 -- a 'b c'");
  assert.match(r.output, /^hello 1 from the host: a b c$/m, r.output);
  assert.match(r.output, /^hello-1: this line went to stderr$/m);
  assert.is(r.rc, 3, r.output);
  expected.push({ decision: 'allow', measurement: m.hello1, commit: commit1, exitCode: 3 });
  // Installed by that upload: the busybox client runs it by measurement, uploading nothing.
  assert.ok(storeList(store).some((o) => o.measurement === m.hello1 && o.version === '1'));
  const s = await shellSubmit(`--measurement ${m.hello1} again`);
  assert.match(s.output, /^hello 1 from the host: again$/m, s.output);
  assert.is(s.rc, 3);
  expected.push({ decision: 'allow', measurement: m.hello1, commit: commit1, exitCode: 3 });
});

test('an unapproved binary is denied with its measurement (the one `virt-offload measure` prints) and exit code 77', async () => {
  const r = await nodeSubmit('/opt/vo/stranger');
  assert.is(r.rc, 77, r.output);
  assert.match(r.output, /denied \(unknown-measurement\)/);
  assert.match(r.output, new RegExp(`measurement: ${m.stranger}$`, 'm'));
  assert.not.match(r.output, /nobody approved me/);
  expected.push({ decision: 'deny', measurement: m.stranger, commit: commit1, code: 'unknown-measurement' });
  assert.not.ok(storeList(store).some((o) => o.measurement === m.stranger), 'a denied upload is not installed');
});

test('a version revoked by a policy commit stops running once the daemon loaded that commit', async () => {
  const before = await shellSubmit('/opt/vo/greet');
  assert.match(before.output, /^greetings from the host$/m, before.output);
  assert.is(before.rc, 0);
  expected.push({ decision: 'allow', measurement: m.greet, commit: commit1, exitCode: 0 });
  assert.ok(storeList(store).some((o) => o.measurement === m.greet));

  vo(['policy', 'revoke', 'greet', '--version', '1', '--reason', 'greets too loudly (test)', '--repo', repo]);
  const commit2 = commitAll(repo, 'revoke greet 1');
  // The daemon watches HEAD: wait until it decides with the new commit, then for the store.
  await daemon!.waitForCommit(commit2);
  await waitUntil('greet to leave the store', () => !storeList(store).some((o) => o.measurement === m.greet));
  const after = await shellSubmit('/opt/vo/greet');
  assert.is(after.rc, 77, after.output);
  assert.match(after.output, /"code":"revoked"/);
  assert.match(after.output, /greets too loudly/);
  assert.ok(after.output.includes(m.greet));
  assert.not.match(after.output, /^greetings from the host$/m);
  expected.push({ decision: 'deny', measurement: m.greet, commit: commit2, code: 'revoked' });
});

test('an update approved as a VCDIFF patch is built and installed by the daemon; the old version leaves the store; the new one runs', async () => {
  // Deltas for the host are made between canonical images (what its store holds).
  const canon1 = join(dir, 'hello-1.canonical');
  const canon2 = join(dir, 'hello-2.canonical');
  vo(['measure', '--canonical', canon1, join(tools, 'hello-1')]);
  vo(['measure', '--canonical', canon2, join(tools, 'hello-2')]);
  mkdirSync(join(repo, 'patches'));
  const delta = join(repo, 'patches', 'hello-1-to-2.vcdiff');
  vcdiffDelta(canon1, canon2, delta);
  const updated = JSON.parse(vo(['policy', 'update', 'hello', '--version', '2', '--patch', delta, '--from', '1', '--base', canon1, '--repo', repo, '--json'])) as Record<string, unknown>;
  assert.is(updated.measurement, m.hello2, JSON.stringify(updated));
  const commit3 = commitAll(repo, 'update hello to 2 (VCDIFF against 1)');
  await daemon!.waitForCommit(commit3);
  await waitUntil('hello 2 in the store and hello 1 gone', () => {
    const now = storeList(store);
    return now.some((o) => o.measurement === m.hello2 && o.version === '2') && !now.some((o) => o.measurement === m.hello1);
  }, 15_000, () => JSON.stringify(storeList(store)));
  const changes = readAudit(auditLog).filter((r) => r.event === 'store' && r.commit === commit3);
  assert.equal(changes.map((r) => [r.action, r.measurement, r.version]), [
    ['install', m.hello2, '2'],
    ['uninstall', m.hello1, '1'],
  ]);
  // Its log comes through a pipe this process reads between its turns, and the store checks
  // above block those turns (storeList runs the CLI synchronously): awaited, not asserted at once.
  await waitUntil('the daemon to say which delta it used', () => daemon!.logs.some((l) => typeof l.message === 'string' && l.message.includes('hello-1-to-2.vcdiff')), 10_000, () =>
    daemon!.logs.map((l) => String(l.message)).slice(-10).join('\n'),
  );

  // The guest never had hello 2: it runs it by measurement. The old version is refused.
  const r = await nodeSubmit(`--measurement ${m.hello2} -- x`);
  assert.match(r.output, /^hello 2 from the host: x$/m, r.output);
  assert.is(r.rc, 3);
  expected.push({ decision: 'allow', measurement: m.hello2, commit: commit3, exitCode: 3 });
  const old = await shellSubmit('/opt/vo/hello-1');
  assert.is(old.rc, 77, old.output);
  assert.match(old.output, /"code":"superseded"/);
  expected.push({ decision: 'deny', measurement: m.hello1, commit: commit3, code: 'superseded' });
});

test('every request has exactly one audit record: vm, measurement, decision, policy commit, exit code', async () => {
  const requests = readAudit(auditLog).filter((r) => r.event === 'request');
  assert.is(requests.length, expected.length, JSON.stringify(requests, null, 1));
  requests.forEach((r, i) => {
    const e = expected[i]!;
    const what = `record ${i}: ${JSON.stringify(r)}`;
    assert.is(r.vm, VM, what);
    assert.is(r.uuid, VM_UUID, what);
    assert.is(r.measurement, e.measurement, what);
    assert.is(r.decision, e.decision, what);
    assert.is(r.commit, e.commit, what);
    if (e.exitCode !== undefined) assert.is(r.exitCode, e.exitCode, what);
    if (e.code !== undefined) assert.is(r.code, e.code, what);
    assert.type(r.time, 'string', what);
    assert.type(r.durationMs, 'number', what);
  });
  assert.ok(daemon!.running(), 'the daemon is still up');
  assert.equal(daemon!.logs.filter((l) => l.level === 'error'), [], 'no error in the daemon log');
});

test.run();
