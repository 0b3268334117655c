// `virt-offload enable DOMAIN`: make a domain ready for the offload port. libvirt cannot
// hot-plug a virtio-serial controller, so one is added to the persistent (inactive) definition,
// and our <vo:offload> opt-in is written next to it; both in one DomainDefineXML of the edited
// definition (read with XML_SECURE so passwords in it survive the redefinition). A running
// domain gets the controller at its next boot.
import { LibvirtFlags, type LibvirtConnection } from './connection.js';
import { addVirtioSerialController, readOffloadMetadata, setOffloadMetadata, virtioSerialControllers, type OffloadMetadata } from './domain-xml.js';
import { parseXml, serializeXml } from './xml.js';

export interface EnableResult {
  domain: string;
  /** A virtio-serial controller was added to the persistent definition. */
  controllerAdded: boolean;
  /** The metadata written (and whether it differs from what was there). */
  metadata: OffloadMetadata;
  metadataChanged: boolean;
  /** The domain runs: the controller (if added) exists only from its next boot. */
  running: boolean;
  /** The running domain already has a virtio-serial controller (attach works now). */
  liveController: boolean;
  /** Nothing had to change. */
  unchanged: boolean;
}

export async function enableOffload(connection: LibvirtConnection, domainName: string, metadata: OffloadMetadata): Promise<EnableResult> {
  const domain = await connection.lookupDomain(domainName);
  const inactive = parseXml(await domain.getXMLDesc(LibvirtFlags.XML_INACTIVE | LibvirtFlags.XML_SECURE), `domain ${domainName} (persistent definition)`);
  const before = readOffloadMetadata(inactive);
  const metadataChanged = !before || before.enabled !== metadata.enabled || before.required !== metadata.required || before.port !== metadata.port;
  const controllerAdded = addVirtioSerialController(inactive);
  if (metadataChanged) setOffloadMetadata(inactive, metadata);
  if (controllerAdded || metadataChanged) await connection.defineDomain(serializeXml(inactive));

  const running = await domain.isActive();
  const liveController = running && virtioSerialControllers(parseXml(await domain.getXMLDesc(0), `domain ${domainName} (live XML)`)).length > 0;
  return { domain: domainName, controllerAdded, metadata, metadataChanged, running, liveController, unchanged: !controllerAdded && !metadataChanged };
}
