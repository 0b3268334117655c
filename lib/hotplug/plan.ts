// PLAN: from what the VM has (VmState, gathered over QMP by state.ts) and what is asked (a
// spec), the list of QMP commands to send. Pure: no I/O, so it is tested with canned states.
//
// Attach, in order, each step only when its object is missing:
//   1. chardev-add our socket chardev (client, reconnect) — id vo-chrN;
//   2. device_add virtio-serial-pci (id vo-serial0) only when the port is missing and no
//      virtio-serial bus exists: on pc straight onto pci.0 (QEMU picks a free slot), on q35 on
//      the first free hotplug-capable pcie-root-port (pcie.0 refuses hot-plug);
//   3. device_add virtserialport (id vo-portN, name = the port name, chardev = ours).
// Existing objects with our ids that differ from the spec are conflicts, never replaced.
// Detach: our port, then our controller if nothing else sits on its bus, then our chardev.
import { HotplugConflictError, HotplugUnsupportedError } from './errors.js';
import type { HotplugStep, OffloadIds } from './types.js';

/** A virtio-serial controller and the bus its ports go on. */
export interface SerialBus {
  /** QOM path of the controller, e.g. /machine/peripheral/vo-serial0. */
  controllerPath: string;
  /** Its id when it has one (/machine/peripheral/<id>), else undefined (peripheral-anon). */
  controllerId: string | undefined;
  /** Bus name for device_add's `bus`, e.g. vo-serial0.0 or virtio-serial-bus.0. */
  bus: string;
  /** Devices on the bus now (ports). */
  children: number;
}

export interface RootPort {
  id: string;
  /** Bus name behind the port (the port's id for pcie-root-port). */
  bus: string;
  /** No device behind it. */
  free: boolean;
  /** Its `hotplug` property (true when the property does not exist). */
  hotplug: boolean;
}

/** Our port, when a device with our port id exists. */
export interface PortState {
  id: string;
  name: string;
  chardev: string;
  /** QOM path of its bus. */
  busPath: string;
}

export interface VmState {
  /** QOM type of /machine, e.g. pc-q35-7.2-machine, pc-i440fx-7.2-machine. */
  machineType: string;
  /** chardev label → filename (query-chardev). */
  chardevs: ReadonlyMap<string, string>;
  /** Every virtio-serial controller: ours first, then those with ids, then anonymous ones. */
  serialBuses: readonly SerialBus[];
  /** Named pcie-root-ports / ioh3420s, in id order (q35). */
  rootPorts: readonly RootPort[];
  port: PortState | undefined;
  /** Our chardev, when it exists. */
  chardev: ChardevState | undefined;
}

export interface ChardevState {
  id: string;
  /** query-chardev's filename, e.g. `unix:`, `disconnected:unix:/run/x.sock`, `pty:/dev/pts/3`. */
  filename: string;
  /** The QOM `addr` path of a unix socket chardev; undefined for other backends. */
  unixPath: string | undefined;
}

export interface AttachPlan {
  steps: HotplugStep[];
  /** Bus the port is (or will be) on. */
  bus: string;
}

export type MachineKind = 'pci' | 'pcie';

export function machineKind(machineType: string): MachineKind | undefined {
  if (/q35/.test(machineType)) return 'pcie';
  if (/i440fx/.test(machineType) || /^pc(-\d|$|-machine$)/.test(machineType)) return 'pci';
  return undefined;
}

/**
 * Our chardev is a client of `socketPath`: its QOM `addr` is that unix path (query-chardev's
 * filename shows only `unix:` once a client is connected) and the filename is not a server's.
 */
function isClientOf(chardev: ChardevState, socketPath: string): boolean {
  return chardev.unixPath === socketPath && !/,server(=on)?\b/.test(chardev.filename);
}

/** The QEMU a plan is for, from its QMP greeting: which spelling of the reconnect option it takes. */
export interface QemuVersion {
  readonly major: number;
  readonly minor: number;
}

/**
 * The socket chardev's retry interval. QEMU 9.2 added `reconnect-ms` and deprecated
 * `reconnect` (seconds), which later releases drop; older ones know only `reconnect`. An
 * unknown version gets `reconnect`, which every QEMU up to the removal takes.
 */
export function reconnectArgument(seconds: number, qemu?: QemuVersion): { reconnect: number } | { 'reconnect-ms': number } {
  const hasMs = qemu !== undefined && (qemu.major > 9 || (qemu.major === 9 && qemu.minor >= 2));
  return hasMs ? { 'reconnect-ms': seconds * 1000 } : { reconnect: seconds };
}

