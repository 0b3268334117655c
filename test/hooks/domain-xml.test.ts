// hooks/domain-xml.ts, the hook's small strict XML reader, against sax (strict, namespaces,
// the five XML entities only: what the hook used before) on the same documents: a realistic
// libvirt domain XML, every truncation of it, and seeded random mutations. Wherever sax refuses
// a document, the reader must refuse it too (it may be stricter, never laxer); wherever both
// accept, they must read the same name, UUID and opt-in.
import sax from 'sax';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DomainXmlError, readDomainFacts, type DomainFacts, type OffloadOptIn } from '../../hooks/domain-xml.js';

const NS = 'http://virt-offload.org/xmlns/domain/1.0';

/** The reference: the sax-based reader the hook had first. */
function saxFacts(xml: string): DomainFacts {
  const parser = sax.parser(true, { xmlns: true, strictEntities: true });
  const path: string[] = [];
  let name: string | undefined;
  let uuid: string | undefined;
  let text: string[] | undefined;
  let offload: OffloadOptIn | undefined;
  let failure: string | undefined;
  const fail = (why: string) => {
    failure ??= why;
  };
  parser.onerror = (err) => fail(err.message);
  parser.ondoctype = () => fail('doctype');
  parser.onopentag = (tag) => {
    if (failure !== undefined) return;
    if (path.length === 0 && (tag.local !== 'domain' || tag.uri !== '')) fail('root');
    path.push(tag.uri === '' ? tag.local : `{${tag.uri}}${tag.local}`);
    const where = path.join('/');
    if (where === 'domain/name' || where === 'domain/uuid') text = [];
    else if (path.length === 3 && path[1] === 'metadata' && tag.uri === NS && tag.local === 'offload') {
      if (offload !== undefined) fail('two');
      const get = (l: string) => Object.values(tag.attributes).find((a) => a.local === l && a.prefix === '')?.value;
      const e = get('enabled') ?? 'no';
      const r = get('required') ?? 'no';
      const problems: string[] = [];
      if (e !== 'yes' && e !== 'no') problems.push('e');
      if (r !== 'yes' && r !== 'no') problems.push('r');
      offload = { enabled: e === 'yes', required: r !== 'no', port: get('port') ?? 'virt-offload.0', problems };
    }
  };
  parser.ontext = (t) => text?.push(t);
  parser.oncdata = (t) => text?.push(t);
  parser.onclosetag = () => {
    const where = path.join('/');
    if (text !== undefined && (where === 'domain/name' || where === 'domain/uuid')) {
      if (where === 'domain/name') {
        if (name !== undefined) fail('two names');
        name = text.join('').trim();
      } else {
        if (uuid !== undefined) fail('two uuids');
        uuid = text.join('').trim();
      }
      text = undefined;
    }
    path.pop();
  };
  try {
    parser.write(xml).close();
  } catch (err) {
    fail((err as Error).message);
  }
  if (failure !== undefined) throw new Error(failure);
  return { name, uuid, offload };
}

type Outcome = { ok: true; facts: unknown } | { ok: false; why: string };
function outcome(read: (xml: string) => DomainFacts, xml: string): Outcome {
  try {
    const f = read(xml);
    return { ok: true, facts: { name: f.name, uuid: f.uuid, offload: f.offload === undefined ? undefined : { ...f.offload, problems: f.offload.problems.length } } };
  } catch (err) {
    if (read === readDomainFacts && !(err instanceof DomainXmlError)) throw err;
    return { ok: false, why: (err as Error).message };
  }
}

function compare(xml: string, label: string): 'both-ok' | 'both-refused' | 'stricter' {
  const ref = outcome(saxFacts, xml);
  const ours = outcome(readDomainFacts, xml);
  if (!ref.ok) {
    assert.not.ok(ours.ok, `${label}: sax refuses (${ref.why}) but the hook's reader accepts:\n${JSON.stringify(xml)}`);
    return 'both-refused';
  }
  if (!ours.ok) return 'stricter';
  assert.equal(ours.facts, ref.facts, `${label}: different facts for\n${JSON.stringify(xml)}`);
  return 'both-ok';
}

// What libvirt writes for a running domain, with other applications' metadata, a comment,
// entities and a CDATA section thrown in.
const DOMAIN = `<domain type='qemu' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web1</name>
  <uuid>6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162</uuid>
  <description>Tom &amp; Jerry &lt;3 &#233;&#x263A; <![CDATA[a <raw> & section]]></description>
  <metadata>
    <app1:foo xmlns:app1="http://app1.org/app1/">..</app1:foo>
    <!-- opted in by virt-offload enable -->
    <vo:offload xmlns:vo="${NS}" enabled="yes" required="no" port="virt-offload.0"/>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/lib/vo/vmlinux</kernel>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='virtio-serial' index='0'><alias name='virtio-serial0'/><address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></controller>
    <channel type='unix'>
      <source mode='connect' path='/run/virt-offload/vm/web1.sock'><reconnect enabled='yes' timeout='1'/></source>
      <target type='virtio' name='virt-offload.0' state='connected'/>
      <alias name='ua-vo-virt-offload.0'/>
    </channel>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64055</label></seclabel>
  <qemu:commandline><qemu:arg value='-nodefaults'/></qemu:commandline>
</domain>
`;

