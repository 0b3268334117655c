// Parses one policy file into its declarations, collecting every error with its line
// (`policy check` shows them all at once). Rules that need only this file are checked here:
// names, units, duplicates, one binary block per file named after the file, and the
// supersede chains of that block. Rules that span files live in snapshot.ts.
import type { BinaryDecl, GroupDecl, PolicyFileAst, StatusSpec, VersionDecl, VersionStatus, VmsDecl } from './ast.js';
import { VERSION_STATUSES } from './ast.js';
import { PolicySyntaxError } from './errors.js';
import { forbiddenCharacter, hasForbiddenCharacter, lexLine, splitKeyValue, type Token } from './lexer.js';
import { isLimitKey, LIMIT_KEY_ORDER, parseLimitValue, type LimitKey } from './limits.js';
import {
  BINARY_NAME,
  formatMember,
  GROUP_NAME,
  interpreterPathProblem,
  isMeasurement,
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
  versionLines: Map<string, number>;
  vmMembers: Map<string, number>;
  measurements: Map<string, VersionDecl>;
}

class TooManyErrors extends Error {}

/** Parse the text of the policy file at repository-relative `path` (used in messages and the name rule). */
export function parsePolicyFile(path: string, text: string): ParsedPolicyFile {
  return new FileParser(path).run(text);
}

class FileParser {
  private readonly errors: PolicySyntaxError[] = [];
  private readonly groups: GroupDecl[] = [];
  private readonly groupLines = new Map<string, number>();
  private block: BlockBuilder | undefined;
  private kept: BlockBuilder | undefined;
  private lineNo = 0;
  /** Whether the file has a forbidden character somewhere, so lines need checking one by one. */
  private checkCharacters = true;

  constructor(private readonly path: string) {}

  run(text: string): ParsedPolicyFile {
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
    return { ast: Object.freeze({ path: this.path, groups: Object.freeze(this.groups), binary: this.kept && freezeBlock(this.kept) }), errors: this.errors };
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
    const lexed = lexLine(line);
    if (!lexed.ok) return this.fail(lexed.problem);
    const tokens = lexed.line.tokens;
    const first = tokens[0];
    if (first === undefined) return;
    const args = tokens.slice(1); // not [first, ...args]: rest destructuring is slow on this path
    const keyword = first.quotedFrom < 0 && (KEYWORDS as readonly string[]).includes(first.text) ? (first.text as Keyword) : undefined;
    if (keyword === undefined) return this.fail(`unknown keyword '${first.text}' (expected ${KEYWORDS.join(', ')})`);
    this.dispatch(keyword, args);
  }

  private dispatch(keyword: Keyword, args: Token[]): void {
    if (keyword === 'group') return this.parseGroup(args);
    if (keyword === 'binary') return this.parseBinary(args);
    const block = this.block;
    if (block === undefined) return this.fail(`'${keyword}' outside a binary block (it belongs below a 'binary NAME' line)`);
    if (keyword === 'limits') return this.parseLimits(block, args);
    if (keyword === 'interpreter') return this.parseInterpreter(block, args);
    if (keyword === 'vms') return this.parseVms(block, args);
    return this.parseVersion(block, args);
  }

  private parseGroup(args: Token[]): void {
    const [nameToken, ...memberTokens] = args;
    if (nameToken === undefined) return this.fail('group: missing name (expected group NAME MEMBER...)');
    const name = nameToken.text;
    if (this.block !== undefined) {
      this.fail(`group ${name}: group lines must come before the 'binary' line (a group is not part of binary ${this.block.name})`);
    }
    if (!GROUP_NAME.test(name)) return this.fail(`group: bad name '${name}' (expected ${GROUP_NAME.source})`);
    const first = this.groupLines.get(name);
    if (first !== undefined) return this.fail(`group ${name} is defined twice (first at line ${first})`);
    if (memberTokens.length === 0) this.fail(`group ${name}: no members (expected vm:NAME, uuid:UUID or group:NAME)`);
    const members = this.parseMembers(`group ${name}`, memberTokens, new Map());
    // A group whose members had errors is still recorded, so references to it do not cascade.
    this.groupLines.set(name, this.lineNo);
    this.groups.push(Object.freeze({ name, members: Object.freeze(members), line: this.lineNo }));
  }

