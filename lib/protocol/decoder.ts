// The incremental decoder of a channel's byte stream: feed it chunks as they arrive, in any
// split, and it returns what they complete: messages, runs of skipped garbage, and refusals.
//
// Memory is bounded by construction: the decoder owns one buffer of HEADER_BYTES + maxFrame
// bytes and never holds more. A header announcing a longer payload is refused as soon as the
// header is complete, before any of the payload is kept.
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
import { DEFAULT_MAX_FRAME, type Frame, FRAME_FLAG, FrameType, HEADER_BYTES, isFrameType, MAX_FRAME_CEILING, magicAt, readHeader, type Sender, sentBy, typeName } from './frame.js';
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
  readonly #buf: Uint8Array;
  #len = 0;
  /** Stream offset of #buf[0]. */
  #base = 0;
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
    this.#buf = new Uint8Array(HEADER_BYTES + maxFrame);
  }

  /** Bytes held right now (an unfinished frame or a possible magic prefix); never above HEADER_BYTES + maxFrame. */
  get buffered(): number {
    return this.#len;
  }

  /** Stream offset up to which every byte has been fed. */
  get offset(): number {
    return this.#base + this.#len;
  }

  /** True while part of a frame (or of a magic) is held: the caller's frame timeout should run. */
  get inFrame(): boolean {
    return this.#len > 0;
  }

  /** Totals since construction: messages decoded, garbage bytes skipped, errors reported. */
  get stats(): { readonly frames: number; readonly garbageBytes: number; readonly errors: number } {
    return { ...this.#stats };
  }

  /** Take in the next chunk of the stream; returns what it completed, in stream order. */
  feed(chunk: Uint8Array): DecoderEvent[] {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(this.#buf.length - this.#len, chunk.length - at);
      if (n === 0) throw new InternalError('frame decoder made no progress with a full buffer');
      this.#buf.set(chunk.subarray(at, at + n), this.#len);
      this.#len += n;
      at += n;
      this.#process(0);
    }
    return this.#drain();
  }

  /**
   * Give up on the frame held (the frame timeout fired: its sender is gone or stalled). Its
   * first byte is counted as garbage and the rest is scanned again for a frame start.
   */
  abandonPartial(): DecoderEvent[] {
    if (this.#len > 0) {
      this.#skip(0, 1);
      this.#process(1);
    }
    return this.#drain();
  }

  /** The stream ended: whatever is held is reported (a truncated frame, or garbage) and dropped. */
  end(): DecoderEvent[] {
    if (this.#len >= 4 && magicAt(this.#buf, 0)) {
      this.#error(new ProtocolError('truncated', `stream ended inside a frame (${this.#len} bytes of it received)`, { offset: this.#base }));
    } else if (this.#len > 0) {
      this.#skip(0, this.#len);
    }
    this.#base += this.#len;
    this.#len = 0;
    return this.#drain();
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

  /** Count `length` bytes at buffer position `at` as garbage (merged with an adjacent run). */
  #skip(at: number, length: number): void {
    if (length === 0) return;
    this.#stats.garbageBytes += length;
    const offset = this.#base + at;
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

  /** Decode everything complete in the buffer from position `p`, then move the rest to the front. */
  #process(p: number): void {
    const buf = this.#buf;
    const len = this.#len;
    for (;;) {
      const q = this.#findMagic(p, len);
      this.#skip(p, q - p);
      p = q;
      if (len - p < HEADER_BYTES) break;
      const header = readHeader(buf, p);
      if (header === undefined) {
        this.#skip(p, 1);
        p += 1;
        continue;
      }
      const facts = { offset: this.#base + p, type: header.type, requestId: header.requestId };
      const what = `${typeName(header.type)} frame at stream offset ${facts.offset}`;
      const refusal = this.#refuseHeader(header, what, facts);
      if (refusal !== undefined) {
        this.#error(refusal);
        this.#skip(p, 1);
        p += 1;
        continue;
      }
      const end = p + HEADER_BYTES + header.length;
      if (len < end) break;
      const payload = buf.slice(p + HEADER_BYTES, end);
      // An unchecked DATA frame (the flag is refused on every other type) has no CRC to test.
      if ((header.flags & FRAME_FLAG.uncheckedPayload) === 0 && crc32(payload) !== header.payloadCrc) {
        // Skip the whole frame, not one byte: rescanning its payload would let nested fake
        // frames make every input byte cost a 64 KiB CRC (quadratic work for the host).
        this.#error(new ProtocolError('bad-checksum', `${what}: payload CRC-32 does not match (frame cut short and completed by other bytes?)`, facts));
        this.#skip(p, end - p);
        p = end;
        continue;
      }
      const frame: Frame = { type: header.type, requestId: header.requestId, payload, offset: facts.offset };
      try {
        const message = parseFrame(frame);
        this.#flushGarbage();
        this.#stats.frames++;
        this.#events.push({ kind: 'message', message, offset: facts.offset });
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.#error(e);
      }
      p = end;
    }
    buf.copyWithin(0, p, len);
    this.#len = len - p;
    this.#base += p;
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
  #findMagic(p: number, len: number): number {
    const buf = this.#buf.subarray(0, len);
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

