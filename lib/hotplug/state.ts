// Gather the VmState the planner needs, read-only, over QMP: the machine type, the chardevs,
// the virtio-serial controllers and their buses, the q35 root ports and what sits behind them
// (QOM's bus objects list their devices as child[N] links, which holds before the firmware has
// numbered the buses, unlike query-pci), and our port's properties.
import { QmpExecuteError, type EventFilter, type QmpEvent } from '../qmp/index.js';
import type { ChardevState, PortState, RootPort, SerialBus, VmState } from './plan.js';
import type { OffloadIds } from './types.js';

/** The part of QmpClient the hot-plug code uses (a fake in unit tests). */
export interface QmpPort {
  /** The session's QMP greeting, when known (QmpClient has it): the QEMU version. */
  readonly greeting?: { readonly version: { readonly qemu: { readonly major: number; readonly minor: number } } } | undefined;
  execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, options?: { timeoutMs?: number }): Promise<T>;
  listen(filter: EventFilter): { next(): Promise<IteratorResult<QmpEvent>>; close(): void };
}

interface QomProperty {
  name: string;
  type: string;
}

const SERIAL_TYPES = /^child<virtio-serial-(pci|pci-non-transitional|pci-transitional|device|ccw)>$/;
const ROOT_PORT_TYPES = /^child<(pcie-root-port|ioh3420)>$/;

function isNotFound(err: unknown): boolean {
  return err instanceof QmpExecuteError && err.errorClass === 'DeviceNotFound';
}

async function qomList(qmp: QmpPort, path: string): Promise<QomProperty[]> {
  const list = await qmp.execute<unknown>('qom-list', { path });
  if (!Array.isArray(list)) return [];
  return list.filter((p): p is QomProperty => typeof p === 'object' && p !== null && typeof p.name === 'string' && typeof p.type === 'string');
}

async function qomGet(qmp: QmpPort, path: string, property: string): Promise<unknown> {
  return qmp.execute<unknown>('qom-get', { path, property });
}

/** Peripherals in id order, numbers compared as numbers (rp2 before rp10). */
function byId(a: QomProperty, b: QomProperty): number {
  return a.name.localeCompare(b.name, 'en', { numeric: true });
}

/** The virtio-serial controllers with an id, in the order the planner prefers: ours first, then by id. */
function namedSerialControllers(named: readonly QomProperty[], ids: OffloadIds): QomProperty[] {
  return named.filter((p) => SERIAL_TYPES.test(p.type)).sort((a, b) => (a.name === ids.controller ? -1 : b.name === ids.controller ? 1 : byId(a, b)));
}

/** Devices on a bus: the bus object's child[N] links. */
function childCount(props: readonly QomProperty[]): number {
  return props.filter((p) => /^child\[\d+\]$/.test(p.name) && p.type.startsWith('link<')).length;
}

async function serialBus(qmp: QmpPort, controllerPath: string, controllerId: string | undefined): Promise<SerialBus | undefined> {
  const backend = `${controllerPath}/virtio-backend`;
  const bus = (await qomList(qmp, backend)).find((p) => p.type === 'child<virtio-serial-bus>');
  if (bus === undefined) return undefined;
  const children = childCount(await qomList(qmp, `${backend}/${bus.name}`));
  return { controllerPath, controllerId, bus: bus.name, children };
}

async function rootPort(qmp: QmpPort, id: string): Promise<RootPort | undefined> {
  const path = `/machine/peripheral/${id}`;
  const props = await qomList(qmp, path);
  const bus = props.find((p) => p.type === 'child<PCIE>' || p.type === 'child<PCI>');
  if (bus === undefined) return undefined;
  const [children, hotplugValue] = await Promise.all([
    qomList(qmp, `${path}/${bus.name}`),
    props.some((p) => p.name === 'hotplug') ? qomGet(qmp, path, 'hotplug') : true,
  ]);
  return { id, bus: bus.name, free: childCount(children) === 0, hotplug: hotplugValue !== false };
}

