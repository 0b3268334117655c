// What virt-offload reads from and writes into libvirt's domain XML: virtio-serial
// controllers, `<channel>` devices, and our opt-in element in `<metadata>`:
//
//   <vo:offload xmlns:vo="http://virt-offload.org/xmlns/domain/1.0"
//               enabled="yes" required="no" port="virt-offload.0"/>
//
// (documented in hooks/README.md, "Domain metadata"; the hook reads the same element).
import { attribute, childElements, element, firstChild, serializeXml, type XmlElement } from './xml.js';

export const OFFLOAD_NAMESPACE = 'http://virt-offload.org/xmlns/domain/1.0';
export const OFFLOAD_PREFIX = 'vo';
export const OFFLOAD_ELEMENT = 'offload';

export interface OffloadMetadata {
  enabled: boolean;
  /** The domain must not start without the offload device. */
  required: boolean;
  /** The port name the guest sees. */
  port: string;
}

/**
 * Our element as libvirt's SetMetadata takes it: without prefix or namespace declaration
 * (libvirt puts it into the namespace given as `uri`, with the prefix given as `key`, and
 * refuses an element that declares the prefix itself: "failed to create a new XML namespace").
 */
export function offloadMetadataXml(meta: OffloadMetadata): string {
  const el = offloadMetadataElement(meta);
  return serializeXml({ ...el, name: OFFLOAD_ELEMENT, attributes: el.attributes.filter((a) => !a.name.startsWith('xmlns')) });
}

function offloadMetadataElement(meta: OffloadMetadata): XmlElement {
  return {
    kind: 'element',
    name: `${OFFLOAD_PREFIX}:${OFFLOAD_ELEMENT}`,
    local: OFFLOAD_ELEMENT,
    uri: OFFLOAD_NAMESPACE,
    attributes: [
      { name: `xmlns:${OFFLOAD_PREFIX}`, value: OFFLOAD_NAMESPACE },
      { name: 'enabled', value: meta.enabled ? 'yes' : 'no' },
      { name: 'required', value: meta.required ? 'yes' : 'no' },
      { name: 'port', value: meta.port },
    ],
    children: [],
  };
}

/** Our element in /domain/metadata, read leniently (unknown values: enabled no, required yes). */
export function readOffloadMetadata(domain: XmlElement): OffloadMetadata | undefined {
  const metadata = firstChild(domain, 'metadata');
  const el = metadata && firstChild(metadata, OFFLOAD_ELEMENT, OFFLOAD_NAMESPACE);
  if (!el) return undefined;
  return {
    enabled: attribute(el, 'enabled') === 'yes',
    required: (attribute(el, 'required') ?? 'no') !== 'no',
    port: attribute(el, 'port') ?? 'virt-offload.0',
  };
}

/** Replace (or add) our element in /domain/metadata, creating <metadata> when missing. */
export function setOffloadMetadata(domain: XmlElement, meta: OffloadMetadata): void {
  let metadata = firstChild(domain, 'metadata');
  if (!metadata) {
    metadata = element('metadata');
    // Conventional place: after the identity elements (libvirt itself accepts any order).
    const identity = new Set(['name', 'uuid', 'genid', 'title', 'description']);
    let at = 0;
    domain.children.forEach((c, i) => {
      if (c.kind === 'element' && c.uri === '' && identity.has(c.local)) at = i + 1;
    });
    domain.children.splice(at, 0, metadata);
  }
  metadata.children = metadata.children.filter((c) => !(c.kind === 'element' && c.uri === OFFLOAD_NAMESPACE && c.local === OFFLOAD_ELEMENT));
  metadata.children.push(offloadMetadataElement(meta));
}

export function devicesOf(domain: XmlElement): XmlElement | undefined {
  return firstChild(domain, 'devices');
}

/** The domain's `<controller type='virtio-serial'>` elements. */
export function virtioSerialControllers(domain: XmlElement): XmlElement[] {
  const devices = devicesOf(domain);
  return devices ? childElements(devices, 'controller').filter((c) => attribute(c, 'type') === 'virtio-serial') : [];
}

/**
 * Add a virtio-serial controller (the next free index) to a domain that has none; returns
 * false when it already has one.
 */
export function addVirtioSerialController(domain: XmlElement): boolean {
  if (virtioSerialControllers(domain).length > 0) return false;
  let devices = devicesOf(domain);
  if (!devices) {
    devices = element('devices');
    domain.children.push(devices);
  }
  const controller = element('controller', { type: 'virtio-serial', index: '0' });
  // After the last controller, so a diff of the definition stays readable.
  const last = devices.children.reduce((at, c, i) => (c.kind === 'element' && c.local === 'controller' ? i : at), -1);
  devices.children.splice(last + 1, 0, controller);
  return true;
}

export interface ChannelInfo {
  /** <channel type=…> (unix, pty, spicevmc…). */
  type: string | undefined;
  targetType: string | undefined;
  /** The port name the guest sees (<target name=…>). */
  targetName: string | undefined;
  sourceMode: string | undefined;
  sourcePath: string | undefined;
  /** <alias name=…> (live XML only); user aliases start with ua-. */
  alias: string | undefined;
  /** <address type='virtio-serial' controller bus port>, live XML. */
  address: { controller: string; bus: string; port: string } | undefined;
  element: XmlElement;
}

export function channels(domain: XmlElement): ChannelInfo[] {
  const devices = devicesOf(domain);
  if (!devices) return [];
  return childElements(devices, 'channel').map((ch) => {
    const target = firstChild(ch, 'target');
    const source = firstChild(ch, 'source');
    const alias = firstChild(ch, 'alias');
    const address = firstChild(ch, 'address');
    return {
      type: attribute(ch, 'type'),
      targetType: target && attribute(target, 'type'),
      targetName: target && attribute(target, 'name'),
      sourceMode: source && attribute(source, 'mode'),
      sourcePath: source && attribute(source, 'path'),
      alias: alias && attribute(alias, 'name'),
      address:
        address && attribute(address, 'type') === 'virtio-serial'
          ? { controller: attribute(address, 'controller') ?? '0', bus: attribute(address, 'bus') ?? '0', port: attribute(address, 'port') ?? '' }
          : undefined,
      element: ch,
    };
  });
}

/**
 * `<channel type='unix'>` whose QEMU end connects to `socketPath` (the daemon listens), shown
 * to the guest as virtio port `portName`, with the user alias `alias` (must start with ua-).
 * `reconnectSeconds`: QEMU retries a lost or refused connection that often.
 */
export function unixChannelXml(options: { socketPath: string; portName: string; alias: string; reconnectSeconds?: number }): string {
  const source = element('source', { mode: 'connect', path: options.socketPath });
  if (options.reconnectSeconds !== undefined) source.children.push(element('reconnect', { enabled: 'yes', timeout: String(options.reconnectSeconds) }));
  return serializeXml(element('channel', { type: 'unix' }, [source, element('target', { type: 'virtio', name: options.portName }), element('alias', { name: options.alias })]));
}
