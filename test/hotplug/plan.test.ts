// The planner on canned VM states: which commands attach and detach send, and what it refuses.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HotplugConflictError, HotplugUnsupportedError, machineKind, offloadIds, planAttach, planDetach, type VmState } from '../../lib/hotplug/index.js';
import { UsageError } from '../../lib/errors.js';

const SOCK = '/run/virt-offload/vm/a.sock';
const ids = offloadIds('virt-offload.0');

function state(over: Partial<VmState> = {}): VmState {
  return { machineType: 'pc-i440fx-7.2-machine', chardevs: new Map(), serialBuses: [], rootPorts: [], port: undefined, chardev: undefined, ...over };
}
const ourChardev = { id: 'vo-chr0', filename: 'unix:', unixPath: SOCK };
const ourBus = { controllerPath: '/machine/peripheral/vo-serial0', controllerId: 'vo-serial0', bus: 'vo-serial0.0', children: 1 };
const ourPort = { id: 'vo-port0', name: 'virt-offload.0', chardev: 'vo-chr0', busPath: '/machine/peripheral/vo-serial0/virtio-backend/vo-serial0.0' };
const kinds = (steps: { kind: string }[]) => steps.map((s) => s.kind);
const attach = (s: VmState, portName = 'virt-offload.0') => planAttach('vm1', s, offloadIds(portName), portName, SOCK, 1);

test('ids: virt-offload.N → vo-chrN/vo-portN, other names → suffixed ids, bad names refused', () => {
  assert.equal(offloadIds('virt-offload.0'), { chardev: 'vo-chr0', port: 'vo-port0', controller: 'vo-serial0' });
  assert.equal(offloadIds('virt-offload.12'), { chardev: 'vo-chr12', port: 'vo-port12', controller: 'vo-serial0' });
  assert.equal(offloadIds('org.example.x'), { chardev: 'vo-chr-org.example.x', port: 'vo-port-org.example.x', controller: 'vo-serial0' });
  for (const bad of ['', 'a b', '-x', 'x,y', 'a/b', 'x'.repeat(64), 'é']) assert.throws(() => offloadIds(bad), (e: unknown) => e instanceof UsageError);
});

test('machine kinds', () => {
  assert.is(machineKind('pc-q35-7.2-machine'), 'pcie');
  assert.is(machineKind('pc-i440fx-7.2-machine'), 'pci');
  assert.is(machineKind('microvm-machine'), undefined);
});

test('pc, nothing there: chardev (client, reconnect), controller on pci.0, port', () => {
  const plan = attach(state());
  assert.equal(kinds(plan.steps), ['add-chardev', 'add-controller', 'add-port']);
  assert.equal(plan.steps[0]!.arguments, {
    id: 'vo-chr0',
    backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: SOCK } }, server: false, reconnect: 1 } },
  });
  assert.equal(plan.steps[1]!.arguments, { driver: 'virtio-serial-pci', id: 'vo-serial0', bus: 'pci.0' });
  assert.equal(plan.steps[2]!.arguments, { driver: 'virtserialport', id: 'vo-port0', bus: 'vo-serial0.0', chardev: 'vo-chr0', name: 'virt-offload.0' });
  assert.is(plan.bus, 'vo-serial0.0');
});

test('the retry interval is spelled for the QEMU the greeting names: reconnect-ms from 9.2, reconnect before it or when unknown', () => {
  const chardevData = (qemu?: { major: number; minor: number }) =>
    (planAttach('vm1', state(), offloadIds('virt-offload.0'), 'virt-offload.0', SOCK, 2, qemu).steps[0]!.arguments as { backend: { data: Record<string, unknown> } }).backend.data;
  for (const qemu of [{ major: 9, minor: 2 }, { major: 10, minor: 0 }]) {
    const data = chardevData(qemu);
    assert.is(data['reconnect-ms'], 2000, `QEMU ${qemu.major}.${qemu.minor}`);
    assert.not.ok('reconnect' in data, `QEMU ${qemu.major}.${qemu.minor}: not the deprecated option`);
  }
  for (const qemu of [undefined, { major: 7, minor: 2 }, { major: 9, minor: 1 }]) {
    const data = chardevData(qemu);
    assert.is(data.reconnect, 2, `QEMU ${qemu === undefined ? 'unknown' : `${qemu.major}.${qemu.minor}`}`);
    assert.not.ok('reconnect-ms' in data);
  }
});

