// The usual policy file compiled without its AST: a header (comments, `binary`, `limits`,
// `interpreter`, `vms`), then one line per version (`approved`, `superseded by=V` or
// `revoked reason="…"`, one measurement each), comments and blank lines. The header goes
// through the parser; the version lines are checked by one expression each and written
// straight into the compiled form (no line string, match, version object or measurement
// string per version: those were most of a large repository's load, and its garbage).
//
// Only a file this path takes whole and finds nothing wrong with is compiled here: anything
// else (another line, a second measurement, a repeat, a by= that names no version, a loop,
// a forbidden character, a block of more than FAST_MAX_VERSIONS) returns undefined and the
// file is parsed the general way from its first line, so every error and its wording come
// from the parser alone. A test compares both ways on generated files.
import type { GroupDecl, VmsDecl } from './ast.js';
import { ALL_WRITTEN, DIGEST_STRIDE, finishBinary, NO_INTERPRETER, takeSlabs, type BinaryHead, type CompiledBinary } from './compiled.js';
import { FORBIDDEN_IN_TEXT, ownText } from './lexer.js';
import { DEFAULT_LIMITS, isLimitKey, parseLimitValue, resolveLimits, type LimitKey, type Limits } from './limits.js';
import { BINARY_NAME, formatMember, interpreterPathProblem, MEASUREMENT, parseMember, VERSION, type Interpreter, type Member } from './names.js';
import { PARSE_LIMITS } from './parse.js';

/** For tests: compile every file the general way, to compare. */
export const fastFileOptions = { enabled: true };

/** Versions a block may have on this path (the repeat checks here are linear scans). */
export const FAST_MAX_VERSIONS = 256;

const inner = (re: RegExp): string => re.source.slice(1, -1);

/**
 * For a negated class: LF and every character the lexer forbids anywhere in a file. The
 * expression below then refuses a forbidden character in a reason or a comment itself (its
 * other parts are ASCII letters, digits and punctuation), so the text of version lines needs
 * no scan of its own for them.
 */
const LF_AND_FORBIDDEN = `\\n${FORBIDDEN_IN_TEXT.source.slice(1, -1)}`;

/**
 * One version line at lastIndex, whole (sticky, up to the line's end): the version, the
 * status (approved, superseded by=V, or revoked with a quoted reason without escapes), one
 * measurement, maybe a comment. The same patterns as the parser's; a line it takes the parser
 * reads alike, and the positions of its parts are then found by a plain scan.
 */
const VERSION_LINE = new RegExp(
  `[ \\t]*version[ \\t]+${inner(VERSION)}[ \\t]+(?:approved|superseded[ \\t]+by=${inner(VERSION)}|revoked[ \\t]+reason="[^"\\\\${LF_AND_FORBIDDEN}]*")[ \\t]+${inner(MEASUREMENT)}[ \\t]*(?:#[^${LF_AND_FORBIDDEN}]*)?(?=\\n|$)`,
  'y',
);


/** Lowercase hex digit values by character code; -1 for anything else. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEX_VALUE[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[0x61 + c] = 10 + c;

/** Columns of the block being read, reused from file to file (compiling is synchronous). */
const versions: string[] = [];
const byText: (string | undefined)[] = [];
const reasonText: (string | undefined)[] = [];
const lineOf = new Int32Array(FAST_MAX_VERSIONS);
const statusOf = new Int32Array(FAST_MAX_VERSIONS);
const byIndex = new Int32Array(FAST_MAX_VERSIONS);
const endOf = new Int32Array(FAST_MAX_VERSIONS);
/** A hash of each version and of each by= (0 when none): a repeat or a by= is looked for among equal hashes only. */
const versionHash = new Int32Array(FAST_MAX_VERSIONS);
const byHash = new Int32Array(FAST_MAX_VERSIONS);
/** The first four digest bytes of each measurement, as one number: most repeat checks stop at it. */
const leadWord = new Int32Array(FAST_MAX_VERSIONS);
const digestBytes = new Uint8Array(FAST_MAX_VERSIONS * DIGEST_STRIDE);
/** The walk of one supersede chain (linkVersions). */
const walk = new Int32Array(FAST_MAX_VERSIONS);

