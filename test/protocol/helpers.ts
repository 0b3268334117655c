// Sample messages of every type, and small helpers shared by the protocol tests.
import { FrameDecoder, type DecoderEvent, type Message, type ProtocolLimits } from '../../lib/protocol/index.js';

export const M1 = `sha256:${'ab'.repeat(32)}`;

export const LIMITS: ProtocolLimits = Object.freeze({
  maxFrame: 4096,
  maxUpload: 1 << 20,
  maxArgs: 8,
  maxArgBytes: 256,
  maxConcurrent: 2,
  frameTimeoutMs: 2000,
  uploadTimeoutMs: 60_000,
});

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

/** Messages the guest sends (one of each type and shape). */
export function guestMessages(): Message[] {
  return [
    { type: 'HELLO', requestId: 0, body: { role: 'guest', versions: [1, 2], nonce: 'n0nce-_123', software: 'virt-offload/0.1.0' } },
    { type: 'PING', requestId: 9, data: bytes(1, 2, 3) },
    { type: 'PONG', requestId: 0, data: bytes() },
    { type: 'REQUEST', requestId: 1, body: { argv: ['-n', 'héllo ✓ 𝄞', ''], env: { LANG: 'C', _X1: 'a=b' }, name: 'tool', upload: 1234 } },
    { type: 'REQUEST', requestId: 0xffffffff, body: { argv: [], env: {}, measurement: M1 } },
    { type: 'DATA', requestId: 1, data: bytes(0x56, 0x4f, 0x46, 0x31, 0, 255) },
    { type: 'DATA', requestId: 1, data: bytes() },
    { type: 'DATA_END', requestId: 1 },
    { type: 'CANCEL', requestId: 7 },
  ];
}

/** Messages the host sends (one of each type and shape). */
export function hostMessages(): Message[] {
  return [
    { type: 'HELLO', requestId: 0, body: { role: 'host', version: 1, nonce: 'n0nce-_123', limits: LIMITS } },
    { type: 'PING', requestId: 3, data: new Uint8Array(64).fill(7) },
    { type: 'PONG', requestId: 3, data: bytes(9) },
    { type: 'STDOUT', requestId: 1, data: bytes(104, 105, 10) },
    { type: 'STDERR', requestId: 1, data: bytes(0, 0xff) },
    {
      type: 'EXIT',
      requestId: 1,
      body: { exitCode: 3, signal: null, durationMs: 12, limitsHit: { wall: false, memory: true, pids: false, output: false }, measurement: M1, name: 'tool', version: '1.2.3' },
    },
    {
      type: 'EXIT',
      requestId: 2,
      body: { exitCode: null, signal: 'SIGKILL', durationMs: 30000, limitsHit: { wall: true, memory: false, pids: false, output: false }, measurement: M1, name: 'tool', version: '2' },
    },
    { type: 'DENIED', requestId: 1, body: { measurement: M1, code: 'unknown-measurement', reason: 'not in the policy (commit 0123abcd)' } },
    { type: 'ERROR', requestId: 0, body: { code: 'version', message: 'no common version' } },
    { type: 'ERROR', requestId: 5, body: { code: 'busy', message: '' } },
  ];
}

/** Plain-data form of messages for deepEqual (null-prototype objects and Uint8Arrays normalized). */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

export { concat } from '../helpers/bytes.js';

/** Feed `chunks` to a fresh decoder and collect every event (end() included when `end`). */
export function decodeAll(chunks: readonly Uint8Array[], options: { from: 'guest' | 'host'; maxFrame?: number; end?: boolean }): DecoderEvent[] {
  const decoder = new FrameDecoder(options);
  const events: DecoderEvent[] = [];
  for (const c of chunks) events.push(...decoder.feed(c));
  if (options.end === true) events.push(...decoder.end());
  return events;
}

export const messagesOf = (events: readonly DecoderEvent[]): Message[] => events.flatMap((e) => (e.kind === 'message' ? [e.message] : []));
export const garbageOf = (events: readonly DecoderEvent[]): number => events.reduce((n, e) => n + (e.kind === 'garbage' ? e.length : 0), 0);
export const errorsOf = (events: readonly DecoderEvent[]): string[] => events.flatMap((e) => (e.kind === 'error' ? [e.error.kind] : []));
