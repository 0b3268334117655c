// Start the tiny test guest (testbed/guest-image.ts) under QEMU/TCG, with virtio-serial
// ports whose chardevs are unix sockets, read its console, run commands in it, and stop it.
// QEMU always dies with the test: stop() kills it (SIGTERM, then SIGKILL), a failed boot kills
// it, a process 'exit' handler kills what is left, and it is started through
// `setpriv --pdeathsig KILL` so that even a SIGKILLed test process leaves no QEMU behind.
//
// Console protocol (testbed/guest/init): the guest prints VO-GUEST-READY once its virtio
// modules are loaded. With `run` it executes that script and prints VO-GUEST-EXIT <code>, then
// powers off (QEMU exits). Without `run` it serves a command loop on the console: exec(script)
// sends the script as one base64 line, the guest answers VO-BEGIN <n> … VO-END <n> <rc>.
// In the guest, `vo-port NAME` prints the /dev/vportNpM of the port named NAME (waits up to 5 s).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureGuestImage, extraInitrd, type GuestFile, type GuestImage } from './guest-image.js';
import { waitForProbe } from '../lib/io/index.js';
import { requireTool } from './tools.js';

export interface GuestPort {
  /** Port name the guest sees in /sys/class/virtio-ports/*\/name, e.g. virt-offload.0. */
  name: string;
  /** Unix socket of the port's chardev. */
  socketPath: string;
  /** QEMU listens on socketPath (true) or connects to a listener already there (false, default). */
  server?: boolean;
  /**
   * Client ports only: QEMU retries the connection every this many seconds (chardev
   * `reconnect`), so the listener may start later or restart. Default: connect once, at start
   * (QEMU refuses to start when nobody listens).
   */
  reconnectSeconds?: number;
}

export interface StartGuestOptions {
  /** Default: ensureGuestImage() (no node). */
  image?: GuestImage;
  virtioPorts?: readonly GuestPort[];
  /**
   * Add a `virtio-serial-pci` controller (id `vser0`, bus `vser0.0`) even without ports, so a
   * hot-plug test can plug ports onto it. Implied by virtioPorts.
   */
  virtioSerial?: boolean;
  /** Path where QEMU listens for QMP (server=on,wait=off). */
  qmpSocket?: string;
  /** Default 'pc' (hot-plug straight onto pci.0). On q35 only free root ports take hot-plugs. */
  machine?: 'pc' | 'q35';
  /**
   * q35 only: this many empty `pcie-root-port`s (ids rp1…rpN, on pcie.0) for hot-plugging,
   * since pcie.0 itself refuses hot-plug.
   */
  pcieRootPorts?: number;
  /** Default image.memoryMiB (256, or 1024 with node). */
  memoryMiB?: number;
  /** Shell script the guest runs instead of the command loop; the guest powers off after it. */
  run?: string;
  /** Files added to the initramfs for this boot (appended as a second cpio archive). */
  extraFiles?: readonly GuestFile[];
  /** More kernel command-line parameters. */
  append?: string;
  /** More QEMU arguments (e.g. `-device pcie-root-port,…`). */
  extraArgs?: readonly string[];
  /** Time allowed until VO-GUEST-READY; default 60 s. QEMU is killed when it passes. */
  bootTimeoutMs?: number;
}

export interface ExecResult {
  /** What the script printed (stdout and stderr: both go to the console), "\n" line ends. */
  output: string;
  code: number;
}