export function chardevStep(ids: OffloadIds, socketPath: string, reconnectSeconds: number, qemu?: QemuVersion): HotplugStep {
  return {
    kind: 'add-chardev',
    id: ids.chardev,
    command: 'chardev-add',
    arguments: {
      id: ids.chardev,
      backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: socketPath } }, server: false, ...reconnectArgument(reconnectSeconds, qemu) } },
    },
    summary: `add chardev ${ids.chardev}: connect to ${socketPath} (retry every ${reconnectSeconds} s)`,
  };
}

export function planAttach(vm: string, state: VmState, ids: OffloadIds, portName: string, socketPath: string, reconnectSeconds: number, qemu?: QemuVersion): AttachPlan {
  const steps: HotplugStep[] = [];

  const chardev = state.chardev;
  if (chardev === undefined) steps.push(chardevStep(ids, socketPath, reconnectSeconds, qemu));
  else if (!isClientOf(chardev, socketPath)) {
    const is = chardev.unixPath !== undefined ? `${chardev.filename} at ${chardev.unixPath}` : chardev.filename;
    throw new HotplugConflictError(vm, ids.chardev, `chardev ${ids.chardev} exists (${is}), not as a client of ${socketPath}: detach first`);
  }

  if (state.port !== undefined) {
    const p = state.port;
    if (p.name !== portName || p.chardev !== ids.chardev) {
      throw new HotplugConflictError(vm, p.id, `device ${p.id} exists with name ${JSON.stringify(p.name)} and chardev ${JSON.stringify(p.chardev)}, expected ${JSON.stringify(portName)} and ${ids.chardev}: detach first`);
    }
    const on = state.serialBuses.find((b) => p.busPath.endsWith(`/${b.bus}`));
    return { steps, bus: on?.bus ?? p.busPath };
  }

  let bus: string;
  const existing = state.serialBuses[0];
  if (existing !== undefined) {
    bus = existing.bus;
  } else {
    const kind = machineKind(state.machineType);
    let parent: string;
    if (kind === 'pci') parent = 'pci.0';
    else if (kind === 'pcie') {
      const free = state.rootPorts.find((r) => r.free && r.hotplug);
      if (free === undefined) {
        const seen = state.rootPorts.length === 0 ? 'it has none' : `all ${state.rootPorts.length} are in use or have hotplug=off`;
        throw new HotplugUnsupportedError(
          vm,
          `this q35 VM has no virtio-serial controller and no free pcie-root-port to hot-plug one into (${seen}); pcie.0 itself refuses hot-plug. Start the VM with a spare root port, e.g. -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1 (libvirt: <controller type='pci' model='pcie-root-port'/>), or with a virtio-serial-pci controller`,
        );
      }
      parent = free.bus;
    } else {
      throw new HotplugUnsupportedError(vm, `machine type ${state.machineType} is neither pc (i440fx) nor q35 and has no virtio-serial controller: add one at start (-device virtio-serial-pci)`);
    }
    steps.push({
      kind: 'add-controller',
      id: ids.controller,
      command: 'device_add',
      arguments: { driver: 'virtio-serial-pci', id: ids.controller, bus: parent },
      summary: `add virtio-serial-pci ${ids.controller} on ${parent}`,
    });
    bus = `${ids.controller}.0`;
  }
  steps.push({
    kind: 'add-port',
    id: ids.port,
    command: 'device_add',
    arguments: { driver: 'virtserialport', id: ids.port, bus, chardev: ids.chardev, name: portName },
    summary: `add virtserialport ${ids.port} named ${portName} on ${bus}`,
  });
  return { steps, bus };
}

export function removeStep(kind: 'remove-port' | 'remove-controller' | 'remove-chardev', id: string): HotplugStep {
  if (kind === 'remove-chardev') return { kind, id, command: 'chardev-remove', arguments: { id }, summary: `remove chardev ${id}` };
  const what = kind === 'remove-port' ? 'virtserialport' : 'virtio-serial-pci';
  return { kind, id, command: 'device_del', arguments: { id }, summary: `remove ${what} ${id}` };
}

export function planDetach(state: VmState, ids: OffloadIds): HotplugStep[] {
  const steps: HotplugStep[] = [];
  const port = state.port;
  if (port !== undefined) steps.push(removeStep('remove-port', ids.port));
  const ours = state.serialBuses.find((b) => b.controllerId === ids.controller);
  if (ours !== undefined) {
    // Other ports (another port name of ours, or someone else's) keep the controller.
    const others = ours.children - (port !== undefined && port.busPath.endsWith(`/${ours.bus}`) ? 1 : 0);
    if (others === 0) steps.push(removeStep('remove-controller', ids.controller));
  }
  if (state.chardev !== undefined) steps.push(removeStep('remove-chardev', ids.chardev));
  return steps;
}
