// `npm run demo`: the main job end to end, with the real parts. In a temporary directory it
// sets up a git policy repository approving one tool, a store, an audit log and the daemon
// (`virt-offload serve`, bubblewrap sandbox); boots the tiny Debian guest under QEMU (TCG,
// built from Debian packages and cached in .cache/guest/) with its offload port wired to the
// daemon; and from inside the guest runs `virt-offload submit` twice: an approved binary (it
// runs on the host, its output comes back) and the same binary with one byte of its code
// changed (refused: measurement, reason, audit line). Everything it started is stopped and the
// directory removed at the end, on failure and on Ctrl-C; QEMU and the daemon are also started
// with a parent-death signal, so not even a SIGKILLed demo leaves them behind.
// Needs what `sudo scripts/install-test-deps` installs (qemu-system-x86, bubblewrap, git,
// busybox-static's archive access through apt, util-linux).
import { copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImage } from '../testbed/guest-image.js';
import { type Guest, liveGuestPids, startGuest } from '../testbed/guest-vm.js';
import { cliPath, commitAll, initPolicyRepo, measureOnHost, readAudit, type ServeProcess, startServe, vo } from '../testbed/offload-host.js';
import { repoRoot, requireTool } from '../testbed/tools.js';

const VM = 'demo-vm';
const VM_UUID = '0d3e3f40-5162-4c2a-9e3b-7d4e589a0c1d';
const started = Date.now();
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const say = (text = ''): void => void process.stdout.write(`${text}\n`);
const indent = (text: string, prefix: string): string =>
  text
    .replace(/\n+$/, '')
    .split('\n')
    .map((l) => `${prefix}${l}`)
    .join('\n');

let work: string | undefined;
let daemon: ServeProcess | undefined;
let guest: Guest | undefined;
/** startGuest() while the guest boots (a Ctrl-C then kills QEMU and waits for its clean-up). */
let booting: Promise<Guest> | undefined;
let tornDown: Promise<void> | undefined;
let interrupted = false;

function teardown(): Promise<void> {
  tornDown ??= (async () => {
    if (guest === undefined && booting !== undefined) {
      for (const pid of liveGuestPids()) process.kill(pid, 'SIGTERM');
      await booting.then((g) => g.stop()).catch(() => {});
    }
    await guest?.stop();
    await daemon?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
    if (guest !== undefined || daemon !== undefined) say('[teardown] guest (QEMU) stopped, daemon stopped, work directory removed');
  })();
  return tornDown;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    say(`\n[${signal}] stopping…`);
    void teardown().finally(() => process.exit(130));
  });
}

/** A command in the guest (its console: stdout and stderr together) and the exit code it printed. */
async function inGuest(script: string): Promise<{ output: string; rc: number }> {
  const r = await guest!.exec(`${script}; echo "VO-DEMO-RC=$?"`, 120_000);
  const m = /^VO-DEMO-RC=(\d+)$/m.exec(r.output);
  if (!m) throw new Error(`the guest printed no exit code:\n${r.output}`);
  return { output: r.output.slice(0, m.index), rc: Number(m[1]) };
}

/** A copy of `src` with one byte flipped in the middle of its largest loaded segment range. */
function tamper(src: string, dest: string): number {
  const explained = JSON.parse(vo(['measure', '--json', '--explain', src])) as { ranges: { start: number; end: number; disposition: string }[] };
  const kept = explained.ranges.filter((r) => r.disposition === 'kept').sort((x, y) => y.end - y.start - (x.end - x.start))[0];
  if (kept === undefined) throw new Error(`${src}: measure --explain lists no kept range`);
  copyFileSync(src, dest);
  const at = kept.start + Math.floor((kept.end - kept.start) / 2);
  const fd = openSync(dest, 'r+');
  writeSync(fd, Buffer.from([readFileSync(src)[at]! ^ 0xff]), 0, 1, at);
  closeSync(fd);
  return at;
}

