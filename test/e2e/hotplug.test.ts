// Hot-plug of the offload device over QMP into the real tiny guest (TCG): the guest's
// virtio_console driver binds the port by name, data flows both ways through the "daemon"
// socket the test listens on, detach removes the port and our chardev, re-attach and an
// idempotent attach work, 20 attach/detach cycles leak nothing, the same on q35 behind a root
// port, and a q35 VM without a free root port gets a clear error.
// Needs qemu-system-x86 and what test/e2e/guest-boot.test.ts needs (the guest image cache).
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HotplugUnsupportedError, QmpHotplugRoute, type AttachResult } from '../../lib/hotplug/index.js';
import { QmpClient } from '../../lib/qmp/index.js';
import { ensureGuestImage, type GuestImage } from '../../testbed/guest-image.js';
import { type Guest, startGuest } from '../../testbed/guest-vm.js';
import { type PingPongDaemon, startPingPongDaemon } from '../helpers/ping-pong-daemon.js';
import { startQemu } from '../helpers/qemu.js';
import { scratchDir } from '../../testbed/tools.js';

const PORT = 'virt-offload.0';

let imagePromise: Promise<GuestImage> | undefined;
const guestImage = (): Promise<GuestImage> => (imagePromise ??= ensureGuestImage());


async function chardevLabels(qmp: QmpClient): Promise<string[]> {
  const list = await qmp.execute<{ label: string }[]>('query-chardev');
  return list.map((c) => c.label).sort();
}

async function peripherals(qmp: QmpClient): Promise<string[]> {
  const list = await qmp.execute<{ name: string; type: string }[]>('qom-list', { path: '/machine/peripheral' });
  return list.filter((p) => p.type.startsWith('child<')).map((p) => p.name).sort();
}

/** In the guest: find the port, check the driver, send a ping and read the pong. */
async function roundTrip(guest: Guest, token: string): Promise<string> {
  const r = await guest.exec(
    [
      `p=$(vo-port ${PORT}) || exit 3`,
      'echo "device: $p"',
      'd=$(basename "$p")',
      'echo "driver: $(basename "$(readlink /sys/class/virtio-ports/$d/device/driver)")"',
      'exec 3<>"$p"',
      `echo "ping ${token}" >&3`,
      'read -r reply <&3',
      'echo "reply: $reply"',
    ].join('\n'),
    20_000,
  );
  assert.is(r.code, 0, `guest round trip failed:\n${r.output}`);
  assert.match(r.output, /^device: \/dev\/vport\d+p\d+$/m);
  return r.output;
}

async function guestPorts(guest: Guest): Promise<string> {
  const r = await guest.exec('for f in /sys/class/virtio-ports/*/name; do [ -r "$f" ] && cat "$f"; done; echo "pci: $(ls /sys/bus/pci/devices | wc -l)"', 10_000);
  assert.is(r.code, 0, r.output);
  return r.output;
}

function kinds(r: { steps: { kind: string }[] }): string[] {
  return r.steps.map((s) => s.kind);
}

interface Rig {
  guest: Guest;
  qmp: QmpClient;
  route: QmpHotplugRoute;
  daemon: PingPongDaemon;
  /** Kill the daemon and start a new one on the same socket path. */
  restartDaemon(): Promise<PingPongDaemon>;
  done(): Promise<void>;
}

async function rig(machine: 'pc' | 'q35', pcieRootPorts = 0): Promise<Rig> {
  const image = await guestImage();
  const { dir, cleanup } = scratchDir('vo-hotplug-');
  const daemon = await startPingPongDaemon(join(dir, 'daemon.sock'));
  const qmpSocket = join(dir, 'qmp.sock');
  const guest = await startGuest({ image, machine, qmpSocket, ...(pcieRootPorts > 0 ? { pcieRootPorts } : {}) });
  const qmp = new QmpClient();
  await qmp.connect(qmpSocket);
  const rigged: Rig = {
    guest,
    qmp,
    // 30 s for the guest to agree to each unplug: 22 hot-plug cycles under TCG on a busy host.
    route: new QmpHotplugRoute(qmp, { unplugTimeoutMs: 30_000 }),
    daemon,
    restartDaemon: async () => {
      await rigged.daemon.close();
      rigged.daemon = await startPingPongDaemon(rigged.daemon.socketPath);
      return rigged.daemon;
    },
    done: async () => {
      await qmp.disconnect();
      await guest.stop();
      await rigged.daemon.close();
      cleanup();
    },
  };
  return rigged;
}

