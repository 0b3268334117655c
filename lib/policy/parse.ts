// Parses one policy file into its declarations, collecting every error with its line
// (`policy check` shows them all at once). Rules that need only this file are checked here:
// names, units, duplicates, one binary block per file named after the file, and the
// supersede chains of that block. Rules that span files live in snapshot.ts.
import type { BinaryDecl, GroupDecl, PolicyFileAst, StatusSpec, VersionDecl, VersionStatus, VmsDecl } from './ast.js';
import { VERSION_STATUSES } from './ast.js';
import { PolicySyntaxError } from './errors.js';
import { forbiddenCharacter, hasForbiddenCharacter, ownText, splitKeyValue, TokenBuffer, type Token } from './lexer.js';
import { isLimitKey, LIMIT_KEY_ORDER, parseLimitValue, type LimitKey } from './limits.js';
import {
  BINARY_NAME,
  formatMember,
  GROUP_NAME,
  interpreterPathProblem,
  isMeasurement,
  MEASUREMENT,
  measurementProblem,
  parseMember,
  VERSION,
  type Interpreter,
  type Member,
} from './names.js';

/** Bounds on what one file may hold, so a hostile file cannot make the parser work without end. */
export const PARSE_LIMITS = Object.freeze({
  /** Characters in one file (a policy file is small: one line per approval). */
  maxFileChars: 16 * 1024 * 1024,
  /** Characters in one line. */
  maxLineChars: 64 * 1024,
  /** Characters in a revocation reason. */
  maxReasonChars: 1024,
  /** Errors reported for one file before the parser gives up on it. */
  maxErrorsPerFile: 1000,
});

export const KEYWORDS = Object.freeze(['group', 'binary', 'limits', 'interpreter', 'vms', 'version'] as const);
type Keyword = (typeof KEYWORDS)[number];

export interface ParsedPolicyFile {
  readonly ast: PolicyFileAst;
  readonly errors: readonly PolicySyntaxError[];
}

interface BlockBuilder {
  name: string;
  line: number;
  /** False for a second `binary` block: its lines are checked but not kept. */
  kept: boolean;
  limits: BinaryDecl['limits'];
  interpreter: BinaryDecl['interpreter'];
  vms: VmsDecl[];
  /** The `vms all` line, if any (kept so each vms line is O(1), not a scan). */
  allVms: VmsDecl | undefined;
  versions: VersionDecl[];
  keys: BlockKeys;
  /** vms members seen so far (made on the first vms line that lists members). */
  vmMembers: Map<string, number> | undefined;
}

/**
 * What buildSnapshot needs beyond the AST, worked out while the supersede chains are checked,
 * indexed like `ast.binary.versions`: `by[i]` the index of the version that version i's by=
 * names (-1 when not superseded), `end[i]` the index of the approved version at the end of its
 * chain (-1 when the chain ends in a revoked version).
 */
export interface SupersedeLinks {
  readonly by: readonly number[];
  readonly end: readonly number[];
}

/** A parsed file for buildSnapshot: links is undefined when the file has errors. */
export interface ParsedForSnapshot extends ParsedPolicyFile {
  readonly links: SupersedeLinks | undefined;
}

const APPROVED: StatusSpec = Object.freeze({ status: 'approved' });

const inner = (re: RegExp): string => re.source.slice(1, -1);
/**
 * The line of almost every approval, `version V approved M` or `version V superseded by=V2 M`
 * (bare tokens, one measurement, maybe a comment), matched whole by one expression built from
 * the same patterns as the general path. A line that matches and breaks no block rule is read
 * from the match; every other line, and every line with an error, takes the general path (a
 * test checks on thousands of generated lines that both read alike).
 */
const PLAIN_VERSION_LINE = new RegExp(
  `^[ \\t]*version[ \\t]+(${inner(VERSION)})[ \\t]+(?:approved|superseded[ \\t]+by=(${inner(VERSION)}))[ \\t]+(${inner(MEASUREMENT)})[ \\t]*(?:#.*)?$`,
);