test('q35: the first free hotplug-capable root port; none → a clear error', () => {
  const rootPorts = [
    { id: 'rp1', bus: 'rp1', free: false, hotplug: true },
    { id: 'rp2', bus: 'rp2', free: true, hotplug: false },
    { id: 'rp3', bus: 'rp3', free: true, hotplug: true },
  ];
  const plan = attach(state({ machineType: 'pc-q35-7.2-machine', rootPorts }));
  assert.equal(plan.steps[1]!.arguments, { driver: 'virtio-serial-pci', id: 'vo-serial0', bus: 'rp3' });
  assert.throws(
    () => attach(state({ machineType: 'pc-q35-7.2-machine', rootPorts: rootPorts.slice(0, 2) })),
    (e: unknown) => e instanceof HotplugUnsupportedError && /all 2 are in use or have hotplug=off/.test(e.message) && /-device pcie-root-port,id=rp1,bus=pcie\.0,chassis=1/.test(e.message),
  );
  assert.throws(() => attach(state({ machineType: 'pc-q35-7.2-machine' })), /it has none/);
  assert.throws(() => attach(state({ machineType: 'microvm-machine' })), (e: unknown) => e instanceof HotplugUnsupportedError && /microvm-machine/.test(e.message));
});

test('an existing virtio-serial bus is used (ours first), no controller added', () => {
  const theirs = { controllerPath: '/machine/peripheral/virtio-serial0', controllerId: 'virtio-serial0', bus: 'virtio-serial0.0', children: 2 };
  const plan = attach(state({ machineType: 'pc-q35-7.2-machine', serialBuses: [theirs] }));
  assert.equal(kinds(plan.steps), ['add-chardev', 'add-port']);
  assert.is(plan.bus, 'virtio-serial0.0');
  assert.is(attach(state({ serialBuses: [{ ...ourBus, children: 0 }, theirs] })).bus, 'vo-serial0.0');
});

test('idempotent: everything there → no steps; partial state is completed', () => {
  const full = state({ chardevs: new Map([['vo-chr0', 'unix:']]), chardev: ourChardev, serialBuses: [ourBus], port: ourPort });
  assert.equal(attach(full).steps, []);
  assert.is(attach(full).bus, 'vo-serial0.0');
  // A disconnected client of the same socket (daemon down) is ours too.
  assert.equal(attach({ ...full, chardev: { ...ourChardev, filename: `disconnected:unix:${SOCK}` } }).steps, []);
  // Chardev there, port missing (an earlier attach died between the two).
  assert.equal(kinds(attach({ ...full, port: undefined, serialBuses: [{ ...ourBus, children: 0 }] }).steps), ['add-port']);
  // Controller left over, nothing else.
  assert.equal(kinds(attach(state({ serialBuses: [{ ...ourBus, children: 0 }] })).steps), ['add-chardev', 'add-port']);
});

test('our ids holding something else are conflicts, never replaced', () => {
  const other = (chardev: VmState['chardev']) => () => attach(state({ chardev }));
  assert.throws(other({ ...ourChardev, unixPath: '/elsewhere.sock' }), (e: unknown) => e instanceof HotplugConflictError && e.id === 'vo-chr0' && /detach first/.test(e.message));
  assert.throws(other({ ...ourChardev, filename: `unix:${SOCK},server=on` }), (e: unknown) => e instanceof HotplugConflictError);
  assert.throws(other({ id: 'vo-chr0', filename: 'pty:/dev/pts/3', unixPath: undefined }), /pty:\/dev\/pts\/3/);
  assert.throws(() => attach(state({ chardev: ourChardev, port: { ...ourPort, name: 'other' } })), (e: unknown) => e instanceof HotplugConflictError && e.id === 'vo-port0');
  assert.throws(() => attach(state({ chardev: ourChardev, port: { ...ourPort, chardev: 'x' } })), (e: unknown) => e instanceof HotplugConflictError);
});

test('detach: port, our controller only when nothing else is on it, chardev; nothing → no steps', () => {
  const full = state({ chardev: ourChardev, serialBuses: [ourBus], port: ourPort });
  assert.equal(kinds(planDetach(full, ids)), ['remove-port', 'remove-controller', 'remove-chardev']);
  assert.equal(planDetach(full, ids)[0]!.arguments, { id: 'vo-port0' });
  assert.equal(kinds(planDetach({ ...full, serialBuses: [{ ...ourBus, children: 2 }] }, ids)), ['remove-port', 'remove-chardev'], 'another port keeps it');
  const theirs = { controllerPath: '/machine/peripheral/virtio-serial0', controllerId: 'virtio-serial0', bus: 'virtio-serial0.0', children: 1 };
  assert.equal(kinds(planDetach({ ...full, serialBuses: [theirs], port: { ...ourPort, busPath: '/machine/peripheral/virtio-serial0/virtio-backend/virtio-serial0.0' } }, ids)), ['remove-port', 'remove-chardev'], 'not our controller');
  assert.equal(kinds(planDetach(state({ chardev: ourChardev }), ids)), ['remove-chardev']);
  assert.equal(planDetach(state(), ids), []);
});

test.run();
