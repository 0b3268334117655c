// The libvirt path end to end, all real: the hook installed into the real /etc/libvirt/hooks
// (libvirtd SIGHUPed so it sees it), `virt-offload serve --libvirt` run as a process, a tiny
// `type='qemu'` domain with our metadata started with virsh: the port appears in the guest with
// no manual step; destroying it makes the daemon drop the VM and its socket; a domain without
// the metadata is untouched. The hook is removed (or the previous file put back) at the end.
// Needs what test/helpers/libvirt.ts needs (libvirt-daemon-system, libvirt-dbus, dbus).
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { measureFile } from '../../lib/io/index.js';
import { commitPolicy, control } from '../daemon/helpers.js';
import { offloadMetadata, startLibvirt, type LibvirtStack, type TinyDomain } from '../helpers/libvirt.js';
import { repoRoot, run, scratchDir, waitUntil } from '../../testbed/tools.js';

const HOOKS_DIR = '/etc/libvirt/hooks';
const HOOK_FILE = join(HOOKS_DIR, 'qemu.d', 'virt-offload');
const CLI = join(repoRoot, 'dist/virt-offload.cjs');
const scratch = scratchDir('vo-lvhook-');
// QEMU runs as libvirt-qemu: it must reach the daemon's VM sockets under the run dir.
chmodSync(scratch.dir, 0o711);
const runDir = join(scratch.dir, 'run');
const controlPath = join(runDir, 'control.sock');
const hookLog = join(scratch.dir, 'hook.log');
const tag = `${process.pid}`;
const ON = `vo-hook-on-${tag}`;
/** A program the guest submits: a script the policy approves for ON only. */
const HI = '#!/bin/sh\necho "hi from the host: $1"\n';

let stack: LibvirtStack;
let serve: ChildProcess | undefined;
const serveLog: string[] = [];
let previousHook: Buffer | undefined;
let dropInExisted = true;

type VmInfo = { name: string; socket: string; connected: boolean; device?: { state: string; attempts: number; error?: string; attachMs?: number } };
async function vms(): Promise<VmInfo[]> {
  const reply = await control(controlPath, { cmd: 'status' });
  return reply.vms as VmInfo[];
}

test.before(async () => {
  stack = await startLibvirt();
  // The hook, as an operator installs it (keep a foreign or older copy to put back).
  dropInExisted = existsSync(join(HOOKS_DIR, 'qemu.d'));
  if (existsSync(HOOK_FILE)) previousHook = readFileSync(HOOK_FILE);
  const installed = JSON.parse(run(process.execPath, [CLI, 'hook', 'install', '--run-dir', runDir, '--log-file', hookLog, '--json'])) as Record<string, unknown>;
  assert.is(installed.path, HOOK_FILE);
  // Whether or not libvirtd saw a hook at its start (it may be shared with other tests): reload.
  await stack.reloadLibvirtd();

  const repo = join(scratch.dir, 'policy');
  mkdirSync(join(repo, 'binaries'), { recursive: true });
  run('git', ['init', '-q', repo]);
  writeFileSync(join(scratch.dir, 'hi'), HI);
  const hi = (await measureFile(join(scratch.dir, 'hi'))).measurement;
  commitPolicy(repo, { 'binaries/hi.policy': `binary hi\ninterpreter /bin/sh\nvms vm:${ON}\nversion 1 approved ${hi}\n` }, 'approve hi for the hook test domain');
  policyRepo = repo;
  await startServe();
});

let policyRepo = '';
async function startServe(): Promise<void> {
  serve = spawn(
    process.execPath,
    [CLI, 'serve', '--libvirt', '--repo', policyRepo, '--run-dir', runDir, '--store', join(scratch.dir, 'store'), '--audit-log', join(scratch.dir, 'audit.jsonl'), '--log-level', 'debug', '--watch-interval', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: stack.busAddress } },
  );
  serve.stderr!.setEncoding('utf8');
  serve.stderr!.on('data', (d: string) => serveLog.push(d));
  await waitUntil('the daemon control socket', () => existsSync(controlPath), 20_000);
}

async function stopServe(): Promise<void> {
  const exited = new Promise((done) => serve!.once('exit', done));
  serve!.kill('SIGTERM');
  await exited;
}

const submitHi = (arg: string) => domain.exec(`sh /opt/vo/vo-run /opt/vo/hi ${arg}; echo "rc=$?"`, 30_000);

test.after(async () => {
  serve?.kill('SIGTERM');
  if (previousHook !== undefined) writeFileSync(HOOK_FILE, previousHook, { mode: 0o755 });
  else run(process.execPath, [CLI, 'hook', 'uninstall']);
  if (!dropInExisted) rmdirSync(join(HOOKS_DIR, 'qemu.d'));
  await stack?.stop();
  scratch.cleanup();
});

let domain: TinyDomain;