/** For tests: read every line the general way, to compare with the plain-line path. */
export const parseOptions = { plainVersionLines: true };

/**
 * A block's versions and measurements, for the repeat checks and by= lookups: a version → its
 * index in `versions`, or minus its line when its line failed after the version was read; a
 * measurement → the index of its version (a measurement has a ':', a version cannot, so the
 * two never clash). Most blocks hold a handful of versions: up to LINEAR_KEYS keys they are
 * found by a scan, with no map made and grown per file (a repository has thousands of
 * files); past that, in one map, so a block of 100k versions stays linear.
 */
class BlockKeys {
  static readonly LINEAR_KEYS = 24;
  private map: Map<string, number> | undefined;
  private failedLines: { version: string; line: number }[] | undefined;
  private size = 0;
  /**
   * A 60-bit filter of the keys held (two small integers): most lookups are for new keys, and
   * a clear bit answers them without comparing strings. A set bit only means "scan".
   */
  private low = 0;
  private high = 0;

  /** `versions` is the block's list: the parser pushes to it, then calls added(). */
  constructor(private readonly versions: readonly VersionDecl[]) {}

  /** Filter bucket of a key (0..59), from its last and middle characters and its length. */
  private static bucket(key: string): number {
    return (key.charCodeAt(key.length - 1) * 31 + key.charCodeAt(key.length >> 1) + key.length) % 60;
  }

  private mark(key: string): void {
    const b = BlockKeys.bucket(key);
    if (b < 30) this.low |= 1 << b;
    else this.high |= 1 << (b - 30);
  }

  get(key: string): number | undefined {
    if (this.map !== undefined) return this.map.get(key);
    const b = BlockKeys.bucket(key);
    if (((b < 30 ? this.low >> b : this.high >> (b - 30)) & 1) === 0) return undefined;
    const versions = this.versions;
    // A measurement is 71 characters; a version at most 64: compare a key with its own kind only.
    if (key.length === 71) {
      for (let i = 0; i < versions.length; i++) {
        const ms = versions[i]!.measurements;
        for (let j = 0; j < ms.length; j++) if (ms[j] === key) return i;
      }
      return undefined;
    }
    for (let i = 0; i < versions.length; i++) if (versions[i]!.version === key) return i;
    if (this.failedLines !== undefined) for (const f of this.failedLines) if (f.version === key) return -f.line;
    return undefined;
  }

  /** The last version pushed joined the block. */
  added(): void {
    const k = this.versions.length - 1;
    const v = this.versions[k]!;
    this.size += 1 + v.measurements.length;
    if (this.map !== undefined) {
      for (const m of v.measurements) this.map.set(m, k);
      this.map.set(v.version, k);
    } else if (this.size > BlockKeys.LINEAR_KEYS) this.toMap();
    else {
      this.mark(v.version);
      for (const m of v.measurements) this.mark(m);
    }
  }

  /** `version`'s line failed after the version was read: it is still taken. */
  failed(version: string, line: number): void {
    this.size += 1;
    if (this.map !== undefined) this.map.set(version, -line);
    else {
      (this.failedLines ??= []).push({ version, line });
      this.mark(version);
      if (this.size > BlockKeys.LINEAR_KEYS) this.toMap();
    }
  }

  private toMap(): void {
    const map = new Map<string, number>();
    for (const f of this.failedLines ?? []) map.set(f.version, -f.line);
    this.versions.forEach((v, k) => {
      for (const m of v.measurements) map.set(m, k);
      map.set(v.version, k);
    });
    this.map = map;
    this.failedLines = undefined;
  }
}

class TooManyErrors extends Error {}

const SHARED_TOKENS = new TokenBuffer();

/** Parse the text of the policy file at repository-relative `path` (used in messages and the name rule). */
export function parsePolicyFile(path: string, text: string): ParsedPolicyFile {
  const { ast, errors } = new FileParser(path).run(text);
  return { ast, errors };
}

/** parsePolicyFile, plus the supersede links worked out on the way (internal to the policy core). */
export function parseForSnapshot(path: string, text: string): ParsedForSnapshot {
  return new FileParser(path, true).run(text);
}

