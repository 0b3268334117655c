// Public face of the guest channel protocol (pure: bytes in, bytes and actions out; no I/O).
// docs/protocol.md is the specification this implements.
export { crc32, crc32Implementation, crc32Portable, useCrc32Implementation } from './crc32.js';
export type { Crc32Function } from './crc32.js';
export { FrameDecoder } from './decoder.js';
export type { DecoderEvent, DecoderOptions } from './decoder.js';
export { ProtocolError } from './errors.js';
export type { ProtocolErrorFacts, ProtocolErrorKind } from './errors.js';
export {
  DEFAULT_MAX_FRAME,
  encodeFrame,
  FrameType,
  HEADER_BYTES,
  MAGIC_TEXT,
  MAX_FRAME_CEILING,
  MAX_PING_BYTES,
  MIN_FRAME,
  RESYNC_BYTE,
  RESYNC_BYTES,
  typeName,
} from './frame.js';
export type { Frame, FrameTypeName, FrameTypeValue, Sender } from './frame.js';
export { MAX_JSON_DEPTH, parseJsonObject } from './json.js';
export type { JsonObject, JsonValue } from './json.js';
export {
  argBytes,
  BINARY_NAME,
  CODE,
  encodeCancel,
  encodeChunks,
  encodeDataEnd,
  encodeDenied,
  encodeError,
  encodeExit,
  encodeHello,
  encodeMessage,
  encodePing,
  encodePong,
  encodeRaw,
  encodeRequest,
  ENV_NAME,
  LIMIT_NAMES,
  MAX_ARGS_CEILING,
  MEASUREMENT,
  NONCE,
  parseFrame,
  PROTOCOL_VERSIONS,
  resyncMarker,
  sealRaw,
  SIGNAL,
  utf8Length,
  VERSION,
} from './messages.js';
export type { Denial, ErrorReport, ExitReport, GuestHello, HostHello, LimitsHit, Message, MessageType, ProtocolLimits, RunRequest } from './messages.js';
export { ERROR_CODES, HostSession } from './session.js';
export type { HostAction, HostSessionOptions } from './session.js';
export { decodeUtf8Portable, encodeUtf8Portable, useUtf8Implementation, utf8Implementation } from './utf8.js';
export type { Utf8Implementation } from './utf8.js';
