// The real libvirt stack for tests: the system D-Bus bus, virtlogd, libvirtd and libvirt-dbus
// (activated on demand by the bus), started in that order (research/platform.md) and stopped
// again, plus tiny `type='qemu'` test domains booting the guest of guest-image.ts.
//
// Sharing. Several test files (in one process, one after the other) and several test processes
// (other engineers' runs) may use the stack at once, so:
// - a component that already runs and answers is reused and never stopped by us;
// - what the harness starts is recorded in STATE_DIR/owner.json; every startLibvirt() holds a
//   lease (STATE_DIR/leases/<pid>-<n>); stop() drops the lease, and the last live lease out
//   stops what the harness started (a SIGKILLed test leaves a lease whose pid is dead: ignored);
// - domains defined here are registered (STATE_DIR/domains/<name> = owner pid); the next start
//   destroys and undefines those of dead processes. A domain of that name that the harness did
//   not define is never touched: defineTinyDomain refuses the name instead.
// All of this happens under one lock (mkdir STATE_DIR/lock), so two processes never start the
// same daemon twice.
//
// Test domains run as libvirt does it for real (QEMU as libvirt-qemu, DAC relabelling): their
// scratch directory is mode 0711 so QEMU can reach sockets in it. The serial console is a unix
// socket the test listens on (libvirt `mode='connect'`), so no output is lost before the test
// attaches; the console speaks the command-loop protocol of testbed/guest/init
// (VO-GUEST-READY, VO-BEGIN/VO-END), as in guest-vm.ts.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureGuestImage, type GuestImage } from '../../testbed/guest-image.js';
import { commandEnd, commandResult, waitForConsoleMatch } from '../../testbed/guest-vm.js';
import { requireTool, waitUntil } from '../../testbed/tools.js';

/** The libvirt connection URI of the stack. */
export const LIBVIRT_URI = 'qemu:///system';
/** The metadata namespace of virt-offload's domain opt-in (hooks/README.md "Domain metadata"). */
export const OFFLOAD_METADATA_NS = 'http://virt-offload.org/xmlns/domain/1.0';

const STATE_DIR = '/run/vo-test-libvirt';
const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';
const DBUS_PID_FILE = '/run/dbus/pid';
const VIRTLOGD_PID_FILE = '/run/virtlogd.pid';
const LIBVIRTD_PID_FILE = '/run/libvirtd.pid';
/** libvirtd's first start probes QEMU (~12 s here, more under load). */
const LIBVIRTD_READY_MS = 90_000;

export interface LibvirtStack {
  uri: string;
  /** D-Bus address of the system bus the stack is on (what DBUS_SYSTEM_BUS_ADDRESS would say). */
  busAddress: string;
  /** Which components this call found running (reused) and which the harness started. */
  reused: { dbus: boolean; virtlogd: boolean; libvirtd: boolean };
  /** Milliseconds startLibvirt() took. */
  startMs: number;
  /** Run virsh against the stack (no shell); stdout; throws with stderr on failure. */
  virsh(args: readonly string[], options?: { input?: string; timeoutMs?: number }): string;
  /** Like virsh() but returns the exit status and both outputs instead of throwing. */
  virshResult(args: readonly string[], options?: { input?: string; timeoutMs?: number }): { status: number; stdout: string; stderr: string };
  /** Define (not start) a tiny test domain; it is destroyed and undefined by stop(). */
  defineTinyDomain(name: string, options?: TinyDomainOptions): Promise<TinyDomain>;
  /** SIGHUP libvirtd (it then discovers newly installed hooks) and wait until it answers. */
  reloadLibvirtd(): Promise<void>;
  /** Undefine this lease's domains, drop the lease; the last lease out stops what the harness started. */
  stop(): Promise<void>;
}