export interface Guest {
  pid: number;
  /** The QMP socket path, when asked for. */
  qmpSocket: string | undefined;
  /** Milliseconds from spawning QEMU to VO-GUEST-READY. */
  bootMs: number;
  /** Console text so far ("\r" removed). */
  console(): string;
  /** QEMU's stderr so far. */
  stderr(): string;
  /**
   * Wait until the console (from character `from`, default 0) matches `pattern`; rejects after
   * `timeoutMs` or when QEMU exits first, with the console's tail in the message.
   */
  waitForConsole(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  /** Run a shell script in the guest's command loop (not with `run`). */
  exec(script: string, timeoutMs?: number): Promise<ExecResult>;
  /** Resolves when QEMU has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kill QEMU (SIGTERM, SIGKILL after 3 s) and remove the temporary files; idempotent. */
  stop(): Promise<void>;
}

/** A boot that did not reach VO-GUEST-READY; QEMU (pid) has been killed when this is thrown. */
export class GuestBootError extends Error {
  constructor(
    message: string,
    readonly pid: number,
    readonly consoleText: string,
  ) {
    super(message);
    this.name = 'GuestBootError';
  }
}

const live = new Set<ChildProcess>();

/** Pids of the QEMU processes started here that have not exited yet. */
export function liveGuestPids(): number[] {
  return [...live].map((c) => c.pid).filter((p): p is number => p !== undefined);
}
let exitHookInstalled = false;

/** Boot the test guest and wait for its ready marker. */
export interface ConsoleMatchWait {
  /** The owner calls each of these after every chunk of console output. */
  readonly waiters: Set<() => void>;
  /** The console output so far. */
  readonly text: () => string;
  readonly pattern: RegExp;
  /** Offset in the text where the search starts. */
  readonly from: number;
  readonly timeoutMs: number;
  /** Why the pattern will never show (the VM is gone), or undefined while it may. */
  readonly ended?: () => Error | undefined;
  readonly timedOut: () => Error;
}

/** The first match of `pattern` in a console's text from `from` on, once it shows (a guest's serial console, a libvirt domain's). */
export function waitForConsoleMatch(o: ConsoleMatchWait): Promise<RegExpExecArray> {
  const re = new RegExp(o.pattern.source, o.pattern.flags.replace('g', ''));
  return waitForProbe<RegExpExecArray>(
    o.waiters,
    o.timeoutMs,
    () => {
      const m = re.exec(o.text().slice(o.from));
      if (m) return { value: m };
      const error = o.ended?.();
      return error === undefined ? undefined : { error };
    },
    o.timedOut,
  );
}

export async function startGuest(options: StartGuestOptions = {}): Promise<Guest> {
  const qemu = requireTool('qemu-system-x86_64', 'qemu-system-x86');
  const setpriv = requireTool('setpriv', 'util-linux');
  const image = options.image ?? (await ensureGuestImage());

  const append = ['console=ttyS0', 'quiet', 'panic=-1'];
  if (options.run !== undefined) append.push(`vo.run=${Buffer.from(options.run).toString('base64')}`);
  if (options.append) append.push(options.append);
  const cmdline = append.join(' ');
  // x86 COMMAND_LINE_SIZE; longer scripts belong in extraFiles.
  if (cmdline.length > 2000) throw new Error(`guest kernel command line is ${cmdline.length} bytes (limit 2048): put long scripts into extraFiles`);

  const rootPorts = options.pcieRootPorts ?? 0;
  if (rootPorts > 0 && options.machine !== 'q35') throw new Error('pcieRootPorts needs machine: q35');
  for (const port of options.virtioPorts ?? []) {
    if (port.server && port.reconnectSeconds !== undefined) throw new Error(`port ${port.name}: reconnectSeconds is for client ports (server: false)`);
  }

  // Validated: from here on every failure path removes tmp.
  const tmp = mkdtempSync(join(tmpdir(), 'vo-guest-'));
  let initrd = image.initrd;
  if (options.extraFiles && options.extraFiles.length > 0) {
    initrd = join(tmp, 'initrd.cpio.gz');
    try {
      writeFileSync(initrd, Buffer.concat([readFileSync(image.initrd), extraInitrd(options.extraFiles)]));
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  const args = [
    '-accel', 'tcg',
    '-M', options.machine ?? 'pc',
    '-m', String(options.memoryMiB ?? image.memoryMiB),
    '-smp', '1',
    '-nodefaults', '-display', 'none', '-no-user-config', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', image.kernel,
    '-initrd', initrd,
    '-append', cmdline,
  ];
  for (let i = 1; i <= rootPorts; i++) args.push('-device', `pcie-root-port,id=rp${i},bus=pcie.0,chassis=${i}`);
  if (options.qmpSocket !== undefined) args.push('-qmp', `unix:${qemuValue(options.qmpSocket)},server=on,wait=off`);
  const ports = options.virtioPorts ?? [];
  if (ports.length > 0 || options.virtioSerial) args.push('-device', 'virtio-serial-pci,id=vser0');
  ports.forEach((port, i) => {
    const reconnect = port.reconnectSeconds !== undefined ? `,reconnect=${port.reconnectSeconds}` : '';
    const server = port.server ? 'server=on,wait=off' : `server=off${reconnect}`;
    args.push('-chardev', `socket,id=vop${i},path=${qemuValue(port.socketPath)},${server}`);
    args.push('-device', `virtserialport,bus=vser0.0,chardev=vop${i},name=${qemuValue(port.name)}`);
  });
  args.push(...(options.extraArgs ?? []));

  const started = Date.now();
  // setpriv execs QEMU (same pid) with a parent-death signal: no orphan even if we are SIGKILLed.
  const child = spawn(setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  // A failed spawn is reported through pid === undefined below; the event must not go unhandled.
  child.on('error', () => {});
  live.add(child);
  installExitHook();
  if (child.pid === undefined) {
    live.delete(child);
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`could not start ${qemu}`);
  }
  const pid = child.pid;

  let consoleText = '';
  let stderrText = '';
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    consoleText += d.replace(/\r/g, '');
    wake();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderrText += d));
  // Writing to a QEMU that has exited must not crash the test process.
  child.stdin!.on('error', () => {});
  let exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      exitStatus = { code, signal };
      live.delete(child);
      wake();
      resolve(exitStatus);
    });
  });

  const tail = (): string => consoleText.slice(-2000);
  const waitForConsole = (pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> =>
    waitForConsoleMatch({
      waiters,
      text: () => consoleText,
      pattern,
      from,
      timeoutMs,
      ended: () => {
        if (exitStatus === undefined) return undefined;
        const how = exitStatus.signal ?? `exit ${exitStatus.code}`;
        return new Error(`QEMU ended (${how}) before the console showed ${pattern}\nstderr: ${stderrText.trim()}\nconsole tail:\n${tail()}`);
      },
      timedOut: () => new Error(`console did not show ${pattern} within ${timeoutMs} ms\nstderr: ${stderrText.trim()}\nconsole tail:\n${tail()}`),
    });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exitStatus) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(tmp, { recursive: true, force: true });
    })();
    return stopping;
  };

  let commands = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const exec = (script: string, timeoutMs = 30_000): Promise<ExecResult> => {
    if (options.run !== undefined) return Promise.reject(new Error('exec() needs the command loop: this guest was started with `run`'));
    const line = Buffer.from(script).toString('base64');
    // The console tty reads lines of at most 4095 bytes.
    if (line.length > 4000) return Promise.reject(new Error(`script too long for the console (${line.length} base64 bytes > 4000): use extraFiles`));
    // One command at a time: the guest numbers them in arrival order.
    const result = queue.then(async () => {
      const n = ++commands;
      const from = consoleText.length;
      child.stdin!.write(`${line}\n`);
      const end = await waitForConsole(commandEnd(n), timeoutMs, from);
      return commandResult(consoleText.slice(from), n, end);
    });
    queue = result.catch(() => {});
    return result;
  };

  try {
    await waitForConsole(/(?:^|\n)VO-GUEST-READY\n/, options.bootTimeoutMs ?? 60_000);
  } catch (err) {
    await stop();
    throw new GuestBootError(`the test guest did not boot: ${(err as Error).message}`, pid, consoleText);
  }
  const bootMs = Date.now() - started;

  return {
    pid,
    qmpSocket: options.qmpSocket,
    bootMs,
    console: () => consoleText,
    stderr: () => stderrText,
    waitForConsole,
    exec,
    exited,
    stop,
  };
}

/** QEMU option values escape "," by doubling it. */
function qemuValue(value: string): string {
  return value.replace(/,/g, ',,');
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** The console line the guest's command loop prints when command `n` ends: `VO-END n STATUS`. */
export function commandEnd(n: number): RegExp {
  return new RegExp(`(?:^|\\n)VO-END ${n} (\\d+)\\n`);
}

/**
 * Command `n`'s output and exit status, cut from the console text since it was sent (`all`)
 * between its `VO-BEGIN n` line and the `VO-END` match `end` (found in the same text).
 */
export function commandResult(all: string, n: number, end: RegExpExecArray): ExecResult {
  const begin = new RegExp(`(?:^|\\n)VO-BEGIN ${n}\\n`).exec(all);
  const output = begin ? all.slice(begin.index + begin[0].length, end.index + (end[0].startsWith('\n') ? 1 : 0)) : '';
  return { output, code: Number(end[1]) };
}
