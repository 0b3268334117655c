// Writing policy files for the CLI. A new file is rendered in one canonical layout; an
// existing file is edited line by line, so comments, blank lines and every unrelated line
// stay byte-for-byte the same and a pull request shows only the line that changed. Every
// result is parsed again before it is returned: an edit never yields a file that does not parse.
import type { PolicyFileAst, StatusSpec } from './ast.js';
import { PolicyError } from './errors.js';
import { formatLimitPairs, type LimitKey } from './limits.js';
import { lexLine, quote, quoteIfNeeded } from './lexer.js';
import { BINARY_NAME, formatInterpreter, formatMember, isMeasurement, measurementProblem, parseMember, VERSION, type Interpreter } from './names.js';
import { parsePolicyFile } from './parse.js';

export type VersionSpec = StatusSpec & { readonly version: string; readonly measurements: readonly string[] };

/** Which VMs may run a binary: 'all', or members written `vm:NAME`, `uuid:UUID`, `group:NAME`. */
export type VmsSpec = 'all' | readonly string[];

export interface BinaryFileSpec {
  readonly name: string;
  /** Comment lines put above the `binary` line (without the leading '#'). */
  readonly comment?: readonly string[];
  readonly interpreter?: Interpreter;
  /** Only the keys to write; the others take DEFAULT_LIMITS. */
  readonly limits?: Readonly<Partial<Record<LimitKey, number>>>;
  /** Absent or empty: no VM may run it yet. */
  readonly vms?: VmsSpec;
  readonly versions: readonly VersionSpec[];
}

export interface EditOptions {
  /** Repository-relative path, for error messages and the file-name rule; default `<binary>.policy`. */
  readonly file?: string;
}

/** The canonical text of a new binary file: comment, binary, interpreter, limits, vms, versions. */
export function renderBinaryFile(spec: BinaryFileSpec, options: EditOptions = {}): string {
  singleLine('binary name', spec.name);
  if (!BINARY_NAME.test(spec.name)) throw new PolicyError(`binary: bad name '${spec.name}' (expected ${BINARY_NAME.source})`);
  for (const c of spec.comment ?? []) singleLine('comment', c);
  const lines: string[] = [];
  for (const c of spec.comment ?? []) lines.push(c === '' ? '#' : `# ${c}`);
  lines.push(`binary ${spec.name}`);
  if (spec.interpreter !== undefined && spec.interpreter.kind !== 'none') lines.push(formatInterpreterLine(spec.interpreter));
  const limits = formatLimitPairs(spec.limits ?? {});
  if (limits.length > 0) lines.push(`limits ${limits.join(' ')}`);
  const vms = formatVmsLine(spec.vms ?? []);
  if (vms !== undefined) lines.push(vms);
  for (const v of spec.versions) lines.push(formatVersionLine(v));
  const text = `${lines.join('\n')}\n`;
  const file = options.file ?? `${spec.name}.policy`;
  checkClean(text, file, `binary ${spec.name}`);
  return text;
}

/** One `version` line in canonical form. A revocation reason is always quoted. */
export function formatVersionLine(v: VersionSpec): string {
  singleLine('version', v.version, ...v.measurements, v.status === 'superseded' ? v.by : v.status === 'revoked' ? v.reason : '');
  // Values are checked one by one, so one string can never turn into two tokens.
  for (const value of [v.version, ...(v.status === 'superseded' ? [v.by] : [])]) {
    if (!VERSION.test(value)) throw new PolicyError(`'${value}' is not a version (expected ${VERSION.source})`);
  }
  for (const m of v.measurements) {
    if (!isMeasurement(m)) throw new PolicyError(`version ${v.version}: ${measurementProblem(m)}`);
  }
  const status = v.status === 'approved' ? 'approved' : v.status === 'superseded' ? `superseded by=${quoteIfNeeded(v.by)}` : `revoked reason=${quote(v.reason)}`;
  return ['version', quoteIfNeeded(v.version), status, ...v.measurements].join(' ');
}

export function formatInterpreterLine(interpreter: Interpreter): string {
  if (interpreter.kind === 'path') singleLine('interpreter', interpreter.path);
  return `interpreter ${interpreter.kind === 'path' ? quoteIfNeeded(interpreter.path) : formatInterpreter(interpreter)}`;
}

/** The `vms` line for a spec, or undefined for an empty list (no VM). Members are normalized. */
export function formatVmsLine(vms: VmsSpec): string | undefined {
  if (vms === 'all') return 'vms all';
  if (vms.length === 0) return undefined;
  singleLine('vms', ...vms);
  const members = vms.map((m) => {
    const parsed = parseMember(m);
    if ('problem' in parsed) throw new PolicyError(`vms: ${parsed.problem}`);
    return formatMember(parsed.member);
  });
  return `vms ${members.join(' ')}`;
}

/** Add a version line after the block's last version line (or after its header lines). */
export function appendVersionLine(text: string, version: VersionSpec, options: EditOptions = {}): string {
  const { ast, file } = parseClean(text, options);
  const block = ast.binary!;
  if (block.versions.some((v) => v.version === version.version)) throw new PolicyError(`${file}: version ${version.version} of ${block.name} already exists`);
  const after = Math.max(block.line, block.interpreter?.line ?? 0, block.limits?.line ?? 0, ...block.vms.map((v) => v.line), ...block.versions.map((v) => v.line));
  return finish(insertLine(text, after, formatVersionLine(version)), file, `version ${version.version}`);
}

