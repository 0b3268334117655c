// The libvirt route into a real tiny guest under the real libvirt stack (libvirtd, virtlogd,
// the system bus, libvirt-dbus; test/helpers/libvirt.ts). One domain, booted twice:
// 1. defined WITHOUT a virtio-serial controller and running: attach fails with the typed error
//    that names `virt-offload enable DOMAIN`;
// 2. destroyed, enableOffload() (what `virt-offload enable` runs) adds the controller and our
//    metadata to the inactive definition; started again: attach → the guest's virtio_console
//    binds the port by name and data flows both ways through the "daemon" socket; a second
//    attach is a no-op; detach removes the port from libvirt's live XML and from the guest.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HotplugNoSerialControllerError, LibvirtRoute } from '../../lib/hotplug/index.js';
import {
  LibvirtConnection,
  LibvirtFlags,
  OFFLOAD_NAMESPACE,
  OFFLOAD_PREFIX,
  channels,
  enableOffload,
  offloadMetadataXml,
  parseXml,
  readOffloadMetadata,
  virtioSerialControllers,
} from '../../lib/libvirt/index.js';
import { type LibvirtStack, type TinyDomain, startLibvirt } from '../helpers/libvirt.js';
import { startPingPongDaemon } from '../helpers/ping-pong-daemon.js';

const PORT = 'virt-offload.0';
let stack: LibvirtStack;
let conn: LibvirtConnection;
let domain: TinyDomain;


async function guestPortNames(): Promise<string[]> {
  const r = await domain.exec('for f in /sys/class/virtio-ports/*/name; do [ -r "$f" ] && cat "$f"; done; true', 10_000);
  assert.is(r.code, 0, r.output);
  return r.output.split('\n').filter((l) => l !== '');
}

test.before(async () => {
  stack = await startLibvirt();
  // 30 s per call, not the default 10: a fresh CI machine runs a cold libvirtd under TCG guests.
  conn = await LibvirtConnection.connect({ busAddress: stack.busAddress, timeoutMs: 30_000 });
  domain = await stack.defineTinyDomain(`vo-lvhp-${process.pid}`, { withSerialController: false });
});

test.after(async () => {
  conn?.close();
  await stack?.stop();
});

test('a running domain without a virtio-serial controller: attach says so and names `virt-offload enable DOMAIN`', async () => {
  await domain.start();
  const route = new LibvirtRoute({ domain: domain.name, connection: conn, timeoutMs: 30_000 });
  const err = await route.attach({ vm: domain.name, socketPath: join(domain.dir, 'daemon.sock') }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, HotplugNoSerialControllerError);
  const e = err as HotplugNoSerialControllerError;
  assert.is(e.domain, domain.name);
  assert.is(e.remedy, `virt-offload enable ${domain.name}`);
  assert.match(e.message, `virt-offload enable ${domain.name}`);
  assert.match(e.message, /next boot/);
  assert.is(e.code, 'EUNSUPPORTED');
  // Nothing was attached.
  assert.equal(channels(parseXml(stack.virsh(['dumpxml', domain.name]), 'live')).length, 0);
  await domain.destroy();
});

