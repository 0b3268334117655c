// Validation of what QEMU sends, at the boundary (qemu.qmp's models.py): the members the
// QMP specification requires must be there with the right types; extra members are ignored
// so newer QEMUs still work. Anything else is a QmpProtocolError.
import type { JsonObject } from '../transport/index.js';
import { QmpProtocolError } from './errors.js';

export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** `{"QMP": {"version": {...}, "capabilities": [...]}}`, the first message of a session. */
export interface QmpGreeting {
  version: QmpVersion;
  capabilities: readonly string[];
}

export interface QmpEvent {
  event: string;
  /** `data` of the event; `{}` when QEMU sent none. */
  data: Readonly<Record<string, unknown>>;
  timestamp: { seconds: number; microseconds: number };
}

export type QmpReply = { ok: true; value: unknown } | { ok: false; errorClass: string; description: string };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function has(message: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(message, key);
}

function int(value: unknown): value is number {
  return Number.isSafeInteger(value);
}

export function parseGreeting(message: JsonObject): QmpGreeting {
  const bad = (why: string): QmpProtocolError => new QmpProtocolError('bad-greeting', `bad QMP greeting: ${why}`, message);
  const qmp = message['QMP'];
  if (!isObject(qmp)) throw bad('no "QMP" object');
  const version = qmp['version'];
  if (!isObject(version)) throw bad('"QMP.version" is not an object');
  const qemu = version['qemu'];
  if (!isObject(qemu)) throw bad('"QMP.version.qemu" is not an object');
  const { major, minor, micro } = qemu;
  if (!int(major) || !int(minor) || !int(micro) || major < 0 || minor < 0 || micro < 0) {
    throw bad('"QMP.version.qemu" needs non-negative integers major, minor and micro');
  }
  if (typeof version['package'] !== 'string') throw bad('"QMP.version.package" is not a string');
  const capabilities = qmp['capabilities'];
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === 'string')) {
    throw bad('"QMP.capabilities" is not an array of strings');
  }
  return Object.freeze({
    version: Object.freeze({ qemu: Object.freeze({ major, minor, micro }), package: version['package'] }),
    capabilities: Object.freeze([...(capabilities as string[])]),
  });
}

/** A reply routed to us by id: exactly one of `return` (any JSON) and `error` ({class, desc}). */
export function parseReply(message: JsonObject): QmpReply {
  const bad = (why: string): QmpProtocolError => new QmpProtocolError('bad-reply', `bad QMP reply: ${why}`, message);
  const hasReturn = has(message, 'return');
  const hasError = has(message, 'error');
  if (hasReturn && hasError) throw bad('it has both "return" and "error"');
  if (hasReturn) return { ok: true, value: message['return'] };
  if (!hasError) throw bad('it has neither "return" nor "error"');
  const error = message['error'];
  if (!isObject(error)) throw bad('"error" is not an object');
  const errorClass = error['class'];
  const description = error['desc'];
  if (typeof errorClass !== 'string' || typeof description !== 'string') throw bad('"error" needs string members "class" and "desc"');
  return { ok: false, errorClass, description };
}

export function isEvent(message: JsonObject): boolean {
  return has(message, 'event');
}

export function parseEvent(message: JsonObject): QmpEvent {
  const bad = (why: string): QmpProtocolError => new QmpProtocolError('bad-event', `bad QMP event: ${why}`, message);
  const name = message['event'];
  if (typeof name !== 'string' || name === '') throw bad('"event" is not a non-empty string');
  const data = has(message, 'data') ? message['data'] : {};
  if (!isObject(data)) throw bad(`"data" of ${name} is not an object`);
  const timestamp = message['timestamp'];
  if (!isObject(timestamp) || !int(timestamp['seconds']) || !int(timestamp['microseconds'])) {
    throw bad(`"timestamp" of ${name} needs integer members "seconds" and "microseconds"`);
  }
  return { event: name, data, timestamp: { seconds: timestamp['seconds'], microseconds: timestamp['microseconds'] } };
}