const isBlank = (c: number): boolean => c === 0x20 || c === 0x09;

/** The file compiled, or undefined when it is not of the usual shape or has any problem. */
export function compileUsualFile(file: string, text: string): { groups: readonly GroupDecl[]; binary: CompiledBinary } | undefined {
  if (!fastFileOptions.enabled || text.length > PARSE_LIMITS.maxFileChars) return undefined;
  try {
    const decl = readHeader(file, text);
    if (decl === undefined) return undefined;
    const n = readVersionLines(text, headerEnd, headerLines);
    if (n < 0 || !linkVersions(n)) return undefined;
    return { groups: NO_GROUPS, binary: pack(decl, file, n) };
  } finally {
    // The columns hold slices of this text (a token or version of 13 characters or more):
    // overwritten (not cut, which would give their room back and make them grow again for
    // the next file), so they keep no file's text alive once it is compiled.
    tokens.fill('');
    versions.fill('');
    byText.fill(undefined);
  }
}

const NO_GROUPS: readonly GroupDecl[] = Object.freeze([]);
const NO_MEMBERS: readonly Member[] = Object.freeze([]);

/** The tokens of the header line being read (tokens[0..tokenCount)); where readHeader stopped, and the lines it read. */
const tokens: string[] = [];
let tokenCount = 0;
let headerEnd = 0;
let headerLines = 0;
/** The members of the header's vms lines so far, as `kind:value` (repeats are the parser's errors). */
const memberKeys: string[] = [];

/**
 * Split text[start..end) into bare tokens (blanks between, a comment from '#'); false when
 * the code holds a quote (the parser's lexer reads those) or the line is too long.
 */
/** Where the first line that starts with blanks, `version` and a blank starts; -1 when none does. */
function firstVersionLine(text: string): number {
  for (let start = 0; start < text.length; ) {
    let p = start;
    while (isBlank(text.charCodeAt(p))) p++;
    if (text.startsWith('version', p) && isBlank(text.charCodeAt(p + 7))) return start;
    const nl = text.indexOf('\n', p);
    if (nl < 0) return -1;
    start = nl + 1;
  }
  return -1;
}

function splitLine(text: string, start: number, end: number): boolean {
  if (end - start > PARSE_LIMITS.maxLineChars) return false;
  tokenCount = 0;
  let from = -1;
  for (let p = start; p < end; p++) {
    const c = text.charCodeAt(p);
    if (c === 0x22) return false; // '"'
    const stop = c === 0x23; // '#'
    if (stop || isBlank(c)) {
      if (from >= 0) tokens[tokenCount++] = text.slice(from, p);
      from = -1;
      if (stop) return true;
    } else if (from < 0) from = p;
  }
  if (from >= 0) tokens[tokenCount++] = text.slice(from, end);
  return true;
}

/**
 * The binary block the header of `text` declares (the lines before the first that starts with
 * the keyword `version` and a blank), read as the parser reads it, when it is of the usual
 * kind: comments, then `binary NAME` (the file's name), then at most one `limits`, at most
 * one `interpreter` and `vms` lines, all of bare tokens, no forbidden character. Undefined
 * for anything else, for any problem (the parser will say what) and for a file without a
 * version line. Sets headerEnd (where that line starts) and headerLines.
 */
