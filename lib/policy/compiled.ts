// One policy file in the compact form a snapshot keeps: the binary's versions packed into
// one Int32Array and its measurements as bytes (33 per measurement), the file's groups as
// parsed. Made right after the file is parsed (or read by fast-file.ts, for the usual file,
// without an AST); holds no file text and no per-version
// objects (a 100k-version repository used to keep ~450 bytes and five objects per version,
// and most of its load time went to making and then garbage-collecting them). It depends on
// nothing outside its file (scopes are resolved per snapshot), so one CompiledFile can serve
// every snapshot built while its file is unchanged.
import type { BinaryDecl, GroupDecl, VersionStatus, VmsDecl } from './ast.js';
import type { PolicySyntaxError } from './errors.js';
import { DEFAULT_LIMITS, resolveLimits, type Limits } from './limits.js';
import { ownText } from './lexer.js';
import { formatMember, type Interpreter, type Member } from './names.js';
import type { SupersedeLinks } from './parse.js';

export const STATUS_OF_CODE: readonly VersionStatus[] = Object.freeze(['approved', 'superseded', 'revoked']);

/** Measurement algorithms by their one-byte code in `digests`. */
export const ALGORITHM_OF_CODE: readonly string[] = Object.freeze(['sha256', 'blake3']);

/** Bytes per measurement in `digests`: the algorithm's code, then the 32 digest bytes. */
export const DIGEST_STRIDE = 33;

export const NO_INTERPRETER: Interpreter = Object.freeze({ kind: 'none' });

/** A parsed file's binary block, compact. */
export interface CompiledBinary {
  readonly name: string;
  /** Repository-relative path of the file. */
  readonly file: string;
  readonly line: number;
  readonly limits: Limits;
  readonly interpreter: Interpreter;
  /** The vms lines as parsed (groups in them are resolved per snapshot). */
  readonly vms: readonly VmsDecl[];
  /** Worked out from `vms` here, once per file, not per snapshot: */
  readonly vmsAll: boolean;
  /** Every member of every vms line, in order. */
  readonly vmsMembers: readonly Member[];
  /** As written: ['all'] or the members as `kind:value` (frozen). */
  readonly vmsWritten: readonly string[];
  /** The members sorted and joined (binaries with the same members share one scope). */
  readonly scopeKey: string;
  /** Versions, in file order. */
  readonly count: number;
  readonly measurementCount: number;
  /** The versions, in file order, written one after another (see versionAt). */
  readonly versionText: string;
  /** `ints` and `digests` are slabs shared with other files: this binary's part starts at intsAt / digestsAt. */
  readonly intsAt: number;
  readonly digestsAt: number;
  /**
   * From intsAt, for version i of n: ints[4i] its line, ints[4i+1] its status code, ints[4i+2] the index of
   * the version its by= names, ints[4i+3] the index of the approved version that ends its
   * supersede chain (both -1 when none or unknown); then ints[4n+i] the index of its first
   * measurement (n+1 of these: the last is measurementCount); then ints[5n+1+j] the version
   * of measurement j.
   */
  readonly ints: Int32Array;
  /** reasons[i] for revoked versions; undefined when no version is revoked. */
  readonly reasons: readonly (string | undefined)[] | undefined;
  /** From digestsAt, DIGEST_STRIDE bytes per measurement, in order. */
  readonly digests: Uint8Array;
}

/**
 * Where compiled files are packed: large shared typed arrays, filled from the front. A typed
 * array per file cost an off-heap allocation each, and the collector tracked 20k of them.
 * A slab lives as long as any file packed in it is used.
 */
class Slabs<T extends Int32Array | Uint8Array> {
  private slab: T;
  private used = 0;
  constructor(private readonly make: (length: number) => T, private readonly length: number) {
    this.slab = make(length);
  }
  /** Room for `n` elements: the slab holding it and where it starts. */
  take(n: number): { slab: T; at: number } {
    if (n > this.length / 4) return { slab: this.make(n), at: 0 };
    if (this.used + n > this.length) {
      this.slab = this.make(this.length);
      this.used = 0;
    }
    const at = this.used;
    this.used += n;
    return { slab: this.slab, at };
  }
}

const INT_SLABS = new Slabs((n) => new Int32Array(n), 1 << 18);
const BYTE_SLABS = new Slabs((n) => new Uint8Array(n), 1 << 20);

/** What a snapshot needs of one parsed file. */
export interface CompiledFile {
  readonly path: string;
  readonly groups: readonly GroupDecl[];
  readonly binary: CompiledBinary | undefined;
  /** The file's own errors (a snapshot is made only when every file has none). */
  readonly errors: readonly PolicySyntaxError[];
}

