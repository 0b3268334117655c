// Gather the VmState the planner needs, read-only, over QMP: the machine type, the chardevs,
// the virtio-serial controllers and their buses, the q35 root ports and what sits behind them
// (QOM's bus objects list their devices as child[N] links, which holds before the firmware has
// numbered the buses, unlike query-pci), and our port's properties.
import { QmpExecuteError, type EventFilter, type QmpEvent } from '../qmp/index.js';
import type { ChardevState, PortState, RootPort, SerialBus, VmState } from './plan.js';
import type { OffloadIds } from './types.js';

/** The part of QmpClient the hot-plug code uses (a fake in unit tests). */
export interface QmpPort {
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
  const free = childCount(await qomList(qmp, `${path}/${bus.name}`)) === 0;
  const hotplug = props.some((p) => p.name === 'hotplug') ? (await qomGet(qmp, path, 'hotplug')) !== false : true;
  return { id, bus: bus.name, free, hotplug };
}

export async function gatherState(qmp: QmpPort, ids: OffloadIds): Promise<VmState> {
  const machineType = String(await qomGet(qmp, '/machine', 'type'));

  const chardevs = new Map<string, string>();
  const listed = await qmp.execute<unknown>('query-chardev');
  for (const c of Array.isArray(listed) ? listed : []) {
    if (typeof c?.label === 'string') chardevs.set(c.label, typeof c.filename === 'string' ? c.filename : '');
  }

  const named = await qomList(qmp, '/machine/peripheral');
  let anonymous: QomProperty[] = [];
  try {
    anonymous = await qomList(qmp, '/machine/peripheral-anon');
  } catch (err) {
    // Absent until the first device without an id exists.
    if (!isNotFound(err)) throw err;
  }

  const byId = (a: QomProperty, b: QomProperty): number => a.name.localeCompare(b.name, 'en', { numeric: true });
  const serialBuses: SerialBus[] = [];
  const controllers = [
    ...named.filter((p) => SERIAL_TYPES.test(p.type)).sort((a, b) => (a.name === ids.controller ? -1 : b.name === ids.controller ? 1 : byId(a, b))).map((p) => [`/machine/peripheral/${p.name}`, p.name] as const),
    ...anonymous.filter((p) => SERIAL_TYPES.test(p.type)).sort(byId).map((p) => [`/machine/peripheral-anon/${p.name}`, undefined] as const),
  ];
  for (const [path, id] of controllers) {
    const bus = await serialBus(qmp, path, id);
    if (bus !== undefined) serialBuses.push(bus);
  }

  const rootPorts: RootPort[] = [];
  for (const p of named.filter((p) => ROOT_PORT_TYPES.test(p.type)).sort(byId)) {
    const r = await rootPort(qmp, p.name);
    if (r !== undefined) rootPorts.push(r);
  }

  let port: PortState | undefined;
  if (named.some((p) => p.name === ids.port)) {
    const path = `/machine/peripheral/${ids.port}`;
    port = {
      id: ids.port,
      name: String(await qomGet(qmp, path, 'name')),
      chardev: String(await qomGet(qmp, path, 'chardev')),
      busPath: String(await qomGet(qmp, path, 'parent_bus')),
    };
  }
  let chardev: ChardevState | undefined;
  const filename = chardevs.get(ids.chardev);
  if (filename !== undefined) {
    const path = `/chardevs/${ids.chardev}`;
    const props = await qomList(qmp, path);
    let unixPath: string | undefined;
    if (props.some((p) => p.name === 'addr' && p.type === 'SocketAddress')) {
      const addr = (await qomGet(qmp, path, 'addr')) as { type?: unknown; path?: unknown } | null;
      if (addr?.type === 'unix' && typeof addr.path === 'string') unixPath = addr.path;
    }
    chardev = { id: ids.chardev, filename, unixPath };
  }
  return { machineType, chardevs, serialBuses, rootPorts, port, chardev };
}