export interface TinyDomainOptions {
  /**
   * Raw XML put inside the domain's `<metadata>` (e.g. offloadMetadata()). It must carry its own
   * namespace declaration.
   */
  metadata?: string;
  /** Give the domain a virtio-serial controller (channels can then be hot-plugged). Default true. */
  withSerialController?: boolean;
  /**
   * Directory for the domain's console socket (and a place for the test's own sockets); it is
   * made mode 0711 so QEMU (user libvirt-qemu) can reach sockets in it. Default: a new
   * directory under /tmp, removed by undefine().
   */
  socketDir?: string;
  /** Default 'pc'. On q35 the harness adds `pcieRootPorts` free root ports (default 2). */
  machine?: 'pc' | 'q35';
  pcieRootPorts?: number;
  /** Default the image's memoryMiB (256). */
  memoryMiB?: number;
  /** More XML inside `<devices>` (e.g. a cold-plugged `<channel>`). */
  extraDevices?: string;
  /** Default ensureGuestImage(). */
  image?: GuestImage;
}

export interface TinyDomain {
  name: string;
  /** Directory (mode 0711) holding the console socket; put the test's sockets here too. */
  dir: string;
  /** The domain XML as defined. */
  xml: string;
  /** `virsh start`, then wait for VO-GUEST-READY on the console (default 60 s). */
  start(options?: { bootTimeoutMs?: number }): Promise<void>;
  /** `virsh destroy` when running; resolves once the domain is shut off. */
  destroy(): Promise<void>;
  /** destroy(), `virsh undefine`, remove the scratch directory (when the harness made it). Idempotent. */
  undefine(): Promise<void>;
  /** `virsh domstate`: 'running', 'shut off', … */
  state(): string;
  /** Console text of the current (or last) boot, "\r" removed. */
  console(): string;
  waitForConsole(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  /** Run a shell script in the guest's console command loop. */
  exec(script: string, timeoutMs?: number): Promise<{ output: string; code: number }>;
}

/** The `<vo:offload …/>` metadata element (hooks/README.md, "Domain metadata"). */
export function offloadMetadata(options: { enabled?: boolean; required?: boolean; port?: string } = {}): string {
  const yesNo = (b: boolean): string => (b ? 'yes' : 'no');
  return (
    `<vo:offload xmlns:vo='${OFFLOAD_METADATA_NS}' enabled='${yesNo(options.enabled ?? true)}' ` +
    `required='${yesNo(options.required ?? false)}' port='${xmlAttr(options.port ?? 'virt-offload.0')}'/>`
  );
}

// ---- the stack -------------------------------------------------------------------------------

interface OwnerRecord {
  /** What the harness started (and so stops when the last lease goes). */
  dbus?: boolean;
  virtlogd?: boolean;
  libvirtd?: boolean;
  /** /dev/kvm's mode and group before the harness changed them. */
  kvm?: { mode: number; gid: number };
}

let leaseCounter = 0;

/** Start (or reuse) dbus-daemon, virtlogd, libvirtd; check libvirt-dbus answers on the bus. */
export async function startLibvirt(): Promise<LibvirtStack> {
  const started = Date.now();
  const tools = {
    dbusDaemon: requireTool('dbus-daemon', 'dbus-daemon'),
    dbusSend: requireTool('dbus-send', 'dbus-bin'),
    virtlogd: requireTool('virtlogd', 'libvirt-daemon-system'),
    libvirtd: requireTool('libvirtd', 'libvirt-daemon'),
    virsh: requireTool('virsh', 'libvirt-clients'),
  };
  if (!existsSync('/usr/sbin/libvirt-dbus')) throw new Error('this test needs libvirt-dbus: install it with `apt-get install libvirt-dbus` (scripts/install-test-deps does)');
  const busAddress = process.env.DBUS_SYSTEM_BUS_ADDRESS ?? `unix:path=${SYSTEM_BUS_SOCKET}`;

  const virshResult: LibvirtStack['virshResult'] = (args, options = {}) => {
    try {
      const stdout = execFileSync(tools.virsh, ['-q', '-c', LIBVIRT_URI, ...args], {
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
        input: options.input,
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 16 << 20,
      });
      return { status: 0, stdout, stderr: '' };
    } catch (err) {
      const e = err as { status?: number | null; stdout?: string; stderr?: string; signal?: string };
      return { status: e.status ?? -1, stdout: e.stdout ?? '', stderr: e.stderr || (e.signal ? `killed by ${e.signal} (timeout)` : String(err)) };
    }
  };
  const virsh: LibvirtStack['virsh'] = (args, options) => {
    const r = virshResult(args, options);
    if (r.status !== 0) throw new Error(`virsh ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
    return r.stdout;
  };
  const libvirtdAnswers = (timeoutMs: number): boolean => virshResult(['list', '--all', '--name'], { timeoutMs }).status === 0;
  const busAnswers = (): boolean =>
    dbusCall(tools.dbusSend, busAddress, ['--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.GetId'], 5_000).ok;

  mkdirSync(join(STATE_DIR, 'leases'), { recursive: true });
  mkdirSync(join(STATE_DIR, 'domains'), { recursive: true });
  const lease = join(STATE_DIR, 'leases', `${process.pid}-${++leaseCounter}`);
  const reused = { dbus: true, virtlogd: true, libvirtd: true };

  await withLock(async () => {
    const owner = readOwner();
    // 1. The system bus (libvirt-dbus lives on it; it must run before libvirtd).
    if (!busAnswers()) {
      if (process.env.DBUS_SYSTEM_BUS_ADDRESS !== undefined) {
        throw new Error(`DBUS_SYSTEM_BUS_ADDRESS=${busAddress} is set but no bus answers there: unset it or start that bus`);
      }
      reused.dbus = false;
      mkdirSync('/run/dbus', { recursive: true });
      removeStalePidFile(DBUS_PID_FILE);
      if (existsSync(SYSTEM_BUS_SOCKET)) rmSync(SYSTEM_BUS_SOCKET, { force: true });
      runTool(tools.dbusDaemon, ['--system', '--fork']);
      await waitUntil('dbus-daemon --system to answer on its socket', busAnswers, 10_000, undefined, 100);
      owner.dbus = true;
    }
    // 2. virtlogd: libvirtd does not start it, and domain starts fail without it.
    if (!pidAlive(readPid(VIRTLOGD_PID_FILE)) || !existsSync('/run/libvirt/virtlogd-sock')) {
      reused.virtlogd = false;
      removeStalePidFile(VIRTLOGD_PID_FILE);
      runTool(tools.virtlogd, ['-d']);
      await waitUntil('virtlogd -d to create /run/libvirt/virtlogd-sock', () => existsSync('/run/libvirt/virtlogd-sock'), 10_000, undefined, 100);
      owner.virtlogd = true;
    }
    // /dev/kvm is 0600 root:root here (no udev): libvirt then finds "KVM was enabled when
    // probing but is not available now" on every capabilities lookup and re-probes QEMU each
    // time (~4 s, ~11 times for one `virsh define`). Give it udev's usual 0660 root:kvm
    // (QEMU's user libvirt-qemu is in group kvm) and restore the original when the last lease goes.
    if (owner.kvm === undefined) {
      const kvm = kvmAccess();
      if (kvm && !kvm.usable) {
        chownSync('/dev/kvm', kvm.uid, kvm.kvmGid);
        chmodSync('/dev/kvm', 0o660);
        owner.kvm = { mode: kvm.mode, gid: kvm.gid };
      }
    }
    // 3. libvirtd: reuse one that answers; otherwise start it (first start probes QEMU).
    if (!(pidAlive(readPid(LIBVIRTD_PID_FILE)) && libvirtdAnswers(20_000))) {
      const stuck = readPid(LIBVIRTD_PID_FILE);
      if (pidAlive(stuck)) throw new Error(`libvirtd (pid ${stuck}) runs but does not answer \`virsh list\` within 20 s: not touching it`);
      reused.libvirtd = false;
      removeStalePidFile(LIBVIRTD_PID_FILE);
      runTool(tools.libvirtd, ['-d']);
      await waitUntil('libvirtd -d to answer `virsh list`', () => libvirtdAnswers(LIBVIRTD_READY_MS), LIBVIRTD_READY_MS, undefined, 100);
      owner.libvirtd = true;
    }
    // libvirtd probes QEMU lazily, on the first call that needs capabilities (a define): do it
    // here, under the lock and with a long timeout, rather than in a test's 30 s virsh call.
    const probe = virshResult(['domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64'], { timeoutMs: LIBVIRTD_READY_MS });
    if (probe.status !== 0) throw new Error(`libvirtd could not probe QEMU (virsh domcapabilities): ${probe.stderr.trim()}`);
    writeOwner(owner);
    writeFileSync(lease, `${process.pid}\n`);
    // Domains a killed test process left behind.
    for (const name of readdirSync(join(STATE_DIR, 'domains'))) {
      const pid = readPid(join(STATE_DIR, 'domains', name));
      if (pidAlive(pid)) continue;
      removeDomain(virshResult, name);
      rmSync(join(STATE_DIR, 'domains', name), { force: true });
    }
  });

  // 4. libvirt-dbus, activated by the bus on this first call.
  const probe = dbusCall(tools.dbusSend, busAddress, ['--dest=org.libvirt', '/org/libvirt/QEMU', 'org.libvirt.Connect.ListDomains', 'uint32:0'], 20_000);
  if (!probe.ok) {
    await release(lease, virshResult);
    throw new Error(`libvirt-dbus did not answer org.libvirt.Connect.ListDomains on ${busAddress}: ${probe.stderr.trim()}`);
  }

  const domains = new Map<string, TinyDomain>();
  let stopping: Promise<void> | undefined;
  const stack: LibvirtStack = {
    uri: LIBVIRT_URI,
    busAddress,
    reused,
    startMs: Date.now() - started,
    virsh,
    virshResult,
    defineTinyDomain: async (name, options = {}) => {
      if (stopping) throw new Error('defineTinyDomain after stop()');
      const domain = await defineDomain(virsh, virshResult, name, options, () => domains.delete(name));
      domains.set(name, domain);
      return domain;
    },
    reloadLibvirtd: async () => {
      const pid = readPid(LIBVIRTD_PID_FILE);
      if (!pidAlive(pid)) throw new Error('libvirtd is not running');
      process.kill(pid!, 'SIGHUP');
      await sleep(300);
      await waitUntil('libvirtd to answer after SIGHUP', () => libvirtdAnswers(10_000), 30_000, undefined, 100);
    },
    stop: () => {
      stopping ??= (async () => {
        for (const d of [...domains.values()]) await d.undefine().catch(() => {});
        await release(lease, virshResult);
      })();
      return stopping;
    },
  };
  installExitHook();
  return stack;
}

