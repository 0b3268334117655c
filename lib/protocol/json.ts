// A strict JSON reader for control messages. JSON.parse is not enough at a trust boundary:
// it keeps the last of duplicate keys (another parser may keep the first: two readings of
// one message), has no depth limit, and returns objects whose prototype later code may
// trip over. This reader takes RFC 8259 JSON and refuses, with a ProtocolError('bad-json'):
// invalid UTF-8, a byte-order mark, nesting deeper than MAX_JSON_DEPTH, duplicate keys,
// the keys `__proto__`, `constructor` and `prototype` anywhere, escapes that encode a lone
// surrogate (not representable in UTF-8), and numbers JavaScript cannot hold exactly
// (integers beyond 2^53). Objects come back with a null prototype. Most texts are read the
// short way below (the engine's JSON.parse, then one checking walk); the strict reader decides
// every text the short way does not accept whole.
import { ProtocolError, type ProtocolErrorFacts } from './errors.js';
import { decodeUtf8 } from './utf8.js';

/** Control messages need 2 levels ({limitsHit: {...}}); 4 leaves room and bounds recursion. */
export const MAX_JSON_DEPTH = 4;

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

export function isForbiddenKey(key: string): boolean {
  return FORBIDDEN_KEYS.has(key);
}

/**
 * Decode `bytes` as UTF-8 and read exactly one JSON object from it. The usual message is read
 * the short way (`shortRead`); anything it does not accept whole goes to the strict reader,
 * which accepts it or says exactly why not, so every refusal and its wording come from there.
 */
export function parseJsonObject(bytes: Uint8Array, facts: ProtocolErrorFacts = {}): JsonObject {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw new ProtocolError('bad-json', 'JSON payload is not valid UTF-8', facts);
  return (jsonReadOptions.shortWay ? shortRead(text) : undefined) ?? strictRead(text, facts);
}

/** For the differential test (test/protocol/json.test.ts): off, every text takes the strict reader. */
export const jsonReadOptions = { shortWay: true };

/** The strict reader alone, over decoded text: the reference the short way must agree with. */
export function strictRead(text: string, facts: ProtocolErrorFacts = {}): JsonObject {
  const value = new Reader(text, facts).document();
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('bad-json', 'JSON payload is not an object', facts);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// The short way. The reader below is portable JS; in a guest under TCG, where a one-shot
// client never gets it compiled, it took ~0.7 ms per control frame against ~0.04 ms for the
// engine's JSON.parse. So JSON.parse reads the text (RFC 8259 grammar: the same grammar as the
// reader, a BOM refused too), and one walk over what it built checks what JSON.parse lets
// through: depth, forbidden keys, lone surrogates, numbers that are not exact. Duplicate keys
// are the one thing JSON.parse hides (it keeps the last): every key in the text is followed by
// the only ':' outside strings, so the text has duplicates exactly when it has more ':' than
// the objects JSON.parse built have keys. The walk copies into null-prototype objects, as the
// reader builds them. Any doubt returns undefined, and the strict reader decides.

/** One JSON string token; on text JSON.parse accepted, matches start only at opening quotes. */
const STRING_TOKEN = /"(?:[^"\\]|\\.)*"/g;
/** A UTF-16 surrogate not in a pair. */
const LONE_SURROGATE = /\p{Cs}/u;