/** Compile a parsed binary block; `links` is undefined when its file had errors (by/end are then -1). */
export function compileBinary(decl: BinaryDecl, file: string, links: SupersedeLinks | undefined): CompiledBinary {
  const decls = decl.versions;
  const n = decls.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += decls[i]!.measurements.length;
  const { slab: ints, at: intsAt } = INT_SLABS.take(intsLength(n, total));
  const { slab: digests, at: digestsAt } = BYTE_SLABS.take(DIGEST_STRIDE * total);
  let reasons: (string | undefined)[] | undefined;
  let j = 0;
  for (let i = 0; i < n; i++) {
    const v = decls[i]!;
    const o = intsAt + 4 * i;
    ints[o] = v.line;
    ints[o + 1] = v.status === 'approved' ? 0 : v.status === 'superseded' ? 1 : 2;
    const superseded = links !== undefined && v.status === 'superseded';
    ints[o + 2] = superseded ? links.by[i]! : -1;
    ints[o + 3] = superseded ? links.end[i]! : -1;
    if (v.status === 'revoked') (reasons ??= new Array<string | undefined>(n))[i] = v.reason;
    ints[intsAt + 4 * n + i] = j;
    const ms = v.measurements;
    for (let k = 0; k < ms.length; k++) {
      // The parser took only well-formed measurements: this cannot fail.
      if (!encodeMeasurement(ms[k]!, digests, digestsAt + DIGEST_STRIDE * j)) throw new Error(`internal: '${ms[k]!}' is not a measurement`);
      ints[intsAt + 5 * n + 1 + j] = i;
      j++;
    }
  }
  // One string for the file's versions, not one each (10 strings and an array less per file).
  let versionText = '';
  for (let i = 0; i < n; i++) versionText += decls[i]!.version;
  const head: BinaryHead = {
    name: decl.name,
    line: decl.line,
    limits: decl.limits === undefined ? DEFAULT_LIMITS : resolveLimits(decl.limits.values),
    interpreter: decl.interpreter?.value ?? NO_INTERPRETER,
    vms: decl.vms,
    vmsWritten: undefined,
  };
  // Built with +=, a chain of pieces until flattened: ownText makes it one string.
  return finishBinary(head, file, { count: n, measurementCount: total, ints, intsAt, digests, digestsAt, reasons, versionText: ownText(versionText), versionLength: (i) => decls[i]!.version.length });
}

/** What finishBinary needs of a binary block besides its versions. */
export interface BinaryHead {
  readonly name: string;
  readonly line: number;
  readonly limits: Limits;
  readonly interpreter: Interpreter;
  readonly vms: readonly VmsDecl[];
  /** The vms members as written, when the caller has them already (frozen); else made here. */
  readonly vmsWritten: readonly string[] | undefined;
}

/** Length of a binary's part of the ints slab: n versions, `total` measurements (see CompiledBinary.ints). */
export function intsLength(n: number, total: number): number {
  return 6 * n + 2 + 2 * total;
}

/** Room for a binary's ints (intsLength) and digests, in the shared slabs. */
export function takeSlabs(n: number, total: number): { ints: Int32Array; intsAt: number; digests: Uint8Array; digestsAt: number } {
  const { slab: ints, at: intsAt } = INT_SLABS.take(intsLength(n, total));
  const { slab: digests, at: digestsAt } = BYTE_SLABS.take(DIGEST_STRIDE * total);
  return { ints, intsAt, digests, digestsAt };
}

/**
 * A binary's versions as written to the slabs: per version its line, status, by and end
 * (ints[4i..4i+3] from intsAt), the index of its first measurement (ints[4n+i]), the version
 * of each measurement (ints[5n+1+j]), and the measurements' bytes from digestsAt.
 */
export interface WrittenVersions {
  readonly count: number;
  readonly measurementCount: number;
  readonly ints: Int32Array;
  readonly intsAt: number;
  readonly digests: Uint8Array;
  readonly digestsAt: number;
  readonly reasons: (string | undefined)[] | undefined;
  /** The versions, in file order, one after another: a flat string of its own (kept as it is). */
  readonly versionText: string;
  readonly versionLength: (i: number) => number;
}

