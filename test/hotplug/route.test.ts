// The QMP route against a scripted VM model speaking QMP's replies (shapes as seen from QEMU
// 7.2): gathering state, applying, rolling back a failed attach, and DEVICE_DELETED waits
// (timeout, an unplug already pending, a device already gone). Real QEMU: test/e2e/hotplug.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HotplugConflictError, HotplugStepError, HotplugTimeoutError, QmpHotplugRoute, type QmpPort } from '../../lib/hotplug/index.js';
import { QmpExecuteError, type EventFilter, type QmpEvent } from '../../lib/qmp/index.js';
import { rejectsWith } from '../qmp/helpers.js';

const SOCK = '/run/vo/vm1.sock';

interface Device {
  driver: string;
  bus: string;
  name?: string;
  chardev?: string;
}

function qmpError(command: string, errorClass: string, desc: string): QmpExecuteError {
  return new QmpExecuteError({ execute: command }, { error: { class: errorClass, desc } }, errorClass, desc);
}

class FakeVm implements QmpPort {
  machineType = 'pc-i440fx-7.2-machine';
  chardevs = new Map<string, string>();
  devices = new Map<string, Device>();
  /** device_del of these ids is accepted but never completes (a guest that does not answer). */
  stuck = new Set<string>();
  pendingUnplug = new Set<string>();
  /** Make a command fail: returns the error to throw, or undefined. */
  fail: (command: string, args: Record<string, unknown>) => QmpExecuteError | undefined = () => undefined;
  calls: string[] = [];
  /** The backend data of each chardev-add. */
  chardevData: Record<string, unknown>[] = [];
  /** As QmpClient keeps it: the session's greeting (undefined: not known). */
  greeting: { version: { qemu: { major: number; minor: number } } } | undefined;
  readonly #listeners = new Set<{ filter: EventFilter; queue: QmpEvent[]; wake?: (r: IteratorResult<QmpEvent>) => void; closed: boolean }>();

  listen(filter: EventFilter): { next(): Promise<IteratorResult<QmpEvent>>; close(): void } {
    const l: { filter: EventFilter; queue: QmpEvent[]; wake?: (r: IteratorResult<QmpEvent>) => void; closed: boolean } = { filter, queue: [], closed: false };
    this.#listeners.add(l);
    return {
      next: () => {
        const e = l.queue.shift();
        if (e) return Promise.resolve({ value: e, done: false });
        if (l.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (l.wake = resolve));
      },
      close: () => {
        l.closed = true;
        this.#listeners.delete(l);
        l.wake?.({ value: undefined, done: true });
      },
    };
  }

  listeners(): number {
    return this.#listeners.size;
  }

  emit(event: string, data: Record<string, unknown>): void {
    const e: QmpEvent = { event, data, timestamp: { seconds: 0, microseconds: 0 } };
    for (const l of this.#listeners) {
      if (l.filter.names && !l.filter.names.includes(event)) continue;
      if (l.filter.predicate && !l.filter.predicate(e)) continue;
      if (l.wake) {
        const w = l.wake;
        l.wake = undefined;
        w({ value: e, done: false });
      } else l.queue.push(e);
    }
  }

  children(bus: string): { name: string; type: string }[] {
    return [...this.devices.entries()].filter(([, d]) => d.bus === bus).map(([, d], i) => ({ name: `child[${i}]`, type: `link<${d.driver}>` }));
  }

