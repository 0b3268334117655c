// Start a real QEMU (TCG, no guest, paused with -S) with a QMP unix socket in a scratch
// directory, for tests of lib/qmp and the hot-plug code. The process is SIGKILLed and the
// directory removed by stop(), and on process exit as a last resort.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { requireTool, scratchDir } from '../../testbed/tools.js';

export interface QemuOptions {
  /** Machine type; default q35. */
  machine?: 'q35' | 'pc';
  /** Guest RAM in MiB; default 64. */
  memoryMb?: number;
  /** Start with the CPUs stopped (-S, status prelaunch); default true. `cont` over QMP starts them. */
  paused?: boolean;
  /** More arguments (devices, a kernel…), appended after ours. */
  extraArgs?: readonly string[];
  /** How long to wait for the QMP socket to appear; default 10 s. */
  startTimeoutMs?: number;
}

export interface QemuInstance {
  /** Path of the QMP unix socket. */
  qmpSocket: string;
  /** Scratch directory holding the socket (and anything else the test puts there). */
  dir: string;
  process: ChildProcess;
  /** QEMU's stderr so far (for failure messages). */
  stderr(): string;
  /** Resolves when QEMU has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL QEMU (if still running), wait for it, remove the scratch directory. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

export async function startQemu(options: QemuOptions = {}): Promise<QemuInstance> {
  const qemu = requireTool('qemu-system-x86_64', 'qemu-system-x86');
  const { dir, cleanup } = scratchDir('vo-qemu-');
  const qmpSocket = join(dir, 'qmp.sock');
  const args = [
    ...['-M', options.machine ?? 'q35', '-accel', 'tcg', '-nodefaults', '-display', 'none'],
    ...(options.paused === false ? [] : ['-S']),
    ...['-m', String(options.memoryMb ?? 64)],
    ...['-qmp', `unix:${qmpSocket},server=on,wait=off`],
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    cleanup();
  };
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  let gone = false;
  void exited.then(() => (gone = true));
  while (!existsSync(qmpSocket)) {
    if (gone || Date.now() > deadline) {
      await stop();
      throw new Error(`QEMU did not create its QMP socket (${gone ? 'it exited' : 'timeout'}): ${qemu} ${args.join(' ')}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  // The file appears at bind(), a moment before listen(): a connect in between is refused
  // (seen once in CI). Wait until a connection is accepted; QEMU takes the probe's hang-up as a
  // client leaving.
  while (!(await accepts(qmpSocket))) {
    if (gone || Date.now() > deadline) {
      await stop();
      throw new Error(`QEMU did not accept connections on its QMP socket (${gone ? 'it exited' : 'timeout'}): ${qemu} ${args.join(' ')}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { qmpSocket, dir, process: child, stderr: () => stderr, exited, stop };
}

/** True when a unix socket connection to `path` is accepted (then closed at once). */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}