class FileParser {
  private readonly errors: PolicySyntaxError[] = [];
  private readonly groups: GroupDecl[] = [];
  /** Group names defined in this file (made on the first group line: most files have none). */
  private groupLines: Map<string, number> | undefined;
  private links: SupersedeLinks | undefined;
  private block: BlockBuilder | undefined;
  private kept: BlockBuilder | undefined;
  private lineNo = 0;
  /** One buffer for every file: parsing is synchronous and never re-entered. */
  private readonly buffer = SHARED_TOKENS;
  /** Whether the file has a forbidden character somewhere, so lines need checking one by one. */
  private checkCharacters = true;

  /**
   * @param forSnapshot the AST is compiled and dropped at once (measurements are kept as
   *   bytes): its measurement strings may stay slices of the file's text.
   */
  constructor(
    private readonly path: string,
    private readonly forSnapshot = false,
  ) {}

  run(text: string): ParsedForSnapshot {
    if (text.length > PARSE_LIMITS.maxFileChars) {
      this.errors.push(new PolicySyntaxError(this.path, 0, `file is larger than ${PARSE_LIMITS.maxFileChars} characters`));
    } else {
      try {
        this.parseLines(text);
        if (this.kept !== undefined) this.checkSupersedeChains(this.kept);
      } catch (e) {
        if (!(e instanceof TooManyErrors)) throw e;
      }
    }
    const ast = Object.freeze({ path: this.path, groups: Object.freeze(this.groups), binary: this.kept && freezeBlock(this.kept) });
    return { ast, errors: this.errors, links: this.errors.length === 0 ? this.links : undefined };
  }

  private reject(detail: string): false {
    this.fail(detail);
    return false;
  }

  private fail(detail: string, line = this.lineNo): void {
    if (this.errors.length >= PARSE_LIMITS.maxErrorsPerFile) {
      this.errors.push(new PolicySyntaxError(this.path, line, `too many errors; stopped after ${PARSE_LIMITS.maxErrorsPerFile}`));
      throw new TooManyErrors();
    }
    this.errors.push(new PolicySyntaxError(this.path, line, detail));
  }

