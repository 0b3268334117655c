// Unit tests of lib/libvirt with a fake bus (BusPort): the per-call time limit, flags sent as
// numbers, error mapping, signals taken only from libvirt-dbus's bus name, pending calls
// rejected when the bus closes; and the XML model: round trip, escaping, DOCTYPE refused,
// controller and metadata edits. (The real stack: bindings.test.ts.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BusCallFailure,
  LibvirtCallError,
  LibvirtConnectError,
  LibvirtConnection,
  LibvirtFlags,
  LibvirtNoDomainError,
  LibvirtTimeoutError,
  XmlDocumentError,
  addVirtioSerialController,
  channels,
  parseXml,
  readOffloadMetadata,
  serializeXml,
  setOffloadMetadata,
  unixChannelXml,
  virtioSerialControllers,
  type BusCall,
  type BusMessage,
  type BusPort,
} from '../../lib/libvirt/index.js';

const LIBVIRT = ':1.42';

/** A bus that answers from `answer` (undefined: never answers). */
function fakeBus(answer: (c: BusCall) => Promise<BusMessage> | undefined): BusPort & { calls: BusCall[]; emit(m: BusMessage): void; drop(): void } {
  const signals = new Set<(m: BusMessage) => void>();
  const closers = new Set<(e: Error | undefined) => void>();
  const calls: BusCall[] = [];
  return {
    calls,
    call(c) {
      calls.push(c);
      if (c.destination === 'org.freedesktop.DBus') return Promise.resolve({ body: [] });
      return answer(c) ?? new Promise<BusMessage>(() => {});
    },
    onSignal(l) {
      signals.add(l);
      return () => signals.delete(l);
    },
    onClose(l) {
      closers.add(l);
    },
    close() {},
    emit(m) {
      for (const l of signals) l(m);
    },
    drop() {
      for (const l of closers) l(new Error('socket closed'));
    },
  };
}

test('a call without an answer ends in LibvirtTimeoutError naming method and domain', async () => {
  const bus = fakeBus((c) => (c.member === 'DomainLookupByName' ? Promise.resolve({ sender: LIBVIRT, body: ['/org/libvirt/QEMU/domain/_1'] }) : undefined));
  const conn = await LibvirtConnection.connect({ bus, timeoutMs: 50 });
  const d = await conn.lookupDomain('vm1');
  const err = await d.getXMLDesc().then(() => undefined, (e: unknown) => e);
  assert.instance(err, LibvirtTimeoutError);
  assert.is((err as LibvirtTimeoutError).method, 'GetXMLDesc');
  assert.is((err as LibvirtTimeoutError).domain, 'vm1');
  assert.is((err as LibvirtTimeoutError).timeoutMs, 50);
});

test('flags and metadata types go out as plain numbers with the documented signatures', async () => {
  const bus = fakeBus(() => Promise.resolve({ sender: LIBVIRT, body: ['/org/libvirt/QEMU/domain/_1'] }));
  const conn = await LibvirtConnection.connect({ bus });
  const d = await conn.lookupDomain('vm1');
  await d.attachDevice('<channel/>', LibvirtFlags.AFFECT_LIVE);
  await d.setMetadata(LibvirtFlags.METADATA_ELEMENT, '<offload/>', 'vo', 'urn:x', LibvirtFlags.AFFECT_LIVE | LibvirtFlags.AFFECT_CONFIG);
  const attach = bus.calls.find((c) => c.member === 'AttachDevice')!;
  assert.is(attach.signature, 'su');
  assert.equal(attach.body, ['<channel/>', 1]);
  const meta = bus.calls.find((c) => c.member === 'SetMetadata')!;
  assert.is(meta.signature, 'isssu');
  assert.equal(meta.body, [2, '<offload/>', 'vo', 'urn:x', 3]);
  for (const c of bus.calls) for (const v of c.body ?? []) assert.is.not(typeof v, 'bigint');
});

test('errors: org.libvirt.Error "Domain not found" → LibvirtNoDomainError; others → LibvirtCallError with libvirt’s text', async () => {
  const bus = fakeBus((c) =>
    Promise.reject(
      c.member === 'DomainLookupByName'
        ? new BusCallFailure('org.libvirt.Error', "Domain not found: no domain with matching name 'vm9'")
        : new BusCallFailure('org.freedesktop.DBus.Error.ServiceUnknown', 'The name org.libvirt was not provided by any .service files'),
    ),
  );
  const conn = await LibvirtConnection.connect({ bus });
  const e1 = await conn.lookupDomain('vm9').then(() => undefined, (e: unknown) => e as LibvirtCallError);
  assert.instance(e1, LibvirtNoDomainError);
  assert.is(e1!.libvirtMessage, "Domain not found: no domain with matching name 'vm9'");
  assert.is(e1!.domain, 'vm9');
  const e2 = await conn.listDomains().then(() => undefined, (e: unknown) => e as LibvirtCallError);
  assert.instance(e2, LibvirtCallError);
  assert.not.instance(e2, LibvirtNoDomainError);
  assert.is(e2!.errorName, 'org.freedesktop.DBus.Error.ServiceUnknown');
  assert.match(e2!.message, /apt-get install libvirt-dbus/);
});

