// Typed bindings to libvirt-dbus over dbus-next (system bus), and the domain XML edits
// virt-offload needs (virtio-serial controller, channels, our <vo:offload> metadata).
export { LibvirtConnection, LibvirtDomain, LibvirtFlags, LIBVIRT_BUS_NAME, LIBVIRT_QEMU_PATH } from './connection.js';
export type { CallOptions, DeviceSignal, DeviceWatch, DomainEvent, LibvirtConnectionOptions } from './connection.js';
export { BusCallFailure, systemBusAddress } from './dbus.js';
export type { BusCall, BusMessage, BusPort } from './dbus.js';
export {
  addVirtioSerialController,
  channels,
  devicesOf,
  OFFLOAD_ELEMENT,
  OFFLOAD_NAMESPACE,
  OFFLOAD_PREFIX,
  offloadMetadataXml,
  readOffloadMetadata,
  setOffloadMetadata,
  unixChannelXml,
  virtioSerialControllers,
} from './domain-xml.js';
export type { ChannelInfo, OffloadMetadata } from './domain-xml.js';
export { enableOffload } from './enable.js';
export type { EnableResult } from './enable.js';
export { LibvirtCallError, LibvirtConnectError, LibvirtError, LibvirtNoDomainError, LibvirtSignalTimeoutError, LibvirtTimeoutError } from './errors.js';
export { MAX_XML_LENGTH, XmlDocumentError, parseXml, serializeXml } from './xml.js';
export type { XmlElement, XmlNode } from './xml.js';