test('a realistic libvirt domain XML is read, equal to sax', () => {
  assert.is(compare(DOMAIN, 'base'), 'both-ok');
  const facts = readDomainFacts(DOMAIN);
  assert.equal(facts, { name: 'web1', uuid: '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162', offload: { enabled: true, required: false, port: 'virt-offload.0', problems: [] } });
  assert.is(compare(`<?xml version="1.0" encoding="UTF-8"?>\n${DOMAIN}<!-- trailer -->\n<?pi x?>\n`, 'declaration'), 'both-ok');
});

test('names with XML 1.0 name characters: combining marks, U+203F, CJK, read like sax', () => {
  // Another application's metadata: its element and attribute names are its own business.
  for (const name of ['app:cafe\u0301', 'app:a\u203Fb', 'app:\u6F22\u5B57', 'app:\u00B7'.replace('\u00B7', 'a\u00B7b'), 'app:t\u0300-1.2']) {
    const xml = DOMAIN.replace('  <metadata>\n', `  <metadata>\n    <${name} xmlns:app="http://example.org/app" ${name.replace('app:', 'k')}="v"/>\n`);
    assert.is(compare(xml, name), 'both-ok', name);
    assert.equal(readDomainFacts(xml).offload?.required, false, name);
  }
  // And what no name may start with: a digit, a combining mark, a middle dot.
  for (const bad of ['app:1x', 'app:\u0301x', 'app:\u00B7x']) {
    const xml = DOMAIN.replace('  <metadata>\n', `  <metadata>\n    <${bad} xmlns:app="http://example.org/app"/>\n`);
    assert.throws(() => readDomainFacts(xml), (e: unknown) => e instanceof DomainXmlError, bad);
  }
});

test('every truncation: refused by both (except the cut of the final newline)', () => {
  const counts = { 'both-ok': 0, 'both-refused': 0, stricter: 0 };
  // From 1: sax accepts an empty document, the reader refuses it (no root element).
  for (let n = 1; n < DOMAIN.length; n++) counts[compare(DOMAIN.slice(0, n), `truncated at ${n}`)]++;
  assert.is(counts['both-ok'], 1);
  assert.is(counts.stricter, 0);
});

test('seeded random mutations: never laxer than sax, the same facts when both accept', () => {
  const pieces = ['<', '>', '&', '"', "'", '</x>', '<x>', '<x/>', ']]>', '--', '&amp;', '&foo;', '&#0;', '&#x41;', '<!--', '-->', '<?pi?>', '<?xml?>', '\u0001', ' ', '=', 'xmlns:vo="urn:x"', 'xmlns:vo=""', 'xmlns=""', ' a="1"', '<vo:y/>', '<z:y/>', '<![CDATA[', '<!DOCTYPE d>', '<!ENTITY e "x">', ':', 'é', '\n'];
  let seed = 0x5eed;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const counts = { 'both-ok': 0, 'both-refused': 0, stricter: 0 };
  for (let k = 0; k < 4000; k++) {
    let xml = DOMAIN;
    const edits = 1 + rand(3);
    for (let e = 0; e < edits; e++) {
      const at = rand(xml.length);
      const piece = pieces[rand(pieces.length)]!;
      xml = rand(3) === 0 ? xml.slice(0, at) + piece + xml.slice(at + 1 + rand(4)) : xml.slice(0, at) + piece + xml.slice(at);
    }
    counts[compare(xml, `mutation ${k}`)]++;
  }
  // Enough of each kind to mean something.
  assert.ok(counts['both-ok'] > 300, JSON.stringify(counts));
  assert.ok(counts['both-refused'] > 1000, JSON.stringify(counts));
  console.log(`  mutations: ${JSON.stringify(counts)}`);
});

test('what the reader refuses on its own (sax lets these through): forbidden characters, "--" in a comment, "]]>" in text', () => {
  for (const xml of [
    `<domain><name>a\u0001</name></domain>`,
    `<domain><!-- a -- b --><name>a</name></domain>`,
    `<domain><name>a ]]> b</name></domain>`,
  ]) {
    assert.throws(() => readDomainFacts(xml), (e: unknown) => e instanceof DomainXmlError);
  }
});

test.run();
