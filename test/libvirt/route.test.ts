// LibvirtRoute (lib/hotplug/libvirt-route.ts) against a scripted libvirt-dbus (a fake BusPort
// holding one domain's live devices): what is sent, idempotence, the missing-controller error,
// conflicts, the socket check, and detach's wait for DeviceRemoved (signal before the reply,
// DeviceRemovalFailed, a lost signal with the device gone or still there). The real thing:
// test/e2e/libvirt-hotplug.test.ts.
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UsageError } from '../../lib/errors.js';
import { HotplugConflictError, HotplugNoSerialControllerError, HotplugStepError, HotplugTimeoutError, LibvirtRoute } from '../../lib/hotplug/index.js';
import { BusCallFailure, LibvirtConnection, parseXml, type BusCall, type BusMessage, type BusPort } from '../../lib/libvirt/index.js';
import { scratchDir } from '../../testbed/tools.js';

const LIBVIRT = ':1.7';
const PATH = '/org/libvirt/QEMU/domain/_1';

interface FakeDomain {
  controller: boolean;
  /** Live <channel> elements (XML text). */
  devices: string[];
  /** What DetachDevice does: remove + signal (default), remove silently, keep silently, fail. */
  detach: 'signal' | 'silent-removed' | 'silent-kept' | 'removal-failed';
  attachError?: string;
  calls: BusCall[];
}

function fakeLibvirt(dom: FakeDomain): BusPort {
  const listeners = new Set<(m: BusMessage) => void>();
  const signal = (member: string, alias: string): void => {
    for (const l of listeners) l({ sender: LIBVIRT, path: PATH, interface: 'org.libvirt.Domain', member, body: [alias] });
  };
  const xml = (): string =>
    `<domain type='qemu'><name>vm1</name><devices>${dom.controller ? "<controller type='virtio-serial' index='0'><alias name='virtio-serial0'/></controller>" : ''}${dom.devices.join('')}</devices></domain>`;
  return {
    call(c) {
      dom.calls.push(c);
      if (c.destination === 'org.freedesktop.DBus') return Promise.resolve({ body: [] });
      const reply = (body: unknown[]): Promise<BusMessage> => Promise.resolve({ sender: LIBVIRT, body });
      switch (c.member) {
        case 'DomainLookupByName':
          return c.body?.[0] === 'vm1' ? reply([PATH]) : Promise.reject(new BusCallFailure('org.libvirt.Error', `Domain not found: no domain with matching name '${String(c.body?.[0])}'`));
        case 'GetXMLDesc':
          return reply([xml()]);
        case 'AttachDevice': {
          if (dom.attachError) return Promise.reject(new BusCallFailure('org.libvirt.Error', dom.attachError));
          const el = String(c.body?.[0]).replace('</channel>', `<address type='virtio-serial' controller='0' bus='0' port='${dom.devices.length + 1}'/></channel>`);
          dom.devices.push(el);
          signal('DeviceAdded', /alias name="([^"]+)"/.exec(el)?.[1] ?? '?');
          return reply([]);
        }
        case 'DetachDevice': {
          const alias = /alias name="([^"]+)"/.exec(String(c.body?.[0]))?.[1] ?? '?';
          if (dom.detach !== 'silent-kept' && dom.detach !== 'removal-failed') dom.devices = dom.devices.filter((d) => !d.includes(`"${alias}"`));
          // libvirt-dbus can send the signal before the method reply: the route must already listen.
          if (dom.detach === 'signal') signal('DeviceRemoved', alias);
          if (dom.detach === 'removal-failed') signal('DeviceRemovalFailed', alias);
          return reply([]);
        }
        default:
          return Promise.reject(new BusCallFailure('org.freedesktop.DBus.Error.UnknownMethod', c.member));
      }
    },
    onSignal(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    onClose() {},
    close() {},
  };
}

let dir: string;
let cleanup: () => void;
let daemon: Server;
let socketPath: string;

test.before(async () => {
  ({ dir, cleanup } = scratchDir('vo-lvroute-'));
  socketPath = join(dir, 'daemon.sock');
  daemon = createServer();
  await new Promise<void>((resolve) => daemon.listen(socketPath, resolve));
});
test.after(async () => {
  await new Promise<void>((resolve) => daemon.close(() => resolve()));
  cleanup();
});

async function rig(overrides: Partial<FakeDomain> = {}): Promise<{ dom: FakeDomain; route: LibvirtRoute }> {
  const dom: FakeDomain = { controller: true, devices: [], detach: 'signal', calls: [], ...overrides };
  const connection = await LibvirtConnection.connect({ bus: fakeLibvirt(dom) });
  return { dom, route: new LibvirtRoute({ domain: 'vm1', connection, timeoutMs: 200 }) };
}

const members = (dom: FakeDomain): string[] => dom.calls.map((c) => c.member);

