// lib/libvirt against the real stack (test/helpers/libvirt.ts: system bus, virtlogd, libvirtd,
// bus-activated libvirt-dbus): list, lookup, an unknown domain's typed error, GetXMLDesc
// (live and inactive), metadata set/get/clear, DefineXML of an edited definition, lifecycle
// events. (The per-call time limit is tested with a bus that never answers: connection.test.ts.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  LibvirtCallError,
  LibvirtConnection,
  LibvirtFlags,
  LibvirtNoDomainError,
  OFFLOAD_NAMESPACE,
  addVirtioSerialController,
  offloadMetadataXml,
  parseXml,
  readOffloadMetadata,
  serializeXml,
  virtioSerialControllers,
} from '../../lib/libvirt/index.js';
import { type LibvirtStack, startLibvirt } from '../helpers/libvirt.js';

let stack: LibvirtStack;
let conn: LibvirtConnection;
const name = `vo-bind-${process.pid}`;

test.before(async () => {
  stack = await startLibvirt();
  await stack.defineTinyDomain(name, { withSerialController: false });
  conn = await LibvirtConnection.connect({ busAddress: stack.busAddress });
});

test.after(async () => {
  conn?.close();
  await stack?.stop();
});

test('listDomains and lookupDomain find the test domain by name', async () => {
  const all = await conn.listDomains();
  const mine = all.find((d) => d.name === name);
  assert.ok(mine, `${name} in ${all.map((d) => d.name).join(', ')}`);
  const inactive = await conn.listDomains(LibvirtFlags.LIST_INACTIVE);
  assert.ok(inactive.some((d) => d.name === name));
  const byName = await conn.lookupDomain(name);
  assert.is(byName.path, mine.path);
  assert.match(byName.path, /^\/org\/libvirt\/QEMU\/domain\/_/);
  assert.is(await byName.isActive(), false);
});

test('an unknown domain is a LibvirtNoDomainError carrying the method, the name and libvirt’s text', async () => {
  const missing = `vo-missing-${process.pid}`;
  try {
    await conn.lookupDomain(missing);
    assert.unreachable('lookup of a missing domain resolved');
  } catch (err) {
    assert.instance(err, LibvirtNoDomainError);
    const e = err as LibvirtNoDomainError;
    assert.is(e.method, 'DomainLookupByName');
    assert.is(e.domain, missing);
    assert.is(e.errorName, 'org.libvirt.Error');
    assert.match(e.libvirtMessage, missing);
    assert.match(e.message, `domain ${missing}: DomainLookupByName failed`);
    assert.is(e.toJSON()['code'], 'EIO');
  }
});

test('GetXMLDesc: the definition as libvirt holds it; a bad call is a LibvirtCallError', async () => {
  const d = await conn.lookupDomain(name);
  const xml = await d.getXMLDesc(LibvirtFlags.XML_INACTIVE | LibvirtFlags.XML_SECURE);
  const tree = parseXml(xml, name);
  assert.is(tree.local, 'domain');
  assert.is(virtioSerialControllers(tree).length, 0);
  assert.match(xml, `<name>${name}</name>`);
  // AttachDevice with a live flag on a domain that is not running: libvirt refuses, we say which domain and call.
  try {
    await d.attachDevice(`<channel type='pty'><target type='virtio' name='x.0'/></channel>`, LibvirtFlags.AFFECT_LIVE);
    assert.unreachable('live attach to an inactive domain resolved');
  } catch (err) {
    assert.instance(err, LibvirtCallError);
    assert.is((err as LibvirtCallError).method, 'AttachDevice');
    assert.is((err as LibvirtCallError).domain, name);
    assert.match((err as LibvirtCallError).libvirtMessage, /not running|inactive/i);
  }
});

test('metadata: absent → undefined; set (config) → our element back, where the hook reads it; set again replaces it', async () => {
  const d = await conn.lookupDomain(name);
  assert.is(await d.getMetadata(LibvirtFlags.METADATA_ELEMENT, OFFLOAD_NAMESPACE, LibvirtFlags.AFFECT_CONFIG), undefined);
  const element = offloadMetadataXml({ enabled: true, required: true, port: 'virt-offload.3' });
  await d.setMetadata(LibvirtFlags.METADATA_ELEMENT, element, 'vo', OFFLOAD_NAMESPACE, LibvirtFlags.AFFECT_CONFIG);
  const back = await d.getMetadata(LibvirtFlags.METADATA_ELEMENT, OFFLOAD_NAMESPACE, LibvirtFlags.AFFECT_CONFIG);
  assert.ok(back);
  assert.match(back, /required="yes"/);
  // The whole definition carries it where the hook looks: /domain/metadata/vo:offload.
  assert.equal(readOffloadMetadata(parseXml(await d.getXMLDesc(LibvirtFlags.XML_INACTIVE), name)), { enabled: true, required: true, port: 'virt-offload.3' });
  assert.match(stack.virsh(['metadata', name, OFFLOAD_NAMESPACE, '--config']), /port="virt-offload.3"/);
  // Set again: replaced, not added (libvirt-dbus cannot remove metadata: '' is parsed as XML and refused).
  await d.setMetadata(LibvirtFlags.METADATA_ELEMENT, offloadMetadataXml({ enabled: false, required: false, port: 'virt-offload.0' }), 'vo', OFFLOAD_NAMESPACE, LibvirtFlags.AFFECT_CONFIG);
  const inactive = await d.getXMLDesc(LibvirtFlags.XML_INACTIVE);
  assert.equal(readOffloadMetadata(parseXml(inactive, name)), { enabled: false, required: false, port: 'virt-offload.0' });
  assert.is(inactive.split(OFFLOAD_NAMESPACE).length - 1, 1, 'one element of our namespace');
  const cleared = await d.setMetadata(LibvirtFlags.METADATA_ELEMENT, '', 'vo', OFFLOAD_NAMESPACE, LibvirtFlags.AFFECT_CONFIG).then(
    () => 'resolved',
    (err: unknown) => err,
  );
  assert.instance(cleared, LibvirtCallError);
});

test('DomainDefineXML of the edited inactive XML adds a virtio-serial controller; DomainEvent reports the redefinition', async () => {
  const d = await conn.lookupDomain(name);
  const events: number[] = [];
  const sub = await conn.onDomainEvent((e) => {
    if (e.path === d.path) events.push(e.event);
  });
  const tree = parseXml(await d.getXMLDesc(LibvirtFlags.XML_INACTIVE | LibvirtFlags.XML_SECURE), name);
  assert.ok(addVirtioSerialController(tree));
  const redefined = await conn.defineDomain(serializeXml(tree));
  assert.is(redefined.path, d.path);
  assert.is(redefined.name, name);
  assert.is(virtioSerialControllers(parseXml(await d.getXMLDesc(LibvirtFlags.XML_INACTIVE), name)).length, 1);
  const deadline = Date.now() + 5000;
  while (!events.includes(0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await sub.close();
  assert.ok(events.includes(0), `VIR_DOMAIN_EVENT_DEFINED (0) among ${JSON.stringify(events)}`);
});

test.run();
