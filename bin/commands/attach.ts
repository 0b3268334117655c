// `virt-offload attach (--qmp SOCKET | --libvirt DOMAIN) --socket DAEMON_SOCK [--name NAME]
// [--json]`: hot-plug the offload port into a running VM, over its QMP socket (lib/hotplug's QMP
// route) or through libvirt-dbus (the libvirt route: a <channel> libvirt knows about).
import { UsageError } from '../../lib/errors.js';
import { LibvirtRoute, QmpHotplugRoute, type HotplugStep, type OffloadDeviceRoute } from '../../lib/hotplug/index.js';
import { QmpClient } from '../../lib/qmp/index.js';
import { EXIT, reportFailure } from '../exit.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Connect to QMP, run `work` with a route over that session, always disconnect. */
export async function withQmpRoute<T>(qmpSocket: string, unplugTimeoutMs: number, work: (route: QmpHotplugRoute) => Promise<T>): Promise<T> {
  const qmp = new QmpClient();
  await qmp.connect(qmpSocket);
  try {
    return await work(new QmpHotplugRoute(qmp, { unplugTimeoutMs }));
  } finally {
    await qmp.disconnect();
  }
}

/**
 * The route the options name: --qmp SOCKET or --libvirt DOMAIN (exactly one); runs `work` with
 * it and its VM label, then closes the session.
 */
export async function withRoute<T>(opts: Record<string, unknown>, timeoutMs: number, work: (route: OffloadDeviceRoute, vm: string) => Promise<T>): Promise<T> {
  const qmpSocket = str(opts.qmp);
  const domain = str(opts.libvirt);
  if (qmpSocket !== undefined && domain !== undefined) throw new UsageError('give either --qmp SOCKET or --libvirt DOMAIN, not both', '--libvirt');
  if (domain !== undefined) {
    if (domain === '') throw new UsageError('--libvirt needs a domain name', '--libvirt');
    const route = new LibvirtRoute({ domain, timeoutMs });
    try {
      return await work(route, domain);
    } finally {
      await route.close();
    }
  }
  if (qmpSocket === undefined || qmpSocket === '') throw new UsageError('--qmp is required (the VM\'s QMP socket), or --libvirt DOMAIN', '--qmp');
  return withQmpRoute(qmpSocket, timeoutMs, (route) => work(route, qmpSocket));
}

/** --timeout SECONDS → ms (default 10 s), for DEVICE_DELETED waits. */
export function unplugTimeout(raw: unknown): number {
  if (raw === undefined) return 10_000;
  const seconds = Number(raw);
  if (!(seconds > 0) || !Number.isFinite(seconds) || seconds > 3600) throw new UsageError(`--timeout ${String(raw)}: expected seconds, more than 0 and at most 3600`, '--timeout');
  return Math.round(seconds * 1000);
}

export function required(opts: Record<string, unknown>, key: string, flag: string): string {
  const value = str(opts[key]);
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`, flag);
  return value;
}

export function printSteps(steps: readonly HotplugStep[]): void {
  for (const s of steps) process.stdout.write(`  ${s.command}: ${s.summary}\n`);
}

export async function runAttach(opts: Record<string, unknown>): Promise<number> {
  try {
    const socketPath = required(opts, 'socket', '--socket');
    const portName = str(opts.name);
    const timeout = unplugTimeout(opts.timeout);
    const result = await withRoute(opts, timeout, (route, vm) => route.attach({ vm, socketPath, ...(portName !== undefined ? { portName } : {}) }));
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else if (result.alreadyAttached) {
      process.stdout.write(`already attached: port ${result.portName} (${result.portId} on ${result.bus}, chardev ${result.chardevId} → ${socketPath}); nothing to do\n`);
    } else {
      process.stdout.write(`attached port ${result.portName} (${result.portId} on ${result.bus}, chardev ${result.chardevId} → ${socketPath}) in ${result.elapsedMs} ms:\n`);
      printSteps(result.steps);
    }
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}