export function shortRead(text: string): JsonObject | undefined {
  // Text decoded from UTF-8 has no unpaired surrogate; any other string that has one (a raw
  // high surrogate before an escaped low one would make a pair in JSON.parse's result, where
  // the strict reader refuses the escape) is left to the strict reader.
  if (LONE_SURROGATE.test(text)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const walk = new ShortWalk();
  const value = walk.value(parsed, 1);
  if (value === undefined) return undefined;
  const colons = text.replace(STRING_TOKEN, '').split(':').length - 1;
  return colons === walk.keys ? (value as JsonObject) : undefined;
}

class ShortWalk {
  keys = 0;

  /** `value` checked and copied, or undefined when the strict reader must decide. */
  value(value: unknown, depth: number): JsonValue | undefined {
    switch (typeof value) {
      case 'string':
        return LONE_SURROGATE.test(value) ? undefined : value;
      case 'number':
        return !Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value)) ? undefined : value;
      case 'boolean':
        return value;
      case 'object': {
        if (value === null) return null;
        if (depth > MAX_JSON_DEPTH) return undefined;
        if (Array.isArray(value)) {
          const out: JsonValue[] = [];
          for (const item of value as unknown[]) {
            const v = this.value(item, depth + 1);
            if (v === undefined) return undefined;
            out.push(v);
          }
          return out;
        }
        const out = Object.create(null) as JsonObject;
        for (const key of Object.keys(value)) {
          if (FORBIDDEN_KEYS.has(key) || LONE_SURROGATE.test(key)) return undefined;
          const v = this.value((value as Record<string, unknown>)[key], depth + 1);
          if (v === undefined) return undefined;
          out[key] = v;
          this.keys++;
        }
        return out;
      }
      default:
        return undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The strict reader.

class Reader {
  #pos = 0;
  readonly #text: string;
  readonly #facts: ProtocolErrorFacts;

  constructor(text: string, facts: ProtocolErrorFacts) {
    this.#text = text;
    this.#facts = facts;
  }

  document(): JsonValue {
    if (this.#text.charCodeAt(0) === 0xfeff) throw this.#fail('starts with a byte-order mark');
    const value = this.#value(1);
    this.#space();
    if (this.#pos !== this.#text.length) throw this.#fail('has data after the JSON value');
    return value;
  }

  #fail(why: string): ProtocolError {
    return new ProtocolError('bad-json', `JSON payload ${why} (at character ${this.#pos})`, this.#facts);
  }

  #space(): void {
    const t = this.#text;
    while (this.#pos < t.length) {
      const c = t.charCodeAt(this.#pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.#pos++;
    }
  }

  #value(depth: number): JsonValue {
    this.#space();
    const c = this.#text[this.#pos];
    if (c === '{' || c === '[') {
      if (depth > MAX_JSON_DEPTH) throw this.#fail(`nests deeper than ${MAX_JSON_DEPTH} levels`);
      return c === '{' ? this.#object(depth) : this.#array(depth);
    }
    if (c === '"') return this.#string();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.#text.startsWith(word, this.#pos)) {
        this.#pos += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.#pos;
    const m = NUMBER.exec(this.#text);
    if (m === null) throw this.#fail(c === undefined ? 'ends where a value was expected' : `has an unexpected character ${JSON.stringify(c)}`);
    const n = Number(m[0]);
    // An integer literal beyond 2^53 would silently round: refuse rather than read a different value.
    if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n))) throw this.#fail(`has a number JavaScript cannot hold exactly (${m[0].slice(0, 32)})`);
    this.#pos += m[0].length;
    return n;
  }

  #object(depth: number): JsonObject {
    const out = Object.create(null) as JsonObject;
    const seen = new Set<string>();
    this.#pos++;
    this.#space();
    if (this.#text[this.#pos] === '}') {
      this.#pos++;
      return out;
    }
    for (;;) {
      this.#space();
      if (this.#text[this.#pos] !== '"') throw this.#fail('has an object key that is not a string');
      const key = this.#string();
      if (FORBIDDEN_KEYS.has(key)) throw this.#fail(`has the forbidden key ${JSON.stringify(key)}`);
      if (seen.has(key)) throw this.#fail(`has the key ${JSON.stringify(key.slice(0, 64))} twice`);
      seen.add(key);
      this.#space();
      if (this.#text[this.#pos] !== ':') throw this.#fail("lacks ':' after an object key");
      this.#pos++;
      out[key] = this.#value(depth + 1);
      this.#space();
      const next = this.#text[this.#pos++];
      if (next === '}') return out;
      if (next !== ',') throw this.#fail("lacks ',' or '}' in an object");
    }
  }

  #array(depth: number): JsonValue[] {
    const out: JsonValue[] = [];
    this.#pos++;
    this.#space();
    if (this.#text[this.#pos] === ']') {
      this.#pos++;
      return out;
    }
    for (;;) {
      out.push(this.#value(depth + 1));
      this.#space();
      const next = this.#text[this.#pos++];
      if (next === ']') return out;
      if (next !== ',') throw this.#fail("lacks ',' or ']' in an array");
    }
  }

  #string(): string {
    const t = this.#text;
    let out = '';
    let start = ++this.#pos;
    for (;;) {
      if (this.#pos >= t.length) throw this.#fail('has an unterminated string');
      const c = t.charCodeAt(this.#pos);
      if (c === 0x22) {
        out += t.slice(start, this.#pos++);
        return out;
      }
      if (c < 0x20) throw this.#fail('has a control character inside a string');
      if (c !== 0x5c) {
        this.#pos++;
        continue;
      }
      out += t.slice(start, this.#pos);
      const e = t[this.#pos + 1];
      this.#pos += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': out += this.#unicodeEscape(); break;
        default: throw this.#fail('has an invalid escape in a string');
      }
      start = this.#pos;
    }
  }

  /** After `\u`: one code unit, or a high + low surrogate pair written as two escapes. */
  #unicodeEscape(): string {
    const hi = this.#hex4();
    if (hi < 0xd800 || hi > 0xdfff) return String.fromCharCode(hi);
    if (hi <= 0xdbff && this.#text.startsWith('\\u', this.#pos)) {
      this.#pos += 2;
      const lo = this.#hex4();
      if (lo >= 0xdc00 && lo <= 0xdfff) return String.fromCharCode(hi, lo);
    }
    throw this.#fail('has an escape of a lone surrogate');
  }

  #hex4(): number {
    const digits = this.#text.slice(this.#pos, this.#pos + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(digits)) throw this.#fail('has a bad \\u escape');
    this.#pos += 4;
    return parseInt(digits, 16);
  }
}