test('pc: attach → the guest binds the port by name and data flows both ways; detach removes it; re-attach, no-op attach, 20 cycles leak nothing', async () => {
  const r = await rig('pc');
  try {
    const { guest, qmp, route, daemon } = r;
    const baseChardevs = await chardevLabels(qmp);
    const basePeripherals = await peripherals(qmp);
    const baseGuest = await guestPorts(guest);
    assert.not.match(baseGuest, new RegExp(`^${PORT}$`, 'm'), 'no port before attach');

    const spec = { vm: 'tiny-pc', socketPath: daemon.socketPath };
    let t = Date.now();
    const first = await route.attach(spec);
    assert.equal(kinds(first), ['add-chardev', 'add-controller', 'add-port']);
    assert.is(first.bus, 'vo-serial0.0');
    assert.is(first.alreadyAttached, false);
    await daemon.waitAccepted(1, 5000);
    const out = await roundTrip(guest, 'one');
    console.log(`pc: attach → guest round trip through the new port: ${Date.now() - t} ms`);
    assert.match(out, /^driver: virtio_console$/m);
    assert.match(out, /^reply: pong one$/m, 'the guest read the daemon’s answer');
    assert.ok(daemon.lines.includes('ping one'), 'the daemon got the guest’s line');
    assert.ok((await chardevLabels(qmp)).includes('vo-chr0'));

    const again = await route.attach(spec);
    assert.is(again.alreadyAttached, true, 'a second attach is a no-op');
    assert.equal(again.steps, []);
    assert.is(daemon.accepted(), 1, 'the no-op attach did not reconnect');
    assert.match(await roundTrip(guest, 'two'), /^reply: pong two$/m);

    t = Date.now();
    const gone = await route.detach({ vm: 'tiny-pc' });
    console.log(`pc: detach (port, controller, chardev): ${Date.now() - t} ms`);
    assert.equal(kinds(gone), ['remove-port', 'remove-controller', 'remove-chardev']);
    assert.equal(await chardevLabels(qmp), baseChardevs, 'query-chardev no longer lists ours');
    assert.equal(await peripherals(qmp), basePeripherals);
    assert.is(await guestPorts(guest), baseGuest, 'the port left /sys/class/virtio-ports');
    const none = await route.detach({ vm: 'tiny-pc' });
    assert.is(none.alreadyDetached, true, 'detach of nothing is a no-op');

    const re = await route.attach(spec);
    assert.equal(kinds(re), ['add-chardev', 'add-controller', 'add-port']);
    await daemon.waitAccepted(2, 5000);
    assert.match(await roundTrip(guest, 'three'), /^reply: pong three$/m, 're-attach works');
    await route.detach({ vm: 'tiny-pc' });

    t = Date.now();
    const cycles = 20;
    for (let i = 0; i < cycles; i++) {
      const a: AttachResult = await route.attach(spec);
      assert.is(a.steps.length, 3, `cycle ${i}: attach added all three`);
      const seen = await guest.exec(`vo-port ${PORT} 200`, 30_000);
      assert.is(seen.code, 0, `cycle ${i}: the guest sees the port:\n${seen.output}`);
      const d = await route.detach({ vm: 'tiny-pc' });
      assert.is(d.steps.length, 3, `cycle ${i}: detach removed all three`);
    }
    const ms = Date.now() - t;
    console.log(`pc: ${cycles} attach/detach cycles: ${ms} ms (${Math.round(ms / cycles)} ms each)`);
    assert.equal(await chardevLabels(qmp), baseChardevs, 'no chardev left behind');
    assert.equal(await peripherals(qmp), basePeripherals, 'no device left behind');
    assert.is(await guestPorts(guest), baseGuest, 'the guest has no port and no extra PCI device');
    // QEMU closed every connection it opened to the daemon.
    const deadline = Date.now() + 3000;
    while ((await daemon.open()) > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    assert.is(await daemon.open(), 0, 'no daemon connection left open');
  } finally {
    await r.done();
  }
});

test('q35 with one root port: attach plugs the controller behind rp1, data flows, detach frees the root port', async () => {
  const r = await rig('q35', 1);
  try {
    const { guest, qmp, route, daemon } = r;
    const baseChardevs = await chardevLabels(qmp);
    const baseGuest = await guestPorts(guest);
    const t = Date.now();
    const a = await route.attach({ vm: 'tiny-q35', socketPath: daemon.socketPath });
    const controller = a.steps.find((s) => s.kind === 'add-controller');
    assert.is(controller?.arguments['bus'], 'rp1', 'the controller goes behind the free root port');
    await daemon.waitAccepted(1, 5000);
    assert.match(await roundTrip(guest, 'q35'), /^reply: pong q35$/m);
    console.log(`q35: attach → guest round trip: ${Date.now() - t} ms`);
    const plan = await route.planAttach({ vm: 'tiny-q35', socketPath: daemon.socketPath });
    assert.equal(plan.steps, [], 'nothing left to do');

    // The daemon dies and comes back on the same path: QEMU reconnects by itself (reconnect=1),
    // the attach that the restarted daemon would ask for is a no-op, and data flows again.
    const restarted = await r.restartDaemon();
    const t2 = Date.now();
    await restarted.waitAccepted(1, 5000);
    console.log(`q35: QEMU reconnected to the restarted daemon after ${Date.now() - t2} ms`);
    assert.is((await route.attach({ vm: 'tiny-q35', socketPath: restarted.socketPath })).alreadyAttached, true);
    assert.match(await roundTrip(guest, 'after-restart'), /^reply: pong after-restart$/m);
    assert.ok(restarted.lines.includes('ping after-restart'));
    assert.equal(plan.state.rootPorts.map((p) => [p.id, p.free]), [['rp1', false]]);

    const d = await route.detach({ vm: 'tiny-q35' });
    assert.equal(kinds(d), ['remove-port', 'remove-controller', 'remove-chardev']);
    assert.equal(await chardevLabels(qmp), baseChardevs);
    assert.is(await guestPorts(guest), baseGuest);
    const after = await route.planAttach({ vm: 'tiny-q35', socketPath: daemon.socketPath });
    assert.equal(after.state.rootPorts.map((p) => [p.id, p.free]), [['rp1', true]], 'rp1 is free again');
  } finally {
    await r.done();
  }
});

test('q35 without a free root port: a clear error, nothing added', async () => {
  // No guest OS needed: the plan fails before any command that changes the VM.
  const qemu = await startQemu({ machine: 'q35', extraArgs: ['-device', 'pcie-root-port,id=rp1,bus=pcie.0,chassis=1', '-device', 'virtio-net-pci,bus=rp1'] });
  const qmp = new QmpClient();
  try {
    await qmp.connect(qemu.qmpSocket);
    const before = await chardevLabels(qmp);
    const route = new QmpHotplugRoute(qmp);
    let caught: unknown;
    try {
      await route.attach({ vm: 'full-q35', socketPath: join(qemu.dir, 'daemon.sock') });
    } catch (err) {
      caught = err;
    }
    assert.instance(caught, HotplugUnsupportedError);
    const message = (caught as Error).message;
    assert.match(message, /^full-q35: this q35 VM has no virtio-serial controller and no free pcie-root-port/);
    assert.match(message, /all 1 are in use/);
    assert.match(message, /-device pcie-root-port,id=rp1,bus=pcie\.0,chassis=1/);
    assert.equal(await chardevLabels(qmp), before, 'no chardev was added');
  } finally {
    await qmp.disconnect();
    await qemu.stop();
  }
});

test('an existing virtio-serial bus is reused, its controller kept on detach; a failed port add rolls back our chardev', async () => {
  // A libvirt-style named controller (virtio-serial0) and an anonymous one whose bus already
  // holds a port named virt-offload.1. Ports unplug without the guest, so a paused QEMU will do.
  const qemu = await startQemu({
    machine: 'pc',
    extraArgs: [
      '-device', 'virtio-serial-pci,id=virtio-serial0',
      '-chardev', 'null,id=other',
      '-device', 'virtio-serial-pci',
      '-device', 'virtserialport,bus=virtio-serial-bus.0,chardev=other,name=virt-offload.1',
    ],
  });
  const qmp = new QmpClient();
  try {
    await qmp.connect(qemu.qmpSocket);
    const before = await chardevLabels(qmp);
    const route = new QmpHotplugRoute(qmp);
    const socketPath = join(qemu.dir, 'daemon.sock');
    const a = await route.attach({ vm: 'libvirt-like', socketPath });
    assert.equal(kinds(a), ['add-chardev', 'add-port'], 'no controller added');
    assert.is(a.bus, 'virtio-serial0.0');
    const d = await route.detach({ vm: 'libvirt-like' });
    assert.equal(kinds(d), ['remove-port', 'remove-chardev'], 'their controller stays');
    assert.ok((await peripherals(qmp)).includes('virtio-serial0'));
    assert.equal(await chardevLabels(qmp), before);

    // virt-offload.1 is taken (QEMU refuses a second port of that name): the port add fails
    // after our chardev was added, and the chardev is removed again.
    let caught: unknown;
    try {
      await route.attach({ vm: 'libvirt-like', socketPath, portName: 'virt-offload.1' });
    } catch (err) {
      caught = err;
    }
    const { HotplugStepError } = await import('../../lib/hotplug/index.js');
    assert.instance(caught, HotplugStepError);
    const err = caught as InstanceType<typeof HotplugStepError>;
    assert.is(err.command, 'device_add');
    assert.is(err.errorClass, 'GenericError');
    assert.match(err.description ?? '', /already exists.*virt-offload\.1|virt-offload\.1.*already exists/i);
    assert.is(err.rolledBack, 'remove chardev vo-chr1');
    assert.is(err.rollbackProblem, undefined);
    assert.equal(await chardevLabels(qmp), before, 'the chardev this call added is gone');
  } finally {
    await qmp.disconnect();
    await qemu.stop();
  }
});

test('a controller without an id is reused through its bus name', async () => {
  const qemu = await startQemu({ machine: 'pc', extraArgs: ['-device', 'virtio-serial-pci'] });
  const qmp = new QmpClient();
  try {
    await qmp.connect(qemu.qmpSocket);
    const route = new QmpHotplugRoute(qmp);
    const a = await route.attach({ vm: 'anon', socketPath: join(qemu.dir, 'daemon.sock') });
    assert.equal(kinds(a), ['add-chardev', 'add-port']);
    assert.match(a.bus, /^virtio-serial-bus\.\d+$/);
    const parent = await qmp.execute<string>('qom-get', { path: '/machine/peripheral/vo-port0', property: 'parent_bus' });
    assert.match(parent, new RegExp(`^/machine/peripheral-anon/device\\[\\d+\\]/virtio-backend/${a.bus.replace('.', '\\.')}$`));
    assert.equal(kinds(await route.detach({ vm: 'anon' })), ['remove-port', 'remove-chardev']);
  } finally {
    await qmp.disconnect();
    await qemu.stop();
  }
});

test.run();
