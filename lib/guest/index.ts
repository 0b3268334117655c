// Public face of the guest client: find the offload port, submit a binary or a measurement.
export { type ByteChannel, connectSocket, openChannel } from './channel.js';
export { checkLimits, EXIT_STATUS, submit } from './client.js';
export type { SubmitOptions, SubmitOutcome, SubmitResult, SubmitTimeouts } from './client.js';
export { useNativeCodecs, useNativeCrc32 } from '../transport/index.js';
export { ChannelError, PortNotFoundError } from './errors.js';
export { DEFAULT_PORT_NAME, findPort } from './port.js';
export type { FindPortOptions } from './port.js';
