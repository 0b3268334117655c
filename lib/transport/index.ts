// Public face of the line-JSON transport: framing with a size cap, a connection with requests
// routed by id, and the logger interface the adapters share. Used by lib/qmp. Also the
// Node-side native CRC-32 for the guest protocol's core (lib/guest and lib/daemon register it).
export { DEFAULT_MAX_LINE_BYTES, JsonLineConnection } from './connection.js';
export type { JsonLineOptions } from './connection.js';
export { FrameError, TransportClosedError, TransportTimeoutError } from './errors.js';
export type { CloseReason, FrameErrorKind } from './errors.js';
export { decodeJsonLine, encodeJsonLine, LineSplitter } from './framing.js';
export type { JsonObject } from './framing.js';
export { logExcerpt, silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export { useNativeCrc32 } from './native-crc32.js';
export { useNativeUtf8 } from './native-utf8.js';
export { useNativeCodecs } from './native-codecs.js';
