// The incremental decoder of a channel's byte stream: feed it chunks as they arrive, in any
// split, and it returns what they complete: messages, runs of skipped garbage, and refusals.
//
// Memory is bounded by construction: the decoder holds at most one unfinished frame, never
// more than HEADER_BYTES + maxFrame bytes of it. A header announcing a longer payload is
// refused as soon as the header is complete, before any of the payload is kept.
//
// Copies: frames are decoded straight from the chunks fed in. A frame that a chunk holds whole
// is copied once (its payload); one cut by a chunk boundary has its payload array made once
// its header is complete and its bytes copied in as they arrive (once too). Only a header cut
// by a chunk boundary (under HEADER_BYTES) and the bytes around it are put aside in a small
// buffer. An 8 MiB upload used to be copied about two and a half times on its way through.
//
// Resync (docs/protocol.md, "Resync"): outside a frame the decoder scans for the magic; a
// magic whose header CRC does not match is not a frame start and counts as one garbage byte.
// An authentic header the decoder refuses (too large, unknown type, wrong direction, flags
// set) is reported as an error and scanning resumes at the byte after its first byte. A frame
// whose payload fails its CRC (a sender killed mid-frame, its frame then completed by the
// resync marker) is reported and skipped whole, as is a complete, authentic frame whose
// content is wrong (bad JSON, bad field). Only abandonPartial() (the frame timeout) scans
// the bytes of a frame again, to find a HELLO an unfinished frame swallowed.
import { InternalError } from '../errors.js';
import { crc32 } from './crc32.js';
import { ProtocolError } from './errors.js';
import { DEFAULT_MAX_FRAME, type Frame, FRAME_FLAG, FrameType, HEADER_BYTES, type Header, isFrameType, MAX_FRAME_CEILING, magicAt, readHeader, type Sender, sentBy, typeName } from './frame.js';
import { type Message, parseFrame } from './messages.js';

export interface DecoderOptions {
  /** Whose frames this decoder reads: the host decodes what the guest sends, and the other way round. */
  readonly from: Sender;
  /** Largest payload accepted (default and ceiling MAX_FRAME_CEILING). */
  readonly maxFrame?: number;
}

export type DecoderEvent =
  | { readonly kind: 'message'; readonly message: Message; readonly offset: number }
  | { readonly kind: 'garbage'; readonly offset: number; readonly length: number }
  | { readonly kind: 'error'; readonly error: ProtocolError };

const MAGIC_FIRST = 0x56;
const MAGIC_PREFIXES = [[0x56], [0x56, 0x4f], [0x56, 0x4f, 0x46]] as const;

export class FrameDecoder {
  readonly from: Sender;
  readonly maxFrame: number;
  /** A cut header or magic prefix put aside (fewer than HEADER_BYTES bytes, plus what feed() adds to look again). */
  readonly #buf: Uint8Array;
  #len = 0;
  /** Stream offset of #buf[0] (of the pending frame's first byte while there is one). */
  #base = 0;
  /** The frame whose header was complete and authentic, its payload still arriving. */
  #pending: { header: Header; headerBytes: Uint8Array; payload: Uint8Array; filled: number } | undefined;
  #garbage: { offset: number; length: number } | undefined;
  #events: DecoderEvent[] = [];
  #stats = { frames: 0, garbageBytes: 0, errors: 0 };

  constructor(options: DecoderOptions) {
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    if (!Number.isSafeInteger(maxFrame) || maxFrame < 0 || maxFrame > MAX_FRAME_CEILING) {
      throw new InternalError(`maxFrame must be an integer from 0 to ${MAX_FRAME_CEILING}, got ${maxFrame}`);
    }
    this.from = options.from;
    this.maxFrame = maxFrame;
    // Room for a cut header plus the 2 × HEADER_BYTES added to it at once (feed()). A whole
    // frame is put back together only when a frame timeout fires (abandonPartial), in a buffer
    // of its own: a connection does not keep HEADER_BYTES + maxFrame (64 KiB by default) for
    // its whole life, idle or not.
    this.#buf = new Uint8Array(3 * HEADER_BYTES);
  }

  /** Bytes held right now (an unfinished frame or a possible magic prefix); never above HEADER_BYTES + maxFrame. */
  get buffered(): number {
    return this.#pending === undefined ? this.#len : HEADER_BYTES + this.#pending.filled;
  }

  /** Stream offset up to which every byte has been fed. */
  get offset(): number {
    return this.#base + this.buffered;
  }

  /** True while part of a frame (or of a magic) is held: the caller's frame timeout should run. */
  get inFrame(): boolean {
    return this.buffered > 0;
  }