  async execute<T>(command: string, rawArgs?: Readonly<Record<string, unknown>>): Promise<T> {
    const args = (rawArgs ?? {}) as Record<string, unknown>;
    this.calls.push(command === 'qom-list' || command === 'qom-get' || command === 'query-chardev' ? 'read' : `${command} ${String(args['id'])}`);
    const injected = this.fail(command, args);
    if (injected) throw injected;
    const path = String(args['path'] ?? '');
    const notFound = (): never => {
      throw qmpError(command, 'DeviceNotFound', `Device '${path}' not found`);
    };
    const periph = /^\/machine\/peripheral\/([^/]+)(.*)$/.exec(path);
    switch (command) {
      case 'query-chardev':
        return [...this.chardevs.keys()].map((label) => ({ label, filename: 'unix:', 'frontend-open': false })) as T;
      case 'qom-list': {
        if (path === '/machine/peripheral') return [{ name: 'type', type: 'string' }, ...[...this.devices].map(([id, d]) => ({ name: id, type: `child<${d.driver}>` }))] as T;
        if (path === '/machine/peripheral-anon') return notFound();
        const chr = /^\/chardevs\/(.+)$/.exec(path);
        if (chr) return (this.chardevs.has(chr[1]!) ? [{ name: 'addr', type: 'SocketAddress' }] : notFound()) as T;
        const d = periph ? this.devices.get(periph[1]!) : undefined;
        if (!periph || !d) return notFound();
        const id = periph[1]!;
        if (d.driver === 'virtio-serial-pci') {
          if (periph[2] === '/virtio-backend') return [{ name: `${id}.0`, type: 'child<virtio-serial-bus>' }] as T;
          if (periph[2] === `/virtio-backend/${id}.0`) return this.children(`${id}.0`) as T;
        }
        if (d.driver === 'pcie-root-port') {
          if (periph[2] === '') return [{ name: 'hotplug', type: 'bool' }, { name: id, type: 'child<PCIE>' }] as T;
          if (periph[2] === `/${id}`) return this.children(id) as T;
        }
        return notFound();
      }
      case 'qom-get': {
        const prop = String(args['property']);
        if (path === '/machine' && prop === 'type') return this.machineType as T;
        const chr = /^\/chardevs\/(.+)$/.exec(path);
        if (chr && prop === 'addr') return { type: 'unix', path: this.chardevs.get(chr[1]!) ?? notFound() } as T;
        const d = periph ? this.devices.get(periph[1]!) : undefined;
        if (!d) return notFound();
        if (prop === 'hotplug') return true as T;
        if (prop === 'name') return d.name as T;
        if (prop === 'chardev') return d.chardev as T;
        if (prop === 'parent_bus') return `/machine/peripheral/${d.bus.replace(/\.0$/, '')}/virtio-backend/${d.bus}` as T;
        return notFound();
      }
      case 'chardev-add': {
        // As QEMU: an id in use is refused.
        if (this.chardevs.has(String(args['id']))) throw qmpError(command, 'GenericError', `attempt to add duplicate property '${String(args['id'])}' to object (type 'container')`);
        const backend = args['backend'] as { data: { addr: { data: { path: string } } } & Record<string, unknown> };
        this.chardevs.set(String(args['id']), backend.data.addr.data.path);
        this.chardevData.push(backend.data);
        return {} as T;
      }
      case 'chardev-remove': {
        const id = String(args['id']);
        if ([...this.devices.values()].some((d) => d.chardev === id)) throw qmpError(command, 'GenericError', `Chardev '${id}' is busy`);
        if (!this.chardevs.delete(id)) throw qmpError(command, 'GenericError', `Chardev '${id}' not found`);
        return {} as T;
      }
      case 'device_add': {
        const { driver, id, bus, chardev, name } = args as Record<string, string>;
        this.devices.set(id!, { driver: driver!, bus: bus!, ...(name ? { name } : {}), ...(chardev ? { chardev } : {}) });
        return {} as T;
      }
      case 'device_del': {
        const id = String(args['id']);
        if (!this.devices.has(id)) throw qmpError(command, 'DeviceNotFound', `Device '${id}' not found`);
        if (this.pendingUnplug.has(id)) throw qmpError(command, 'GenericError', `Device ${id} is already in the process of unplug`);
        this.pendingUnplug.add(id);
        if (!this.stuck.has(id)) {
          setTimeout(() => {
            this.devices.delete(id);
            this.pendingUnplug.delete(id);
            this.emit('DEVICE_DELETED', { path: `/machine/peripheral/${id}/virtio-backend` });
            this.emit('DEVICE_DELETED', { device: id, path: `/machine/peripheral/${id}` });
          }, 5);
        }
        return {} as T;
      }
    }
    throw qmpError(command, 'CommandNotFound', `The command ${command} has not been found`);
  }
}

const changes = (vm: FakeVm) => vm.calls.filter((c) => c !== 'read');

test('attach from scratch, again (no-op), detach: the commands sent, in order', async () => {
  const vm = new FakeVm();
  const route = new QmpHotplugRoute(vm);
  const a = await route.attach({ vm: 'vm1', socketPath: SOCK });
  assert.equal(changes(vm), ['chardev-add vo-chr0', 'device_add vo-serial0', 'device_add vo-port0']);
  assert.equal(vm.devices.get('vo-port0'), { driver: 'virtserialport', bus: 'vo-serial0.0', name: 'virt-offload.0', chardev: 'vo-chr0' });
  assert.is(a.bus, 'vo-serial0.0');
  vm.calls = [];
  const before = JSON.stringify([[...vm.devices], [...vm.chardevs]]);
  assert.is((await route.attach({ vm: 'vm1', socketPath: SOCK })).alreadyAttached, true);
  // The early chardev-add (sent with the first reads) is refused because ours exists; nothing changes.
  assert.equal(changes(vm), ['chardev-add vo-chr0']);
  assert.is(JSON.stringify([[...vm.devices], [...vm.chardevs]]), before);
  vm.calls = [];
  const d = await route.detach({ vm: 'vm1' });
  assert.equal(changes(vm), ['device_del vo-port0', 'device_del vo-serial0', 'chardev-remove vo-chr0']);
  assert.is(d.alreadyDetached, false);
  assert.is(vm.devices.size + vm.chardevs.size, 0);
  assert.is(vm.listeners(), 0, 'every event listener was closed');
});