function readHeader(file: string, text: string): BinaryHead | undefined {
  const end = firstVersionLine(text);
  if (end < 0 || FORBIDDEN_IN_TEXT.test(text.slice(0, end))) return undefined;
  let lineNo = 0;
  let name: string | undefined;
  let nameLine = 0;
  let limits: Limits | undefined;
  let interpreter: Interpreter | undefined;
  let vms: VmsDecl[] | undefined;
  let written: readonly string[] | undefined;
  let all = false;
  memberKeys.length = 0;
  for (let start = 0; start < end; ) {
    let lineEnd = text.indexOf('\n', start);
    if (lineEnd < 0 || lineEnd > end) lineEnd = end;
    lineNo++;
    const lineStart = start;
    start = lineEnd + 1;
    if (lineEnd - lineStart > PARSE_LIMITS.maxLineChars) return undefined;
    let p = lineStart;
    while (p < lineEnd && isBlank(text.charCodeAt(p))) p++;
    if (p === lineEnd || text.charCodeAt(p) === 0x23) continue;
    if (name === undefined) {
      // Only comments come before the binary line.
      if (!splitLine(text, lineStart, lineEnd) || tokenCount !== 2 || tokens[0] !== 'binary' || !BINARY_NAME.test(tokens[1]!)) return undefined;
      name = ownText(tokens[1]!);
      // The file must be NAME.policy (in any folder), compared in place.
      const base = file.length - name.length - 7;
      if (base < 0 || !file.endsWith('.policy') || !file.startsWith(name, base) || (base !== 0 && file.charCodeAt(base - 1) !== 0x2f)) return undefined;
      nameLine = lineNo;
      continue;
    }
    const line = readHeaderLine(text, lineStart, lineEnd);
    if (line === undefined) return undefined;
    if (line.kind === 'limits') {
      if (limits !== undefined) return undefined;
      limits = line.limits;
    } else if (line.kind === 'interpreter') {
      if (interpreter !== undefined) return undefined;
      interpreter = line.interpreter;
    } else if (line.kind === 'all') {
      if (vms !== undefined) return undefined;
      all = true;
      vms = [Object.freeze({ all: true, members: NO_MEMBERS, line: lineNo })];
      written = ALL_WRITTEN;
    } else {
      if (all) return undefined;
      for (const key of line.keys) {
        if (memberKeys.includes(key)) return undefined;
        memberKeys.push(key);
      }
      written = vms === undefined ? line.keys : undefined;
      (vms ??= []).push(Object.freeze({ all: false, members: line.members, line: lineNo }));
    }
  }
  if (name === undefined) return undefined;
  headerEnd = end;
  headerLines = lineNo;
  return { name, line: nameLine, limits: limits ?? DEFAULT_LIMITS, interpreter: interpreter ?? NO_INTERPRETER, vms: Object.freeze(vms ?? []), vmsWritten: written };
}

/** A `limits`, `interpreter` or `vms` line, read: what it says does not depend on where it is. */
type HeaderLine =
  | { readonly kind: 'limits'; readonly limits: Limits }
  | { readonly kind: 'interpreter'; readonly interpreter: Interpreter }
  | { readonly kind: 'all' }
  | { readonly kind: 'vms'; readonly members: readonly Member[]; readonly keys: readonly string[] };

/**
 * Header lines by their text. A repository repeats a few of them in most of its files (the
 * same group, the same limits): each is read once, and its members and limits are one set
 * of frozen objects shared by the binaries that write it. Bounded: emptied past 4096 lines.
 */
const HEADER_LINES = new Map<string, HeaderLine>();
const ALL_LINE: HeaderLine = Object.freeze({ kind: 'all' });

