// The frame layout of the guest channel (docs/protocol.md, "Frames"). Every frame is a
// 24-byte header and a payload:
//
//   0  4  magic "VOF1"                  16  4  CRC-32 of the payload (u32 BE)
//   4  1  type                          20  4  CRC-32 of header bytes 0..19 (u32 BE)
//   5  1  flags (FRAME_FLAG)            24  …  payload (length bytes)
//   6  2  reserved, 0
//   8  4  request id (u32 BE)
//  12  4  payload length (u32 BE)
//
// The header CRC lets a receiver scanning for the magic after garbage tell a real header
// from the four letters occurring by chance (in an uploaded binary, say), before it trusts
// the length; the payload CRC catches a frame whose sender was killed mid-payload and whose
// tail was then filled by the next client's bytes (see RESYNC_BYTES). A DATA frame may go
// without the payload CRC (FRAME_FLAG.uncheckedPayload): the upload's measurement covers every
// byte of it, and the sender's CPU was the bottleneck (docs/protocol.md, "Frames").
import { crc32 } from './crc32.js';

/** "VOF1": the frame magic (also the framing version: a new layout gets a new magic). */
export const MAGIC_TEXT = 'VOF1';
export function magicBytes(): Uint8Array {
  return new Uint8Array([0x56, 0x4f, 0x46, 0x31]);
}
export const HEADER_BYTES = 24;
/** No host may announce a larger maxFrame: RESYNC_BYTES must be able to complete any frame. */
export const MAX_FRAME_CEILING = 65536;
/** The smallest maxFrame a host may announce (a REQUEST with a few arguments must fit). */
export const MIN_FRAME = 4096;
/** maxFrame that holds until the host's HELLO says otherwise, and the usual setting. */
export const DEFAULT_MAX_FRAME = MAX_FRAME_CEILING;
/** PING and PONG carry at most this many opaque bytes. */
export const MAX_PING_BYTES = 64;
/**
 * The resync marker: this many 0xFF bytes. It is longer than the largest possible frame, so a
 * frame a killed client left unfinished is completed by it (and then fails its payload CRC, or goes as unchecked DATA to a request the next HELLO aborts),
 * and it contains no magic, so the receiver is scanning for a magic when it ends.
 */
export const RESYNC_BYTES = HEADER_BYTES + MAX_FRAME_CEILING;
export const RESYNC_BYTE = 0xff;

/** Bits of the flags byte. */
export const FRAME_FLAG = Object.freeze({
  /** The payload CRC field is 0 and was not computed; DATA frames only. */
  uncheckedPayload: 0x01,
} as const);

/** Message types, by the value of the type byte. */
export const FrameType = Object.freeze({
  HELLO: 0x01,
  PING: 0x02,
  PONG: 0x03,
  REQUEST: 0x10,
  DATA: 0x11,
  DATA_END: 0x12,
  CANCEL: 0x13,
  STDOUT: 0x20,
  STDERR: 0x21,
  EXIT: 0x22,
  DENIED: 0x23,
  ERROR: 0x24,
} as const);
export type FrameTypeName = keyof typeof FrameType;
export type FrameTypeValue = (typeof FrameType)[FrameTypeName];

const NAMES: ReadonlyMap<number, FrameTypeName> = new Map(Object.entries(FrameType).map(([name, value]) => [value, name as FrameTypeName]));

/** Which side may send a type: HELLO, PING and PONG go both ways. */
export type Sender = 'guest' | 'host';
const FROM_GUEST: ReadonlySet<number> = new Set([FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.REQUEST, FrameType.DATA, FrameType.DATA_END, FrameType.CANCEL]);
const FROM_HOST: ReadonlySet<number> = new Set([FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.STDOUT, FrameType.STDERR, FrameType.EXIT, FrameType.DENIED, FrameType.ERROR]);

export function typeName(type: number): string {
  return NAMES.get(type) ?? `0x${type.toString(16).padStart(2, '0')}`;
}

export function isFrameType(type: number): type is FrameTypeValue {
  return NAMES.has(type);
}

export function sentBy(sender: Sender, type: number): boolean {
  return (sender === 'guest' ? FROM_GUEST : FROM_HOST).has(type);
}

/** A frame as it travels: header fields and payload (not yet interpreted). */
export interface Frame {
  readonly type: number;
  readonly requestId: number;
  readonly payload: Uint8Array;
  /** Stream offset of the frame's first byte (decoded frames only; 0 for encoded ones). */
  readonly offset: number;
}

export interface Header {
  readonly type: number;
  readonly flags: number;
  readonly reserved: number;
  readonly requestId: number;
  readonly length: number;
  readonly payloadCrc: number;
}

/** Build a frame. The caller has checked the payload length against the peer's maxFrame. */
export function encodeFrame(type: number, requestId: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  out.set(payload, HEADER_BYTES);
  return sealFrame(out, type, requestId);
}

/**
 * Write the header of `frame` (its first HEADER_BYTES bytes) for the payload already in the
 * rest of it: a sender that reads its data straight into place needs no copy. Returns `frame`.
 */
export function sealFrame(frame: Uint8Array, type: number, requestId: number, flags = 0): Uint8Array {
  frame.set(magicBytes(), 0);
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_BYTES);
  view.setUint8(4, type);
  view.setUint8(5, flags);
  view.setUint16(6, 0);
  view.setUint32(8, requestId);
  view.setUint32(12, frame.length - HEADER_BYTES);
  view.setUint32(16, (flags & FRAME_FLAG.uncheckedPayload) !== 0 ? 0 : crc32(frame.subarray(HEADER_BYTES)));
  view.setUint32(20, crc32(frame.subarray(0, 20)));
  return frame;
}

/** True when `bytes[at..]` starts with the magic (the caller made sure 4 bytes are there). */
export function magicAt(bytes: Uint8Array, at: number): boolean {
  return bytes[at] === 0x56 && bytes[at + 1] === 0x4f && bytes[at + 2] === 0x46 && bytes[at + 3] === 0x31;
}

/** Read a header at `bytes[at..at+24]` if its CRC matches, else undefined (not a frame start). */
export function readHeader(bytes: Uint8Array, at: number): Header | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_BYTES);
  if (crc32(bytes.subarray(at, at + 20)) !== view.getUint32(20)) return undefined;
  return {
    type: view.getUint8(4),
    flags: view.getUint8(5),
    reserved: view.getUint16(6),
    requestId: view.getUint32(8),
    length: view.getUint32(12),
    payloadCrc: view.getUint32(16),
  };
}