  /** Totals since construction: messages decoded, garbage bytes skipped, errors reported. */
  get stats(): { readonly frames: number; readonly garbageBytes: number; readonly errors: number } {
    return { ...this.#stats };
  }

  /** Take in the next chunk of the stream; returns what it completed, in stream order. */
  feed(chunk: Uint8Array): DecoderEvent[] {
    let at = 0;
    while (at < chunk.length) {
      const pending = this.#pending;
      if (pending !== undefined) {
        const n = Math.min(pending.payload.length - pending.filled, chunk.length - at);
        pending.payload.set(chunk.subarray(at, at + n), pending.filled);
        pending.filled += n;
        at += n;
        if (pending.filled === pending.payload.length) this.#finishPending();
      } else if (this.#len > 0) {
        // A cut header (or magic prefix) is held: add a little and look again. It is at most
        // HEADER_BYTES - 1 bytes, so this always fits, and it resolves within a few rounds.
        const n = Math.min(2 * HEADER_BYTES, chunk.length - at);
        this.#buf.set(chunk.subarray(at, at + n), this.#len);
        const held = this.#len + n;
        at += n;
        this.#len = 0;
        this.#keep(this.#buf, this.#process(this.#buf, 0, held, this.#base), held);
      } else {
        const rest = this.#process(chunk, at, chunk.length, this.#base - at);
        this.#keep(chunk, rest, chunk.length);
        at = chunk.length;
      }
    }
    return this.#drain();
  }

  /**
   * Give up on the frame held (the frame timeout fired: its sender is gone or stalled). Its
   * first byte is counted as garbage and the rest is scanned again for a frame start.
   */
  abandonPartial(): DecoderEvent[] {
    const pending = this.#pending;
    let src = this.#buf;
    let held = this.#len;
    if (pending !== undefined) {
      // Put back together whole (at most HEADER_BYTES + maxFrame), to be rescanned.
      this.#pending = undefined;
      src = new Uint8Array(HEADER_BYTES + pending.filled);
      src.set(pending.headerBytes, 0);
      src.set(pending.payload.subarray(0, pending.filled), HEADER_BYTES);
      held = src.length;
    }
    if (held > 0) {
      this.#len = 0;
      this.#skip(this.#base, 1);
      this.#keep(src, this.#process(src, 1, held, this.#base), held);
    }
    return this.#drain();
  }

  /** The stream ended: whatever is held is reported (a truncated frame, or garbage) and dropped. */
  end(): DecoderEvent[] {
    const held = this.buffered;
    if (this.#pending !== undefined || (this.#len >= 4 && magicAt(this.#buf, 0))) {
      this.#error(new ProtocolError('truncated', `stream ended inside a frame (${held} bytes of it received)`, { offset: this.#base }));
    } else if (this.#len > 0) {
      this.#skip(this.#base, this.#len);
    }
    this.#pending = undefined;
    this.#base += held;
    this.#len = 0;
    return this.#drain();
  }

  /**
   * After #process stopped at `rest` in `src` (length `len`): keep the unfinished bytes. They
   * are either nothing, or a cut header or magic prefix (under HEADER_BYTES); a frame with a
   * complete header went to #pending inside #process.
   */
  #keep(src: Uint8Array, rest: number, len: number): void {
    if (this.#pending !== undefined) return;
    if (rest < len) {
      if (len - rest >= HEADER_BYTES) throw new InternalError('frame decoder kept a complete header unprocessed');
      this.#buf.set(src.subarray(rest, len), 0);
    }
    this.#len = len - rest;
  }

  /** The pending frame's payload is complete: check it and deliver it. */
  #finishPending(): void {
    const { header, payload } = this.#pending!;
    this.#pending = undefined;
    const offset = this.#base;
    this.#deliver(header, payload, offset);
    this.#base = offset + HEADER_BYTES + payload.length;
  }