/** Change a version's status (approved, superseded by=V, revoked reason="…"); its measurements stay. */
export function setVersionStatus(text: string, version: string, status: StatusSpec, options: EditOptions = {}): string {
  const { ast, file } = parseClean(text, options);
  const decl = ast.binary!.versions.find((v) => v.version === version);
  if (decl === undefined) throw new PolicyError(`${file}: binary ${ast.binary!.name} has no version ${version}`);
  const line = formatVersionLine({ ...status, version, measurements: decl.measurements });
  return finish(replaceLine(text, decl.line, line), file, `version ${version}`);
}

/** Replace the block's `vms` lines with one line (first line's place kept); empty: remove them. */
export function setVmsLine(text: string, vms: VmsSpec, options: EditOptions = {}): string {
  const { ast, file } = parseClean(text, options);
  const block = ast.binary!;
  const line = formatVmsLine(vms);
  const [first, ...others] = block.vms;
  let out = text;
  // Remove from the bottom up so earlier line numbers stay valid.
  for (const v of [...others].reverse()) out = removeLine(out, v.line);
  if (first !== undefined) out = line === undefined ? removeLine(out, first.line) : replaceLine(out, first.line, line);
  else if (line !== undefined) out = insertLine(out, Math.max(block.line, block.interpreter?.line ?? 0, block.limits?.line ?? 0), line);
  return finish(out, file, 'vms');
}

/** Set or remove (undefined) the `limits` line: only the keys given are written. */
export function setLimitsLine(text: string, limits: Readonly<Partial<Record<LimitKey, number>>> | undefined, options: EditOptions = {}): string {
  const { ast, file } = parseClean(text, options);
  const block = ast.binary!;
  const pairs = formatLimitPairs(limits ?? {});
  const line = pairs.length === 0 ? undefined : `limits ${pairs.join(' ')}`;
  return finish(setSingleton(text, block.limits?.line, line, Math.max(block.line, block.interpreter?.line ?? 0)), file, 'limits');
}

/** Set the `interpreter` line; none removes it. */
export function setInterpreterLine(text: string, interpreter: Interpreter, options: EditOptions = {}): string {
  const { ast, file } = parseClean(text, options);
  const block = ast.binary!;
  const line = interpreter.kind === 'none' ? undefined : formatInterpreterLine(interpreter);
  return finish(setSingleton(text, block.interpreter?.line, line, block.line), file, 'interpreter');
}

/**
 * Every value written goes on one line. Checked before rendering: a newline inside, say, a
 * measurement could otherwise smuggle in a second, well-formed version line.
 */
function singleLine(what: string, ...values: readonly string[]): void {
  for (const value of values) {
    if (/[\n\r\u2028\u2029]/.test(value)) throw new PolicyError(`${what}: a line break is not allowed in '${value.replace(/[\n\r]/g, '\\n')}'`);
  }
}

function setSingleton(text: string, existing: number | undefined, line: string | undefined, insertAfter: number): string {
  if (existing !== undefined) return line === undefined ? removeLine(text, existing) : replaceLine(text, existing, line);
  return line === undefined ? text : insertLine(text, insertAfter, line);
}

/** Parse a binary file that must be clean before it is edited; the path defaults to `<binary>.policy`. */
function parseClean(text: string, options: EditOptions): { ast: PolicyFileAst; file: string } {
  let file = options.file;
  if (file === undefined) {
    const name = parsePolicyFile('unnamed.policy', text).ast.binary?.name;
    file = name === undefined ? 'unnamed.policy' : `${name}.policy`;
  }
  const parsed = parsePolicyFile(file, text);
  if (parsed.errors.length > 0) throw new PolicyError(`${file} has errors; fix them before editing it`, parsed.errors);
  if (parsed.ast.binary === undefined) throw new PolicyError(`${file} has no binary block to edit`);
  return { ast: parsed.ast, file };
}

function finish(text: string, file: string, what: string): string {
  checkClean(text, file, what);
  return text;
}

function checkClean(text: string, file: string, what: string): void {
  const parsed = parsePolicyFile(file, text);
  if (parsed.errors.length > 0) throw new PolicyError(`writing ${what} would leave ${file} invalid`, parsed.errors);
}

/** Lines of the text; `trailing` says whether it ended with a newline (kept as it was). */
function splitLines(text: string): { lines: string[]; trailing: boolean } {
  const trailing = text.endsWith('\n');
  const lines = text.split('\n');
  if (trailing || text === '') lines.pop();
  return { lines, trailing };
}

function joinLines(lines: readonly string[], trailing: boolean): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}${trailing ? '\n' : ''}`;
}

/** Insert `line` after 1-based line `after` (0: at the top). A file gains a final newline if it is extended at its end. */
function insertLine(text: string, after: number, line: string): string {
  const { lines, trailing } = splitLines(text);
  lines.splice(after, 0, line);
  return joinLines(lines, trailing || after >= lines.length - 1);
}

/** Replace the code of 1-based line `n`, keeping its indentation and its trailing comment. */
function replaceLine(text: string, n: number, code: string): string {
  const { lines, trailing } = splitLines(text);
  const old = lines[n - 1]!;
  const lexed = lexLine(old);
  const codeEnd = lexed.ok ? lexed.line.codeEnd : old.length;
  const indent = /^[ \t]*/.exec(old)![0];
  const before = old.slice(0, codeEnd);
  const gap = /[ \t]*$/.exec(before)![0];
  const comment = old.slice(codeEnd);
  lines[n - 1] = comment === '' ? `${indent}${code}` : `${indent}${code}${gap === '' ? ' ' : gap}${comment}`;
  return joinLines(lines, trailing);
}

function removeLine(text: string, n: number): string {
  const { lines, trailing } = splitLines(text);
  lines.splice(n - 1, 1);
  return joinLines(lines, trailing);
}