/** The header line text[start..end) (not a comment, not the binary line), or undefined when it is not of the usual kind. */
function readHeaderLine(text: string, start: number, end: number): HeaderLine | undefined {
  const key = text.slice(start, end);
  const seen = HEADER_LINES.get(key);
  if (seen !== undefined) return seen;
  if (!splitLine(text, start, end) || tokenCount < 2) return undefined;
  const keyword = tokens[0];
  let line: HeaderLine;
  if (keyword === 'vms') {
    if (tokenCount === 2 && tokens[1] === 'all') line = ALL_LINE;
    else {
      const members = new Array<Member>(tokenCount - 1);
      const keys = new Array<string>(tokenCount - 1);
      for (let t = 1; t < tokenCount; t++) {
        const parsed = parseMember(tokens[t]!);
        if ('problem' in parsed) return undefined;
        const k = formatMember(parsed.member);
        // A member twice on one line is the parser's error.
        if (keys.includes(k)) return undefined;
        keys[t - 1] = k;
        members[t - 1] = Object.freeze({ kind: parsed.member.kind, value: ownText(parsed.member.value) }) as Member;
      }
      line = Object.freeze({ kind: 'vms', members: Object.freeze(members), keys: Object.freeze(keys) });
    }
  } else if (keyword === 'limits') {
    const values: Partial<Record<LimitKey, number>> = {};
    for (let t = 1; t < tokenCount; t++) {
      const token = tokens[t]!;
      const eq = token.indexOf('=');
      if (eq <= 0) return undefined;
      const name = token.slice(0, eq);
      if (!isLimitKey(name) || values[name] !== undefined) return undefined;
      const parsed = parseLimitValue(name, token.slice(eq + 1));
      if ('problem' in parsed) return undefined;
      values[name] = parsed.value;
    }
    line = Object.freeze({ kind: 'limits', limits: resolveLimits(values) });
  } else if (keyword === 'interpreter') {
    if (tokenCount !== 2) return undefined;
    const token = tokens[1]!;
    let value: Interpreter;
    if (token === 'none' || token === 'wasi') value = { kind: token };
    else if (interpreterPathProblem(token) === undefined) value = { kind: 'path', path: ownText(token) };
    else return undefined;
    line = Object.freeze({ kind: 'interpreter', interpreter: Object.freeze(value) });
  } else {
    return undefined;
  }
  if (HEADER_LINES.size >= 4096) HEADER_LINES.clear();
  // The key copied: a slice would keep its whole file's text in the map.
  HEADER_LINES.set(ownText(key), line);
  return line;
}

/** Read the lines from `start` to the end into the columns; their count, or -1 to leave the file to the parser. */
function readVersionLines(text: string, start: number, lineNo: number): number {
  const length = text.length;
  let n = 0;
  while (start < length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = length;
    lineNo++;
    if (end - start > PARSE_LIMITS.maxLineChars) return -1;
    let p = start;
    while (p < end && isBlank(text.charCodeAt(p))) p++;
    if (p < end && text.charCodeAt(p) === 0x23) {
      // A comment line: the one place here where a forbidden character is not refused by VERSION_LINE.
      if (FORBIDDEN_IN_TEXT.test(text.slice(p, end))) return -1;
    } else if (p < end) {
      VERSION_LINE.lastIndex = start;
      if (n === FAST_MAX_VERSIONS || !VERSION_LINE.test(text)) return -1;
      // The line matched: its parts are where the expression put them.
      p += 7;
      while (isBlank(text.charCodeAt(p))) p++;
      let q = p;
      let h = 0;
      for (let c = text.charCodeAt(q); !isBlank(c); c = text.charCodeAt(++q)) h = (Math.imul(h, 31) + c) | 0;
      const version = text.slice(p, q);
      for (let i = 0; i < n; i++) if (versionHash[i] === h && versions[i] === version) return -1;
      versionHash[n] = h;
      byHash[n] = 0;
      p = q;
      while (isBlank(text.charCodeAt(p))) p++;
      const s = text.charCodeAt(p);
      let by: string | undefined;
      let reason: string | undefined;
      if (s === 0x61) {
        statusOf[n] = 0;
        p += 8; // approved
      } else if (s === 0x73) {
        statusOf[n] = 1;
        p += 10; // superseded
        while (isBlank(text.charCodeAt(p))) p++;
        q = p += 3; // by=
        h = 0;
        for (let c = text.charCodeAt(q); !isBlank(c); c = text.charCodeAt(++q)) h = (Math.imul(h, 31) + c) | 0;
        byHash[n] = h;
        by = text.slice(p, q);
        p = q;
      } else {
        statusOf[n] = 2;
        p += 7; // revoked
        while (isBlank(text.charCodeAt(p))) p++;
        p += 8; // reason="
        q = text.indexOf('"', p);
        reason = text.slice(p, q);
        if (reason.trim() === '' || reason.length > PARSE_LIMITS.maxReasonChars) return -1;
        reason = ownText(reason);
        p = q + 1;
      }
      while (isBlank(text.charCodeAt(p))) p++;
      if (!readMeasurement(text, p, n)) return -1;
      versions[n] = version;
      byText[n] = by;
      reasonText[n] = reason;
      lineOf[n] = lineNo;
      n++;
    }
    start = end + 1;
  }
  return n;
}