// QEMU answers QMP commands one at a time, but the client pipelines them (ids + a pending
// map): the independent reads below are sent together so the round trips overlap instead of
// adding up (bench/hotplug compares the route with a script sending the bare attach commands).
export async function gatherState(qmp: QmpPort, ids: OffloadIds): Promise<VmState> {
  const [machineTypeValue, listed, named, anonymous] = await Promise.all([
    qomGet(qmp, '/machine', 'type'),
    qmp.execute<unknown>('query-chardev'),
    qomList(qmp, '/machine/peripheral'),
    qomList(qmp, '/machine/peripheral-anon').catch((err: unknown) => {
      // Absent until the first device without an id exists.
      if (!isNotFound(err)) throw err;
      return [] as QomProperty[];
    }),
  ]);
  const machineType = String(machineTypeValue);
  const chardevs = new Map<string, string>();
  for (const c of Array.isArray(listed) ? listed : []) {
    if (typeof c?.label === 'string') chardevs.set(c.label, typeof c.filename === 'string' ? c.filename : '');
  }

  const controllers = [
    ...namedSerialControllers(named, ids).map((p) => [`/machine/peripheral/${p.name}`, p.name] as const),
    ...anonymous.filter((p) => SERIAL_TYPES.test(p.type)).sort(byId).map((p) => [`/machine/peripheral-anon/${p.name}`, undefined] as const),
  ];
  const portNamed = named.some((p) => p.name === ids.port);
  const portPath = `/machine/peripheral/${ids.port}`;
  const filename = chardevs.get(ids.chardev);
  // Promise.all keeps the order of its inputs: the planner sees buses and ports sorted as above.
  const [buses, ports, port, chardev] = await Promise.all([
    Promise.all(controllers.map(([path, id]) => serialBus(qmp, path, id))),
    Promise.all(named.filter((p) => ROOT_PORT_TYPES.test(p.type)).sort(byId).map((p) => rootPort(qmp, p.name))),
    portNamed
      ? Promise.all([qomGet(qmp, portPath, 'name'), qomGet(qmp, portPath, 'chardev'), qomGet(qmp, portPath, 'parent_bus')]).then(
          ([name, chardevId, busPath]): PortState => ({ id: ids.port, name: String(name), chardev: String(chardevId), busPath: String(busPath) }),
        )
      : undefined,
    filename === undefined ? undefined : chardevState(qmp, ids.chardev, filename),
  ]);
  const serialBuses = buses.filter((b): b is SerialBus => b !== undefined);
  const rootPorts = ports.filter((r): r is RootPort => r !== undefined);
  return { machineType, chardevs, serialBuses, rootPorts, port, chardev };
}

async function chardevState(qmp: QmpPort, id: string, filename: string): Promise<ChardevState> {
  const path = `/chardevs/${id}`;
  const props = await qomList(qmp, path);
  let unixPath: string | undefined;
  if (props.some((p) => p.name === 'addr' && p.type === 'SocketAddress')) {
    const addr = (await qomGet(qmp, path, 'addr')) as { type?: unknown; path?: unknown } | null;
    if (addr?.type === 'unix' && typeof addr.path === 'string') unixPath = addr.path;
  }
  return { id, filename, unixPath };
}

/**
 * The common attach in one read instead of gatherState's three or four rounds: the peripheral
 * list, with the bus name worked out the way QEMU names it (virtio-serial-pci with id X puts
 * its ports on bus "X.0"). Whether our chardev exists is not read here: the caller adds it in
 * the same round, and QEMU refusing a duplicate id says so. 'no-controller' when there is no
 * controller with an id; undefined when our port is already there. The caller then gathers the
 * full state. A wrong guess costs nothing unsafe: device_add onto a bus that does not exist (or
 * is full) fails, what was added is rolled back, and the full state decides.
 */
export async function quickAttachState(qmp: QmpPort, ids: OffloadIds): Promise<VmState | 'no-controller' | undefined> {
  const named = await qomList(qmp, '/machine/peripheral');
  if (named.some((p) => p.name === ids.port)) return undefined;
  const controller = namedSerialControllers(named, ids)[0];
  if (controller === undefined) return 'no-controller';
  const bus: SerialBus = { controllerPath: `/machine/peripheral/${controller.name}`, controllerId: controller.name, bus: `${controller.name}.0`, children: 0 };
  return { machineType: '', chardevs: new Map(), serialBuses: [bus], rootPorts: [], port: undefined, chardev: undefined };
}