test('the chardev retries with reconnect-ms on a QEMU whose greeting says 9.2 or later, with reconnect otherwise', async () => {
  for (const [qemu, expected] of [
    [{ major: 9, minor: 2 }, { 'reconnect-ms': 1000 }],
    [{ major: 7, minor: 2 }, { reconnect: 1 }],
    [undefined, { reconnect: 1 }],
  ] as const) {
    const vm = new FakeVm();
    vm.greeting = qemu === undefined ? undefined : { version: { qemu } };
    await new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK });
    assert.is(vm.chardevData.length, 1);
    const { addr: _addr, server: _server, ...retry } = vm.chardevData[0]!;
    assert.equal(retry, expected, `QEMU ${qemu === undefined ? 'unknown' : `${qemu.major}.${qemu.minor}`}`);
  }
});

test('q35: the controller goes behind the free root port', async () => {
  const vm = new FakeVm();
  vm.machineType = 'pc-q35-7.2-machine';
  vm.devices.set('rp1', { driver: 'pcie-root-port', bus: 'pcie.0' });
  vm.devices.set('nic', { driver: 'virtio-net-pci', bus: 'rp1' });
  vm.devices.set('rp2', { driver: 'pcie-root-port', bus: 'pcie.0' });
  await new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK });
  assert.is(vm.devices.get('vo-serial0')?.bus, 'rp2');
});

test('a failed step rolls back what this call added, newest first, and names the QMP error', async () => {
  const vm = new FakeVm();
  vm.fail = (command, args) => (command === 'device_add' && args['driver'] === 'virtserialport' ? qmpError(command, 'GenericError', 'virtio-serial-bus: A port already exists by name virt-offload.0') : undefined);
  const err = await rejectsWith(new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK }), HotplugStepError, 'attach');
  assert.is(err.command, 'device_add');
  assert.is(err.errorClass, 'GenericError');
  assert.match(err.description ?? '', /already exists by name/);
  assert.is(err.step, 'add virtserialport vo-port0 named virt-offload.0 on vo-serial0.0');
  assert.is(err.rolledBack, 'remove virtio-serial-pci vo-serial0; remove chardev vo-chr0');
  assert.match(err.message, /^vm1: add virtserialport .* failed: QMP command device_add failed: GenericError: .* \(rolled back: remove virtio-serial-pci vo-serial0; remove chardev vo-chr0\)$/);
  assert.equal(changes(vm), ['chardev-add vo-chr0', 'device_add vo-serial0', 'device_add vo-port0', 'device_del vo-serial0', 'chardev-remove vo-chr0']);
  assert.is(vm.devices.size + vm.chardevs.size, 0, 'the VM is as it was');
  assert.equal(err.toJSON()['errorClass'], 'GenericError', '--json shows the class');
});

test('an existing controller with an id: one read beside the chardev-add, then the port onto its bus', async () => {
  const vm = new FakeVm();
  vm.devices.set('ser0', { driver: 'virtio-serial-pci', bus: 'pci.0' });
  const a = await new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK });
  assert.equal(vm.calls, ['read', 'chardev-add vo-chr0', 'device_add vo-port0']);
  assert.is(a.bus, 'ser0.0');
  assert.is(vm.devices.get('vo-port0')?.bus, 'ser0.0');
});

test('the one-round plan failing is rolled back and the full state decides', async () => {
  const vm = new FakeVm();
  vm.devices.set('ser0', { driver: 'virtio-serial-pci', bus: 'pci.0' });
  let failures = 1;
  vm.fail = (command, args) => (command === 'device_add' && args['driver'] === 'virtserialport' && failures-- > 0 ? qmpError(command, 'GenericError', "Bus 'ser0.0' does not support hotplugging") : undefined);
  const a = await new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK });
  assert.equal(changes(vm), ['chardev-add vo-chr0', 'device_add vo-port0', 'chardev-remove vo-chr0', 'chardev-add vo-chr0', 'device_add vo-port0']);
  assert.is(a.alreadyAttached, false);
  assert.equal(a.steps.map((s) => s.kind), ['add-chardev', 'add-port']);

  // A failure that persists: the full path's error is thrown and nothing is left behind.
  const vm2 = new FakeVm();
  vm2.devices.set('ser0', { driver: 'virtio-serial-pci', bus: 'pci.0' });
  vm2.fail = (command, args) => (command === 'device_add' && args['driver'] === 'virtserialport' ? qmpError(command, 'GenericError', "Bus 'ser0.0' is full") : undefined);
  const caught = await rejectsWith(new QmpHotplugRoute(vm2).attach({ vm: 'vm2', socketPath: SOCK }), HotplugStepError, 'attach');
  assert.match(caught.message, /is full.*rolled back: remove chardev vo-chr0/);
  assert.is(vm2.chardevs.size, 0);
  assert.equal([...vm2.devices.keys()], ['ser0']);
});