  private parseLines(text: string): void {
    this.checkCharacters = hasForbiddenCharacter(text);
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      this.lineNo++;
      this.parseLine(text.slice(start, end));
      start = end + 1;
    }
  }

  private parseLine(line: string): void {
    if (line.length > PARSE_LIMITS.maxLineChars) return this.fail(`line is longer than ${PARSE_LIMITS.maxLineChars} characters`);
    const bad = this.checkCharacters ? forbiddenCharacter(line) : undefined;
    if (bad !== undefined) return this.fail(bad);
    const block = this.block;
    if (block !== undefined && parseOptions.plainVersionLines && this.plainVersion(block, line)) return;
    const buffer = this.buffer;
    const problem = buffer.lex(line);
    if (problem !== undefined) return this.fail(problem);
    if (buffer.count === 0) return;
    const first = buffer.tokens[0]!;
    const keyword = first.quotedFrom < 0 && (KEYWORDS as readonly string[]).includes(first.text) ? (first.text as Keyword) : undefined;
    if (keyword === undefined) return this.fail(`unknown keyword '${first.text}' (expected ${KEYWORDS.join(', ')})`);
    this.dispatch(keyword, buffer.tokens, buffer.count);
  }

  /** `tokens[1..count)` are the keyword's arguments (the buffer's: not kept past the line). */
  private dispatch(keyword: Keyword, tokens: readonly Token[], count: number): void {
    const block = this.block;
    // The line of every approval: read in place, without copying its arguments out.
    if (keyword === 'version' && block !== undefined) return this.parseVersion(block, tokens, count);
    const args = tokens.slice(1, count);
    if (keyword === 'group') return this.parseGroup(args);
    if (keyword === 'binary') return this.parseBinary(args);
    if (block === undefined) return this.fail(`'${keyword}' outside a binary block (it belongs below a 'binary NAME' line)`);
    if (keyword === 'limits') return this.parseLimits(block, args);
    if (keyword === 'interpreter') return this.parseInterpreter(block, args);
    return this.parseVms(block, args);
  }

  private parseGroup(args: Token[]): void {
    const [nameToken, ...memberTokens] = args;
    if (nameToken === undefined) return this.fail('group: missing name (expected group NAME MEMBER...)');
    const name = ownText(nameToken.text);
    if (this.block !== undefined) {
      this.fail(`group ${name}: group lines must come before the 'binary' line (a group is not part of binary ${this.block.name})`);
    }
    if (!GROUP_NAME.test(name)) return this.fail(`group: bad name '${name}' (expected ${GROUP_NAME.source})`);
    const first = this.groupLines?.get(name);
    if (first !== undefined) return this.fail(`group ${name} is defined twice (first at line ${first})`);
    if (memberTokens.length === 0) this.fail(`group ${name}: no members (expected vm:NAME, uuid:UUID or group:NAME)`);
    const members = this.parseMembers(`group ${name}`, memberTokens, new Map());
    // A group whose members had errors is still recorded, so references to it do not cascade.
    (this.groupLines ??= new Map()).set(name, this.lineNo);
    this.groups.push(Object.freeze({ name, members: Object.freeze(members), line: this.lineNo }));
  }

  private parseMembers(context: string, tokens: Token[], seen: Map<string, number>): Member[] {
    // Sized exactly, and cut if some fail: a pushed-to array keeps room for 17, and this one
    // lives in the snapshot (one per binary).
    const members: Member[] = new Array<Member>(tokens.length);
    let n = 0;
    for (const token of tokens) {
      const parsed = parseMember(token.text);
      if ('problem' in parsed) {
        this.fail(`${context}: ${parsed.problem}`);
        continue;
      }
      const key = formatMember(parsed.member);
      const first = seen.get(key);
      if (first !== undefined) {
        this.fail(first === this.lineNo ? `${context}: ${key} is listed twice` : `${context}: ${key} is already listed at line ${first}`);
        continue;
      }
      seen.set(key, this.lineNo);
      members[n++] = Object.freeze({ kind: parsed.member.kind, value: ownText(parsed.member.value) }) as Member;
    }
    return n === members.length ? members : members.slice(0, n);
  }

  private parseBinary(args: Token[]): void {
    if (args.length !== 1) return this.fail(`binary: expected exactly one name (binary NAME), got ${args.length}`);
    const name = ownText(args[0]!.text);
    if (!BINARY_NAME.test(name)) return this.fail(`binary: bad name '${name}' (expected ${BINARY_NAME.source})`);
    const block: BlockBuilder = { name, line: this.lineNo, kept: this.kept === undefined, limits: undefined, interpreter: undefined, vms: [], allVms: undefined, versions: [], keys: undefined!, vmMembers: undefined };
    block.keys = new BlockKeys(block.versions);
    if (this.kept !== undefined) {
      this.fail(`binary ${name}: a file holds at most one binary block (binary ${this.kept.name} starts at line ${this.kept.line})`);
    } else {
      this.kept = block;
      const base = this.path.slice(this.path.lastIndexOf('/') + 1);
      if (base !== `${name}.policy`) this.fail(`binary ${name} must be in a file named ${name}.policy (this file is ${base})`);
    }
    this.block = block;
  }

  private parseLimits(block: BlockBuilder, args: Token[]): void {
    if (block.limits !== undefined) return this.fail(`limits: second limits line for binary ${block.name} (first at line ${block.limits.line})`);
    if (args.length === 0) return this.fail(`limits: no KEY=VALUE pairs (keys: ${LIMIT_KEY_ORDER.join(', ')})`);
    const values: Partial<Record<LimitKey, number>> = {};
    for (const token of args) {
      const kv = splitKeyValue(token);
      if (kv === undefined) {
        this.fail(`limits: '${token.text}' is not KEY=VALUE`);
        continue;
      }
      if (!isLimitKey(kv.key)) {
        this.fail(`limits: unknown key '${kv.key}' (expected ${LIMIT_KEY_ORDER.join(', ')})`);
        continue;
      }
      if (values[kv.key] !== undefined) {
        this.fail(`limits: ${kv.key} is given twice`);
        continue;
      }
      const parsed = parseLimitValue(kv.key, kv.value);
      if ('problem' in parsed) this.fail(`limits: ${parsed.problem}`);
      else values[kv.key] = parsed.value;
    }
    block.limits = Object.freeze({ values: Object.freeze(values), line: this.lineNo });
  }

  private parseInterpreter(block: BlockBuilder, args: Token[]): void {
    if (block.interpreter !== undefined) return this.fail(`interpreter: second interpreter line for binary ${block.name} (first at line ${block.interpreter.line})`);
    if (args.length !== 1) return this.fail(`interpreter: expected exactly one value (an absolute path, wasi or none), got ${args.length}`);
    const token = args[0]!;
    let value: Interpreter;
    if (token.quotedFrom < 0 && (token.text === 'none' || token.text === 'wasi')) {
      value = { kind: token.text };
    } else {
      const problem = interpreterPathProblem(token.text);
      if (problem !== undefined) return this.fail(`interpreter: ${problem}`);
      value = { kind: 'path', path: ownText(token.text) };
    }
    block.interpreter = Object.freeze({ value: Object.freeze(value), line: this.lineNo });
  }

  private parseVms(block: BlockBuilder, args: Token[]): void {
    if (args.length === 0) return this.fail("vms: no VMs (expected 'all' or vm:NAME, uuid:UUID, group:NAME)");
    const isAll = (t: Token): boolean => t.quotedFrom < 0 && t.text === 'all';
    if (args.some(isAll)) {
      if (args.length > 1) return this.fail("vms: 'all' cannot be combined with other VMs on the same line");
      if (block.vms.length > 0) return this.fail(`vms: 'all' cannot be combined with other vms lines (line ${block.vms[0]!.line})`);
      block.allVms = Object.freeze({ all: true, members: Object.freeze([]), line: this.lineNo });
      block.vms.push(block.allVms);
      return;
    }
    if (block.allVms !== undefined) return this.fail(`vms: line ${block.allVms.line} already allows all VMs; remove one of the two`);
    const members = this.parseMembers('vms', args, (block.vmMembers ??= new Map()));
    block.vms.push(Object.freeze({ all: false, members: Object.freeze(members), line: this.lineNo }));
  }

  /** A plain version line read from one match; false (nothing done) for any other line or any error. */
  private plainVersion(block: BlockBuilder, line: string): boolean {
    const match = PLAIN_VERSION_LINE.exec(line);
    if (match === null) return false;
    const version = match[1]!;
    const by = match[2];
    const measurement = match[3]!;
    if (block.keys.get(version) !== undefined || block.keys.get(measurement) !== undefined) return false;
    const kept = ownText(version);
    const measurements = Object.freeze([this.forSnapshot ? measurement : ownText(measurement)]);
    const lineNo = this.lineNo;
    // The same shapes as versionDecl makes (same keys, same order).
    block.versions.push(
      by === undefined
        ? Object.freeze({ status: 'approved' as const, version: kept, measurements, line: lineNo })
        : Object.freeze({ status: 'superseded' as const, by, version: kept, measurements, line: lineNo }),
    );
    block.keys.added();
    return true;
  }

  /** `version V STATUS [ATTR] MEASUREMENT...`: the arguments are `t[1..n)`. */
  private parseVersion(block: BlockBuilder, t: readonly Token[], n: number): void {
    const versionToken = n > 1 ? t[1] : undefined;
    if (versionToken === undefined) return this.fail('version: missing version (expected version V STATUS MEASUREMENT...)');
    const version = ownText(versionToken.text);
    if (!VERSION.test(version)) return this.fail(`version: bad version '${version}' (expected ${VERSION.source})`);
    const context = `version ${version}`;
    const first = block.keys.get(version);
    if (first !== undefined) return this.fail(`${context}: listed twice for binary ${block.name} (first at line ${first < 0 ? -first : block.versions[first]!.line})`);
    // A version whose line fails is still a version of the block (no cascade of errors about it).
    if (!this.readVersion(block, version, context, t, n)) block.keys.failed(version, this.lineNo);
  }

  /** The rest of a version line; true when it joined the block. */
  private readVersion(block: BlockBuilder, version: string, context: string, t: readonly Token[], n: number): boolean {
    const statusToken = n > 2 ? t[2] : undefined;
    if (statusToken === undefined) return this.reject(`${context}: missing status (expected ${VERSION_STATUSES.join(', ')})`);
    const status = statusToken.quotedFrom < 0 ? asStatus(statusToken.text) : undefined;
    if (status === undefined) return this.reject(`${context}: unknown status '${statusToken.text}' (expected ${VERSION_STATUSES.join(', ')})`);
    const spec = this.parseStatus(context, status, n > 3 ? t[3] : undefined);
    if (spec === undefined) return false;
    const measurements = this.parseMeasurements(context, t, spec === true ? 3 : 4, n);
    if (measurements.length === 0) return false;
    for (const m of measurements) {
      const other = block.keys.get(m);
      if (other !== undefined) {
        const o = block.versions[other]!;
        return this.reject(`${context}: ${m} is already listed for version ${o.version} (line ${o.line})`);
      }
    }
    block.versions.push(versionDecl(spec === true ? APPROVED : spec, version, Object.freeze(measurements), this.lineNo));
    block.keys.added();
    return true;
  }

  /** The status's attribute (by= or reason=), true for approved (none), undefined after an error. */
  private parseStatus(context: string, status: VersionStatus, token: Token | undefined): StatusSpec | true | undefined {
    // The usual `by=V`, read without splitting the token into a new object.
    if (status === 'superseded' && token !== undefined && token.text.startsWith('by=') && (token.quotedFrom < 0 || token.quotedFrom > 2)) {
      const by = token.text.slice(3);
      if (VERSION.test(by)) return { status, by };
    }
    const attr = token === undefined ? undefined : splitKeyValue(token);
    if (status === 'approved') {
      if (attr !== undefined) this.fail(`${context}: approved takes no ${attr.key}= (by= goes with superseded, reason= with revoked)`);
      return attr === undefined ? true : undefined;
    }
    const key = status === 'superseded' ? 'by' : 'reason';
    if (attr === undefined || attr.key !== key) {
      const example = status === 'superseded' ? 'superseded by=NEWER_VERSION' : 'revoked reason="why"';
      this.fail(`${context}: ${status} needs ${key}= right after it (${example})`);
      return undefined;
    }
    const problem =
      status === 'superseded'
        ? VERSION.test(attr.value) ? undefined : `by=${attr.value} is not a version (expected ${VERSION.source})`
        : attr.value.trim() === '' ? 'reason= is empty (say why it was revoked)'
        : attr.value.length > PARSE_LIMITS.maxReasonChars ? `reason is longer than ${PARSE_LIMITS.maxReasonChars} characters`
        : undefined;
    if (problem !== undefined) {
      this.fail(`${context}: ${problem}`);
      return undefined;
    }
    return status === 'superseded' ? { status, by: attr.value } : { status, reason: ownText(attr.value) };
  }

  /** The measurements `t[from..to)`; empty after an error. */
  private parseMeasurements(context: string, t: readonly Token[], from: number, to: number): string[] {
    if (from >= to) {
      this.fail(`${context}: no measurement (expected sha256:<hex> or blake3:<hex> after the status)`);
      return [];
    }
    // Sized exactly (a pushed-to array keeps room for 17): this array lives in the snapshot.
    const out: string[] = new Array<string>(to - from);
    // Repeats on one line: a linear scan for the usual one or two, a set past a few (a hostile
    // line of thousands stays linear).
    const seen = to - from > 8 ? new Set<string>() : undefined;
    let n = 0;
    let ok = true;
    for (let i = from; i < to; i++) {
      const token = t[i]!;
      const text = token.text;
      if (!isMeasurement(text)) {
        const kv = splitKeyValue(token);
        this.fail(kv !== undefined ? `${context}: unexpected ${kv.key}= among the measurements` : `${context}: ${measurementProblem(text)}`);
        ok = false;
      } else if (seen !== undefined ? seen.has(text) : listedBefore(out, n, text)) {
        this.fail(`${context}: ${text} is listed twice on this line`);
        ok = false;
      } else {
        seen?.add(text);
        out[n++] = this.forSnapshot ? text : ownText(text);
      }
    }
    return ok ? out : [];
  }

  /**
   * Every by= names another version of this binary, and following by= never loops. Each
   * version is visited once (linear in the block), and the walk also records where each chain
   * ends (the links buildSnapshot uses).
   */
  private checkSupersedeChains(block: BlockBuilder): void {
    const versions = block.versions;
    const n = versions.length;
    // Small arrays of integers: a typed array costs a buffer object per file.
    const by: number[] = new Array<number>(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const v = versions[i]!;
      if (v.status !== 'superseded') continue;
      const target = block.keys.get(v.by);
      if (v.by === v.version) this.fail(`version ${v.version}: cannot be superseded by itself`, v.line);
      else if (target === undefined) this.fail(`version ${v.version}: superseded by ${v.by}, which is not a version of binary ${block.name}`, v.line);
      else if (target >= 0) by[i] = target;
    }
    const WALKING = -2;
    const UNSEEN = -3;
    const end: number[] = new Array<number>(n).fill(UNSEEN);
    const path: number[] = [];
    for (let start = 0; start < n; start++) {
      path.length = 0;
      let cur = start;
      while (cur >= 0 && end[cur] === UNSEEN) {
        end[cur] = WALKING;
        path.push(cur);
        cur = by[cur]!;
      }
      let result: number;
      if (cur < 0) {
        // The chain stops at a version that supersedes nothing: approved (the replacement) or revoked (none).
        const last = path[path.length - 1]!;
        result = versions[last]!.status === 'approved' ? last : -1;
      } else if (end[cur] === WALKING) {
        // Report a loop once, at its earliest line, written from there: 1.0 → 1.1 → 1.0.
        const loop = path.slice(path.indexOf(cur)).map((i) => versions[i]!);
        const at = loop.reduce((a, b) => (b.line < a.line ? b : a));
        const k = loop.indexOf(at);
        const names = [...loop.slice(k), ...loop.slice(0, k), at].map((v) => v.version);
        this.fail(`version ${at.version}: supersede chain loops (${names.join(' → ')})`, at.line);
        result = -1;
      } else {
        result = end[cur]!;
      }
      for (const i of path) end[i] = result;
    }
    this.links = { by, end };
  }
}

function listedBefore(list: readonly string[], n: number, text: string): boolean {
  for (let i = 0; i < n; i++) if (list[i] === text) return true;
  return false;
}

/** The status as the shared literal: the token's own copy would be kept once per entry. */
function asStatus(text: string): VersionStatus | undefined {
  return text === 'approved' ? 'approved' : text === 'superseded' ? 'superseded' : text === 'revoked' ? 'revoked' : undefined;
}

/** Built field by field: object spread is ~5x slower here, and this runs once per approval. */
function versionDecl(spec: StatusSpec, version: string, measurements: readonly string[], line: number): VersionDecl {
  if (spec.status === 'superseded') return Object.freeze({ status: spec.status, by: spec.by, version, measurements, line });
  if (spec.status === 'revoked') return Object.freeze({ status: spec.status, reason: spec.reason, version, measurements, line });
  return Object.freeze({ status: spec.status, version, measurements, line });
}

function freezeBlock(b: BlockBuilder): BinaryDecl {
  return Object.freeze({ name: b.name, line: b.line, limits: b.limits, interpreter: b.interpreter, vms: Object.freeze(b.vms.length === 1 ? [b.vms[0]!] : b.vms.slice()), versions: Object.freeze(b.versions) });
}