test('enableOffload on the inactive domain adds the controller and <vo:offload>; after start the libvirt route attaches, data flows, re-attach is a no-op, detach removes the port', async () => {
  const enabled = await enableOffload(conn, domain.name, { enabled: true, required: false, port: PORT });
  assert.is(enabled.controllerAdded, true);
  assert.is(enabled.metadataChanged, true);
  assert.is(enabled.running, false);
  const inactive = parseXml(stack.virsh(['dumpxml', '--inactive', domain.name]), 'inactive');
  assert.is(virtioSerialControllers(inactive).length, 1);
  assert.equal(readOffloadMetadata(inactive), { enabled: true, required: false, port: PORT });
  assert.match(stack.virsh(['metadata', domain.name, OFFLOAD_NAMESPACE, '--config']), /enabled="yes"/);
  const twice = await enableOffload(conn, domain.name, { enabled: true, required: false, port: PORT });
  assert.is(twice.unchanged, true, 'a second enable changes nothing');

  // Opt out again before starting: another test may have the libvirt hook installed on this
  // machine right now, and its daemon would attach to an opted-in domain.
  await (await conn.lookupDomain(domain.name)).setMetadata(
    LibvirtFlags.METADATA_ELEMENT,
    offloadMetadataXml({ enabled: false, required: false, port: PORT }),
    OFFLOAD_PREFIX,
    OFFLOAD_NAMESPACE,
    LibvirtFlags.AFFECT_CONFIG,
  );
  await domain.start();
  assert.not.ok((await guestPortNames()).includes(PORT), 'no port before attach');
  const daemon = await startPingPongDaemon(join(domain.dir, 'daemon.sock'));
  try {
    const route = new LibvirtRoute({ domain: domain.name, connection: conn, timeoutMs: 30_000 });
    const spec = { vm: domain.name, socketPath: join(domain.dir, 'daemon.sock') };
    let t = Date.now();
    const first = await route.attach(spec);
    assert.is(first.alreadyAttached, false);
    assert.equal(first.steps.map((s) => [s.kind, s.command, s.id]), [['add-port', 'AttachDevice', 'ua-vo-port0']]);
    assert.is(first.portId, 'ua-vo-port0');
    assert.is(first.chardevId, 'charua-vo-port0');
    assert.is(first.bus, 'virtio-serial0.0');
    const r = await domain.exec(
      [
        `p=$(vo-port ${PORT}) || exit 3`,
        'echo "device: $p"',
        'd=$(basename "$p")',
        'echo "driver: $(basename "$(readlink /sys/class/virtio-ports/$d/device/driver)")"',
        'exec 3<>"$p"',
        'echo "ping one" >&3',
        'read -r reply <&3',
        'echo "reply: $reply"',
      ].join('\n'),
      20_000,
    );
    console.log(`libvirt route: attach → guest round trip: ${Date.now() - t} ms (AttachDevice ${first.elapsedMs} ms)`);
    assert.is(r.code, 0, r.output);
    assert.match(r.output, /^device: \/dev\/vport\d+p\d+$/m);
    assert.match(r.output, /^driver: virtio_console$/m);
    assert.match(r.output, /^reply: pong one$/m, 'the guest read the daemon’s answer');
    assert.ok(daemon.lines.includes('ping one'), 'the daemon got the guest’s line');

    const again = await route.attach(spec);
    assert.is(again.alreadyAttached, true);
    assert.equal(again.steps, []);
    assert.is(daemon.accepted(), 1, 'the no-op attach did not reconnect');
    // Another socket under our port name is a conflict, not a silent replacement.
    const conflict = await route.attach({ ...spec, socketPath: join(domain.dir, 'other.sock') }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    assert.match(conflict?.message ?? 'resolved', /already has a virtio port named virt-offload\.0/);

    t = Date.now();
    const gone = await route.detach({ vm: domain.name });
    assert.is(gone.alreadyDetached, false);
    assert.equal(gone.steps.map((s) => [s.kind, s.command, s.id]), [['remove-port', 'DetachDevice', 'ua-vo-port0']]);
    console.log(`libvirt route: detach (DetachDevice + DeviceRemoved): ${Date.now() - t} ms`);
    const live = parseXml(stack.virsh(['dumpxml', domain.name]), 'live');
    assert.equal(channels(live).length, 0, 'libvirt’s live XML has no channel left');
    assert.not.ok((await guestPortNames()).includes(PORT), 'the guest no longer sees the port');
    const noop = await route.detach({ vm: domain.name });
    assert.is(noop.alreadyDetached, true);

    // And back: a detached port can be attached again.
    const back = await route.attach(spec);
    assert.is(back.alreadyAttached, false);
    assert.ok((await guestPortNames()).includes(PORT) || (await domain.exec(`vo-port ${PORT}`)).code === 0);
    // The live definition keeps the metadata; the persistent one never got the channel.
    const d = await conn.lookupDomain(domain.name);
    assert.equal(channels(parseXml(await d.getXMLDesc(LibvirtFlags.XML_INACTIVE), 'inactive')).length, 0);
  } finally {
    await daemon.close();
  }
});

test.run();
