// Public face of the QMP client: connect to a QEMU monitor socket, execute commands, wait
// for events. See client.ts for the flow and errors.ts for every way a call can fail.
export { QmpClient } from './client.js';
export type { ExecuteAndWaitOptions, ExecuteOptions, QmpClientOptions } from './client.js';
export {
  QmpCapabilityError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpError,
  QmpEventOverflowError,
  QmpExecuteError,
  QmpProtocolError,
  QmpStateError,
  QmpTimeoutError,
} from './errors.js';
export type { QmpProtocolErrorKind } from './errors.js';
export { QmpEventListener } from './events.js';
export type { EventFilter } from './events.js';
export { parseEvent, parseGreeting, parseReply } from './models.js';
export type { QmpEvent, QmpGreeting, QmpReply, QmpVersion } from './models.js';
export type { Runstate } from './runstate.js';
export type { Logger } from '../transport/index.js';
