// Hot-plug of the offload device (a virtio-serial port whose chardev is the daemon's socket
// for the VM): one interface, OffloadDeviceRoute; the QMP route here, libvirt's to come.
export { QmpHotplugRoute } from './qmp-route.js';
export type { QmpPort, QmpRouteOptions } from './qmp-route.js';
export { HotplugConflictError, HotplugError, HotplugNoSerialControllerError, HotplugStepError, HotplugTimeoutError, HotplugUnsupportedError } from './errors.js';
export { LibvirtRoute, channelAlias } from './libvirt-route.js';
export type { LibvirtRouteOptions } from './libvirt-route.js';
export { machineKind, planAttach, planDetach } from './plan.js';
export type { AttachPlan, ChardevState, MachineKind, PortState, RootPort, SerialBus, VmState } from './plan.js';
export { gatherState } from './state.js';
export { CONTROLLER_ID, DEFAULT_PORT_NAME, checkSocketPath, offloadIds } from './types.js';
export type { AttachResult, AttachSpec, DetachResult, DetachSpec, HotplugStep, OffloadDeviceRoute, OffloadIds } from './types.js';
