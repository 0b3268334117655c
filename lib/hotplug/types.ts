// The hot-plug interface: one per route (QMP now, libvirt later), the same specs and results.
import { UsageError } from '../errors.js';

export const DEFAULT_PORT_NAME = 'virt-offload.0';

export interface AttachSpec {
  /** Label of the VM, for messages and results (a domain name, a pid file…). */
  vm: string;
  /** Port name the guest sees in /sys/class/virtio-ports/*\/name; default virt-offload.0. */
  portName?: string;
  /** The daemon's listening unix socket for this VM: QEMU connects to it (chardev client). */
  socketPath: string;
  /**
   * QEMU retries the connection every this many seconds while it is down (chardev
   * `reconnect`), so attach works before the daemon listens and heals after a daemon restart.
   * Default 1.
   */
  reconnectSeconds?: number;
}

export interface DetachSpec {
  vm: string;
  portName?: string;
}

/** One QMP command the route sends; `summary` says what it does in words. */
export interface HotplugStep {
  kind: 'add-chardev' | 'add-controller' | 'add-port' | 'remove-port' | 'remove-controller' | 'remove-chardev';
  /** The QEMU id the step adds or removes. */
  id: string;
  command: string;
  arguments: Record<string, unknown>;
  summary: string;
}

export interface AttachResult {
  vm: string;
  portName: string;
  /** QEMU ids of our chardev and port, and of the controller whose bus the port is on. */
  chardevId: string;
  portId: string;
  /** The virtio-serial bus the port is on, e.g. vo-serial0.0. */
  bus: string;
  /** The steps carried out, in order; empty when everything was already in place. */
  steps: HotplugStep[];
  /** Nothing had to be done. */
  alreadyAttached: boolean;
  elapsedMs: number;
}

export interface DetachResult {
  vm: string;
  portName: string;
  steps: HotplugStep[];
  /** None of our devices was there. */
  alreadyDetached: boolean;
  elapsedMs: number;
}

export interface OffloadDeviceRoute {
  attach(spec: AttachSpec): Promise<AttachResult>;
  detach(spec: DetachSpec): Promise<DetachResult>;
}

/** Ids of our QEMU objects for one port; the controller is shared by all our ports. */
export interface OffloadIds {
  chardev: string;
  port: string;
  controller: string;
}

export const CONTROLLER_ID = 'vo-serial0';

// Port names go into QEMU ids and are shown by the guest: keep them to a plain charset.
const PORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * virt-offload.N → vo-chrN / vo-portN; any other (checked) name NAME → vo-chr-NAME /
 * vo-port-NAME. QEMU ids must start with a letter and hold letters, digits, '-', '.', '_'.
 */
export function offloadIds(portName: string): OffloadIds {
  if (!PORT_NAME.test(portName)) {
    throw new UsageError(`port name ${JSON.stringify(portName)}: use 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit`, '--name');
  }
  const n = /^virt-offload\.(\d{1,4})$/.exec(portName);
  const suffix = n ? String(Number(n[1])) : `-${portName}`;
  return { chardev: `vo-chr${suffix}`, port: `vo-port${suffix}`, controller: CONTROLLER_ID };
}

/** Unix socket paths: absolute, and short enough for sun_path (108 bytes with its NUL). */
export function checkSocketPath(path: string): void {
  if (!path.startsWith('/')) throw new UsageError(`socket path ${JSON.stringify(path)}: must be absolute (QEMU resolves it in its own working directory)`, '--socket');
  if (path.includes('\0')) throw new UsageError('socket path contains a NUL byte', '--socket');
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > 107) throw new UsageError(`socket path is ${bytes} bytes, a unix socket path holds at most 107`, '--socket');
}