  #drain(): DecoderEvent[] {
    this.#flushGarbage();
    const events = this.#events;
    this.#events = [];
    return events;
  }

  #flushGarbage(): void {
    if (this.#garbage !== undefined) this.#events.push({ kind: 'garbage', ...this.#garbage });
    this.#garbage = undefined;
  }

  /** Count `length` bytes at stream offset `offset` as garbage (merged with an adjacent run). */
  #skip(offset: number, length: number): void {
    if (length === 0) return;
    this.#stats.garbageBytes += length;
    if (this.#garbage !== undefined && this.#garbage.offset + this.#garbage.length === offset) this.#garbage.length += length;
    else {
      this.#flushGarbage();
      this.#garbage = { offset, length };
    }
  }

  #error(error: ProtocolError): void {
    this.#flushGarbage();
    this.#stats.errors++;
    this.#events.push({ kind: 'error', error });
  }

  /**
   * Decode everything complete in `src[p..len)`, whose byte i is at stream offset `base + i`.
   * Returns where the unfinished rest starts (a cut header or magic prefix: the caller keeps
   * it); a frame whose header is complete but whose payload is not goes to #pending, and then
   * `len` is returned. #base ends as the stream offset of the returned position.
   */
  #process(src: Uint8Array, p: number, len: number, base: number): number {
    for (;;) {
      const q = this.#findMagic(src, p, len);
      this.#skip(base + p, q - p);
      p = q;
      if (len - p < HEADER_BYTES) break;
      const header = readHeader(src, p);
      if (header === undefined) {
        this.#skip(base + p, 1);
        p += 1;
        continue;
      }
      const facts = { offset: base + p, type: header.type, requestId: header.requestId };
      const what = `${typeName(header.type)} frame at stream offset ${facts.offset}`;
      const refusal = this.#refuseHeader(header, what, facts);
      if (refusal !== undefined) {
        this.#error(refusal);
        this.#skip(base + p, 1);
        p += 1;
        continue;
      }
      const end = p + HEADER_BYTES + header.length;
      if (len < end) {
        // The payload array is made now (its length was checked against maxFrame above) and
        // filled as the rest arrives: each byte is copied once.
        const payload = new Uint8Array(header.length);
        payload.set(src.subarray(p + HEADER_BYTES, len), 0);
        this.#pending = { header, headerBytes: src.slice(p, p + HEADER_BYTES), payload, filled: len - p - HEADER_BYTES };
        this.#base = base + p;
        return len;
      }
      this.#deliver(header, src.slice(p + HEADER_BYTES, end), base + p);
      p = end;
    }
    this.#base = base + p;
    return p;
  }

  /** A complete frame: its payload CRC (unless unchecked DATA), then its message or a refusal. */
  #deliver(header: Header, payload: Uint8Array, offset: number): void {
    const facts = { offset, type: header.type, requestId: header.requestId };
    const what = `${typeName(header.type)} frame at stream offset ${offset}`;
    // An unchecked DATA frame (the flag is refused on every other type) has no CRC to test.
    if ((header.flags & FRAME_FLAG.uncheckedPayload) === 0 && crc32(payload) !== header.payloadCrc) {
      // Skipped whole, not one byte: rescanning its payload would let nested fake frames make
      // every input byte cost a 64 KiB CRC (quadratic work for the host).
      this.#error(new ProtocolError('bad-checksum', `${what}: payload CRC-32 does not match (frame cut short and completed by other bytes?)`, facts));
      this.#skip(offset, HEADER_BYTES + payload.length);
      return;
    }
    const frame: Frame = { type: header.type, requestId: header.requestId, payload, offset };
    try {
      const message = parseFrame(frame);
      this.#flushGarbage();
      this.#stats.frames++;
      this.#events.push({ kind: 'message', message, offset });
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.#error(e);
    }
  }

  #refuseHeader(header: NonNullable<ReturnType<typeof readHeader>>, what: string, facts: { offset: number; type: number; requestId: number }): ProtocolError | undefined {
    if (!isFrameType(header.type)) return new ProtocolError('unknown-type', `${what}: unknown frame type`, facts);
    if (!sentBy(this.from, header.type)) return new ProtocolError('wrong-direction', `${what}: the ${this.from} does not send ${typeName(header.type)}`, facts);
    if (header.reserved !== 0) return new ProtocolError('bad-header', `${what}: reserved ${header.reserved} must be 0`, facts);
    if (header.flags !== 0) {
      const unchecked = header.flags === FRAME_FLAG.uncheckedPayload && header.type === FrameType.DATA;
      if (!unchecked) return new ProtocolError('bad-header', `${what}: flags ${header.flags} must be 0 (only DATA frames may set 0x01, unchecked payload)`, facts);
      if (header.payloadCrc !== 0) return new ProtocolError('bad-header', `${what}: an unchecked payload's CRC field must be 0, got ${header.payloadCrc}`, facts);
    }
    if (header.length > this.maxFrame) {
      return new ProtocolError('too-large', `${what}: payload length ${header.length} is over maxFrame ${this.maxFrame}`, facts);
    }
    return undefined;
  }

  /**
   * Position of the next magic at or after `p` with 4 bytes in the buffer, else the position
   * of a trailing 1–3 byte magic prefix (kept until more arrives), else `len`.
   */
  #findMagic(src: Uint8Array, p: number, len: number): number {
    const buf = src.subarray(0, len);
    let q = p;
    for (;;) {
      q = buf.indexOf(MAGIC_FIRST, q);
      if (q === -1) return len;
      if (len - q < 4) {
        const prefix = MAGIC_PREFIXES[len - q - 1] as readonly number[];
        if (prefix.every((b, i) => buf[q + i] === b)) return q;
      } else if (magicAt(buf, q)) return q;
      q += 1;
    }
  }
}

