// Finding the offload port inside the guest (research/platform.md, pitfall 8). With udev the
// port has a stable name under /dev/virtio-ports/; a minimal guest (busybox initramfs, no
// udev) only has /dev/vportNpM, and the kernel says which one is ours in
// /sys/class/virtio-ports/vportNpM/name. The roots are parameters so tests can build a fake tree.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PortNotFoundError } from './errors.js';

export const DEFAULT_PORT_NAME = 'virt-offload.0';

export interface FindPortOptions {
  /** Where device nodes live (default /dev). */
  readonly devRoot?: string;
  /** Where sysfs is mounted (default /sys). */
  readonly sysRoot?: string;
}

/** A port name as QEMU's virtserialport `name=` allows it, and safe as a path component. */
const PORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The kernel's names for virtio ports: vport<device>p<port>. */
const VPORT = /^vport\d+p\d+$/;

/**
 * The device path of the virtio-serial port named `name`: /dev/virtio-ports/NAME when udev
 * made it, else the /dev/vportNpM whose sysfs `name` is NAME. Throws PortNotFoundError naming
 * the ports that do exist.
 */
export function findPort(name: string = DEFAULT_PORT_NAME, options: FindPortOptions = {}): string {
  const devRoot = options.devRoot ?? '/dev';
  const sysRoot = options.sysRoot ?? '/sys';
  if (!PORT_NAME.test(name)) throw new PortNotFoundError(name, `port name ${JSON.stringify(name)} does not match ${PORT_NAME.source}`);
  const byName = join(devRoot, 'virtio-ports', name);
  if (existsSync(byName)) return byName;
  const classDir = join(sysRoot, 'class', 'virtio-ports');
  let entries: string[];
  try {
    entries = readdirSync(classDir).filter((e) => VPORT.test(e)).sort();
  } catch {
    throw new PortNotFoundError(name, `no virtio-serial port ${name}: neither ${byName} nor ${classDir} exists (is virtio_console loaded, and the port plugged in?)`);
  }
  const found: string[] = [];
  for (const entry of entries) {
    let portName: string;
    try {
      // The kernel writes the name with a trailing newline; an unnamed port has an empty file.
      portName = readFileSync(join(classDir, entry, 'name'), 'utf8').trim();
    } catch {
      continue;
    }
    found.push(portName === '' ? `${entry} (unnamed)` : `${portName} (${entry})`);
    if (portName === name) {
      const device = join(devRoot, entry);
      if (!existsSync(device)) throw new PortNotFoundError(name, `port ${name} is ${entry} in ${classDir}, but ${device} does not exist (no devtmpfs?)`, found);
      return device;
    }
  }
  const list = found.length === 0 ? 'none' : found.join(', ');
  throw new PortNotFoundError(name, `no virtio-serial port named ${name} (ports found: ${list})`, found);
}