/** Drop a lease; when no live lease is left, stop what the harness started. */
async function release(lease: string, virshResult: LibvirtStack['virshResult']): Promise<void> {
  await withLock(async () => {
    rmSync(lease, { force: true });
    const others = readdirSync(join(STATE_DIR, 'leases')).filter((f) => pidAlive(Number(f.split('-')[0])));
    if (others.length > 0) return;
    for (const f of readdirSync(join(STATE_DIR, 'leases'))) rmSync(join(STATE_DIR, 'leases', f), { force: true });
    const owner = readOwner();
    if (owner.libvirtd) {
      // Our libvirtd: domains left by (dead) test processes go first, so no QEMU outlives it.
      for (const name of readdirSync(join(STATE_DIR, 'domains'))) {
        removeDomain(virshResult, name);
        rmSync(join(STATE_DIR, 'domains', name), { force: true });
      }
      await stopDaemon(LIBVIRTD_PID_FILE, 'libvirtd');
      // A libvirtd stopped while probing QEMU leaves the probe (-daemonize'd) behind.
      killProcesses((argv) => argv.includes('-machine') && argv.some((a) => a.startsWith('unix:/var/lib/libvirt/qemu/qmp-')));
      // libvirt-dbus was activated for us: a new libvirtd would leave it without signals.
      if (!owner.dbus) killLibvirtDbus();
    }
    if (owner.virtlogd) await stopDaemon(VIRTLOGD_PID_FILE, 'virtlogd');
    if (owner.dbus) {
      killLibvirtDbus();
      await stopDaemon(DBUS_PID_FILE, 'dbus-daemon');
    }
    if (owner.kvm) {
      chownSync('/dev/kvm', -1, owner.kvm.gid);
      chmodSync('/dev/kvm', owner.kvm.mode);
    }
    writeOwner({});
  });
}