test('our port already there with another chardev: the early chardev is taken back and the conflict reported', async () => {
  const vm = new FakeVm();
  vm.devices.set('ser0', { driver: 'virtio-serial-pci', bus: 'pci.0' });
  vm.devices.set('vo-port0', { driver: 'virtserialport', bus: 'ser0.0', name: 'virt-offload.0', chardev: 'someone-else' });
  await rejectsWith(new QmpHotplugRoute(vm).attach({ vm: 'vm1', socketPath: SOCK }), HotplugConflictError, 'attach');
  assert.equal(changes(vm), ['chardev-add vo-chr0', 'chardev-remove vo-chr0']);
  assert.is(vm.chardevs.size, 0, 'nothing of ours is left');
});

test('a rollback that cannot finish says what is left', async () => {
  const vm = new FakeVm();
  vm.stuck.add('vo-serial0');
  vm.fail = (command, args) => (command === 'device_add' && args['driver'] === 'virtserialport' ? qmpError(command, 'GenericError', 'nope') : undefined);
  const route = new QmpHotplugRoute(vm, { unplugTimeoutMs: 50 });
  const err = await rejectsWith(route.attach({ vm: 'vm1', socketPath: SOCK }), HotplugStepError, 'attach');
  assert.is(err.rolledBack, undefined);
  assert.match(err.rollbackProblem ?? '', /^remove virtio-serial-pci vo-serial0: vm1: device vo-serial0: no DEVICE_DELETED within 50 ms/);
  assert.ok(vm.chardevs.has('vo-chr0'), 'the chardev stays while the controller may still use it');
  assert.is(vm.listeners(), 0);
});

test('detach: DEVICE_DELETED timeout is a typed error; a retry waits for the pending unplug; a vanished device counts as removed', async () => {
  const vm = new FakeVm();
  const route = new QmpHotplugRoute(vm, { unplugTimeoutMs: 60 });
  await route.attach({ vm: 'vm1', socketPath: SOCK });
  vm.stuck.add('vo-serial0');
  const caught = await rejectsWith(route.detach({ vm: 'vm1' }), HotplugTimeoutError, 'detach');
  assert.is(caught.id, 'vo-serial0');
  assert.ok(vm.chardevs.has('vo-chr0'), 'no chardev-remove after a failed step');

  // The guest answers later: the retried device_del is "already in the process of unplug".
  vm.calls = [];
  const retry = route.detach({ vm: 'vm1' });
  setTimeout(() => {
    vm.devices.delete('vo-serial0');
    vm.pendingUnplug.delete('vo-serial0');
    vm.stuck.clear();
    vm.emit('DEVICE_DELETED', { device: 'vo-serial0', path: '/machine/peripheral/vo-serial0' });
  }, 20);
  const d = await retry;
  assert.equal(d.steps.map((s) => s.kind), ['remove-controller', 'remove-chardev']);
  assert.is(vm.devices.size + vm.chardevs.size, 0);

  // Gone between the plan and the device_del: DeviceNotFound is success.
  await route.attach({ vm: 'vm1', socketPath: SOCK });
  vm.fail = (command, args) => {
    if (command !== 'device_del' || args['id'] !== 'vo-port0') return undefined;
    vm.devices.delete('vo-port0');
    return qmpError(command, 'DeviceNotFound', "Device 'vo-port0' not found");
  };
  await route.detach({ vm: 'vm1' });
  assert.is(vm.devices.size + vm.chardevs.size, 0);
  assert.is(vm.listeners(), 0);
});

test('calls on one route run one at a time', async () => {
  const vm = new FakeVm();
  const route = new QmpHotplugRoute(vm);
  const [a, b] = await Promise.all([route.attach({ vm: 'vm1', socketPath: SOCK }), route.attach({ vm: 'vm1', socketPath: SOCK })]);
  assert.is(a.steps.length, 3);
  assert.is(b.alreadyAttached, true, 'the second saw the first one’s result');
});

test.run();