test('a domain with our metadata: started with virsh, the port appears in the guest with no manual step', async () => {
  // required="yes": prepare begin pings the daemon (it answers, so the start goes on).
  domain = await stack.defineTinyDomain(ON, { metadata: offloadMetadata({ required: true }) });
  const started = Date.now();
  await domain.start();
  const bootMs = Date.now() - started;
  let info: VmInfo | undefined;
  // 60 s: the attach retries (250 ms … 4 s apart) behind libvirt calls of up to 10 s each.
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    info = (await vms()).find((v) => v.name === domain.name);
    if (info?.device?.state === 'attached' || info?.device?.state === 'failed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(info, `the hook added the VM (hook log: ${existsSync(hookLog) ? readFileSync(hookLog, 'utf8') : 'none'}; daemon: ${serveLog.join('').slice(-2000)})`);
  assert.is(info!.device?.state, 'attached', `device: ${JSON.stringify(info!.device)}; daemon: ${serveLog.join('').slice(-2000)}`);
  // In the guest: the port by name, bound to virtio_console.
  const r = await domain.exec(
    ['p=$(vo-port virt-offload.0) || exit 3', 'echo "device: $p"', 'd=$(basename "$p")', 'echo "driver: $(basename "$(readlink /sys/class/virtio-ports/$d/device/driver)")"'].join('\n'),
    20_000,
  );
  assert.is(r.code, 0, r.output);
  assert.match(r.output, /^device: \/dev\/vport\d+p\d+$/m);
  assert.match(r.output, /^driver: virtio_ports$|^driver: virtio_console$/m);
  const connected = (await vms()).find((v) => v.name === domain.name);
  assert.ok(connected?.connected, 'QEMU is connected to the VM socket');
  console.log(`  libvirt-hook: boot ${bootMs} ms, attach ${info!.device?.attachMs} ms after the hook's request (${info!.device?.attempts} attempt(s))`);
});

test('a submit round trip through the hot-plugged port (busybox client in the guest)', async () => {
  // Copy the client and the program in over the console, in chunks (a tty line holds 4 KiB).
  const payload = Buffer.from(`${readFileSync(join(repoRoot, 'examples', 'busybox-submit.sh'), 'utf8')}`).toString('base64');
  const prog = Buffer.from(HI).toString('base64');
  assert.is((await domain.exec('mkdir -p /opt/vo && : > /opt/vo/vo-run.b64')).code, 0);
  for (let at = 0; at < payload.length; at += 2000) {
    const r = await domain.exec(`echo '${payload.slice(at, at + 2000)}' >> /opt/vo/vo-run.b64`);
    assert.is(r.code, 0, r.output);
  }
  const r = await domain.exec(
    [`base64 -d /opt/vo/vo-run.b64 > /opt/vo/vo-run`, `echo '${prog}' | base64 -d > /opt/vo/hi`, 'chmod 755 /opt/vo/hi', 'sh /opt/vo/vo-run /opt/vo/hi there; echo "rc=$?"'].join('\n'),
    30_000,
  );
  assert.match(r.output, /^hi from the host: there$/m, r.output);
  assert.match(r.output, /^rc=0$/m, r.output);
});

test('a daemon restart while the domain runs: serve --libvirt adopts it, re-attaches the port on the new socket, submit works again', async () => {
  await stopServe();
  serveLog.length = 0;
  await startServe();
  let info: VmInfo | undefined;
  await waitUntil(
    'the running domain adopted',
    async () => {
      info = (await vms().catch(() => [] as VmInfo[])).find((v) => v.name === domain.name);
      return info?.device?.state === 'attached' && info.connected === true;
    },
    // A detach (up to 10 s for libvirt) and the attach retries, on a cold machine.
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(info)}; daemon: ${serveLog.join('').slice(-3000)}`);
  });
  assert.match(serveLog.join(''), new RegExp(`VM ${domain.name}: running domain with virt-offload metadata adopted at start`));
  assert.match(serveLog.join(''), /found attached; detaching and attaching it again for the new socket/);
  const r = await submitHi('again');
  assert.match(r.output, /^hi from the host: again$/m, r.output);
  assert.match(r.output, /^rc=0$/m, r.output);
});

test('destroy: the daemon removed the VM and its socket', async () => {
  const socket = (await vms()).find((v) => v.name === domain.name)!.socket;
  assert.ok(existsSync(socket));
  await domain.destroy();
  await waitUntil('the VM is gone from the daemon', () => !existsSync(socket), 10_000);
  assert.is((await vms()).find((v) => v.name === domain.name), undefined);
  await domain.undefine();
});

test('a domain without the metadata is untouched', async () => {
  const plain = await stack.defineTinyDomain(`vo-hook-off-${tag}`);
  await plain.start();
  await new Promise((r) => setTimeout(r, 500));
  assert.is((await vms()).find((v) => v.name === plain.name), undefined, 'no add-vm');
  const xml = stack.virsh(['dumpxml', plain.name]);
  assert.not.match(xml, /virt-offload/, 'no channel was added');
  await plain.destroy();
  await plain.undefine();
  const log = existsSync(hookLog) ? readFileSync(hookLog, 'utf8') : '';
  assert.not.match(log, new RegExp(plain.name), 'the hook had nothing to say about it');
});

test('daemon down: a domain with required="yes" does not start (prepare begin fails), one with required="no" does', async () => {
  await stopServe();
  assert.not.ok(existsSync(controlPath));
  const required = await stack.defineTinyDomain(`vo-hook-req-${tag}`, { metadata: offloadMetadata({ required: true }) });
  const r = stack.virshResult(['start', required.name]);
  assert.is.not(r.status, 0, 'the start was refused');
  assert.match(r.stderr, /Hook script execution failed/);
  assert.match(r.stderr, /required="yes"\): refusing to start it/);
  assert.is(required.state(), 'shut off');
  await required.undefine();
  const optional = await stack.defineTinyDomain(`vo-hook-opt-${tag}`, { metadata: offloadMetadata({ required: false }) });
  await optional.start();
  assert.is(optional.state(), 'running');
  assert.match(readFileSync(hookLog, 'utf8'), new RegExp(`domain "${optional.name}" started begin: the virt-offload daemon is not running`));
  await optional.undefine();
});

test.run();