  private parseMembers(context: string, tokens: Token[], seen: Map<string, number>): Member[] {
    const members: Member[] = [];
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
      members.push(Object.freeze(parsed.member));
    }
    return members;
  }

  private parseBinary(args: Token[]): void {
    if (args.length !== 1) return this.fail(`binary: expected exactly one name (binary NAME), got ${args.length}`);
    const name = args[0]!.text;
    if (!BINARY_NAME.test(name)) return this.fail(`binary: bad name '${name}' (expected ${BINARY_NAME.source})`);
    const block: BlockBuilder = { name, line: this.lineNo, kept: this.kept === undefined, limits: undefined, interpreter: undefined, vms: [], allVms: undefined, versions: [], versionLines: new Map(), vmMembers: new Map(), measurements: new Map() };
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
      value = { kind: 'path', path: token.text };
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
    const members = this.parseMembers('vms', args, block.vmMembers);
    block.vms.push(Object.freeze({ all: false, members: Object.freeze(members), line: this.lineNo }));
  }

  private parseVersion(block: BlockBuilder, args: Token[]): void {
    const versionToken = args[0];
    const statusToken = args[1];
    const rest = args.slice(2);
    if (versionToken === undefined) return this.fail('version: missing version (expected version V STATUS MEASUREMENT...)');
    const version = versionToken.text;
    if (!VERSION.test(version)) return this.fail(`version: bad version '${version}' (expected ${VERSION.source})`);
    const context = `version ${version}`;
    const first = block.versionLines.get(version);
    if (first !== undefined) return this.fail(`${context}: listed twice for binary ${block.name} (first at line ${first})`);
    block.versionLines.set(version, this.lineNo);
    if (statusToken === undefined) return this.fail(`${context}: missing status (expected ${VERSION_STATUSES.join(', ')})`);
    const status = statusToken.quotedFrom < 0 ? asStatus(statusToken.text) : undefined;
    if (status === undefined) return this.fail(`${context}: unknown status '${statusToken.text}' (expected ${VERSION_STATUSES.join(', ')})`);
    const spec = this.parseStatus(context, status, rest);
    if (spec === undefined) return;
    const measurements = this.parseMeasurements(context, spec === true ? rest : rest.slice(1));
    if (measurements.length === 0) return;
    const decl = versionDecl(spec === true ? { status: 'approved' } : spec, version, Object.freeze(measurements), this.lineNo);
    for (const m of measurements) {
      const other = block.measurements.get(m);
      if (other !== undefined) return this.fail(`${context}: ${m} is already listed for version ${other.version} (line ${other.line})`);
    }
    for (const m of measurements) block.measurements.set(m, decl);
    block.versions.push(decl);
  }

  /** The status's attribute (by= or reason=), true for approved (none), undefined after an error. */
  private parseStatus(context: string, status: VersionStatus, rest: Token[]): StatusSpec | true | undefined {
    const attr = rest[0] === undefined ? undefined : splitKeyValue(rest[0]);
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
    return status === 'superseded' ? { status, by: attr.value } : { status, reason: attr.value };
  }

  private parseMeasurements(context: string, tokens: Token[]): string[] {
    if (tokens.length === 0) {
      this.fail(`${context}: no measurement (expected sha256:<hex> or blake3:<hex> after the status)`);
      return [];
    }
    const out: string[] = [];
    const seen = new Set<string>();
    let ok = true;
    for (const token of tokens) {
      const kv = splitKeyValue(token);
      if (kv !== undefined && !isMeasurement(token.text)) {
        this.fail(`${context}: unexpected ${kv.key}= among the measurements`);
        ok = false;
      } else if (!isMeasurement(token.text)) {
        this.fail(`${context}: ${measurementProblem(token.text)}`);
        ok = false;
      } else if (seen.has(token.text)) {
        this.fail(`${context}: ${token.text} is listed twice on this line`);
        ok = false;
      } else {
        seen.add(token.text);
        out.push(token.text);
      }
    }
    return ok ? out : [];
  }

  /** Every by= names another version of this binary, and following by= never loops. */
  private checkSupersedeChains(block: BlockBuilder): void {
    const byVersion = new Map(block.versions.map((v) => [v.version, v]));
    const state = new Map<string, 'walking' | 'done'>();
    for (const v of block.versions) {
      if (v.status !== 'superseded') continue;
      if (v.by === v.version) this.fail(`version ${v.version}: cannot be superseded by itself`, v.line);
      else if (!byVersion.has(v.by) && !block.versionLines.has(v.by)) this.fail(`version ${v.version}: superseded by ${v.by}, which is not a version of binary ${block.name}`, v.line);
    }
    for (const start of block.versions) {
      const path: VersionDecl[] = [];
      let cur: VersionDecl | undefined = start;
      while (cur !== undefined && state.get(cur.version) === undefined) {
        state.set(cur.version, 'walking');
        path.push(cur);
        cur = cur.status === 'superseded' && cur.by !== cur.version ? byVersion.get(cur.by) : undefined;
      }
      if (cur !== undefined && state.get(cur.version) === 'walking') {
        // Report a loop once, at its earliest line, written from there: 1.0 → 1.1 → 1.0.
        const loop = path.slice(path.indexOf(cur));
        const at = loop.reduce((a, b) => (b.line < a.line ? b : a));
        const k = loop.indexOf(at);
        const names = [...loop.slice(k), ...loop.slice(0, k), at].map((v) => v.version);
        this.fail(`version ${at.version}: supersede chain loops (${names.join(' → ')})`, at.line);
      }
      for (const v of path) state.set(v.version, 'done');
    }
  }
}

function asStatus(text: string): VersionStatus | undefined {
  return text === 'approved' || text === 'superseded' || text === 'revoked' ? text : undefined;
}

/** Built field by field: object spread is ~5x slower here, and this runs once per approval. */
function versionDecl(spec: StatusSpec, version: string, measurements: readonly string[], line: number): VersionDecl {
  if (spec.status === 'superseded') return Object.freeze({ status: spec.status, by: spec.by, version, measurements, line });
  if (spec.status === 'revoked') return Object.freeze({ status: spec.status, reason: spec.reason, version, measurements, line });
  return Object.freeze({ status: spec.status, version, measurements, line });
}

function freezeBlock(b: BlockBuilder): BinaryDecl {
  return Object.freeze({ name: b.name, line: b.line, limits: b.limits, interpreter: b.interpreter, vms: Object.freeze(b.vms), versions: Object.freeze(b.versions) });
}