async function main(): Promise<void> {
  for (const [tool, pkg] of [['qemu-system-x86_64', 'qemu-system-x86'], ['bwrap', 'bubblewrap'], ['git', 'git'], ['setpriv', 'util-linux']] as const) requireTool(tool, pkg);
  const tool = ['/usr/bin/uname', '/bin/uname'].find((p) => {
    try {
      return readFileSync(p).length > 0;
    } catch {
      return false;
    }
  });
  if (tool === undefined) throw new Error('the demo offloads the host\'s uname: /usr/bin/uname not found (apt-get install coreutils)');

  say('virt-offload demo: a VM hands a binary to its host through a virtio-serial port; the host');
  say('measures it and runs it (sandboxed) only if that measurement is approved in a git repository.');
  say();
  work = mkdtempSync(join(tmpdir(), 'virt-offload-demo-'));
  say(`[setup] work directory ${work} (removed at the end)`);

  const repo = join(work, 'policy');
  initPolicyRepo(repo);
  say(`[setup] policy repository ${repo}: approve the host's ${tool} as "uname" version 1 for VM ${VM}`);
  say(`        $ virt-offload policy add ${tool} --name uname --version 1 --vm vm:${VM}`);
  say(indent(vo(['policy', 'add', tool, '--name', 'uname', '--version', '1', '--vm', `vm:${VM}`, '--repo', repo]), '          '));
  const commit = commitAll(repo, 'approve uname 1');
  say(`        $ git commit -m "approve uname 1"   → ${commit.slice(0, 12)}`);

  const auditLog = join(work, 'audit.jsonl');
  daemon = await startServe({ repo, store: join(work, 'store'), auditLog, runDir: join(work, 'run') });
  const socketPath = await daemon.addVm(VM, VM_UUID);
  say(`[setup] daemon: virt-offload serve --repo … --store … --audit-log … (pid ${daemon.pid}, sandbox bubblewrap), policy commit ${(await daemon.policyCommit())?.slice(0, 12)}`);
  say(`        VM ${VM} gets the socket ${socketPath}`);

  say('[setup] tiny guest: Debian kernel + busybox-static + node (built once, cached in .cache/guest/)');
  const imageStart = Date.now();
  const image = await ensureGuestImage({ withNode: true, progress: (step) => say(`        … ${step}`) });
  say(`        ready (${seconds(Date.now() - imageStart)}): kernel ${image.kernelRelease}`);

  const tampered = join(work, 'uname-tampered');
  const flipped = tamper(tool, tampered);
  say(`[boot]  QEMU (TCG) boots the guest with the port virt-offload.0 connected to the daemon…`);
  booting = startGuest({
    image,
    virtioPorts: [{ name: 'virt-offload.0', socketPath, reconnectSeconds: 1 }],
    extraFiles: [
      { path: '/opt/vo/virt-offload.cjs', hostPath: cliPath },
      { path: '/opt/vo/commands/submit.cjs', hostPath: join(repoRoot, 'dist', 'commands', 'submit.cjs') },
      { path: '/root/uname', hostPath: tool, mode: 0o755 },
      { path: '/root/uname-tampered', hostPath: tampered, mode: 0o755 },
    ],
  });
  guest = await booting;
  say(`        booted in ${seconds(guest.bootMs)}`);
  await inGuest('ln -s /opt/vo/virt-offload.cjs /bin/virt-offload');
  const own = (await inGuest('uname -r')).output.trim();
  say(`        guest# uname -r   (busybox, the guest's own kernel)`);
  say(`        ${own}`);
  say();

  say('1. An approved binary. Inside the guest:');
  say('   guest# virt-offload submit ./uname -- -a');
  const ok = await inGuest('cd /root && virt-offload submit ./uname -- -a');
  say(indent(ok.output, '   │ '));
  say(`   exit code ${ok.rc}: uname ran on the HOST (the host's kernel, not ${own}; hostname "sandbox" is bubblewrap's),`);
  say('   and its output came back through the port.');
  say();

  say(`2. A refused binary: the same uname with one byte of its code changed (file offset 0x${flipped.toString(16)}). Inside the guest:`);
  say('   guest# virt-offload submit ./uname-tampered -- -a');
  const no = await inGuest('cd /root && virt-offload submit ./uname-tampered -- -a');
  say(indent(no.output, '   │ '));
  const measured = measureOnHost(tampered);
  const sameMeasurement = no.output.includes(measured);
  say(`   exit code ${no.rc} (77 = denied by the policy): the host never ran it.`);
  say(`   On the host, \`virt-offload measure\` of that file: ${measured} (${sameMeasurement ? 'the measurement the guest was told' : 'DIFFERENT from what the guest was told'})`);
  say('   The audit log has one record per decision, flushed before the reply; the refusal:');
  const denial = readAudit(auditLog).filter((r) => r.event === 'request').at(-1);
  say(`   ${JSON.stringify(denial)}`);
  say();

  const good = ok.rc === 0 && /sandbox/.test(ok.output) && no.rc === 77 && sameMeasurement && denial?.decision === 'deny';
  await teardown();
  say(good ? `demo: done in ${seconds(Date.now() - started)}` : 'demo: something did NOT go as described above');
  process.exitCode = good ? 0 : 1;
}

main().catch(async (err: unknown) => {
  if (interrupted) return; // the signal handler tears down and exits
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  if (daemon !== undefined && daemon.otherStderr.length > 0) process.stderr.write(`daemon stderr:\n${daemon.otherStderr.join('\n')}\n`);
  await teardown();
  process.exitCode = 1;
});