/** Encode the measurement at text[p] (matched: well-formed) as measurement n; false if it repeats one before. */
function readMeasurement(text: string, p: number, n: number): boolean {
  const at = n * DIGEST_STRIDE;
  digestBytes[at] = text.charCodeAt(p) === 0x73 ? 0 : 1; // sha256: or blake3:
  for (let i = 0, c = p + 7; i < 32; i++, c += 2) digestBytes[at + 1 + i] = (HEX_VALUE[text.charCodeAt(c)]! << 4) | HEX_VALUE[text.charCodeAt(c + 1)]!;
  const lead = digestBytes[at]! | (digestBytes[at + 1]! << 8) | (digestBytes[at + 2]! << 16) | (digestBytes[at + 3]! << 24);
  for (let k = 0; k < n; k++) {
    if (leadWord[k] !== lead) continue;
    let same = true;
    for (let b = 4; b < DIGEST_STRIDE && same; b++) same = digestBytes[k * DIGEST_STRIDE + b] === digestBytes[at + b];
    if (same) return false;
  }
  leadWord[n] = lead;
  return true;
}

/**
 * Resolve every by= to the index of its version and each chain to its approved end (-1 when
 * it ends revoked), as the parser's chain check does; false on any by= that names no other
 * version, or a loop.
 */
function linkVersions(n: number): boolean {
  for (let i = 0; i < n; i++) {
    byIndex[i] = -1;
    endOf[i] = -3; // unseen
    const by = byText[i];
    if (by === undefined) continue;
    let target = -1;
    const h = byHash[i]!;
    for (let k = 0; k < n; k++) {
      if (versionHash[k] === h && versions[k] === by) {
        target = k;
        break;
      }
    }
    if (target < 0 || target === i) return false;
    byIndex[i] = target;
  }
  for (let start = 0; start < n; start++) {
    let steps = 0;
    let cur = start;
    while (cur >= 0 && endOf[cur] === -3) {
      endOf[cur] = -2; // on the walk
      walk[steps++] = cur;
      cur = byIndex[cur]!;
    }
    if (cur >= 0 && endOf[cur] === -2) return false;
    const last = walk[steps - 1]!;
    const result = cur >= 0 ? endOf[cur]! : statusOf[last] === 0 ? last : -1;
    for (let k = 0; k < steps; k++) endOf[walk[k]!] = result;
  }
  return true;
}

/** Write the columns into the shared slabs, as compileBinary lays a parsed block out. */
function pack(decl: BinaryHead, file: string, n: number): CompiledBinary {
  const { ints, intsAt, digests, digestsAt } = takeSlabs(n, n);
  let reasons: (string | undefined)[] | undefined;
  for (let i = 0; i < n; i++) {
    const o = intsAt + 4 * i;
    const status = statusOf[i]!;
    ints[o] = lineOf[i]!;
    ints[o + 1] = status;
    ints[o + 2] = status === 1 ? byIndex[i]! : -1;
    ints[o + 3] = status === 1 ? endOf[i]! : -1;
    if (status === 2) (reasons ??= new Array<string | undefined>(n))[i] = reasonText[i];
    ints[intsAt + 4 * n + i] = i;
    ints[intsAt + 5 * n + 1 + i] = i;
  }
  // join makes one flat string of its own, except of one version, which may be a slice of the text.
  const versionText = n === 1 ? ownText(versions[0]!) : versions.join('');
  digests.set(digestBytes.subarray(0, n * DIGEST_STRIDE), digestsAt);
  return finishBinary(decl, file, { count: n, measurementCount: n, ints, intsAt, digests, digestsAt, reasons, versionText, versionLength: (i) => versions[i]!.length });
}