test('device signals count only from libvirt-dbus (the sender of its replies), and are kept from subscription on', async () => {
  const path = '/org/libvirt/QEMU/domain/_1';
  const bus = fakeBus(() => Promise.resolve({ sender: LIBVIRT, body: [path] }));
  const conn = await LibvirtConnection.connect({ bus });
  const d = await conn.lookupDomain('vm1');
  const watch = await d.watchDevices();
  // A spoofed unicast signal from another bus client.
  bus.emit({ sender: ':1.99', path, interface: 'org.libvirt.Domain', member: 'DeviceRemoved', body: ['ua-vo-port0'] });
  const early = await watch.wait(['DeviceRemoved'], 'ua-vo-port0', 30).then(() => 'seen', (e: unknown) => e);
  assert.is((early as Error).name, 'LibvirtSignalTimeoutError');
  bus.emit({ sender: LIBVIRT, path, interface: 'org.libvirt.Domain', member: 'DeviceRemoved', body: ['ua-vo-port0'] });
  // Seen before wait() is called: still found.
  assert.is(await watch.wait(['DeviceRemoved', 'DeviceRemovalFailed'], 'ua-vo-port0', 30), 'DeviceRemoved');
  await watch.close();
});

test('a bus that closes rejects the pending call at once with LibvirtConnectError', async () => {
  const bus = fakeBus(() => undefined);
  const conn = await LibvirtConnection.connect({ bus, busAddress: 'unix:path=/x', timeoutMs: 10_000 });
  const pending = conn.listDomains().then(() => undefined, (e: unknown) => e);
  bus.drop();
  const err = await pending;
  assert.instance(err, LibvirtConnectError);
  assert.is((err as LibvirtConnectError).busAddress, 'unix:path=/x');
});

const DOMAIN = `<domain type='qemu'>
  <name>vm &amp; co</name>
  <uuid>eb9ff34a-1e97-4e7c-a83e-09f8db072a68</uuid>
  <!-- a comment -->
  <description><![CDATA[a < b]]></description>
  <devices>
    <controller type='usb' model='none'/>
    <channel type='unix'><source mode='connect' path='/run/a b.sock'/><target type='virtio' name='virt-offload.0'/><alias name='ua-vo-port0'/><address type='virtio-serial' controller='0' bus='0' port='1'/></channel>
  </devices>
</domain>`;

test('XML: parse → serialize keeps names, text, CDATA, comments; values are escaped', () => {
  const tree = parseXml(DOMAIN, 'vm');
  const again = parseXml(serializeXml(tree), 'vm (again)');
  assert.equal(again, tree);
  assert.match(serializeXml(tree), '<name>vm &amp; co</name>');
  const [ch] = channels(tree);
  assert.equal([ch?.sourcePath, ch?.targetName, ch?.alias, ch?.address], ['/run/a b.sock', 'virt-offload.0', 'ua-vo-port0', { controller: '0', bus: '0', port: '1' }]);
  // Hostile values stay values.
  const xml = unixChannelXml({ socketPath: `/tmp/"'><x/>&.sock`, portName: 'p', alias: 'ua-p', reconnectSeconds: 1 });
  const parsed = channels(parseXml(`<domain><devices>${xml}</devices></domain>`, 'ch'));
  assert.is(parsed[0]?.sourcePath, `/tmp/"'><x/>&.sock`);
  assert.is(parsed.length, 1);
});

test('XML: DOCTYPE, two roots, not well-formed → XmlDocumentError', () => {
  for (const bad of ['<!DOCTYPE d [<!ENTITY x "y">]><domain>&x;</domain>', '<domain/><domain/>', '<domain><a></domain>', '<domain>&nbsp;</domain>']) {
    assert.throws(() => parseXml(bad, 'bad'), (e: unknown) => e instanceof XmlDocumentError, bad);
  }
});

test('XML: addVirtioSerialController adds one (only once); setOffloadMetadata replaces ours and keeps others’ metadata', () => {
  const tree = parseXml(DOMAIN, 'vm');
  assert.ok(addVirtioSerialController(tree));
  assert.not.ok(addVirtioSerialController(tree));
  assert.is(virtioSerialControllers(tree).length, 1);
  setOffloadMetadata(tree, { enabled: true, required: false, port: 'virt-offload.0' });
  const metadata = tree.children.find((c) => c.kind === 'element' && c.local === 'metadata');
  assert.ok(metadata);
  (metadata as { children: unknown[] }).children.unshift(parseXml(`<o:other xmlns:o='urn:other' a='1'/>`, 'other'));
  setOffloadMetadata(tree, { enabled: true, required: true, port: 'virt-offload.1' });
  const out = serializeXml(tree);
  const back = parseXml(out, 'out');
  assert.equal(readOffloadMetadata(back), { enabled: true, required: true, port: 'virt-offload.1' });
  assert.is(out.split('http://virt-offload.org/xmlns/domain/1.0').length - 1, 1);
  assert.match(out, `<o:other xmlns:o="urn:other" a="1"/>`);
});

test.run();