/** The rest of a compiled binary once its versions are written: hashes, version offsets, scope keys. */
export function finishBinary(decl: BinaryHead, file: string, w: WrittenVersions): CompiledBinary {
  const { count: n, measurementCount: total, ints, intsAt, digests, digestsAt, reasons } = w;
  ints[intsAt + 5 * n] = total;
  // Hashed here, in the loop that runs for every file, rather than once per snapshot.
  const hashAt = intsAt + 5 * n + 1 + total;
  for (let k = 0; k < total; k++) ints[hashAt + k] = digestHash(digests, digestsAt + DIGEST_STRIDE * k);
  const offsets = hashAt + total;
  let at = 0;
  for (let i = 0; i < n; i++) {
    ints[offsets + i] = at;
    at += w.versionLength(i);
  }
  ints[offsets + n] = at;
  const vms = decl.vms;
  let vmsAll = false;
  for (let i = 0; i < vms.length; i++) if (vms[i]!.all) vmsAll = true;
  const vmsMembers = vms.length === 1 ? vms[0]!.members : vms.flatMap((v) => v.members);
  const vmsWritten = decl.vmsWritten ?? (vmsAll ? ALL_WRITTEN : Object.freeze(vmsMembers.map(formatMember)));
  return Object.freeze({
    name: decl.name,
    file,
    line: decl.line,
    limits: decl.limits,
    interpreter: decl.interpreter,
    vms: decl.vms,
    vmsAll,
    vmsMembers,
    vmsWritten,
    scopeKey: vmsWritten.length === 1 ? vmsWritten[0]! : [...vmsWritten].sort().join(' '),
    count: n,
    measurementCount: total,
    versionText: w.versionText,
    ints,
    intsAt,
    reasons: reasons === undefined ? undefined : Object.freeze(reasons),
    digests,
    digestsAt,
  });
}

export const ALL_WRITTEN: readonly string[] = Object.freeze(['all']);

/**
 * Multipliers of the keyed digest hash, drawn once per process: every compiled file hashes
 * its measurements with them, and every table and lookup uses the same.
 */
const DIGEST_KEYS = new Int32Array(9);
for (let i = 0; i < 9; i++) DIGEST_KEYS[i] = (Math.random() * 0x1_0000_0000) | 1;

/**
 * Keyed hash of the measurement at `bytes[at]`: the sum of its eight 32-bit words (and its
 * algorithm) times random odd multipliers; a table takes its top bits (vector
 * multiply-shift: two digests share a slot with probability about 2/slots). Measurements come
 * from policy files anyone may propose; with multipliers drawn per process no file can be
 * written to collide, so building a table stays linear in the worst case too (a hash of the
 * first bytes alone could be flooded with digests that share them).
 */
export function digestHash(bytes: Uint8Array, at: number): number {
  const keys = DIGEST_KEYS;
  let h = Math.imul(bytes[at]! + 1, keys[8]!);
  for (let w = 0, p = at + 1; w < 8; w++, p += 4) {
    const word = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
    h = (h + Math.imul(word, keys[w]!)) | 0;
  }
  return h;
}

/** The string of version `i` of `bin`. */
export function versionAt(bin: CompiledBinary, i: number): string {
  const o = bin.intsAt + 5 * bin.count + 1 + 2 * bin.measurementCount + i;
  return bin.versionText.slice(bin.ints[o]!, bin.ints[o + 1]!);
}

/** Lowercase hex digit values by character code; -1 for anything else. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEX_VALUE[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[0x61 + c] = 10 + c;

/**
 * Write `text`, a measurement as a policy spells it (`sha256:` or `blake3:` and 64 lowercase
 * hex digits), as DIGEST_STRIDE bytes at `out[at]`. False (with `out` partly written) when
 * `text` is anything else: uppercase hex, another length, another algorithm.
 */
export function encodeMeasurement(text: string, out: Uint8Array, at: number): boolean {
  if (text.length !== 71 || text.charCodeAt(6) !== 0x3a) return false;
  const c0 = text.charCodeAt(0);
  let algorithm: number;
  if (c0 === 0x73 && text.startsWith('sha256')) algorithm = 0;
  else if (c0 === 0x62 && text.startsWith('blake3')) algorithm = 1;
  else return false;
  out[at] = algorithm;
  for (let i = 0; i < 32; i++) {
    const hi = text.charCodeAt(7 + 2 * i);
    const lo = text.charCodeAt(8 + 2 * i);
    const h = hi < 128 ? HEX_VALUE[hi]! : -1;
    const l = lo < 128 ? HEX_VALUE[lo]! : -1;
    if ((h | l) < 0) return false;
    out[at + 1 + i] = (h << 4) | l;
  }
  return true;
}

const HEX_PAIRS: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** The measurement written at `bytes[at]` by encodeMeasurement, as text. */
export function decodeMeasurement(bytes: Uint8Array, at: number): string {
  let hex = '';
  for (let i = 1; i <= 32; i++) hex += HEX_PAIRS[bytes[at + i]!]!;
  return `${ALGORITHM_OF_CODE[bytes[at]!]!}:${hex}`;
}