// ---- tiny domains ----------------------------------------------------------------------------

const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

async function defineDomain(
  virsh: LibvirtStack['virsh'],
  virshResult: LibvirtStack['virshResult'],
  name: string,
  options: TinyDomainOptions,
  forget: () => void,
): Promise<TinyDomain> {
  if (!DOMAIN_NAME.test(name)) throw new Error(`test domain name ${JSON.stringify(name)}: letters, digits, '.', '_', '-'`);
  const image = options.image ?? (await ensureGuestImage());
  const registry = join(STATE_DIR, 'domains', name);
  await withLock(async () => {
    if (virshResult(['domstate', name]).status === 0) {
      const owner = readPid(registry);
      if (owner === undefined) throw new Error(`a domain ${name} exists that the test harness did not define: not touching it, pick another name`);
      if (pidAlive(owner) && owner !== process.pid) throw new Error(`test domain ${name} belongs to the running test process ${owner}: pick another name`);
      removeDomain(virshResult, name);
    }
    writeFileSync(registry, `${process.pid}\n`);
  });

  const ownDir = options.socketDir === undefined;
  const dir = options.socketDir ?? mkdtempSync(join(tmpdir(), 'vo-domain-'));
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o711);
  const consoleSocket = join(dir, 'console.sock');
  const xml = tinyDomainXml(name, { ...options, image, consoleSocket });
  const xmlFile = join(dir, 'domain.xml');
  writeFileSync(xmlFile, xml);
  try {
    virsh(['define', xmlFile]);
  } catch (err) {
    rmSync(registry, { force: true });
    if (ownDir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  // The console: we listen, QEMU connects at each start.
  let server: Server | undefined;
  let conn: Socket | undefined;
  let text = '';
  let commands = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  const listen = async (): Promise<void> => {
    if (server) return;
    rmSync(consoleSocket, { force: true });
    const s = createServer((socket) => {
      conn?.destroy();
      conn = socket;
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        text += d.replace(/\r/g, '');
        wake();
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        if (conn === socket) conn = undefined;
        wake();
      });
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(consoleSocket, () => resolve());
    });
    s.unref();
    server = s;
  };
  const closeConsole = async (): Promise<void> => {
    conn?.destroy();
    conn = undefined;
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  const state = (): string => virsh(['domstate', name]).trim();
  const waitForConsole = (pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> =>
    waitForConsoleMatch({
      waiters,
      text: () => text,
      pattern,
      from,
      timeoutMs,
      timedOut: () => new Error(`domain ${name}: console did not show ${pattern} within ${timeoutMs} ms (state: ${safeState()})\nconsole tail:\n${text.slice(-2000)}`),
    });
  const safeState = (): string => virshResult(['domstate', name]).stdout.trim() || 'unknown';

  let undefined_ = false;
  const destroy = async (): Promise<void> => {
    const r = virshResult(['domstate', name]);
    if (r.status === 0 && r.stdout.trim() !== 'shut off') {
      const d = virshResult(['destroy', name]);
      if (d.status !== 0 && !/not running/.test(d.stderr)) throw new Error(`virsh destroy ${name} failed: ${d.stderr.trim()}`);
    }
    await closeConsole();
  };

  const domain: TinyDomain = {
    name,
    dir,
    xml,
    state,
    console: () => text,
    waitForConsole,
    start: async (startOptions = {}) => {
      await listen();
      text = '';
      commands = 0;
      queue = Promise.resolve();
      virsh(['start', name], { timeoutMs: 60_000 });
      try {
        await waitForConsole(/(?:^|\n)VO-GUEST-READY\n/, startOptions.bootTimeoutMs ?? 60_000);
      } catch (err) {
        await destroy().catch(() => {});
        throw err;
      }
    },
    destroy,
    undefine: async () => {
      if (undefined_) return;
      undefined_ = true;
      await destroy().catch(() => {});
      removeDomain(virshResult, name);
      rmSync(registry, { force: true });
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      else rmSync(consoleSocket, { force: true });
      forget();
    },
    exec: (script, timeoutMs = 30_000) => {
      const line = Buffer.from(script).toString('base64');
      if (line.length > 4000) return Promise.reject(new Error(`script too long for the console (${line.length} base64 bytes > 4000)`));
      const result = queue.then(async () => {
        if (!conn) throw new Error(`domain ${name}: no console connection (is it running?)`);
        const n = ++commands;
        const from = text.length;
        conn.write(`${line}\n`);
        const end = await waitForConsole(commandEnd(n), timeoutMs, from);
        return commandResult(text.slice(from), n, end);
      });
      queue = result.catch(() => {});
      return result;
    },
  };
  return domain;
}

/** The XML of a tiny test domain (exported for tests that want to look at or vary it). */
export function tinyDomainXml(name: string, options: TinyDomainOptions & { image: GuestImage; consoleSocket: string }): string {
  const machine = options.machine ?? 'pc';
  const rootPorts = machine === 'q35' ? (options.pcieRootPorts ?? 2) : 0;
  const devices = [
    // pitfall 2: without this libvirt adds a qemu-xhci that takes the first root port on q35.
    `<controller type='usb' model='none'/>`,
    `<memballoon model='none'/>`,
    ...Array.from({ length: rootPorts }, () => `<controller type='pci' model='pcie-root-port'/>`),
    ...(options.withSerialController ?? true ? [`<controller type='virtio-serial' index='0'/>`] : []),
    `<serial type='unix'><source mode='connect' path='${xmlAttr(options.consoleSocket)}'/><target port='0'/></serial>`,
    options.extraDevices ?? '',
  ];
  return [
    // type='qemu' (TCG): /dev/kvm here cannot boot a stock kernel, and type='kvm' re-probes QEMU.
    `<domain type='qemu'>`,
    `  <name>${xmlText(name)}</name>`,
    `  <memory unit='MiB'>${options.memoryMiB ?? options.image.memoryMiB}</memory>`,
    `  <vcpu>1</vcpu>`,
    options.metadata !== undefined ? `  <metadata>${options.metadata}</metadata>` : '',
    `  <os>`,
    `    <type arch='x86_64' machine='${machine}'>hvm</type>`,
    `    <kernel>${xmlText(options.image.kernel)}</kernel>`,
    `    <initrd>${xmlText(options.image.initrd)}</initrd>`,
    `    <cmdline>console=ttyS0 quiet panic=-1</cmdline>`,
    `  </os>`,
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>destroy</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
    ...devices.filter((d) => d !== '').map((d) => `    ${d}`),
    `  </devices>`,
    `</domain>`,
    '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}

/** destroy + undefine, ignoring "not found"/"not running". */
function removeDomain(virshResult: LibvirtStack['virshResult'], name: string): void {
  if (virshResult(['domstate', name]).status !== 0) return;
  virshResult(['destroy', name]);
  const u = virshResult(['undefine', name]);
  if (u.status !== 0 && virshResult(['domstate', name]).status === 0) throw new Error(`virsh undefine ${name} failed: ${u.stderr.trim()}`);
}

// ---- processes, pid files, the lock ------------------------------------------------------------

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie is not alive for our purposes.
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function removeStalePidFile(file: string): void {
  if (existsSync(file) && !pidAlive(readPid(file))) rmSync(file, { force: true });
}

function runTool(cmd: string, args: readonly string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: Buffer; status?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.status}): ${e.stderr?.toString().trim() ?? String(err)}`);
  }
}

function dbusCall(dbusSend: string, address: string, args: readonly string[], timeoutMs: number): { ok: boolean; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(dbusSend, [`--bus=${address}`, '--print-reply', `--reply-timeout=${timeoutMs}`, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs + 2_000,
    });
    return { ok: true, stdout, stderr: '' };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr || String(err) };
  }
}

async function stopDaemon(pidFile: string, what: string): Promise<void> {
  const pid = readPid(pidFile);
  if (!pidAlive(pid)) {
    rmSync(pidFile, { force: true });
    return;
  }
  process.kill(pid!, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(50);
  if (pidAlive(pid)) {
    process.kill(pid!, 'SIGKILL');
    await sleep(100);
  }
  if (pidAlive(pid)) throw new Error(`${what} (pid ${pid}) did not stop`);
  rmSync(pidFile, { force: true });
}

/** libvirt-dbus processes (bus-activated, user libvirtdbus). */
function killLibvirtDbus(): void {
  killProcesses((argv) => argv[0] === '/usr/sbin/libvirt-dbus');
}

/** SIGTERM every process whose argv `match` picks (each one by its pid). */
function killProcesses(match: (argv: string[]) => boolean): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (match(cmdline.split('\0'))) {
      try {
        process.kill(Number(entry), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

/** /dev/kvm's owner, group and mode, and whether the group kvm can read and write it. */
function kvmAccess(): { uid: number; gid: number; mode: number; kvmGid: number; usable: boolean } | undefined {
  let st;
  try {
    st = statSync('/dev/kvm');
  } catch {
    return undefined;
  }
  const group = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === 'kvm');
  if (!group?.[2]) return undefined;
  const kvmGid = Number(group[2]);
  const mode = st.mode & 0o7777;
  const usable = (mode & 0o006) === 0o006 || (st.gid === kvmGid && (mode & 0o060) === 0o060);
  return { uid: st.uid, gid: st.gid, mode, kvmGid, usable };
}

function readOwner(): OwnerRecord {
  try {
    return JSON.parse(readFileSync(join(STATE_DIR, 'owner.json'), 'utf8')) as OwnerRecord;
  } catch {
    return {};
  }
}

function writeOwner(owner: OwnerRecord): void {
  writeFileSync(join(STATE_DIR, 'owner.json'), `${JSON.stringify(owner)}\n`);
}

/** Cross-process lock: mkdir is atomic; a lock whose holder died (or is older than 5 min) is broken. */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = join(STATE_DIR, 'lock');
  mkdirSync(STATE_DIR, { recursive: true });
  const deadline = Date.now() + 240_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), `${process.pid}\n`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readPid(join(lock, 'pid'));
      let age = 0;
      try {
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue;
      }
      // No pid yet and young: the holder is between mkdir and writing its pid.
      if ((holder !== undefined && !pidAlive(holder)) || age > 300_000 || (holder === undefined && age > 5_000)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`the libvirt test harness lock ${lock} is held by pid ${holder} for ${Math.round(age / 1000)} s`);
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}


let exitHookInstalled = false;

/** A test process that exits without stop() leaves its lease to the next start's cleanup. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    try {
      for (const f of readdirSync(join(STATE_DIR, 'leases'))) if (f.startsWith(`${process.pid}-`)) rmSync(join(STATE_DIR, 'leases', f), { force: true });
    } catch {
      // nothing to clean
    }
  });
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function xmlAttr(s: string): string {
  return xmlText(s).replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}