test('attach sends one live AttachDevice of a unix channel (connect, reconnect, virtio target, ua- alias); again → alreadyAttached', async () => {
  const { dom, route } = await rig();
  const r = await route.attach({ vm: 'vm1', socketPath });
  assert.equal(r.steps.map((s) => [s.kind, s.command, s.id]), [['add-port', 'AttachDevice', 'ua-vo-port0']]);
  assert.equal([r.portId, r.chardevId, r.bus, r.alreadyAttached], ['ua-vo-port0', 'charua-vo-port0', 'virtio-serial0.0', false]);
  const attach = dom.calls.find((c) => c.member === 'AttachDevice')!;
  assert.is(attach.body?.[1], 1, 'VIR_DOMAIN_AFFECT_LIVE as a number');
  const ch = parseXml(String(attach.body?.[0]), 'sent');
  assert.is(ch.local, 'channel');
  assert.match(String(attach.body?.[0]), `<source mode="connect" path="${socketPath}"><reconnect enabled="yes" timeout="1"/></source>`);
  assert.match(String(attach.body?.[0]), '<target type="virtio" name="virt-offload.0"/><alias name="ua-vo-port0"/>');
  dom.calls.length = 0;
  const again = await route.attach({ vm: 'vm1', socketPath });
  assert.is(again.alreadyAttached, true);
  assert.equal(again.steps, []);
  assert.not.ok(members(dom).includes('AttachDevice'));
});

test('no virtio-serial controller (seen in the live XML, or said by libvirt) → HotplugNoSerialControllerError naming `virt-offload enable vm1`', async () => {
  const { dom, route } = await rig({ controller: false });
  const e1 = await route.attach({ vm: 'vm1', socketPath }).then(() => undefined, (e: unknown) => e);
  assert.instance(e1, HotplugNoSerialControllerError);
  assert.is((e1 as HotplugNoSerialControllerError).remedy, 'virt-offload enable vm1');
  assert.not.ok(members(dom).includes('AttachDevice'));
  const { route: r2 } = await rig({ attachError: 'unsupported configuration: no virtio-serial controllers are available' });
  assert.instance(await r2.attach({ vm: 'vm1', socketPath }).then(() => undefined, (e: unknown) => e), HotplugNoSerialControllerError);
});

test('refusals: our port name on another socket (conflict), a socket that does not exist, a bad port name, an unknown domain', async () => {
  const other = `<channel type="unix"><source mode="connect" path="/run/other.sock"/><target type="virtio" name="virt-offload.0"/><alias name="channel0"/></channel>`;
  const { route } = await rig({ devices: [other] });
  const conflict = await route.attach({ vm: 'vm1', socketPath }).then(() => undefined, (e: unknown) => e);
  assert.instance(conflict, HotplugConflictError);
  assert.match((conflict as Error).message, '/run/other.sock');

  const { dom, route: r2 } = await rig();
  const missing = await r2.attach({ vm: 'vm1', socketPath: join(dir, 'nobody.sock') }).then(() => undefined, (e: unknown) => e);
  assert.instance(missing, HotplugStepError);
  assert.match((missing as Error).message, /not a listening unix socket yet/);
  assert.not.ok(members(dom).includes('AttachDevice'));

  assert.throws(() => new LibvirtRoute({ domain: '' }), (e: unknown) => e instanceof UsageError);
  const badName = await r2.attach({ vm: 'vm1', socketPath, portName: `x'/><evil/>` }).then(() => undefined, (e: unknown) => e);
  assert.instance(badName, UsageError);

  const unknown = new LibvirtRoute({ domain: 'vm9', connection: await LibvirtConnection.connect({ bus: fakeLibvirt({ controller: true, devices: [], detach: 'signal', calls: [] }) }) });
  const e = await unknown.attach({ vm: 'vm9', socketPath }).then(() => undefined, (err: unknown) => err);
  assert.instance(e, HotplugStepError);
  assert.match((e as Error).message, /vm9/);
});

test('detach: the live channel XML goes out and DeviceRemoved (even before the reply) ends it; nothing there → alreadyDetached', async () => {
  const { dom, route } = await rig();
  await route.attach({ vm: 'vm1', socketPath });
  const r = await route.detach({ vm: 'vm1' });
  assert.equal(r.steps.map((s) => [s.kind, s.command, s.id]), [['remove-port', 'DetachDevice', 'ua-vo-port0']]);
  const detach = dom.calls.find((c) => c.member === 'DetachDevice')!;
  assert.match(String(detach.body?.[0]), /<address type="virtio-serial"/, 'the full live element, address included');
  // Subscribed to the domain's signals before DetachDevice went out.
  const subscribed = dom.calls.findIndex((c) => c.member === 'AddMatch' && String(c.body?.[0]).includes(`path='${PATH}'`));
  assert.ok(subscribed >= 0 && subscribed < dom.calls.indexOf(detach), members(dom).join(' '));
  assert.is(dom.devices.length, 0);
  assert.is((await route.detach({ vm: 'vm1' })).alreadyDetached, true);
});

test('detach: DeviceRemovalFailed → error; no signal but gone → done; no signal and still there → HotplugTimeoutError', async () => {
  for (const [mode, expect] of [
    ['removal-failed', HotplugStepError],
    ['silent-removed', undefined],
    ['silent-kept', HotplugTimeoutError],
  ] as const) {
    const { route } = await rig({ detach: mode });
    await route.attach({ vm: 'vm1', socketPath });
    const outcome = await route.detach({ vm: 'vm1' }).then((r) => r, (e: unknown) => e);
    if (expect === undefined) assert.is((outcome as { alreadyDetached: boolean }).alreadyDetached, false, mode);
    else assert.instance(outcome, expect, mode);
  }
});

test.run();
