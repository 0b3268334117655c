// Shared by `policy add`, `update` and `revoke`: read every *.policy file of a repository
// work tree, require that it builds into a snapshot before the edit, check the edited file
// together with all the others in memory, write it atomically, then read the whole tree
// again and restore the old content if it no longer builds. One edit is one file write, so a
// reader (the daemon, `policy check`) sees the old or the new file, never a mix.
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UsageError, VirtOffloadError } from '../../../lib/errors.js';
import { createAtomicFile, fileError } from '../../../lib/io/index.js';
import { loadPolicyWorkTree } from '../../../lib/policy/loader.js';
import { buildSnapshot, formatMember, formatVersionLine, parseMember, parsePolicyFile, PolicyError, renderBinaryFile, type BinaryPolicy, type PolicySnapshot, type PolicySource, type VmsSpec } from '../../../lib/policy/index.js';

export interface LoadedRepo {
  /** Absolute path of the work tree. */
  readonly dir: string;
  readonly files: readonly PolicySource[];
  readonly snapshot: PolicySnapshot;
}

/** Every `*.policy` file of the work tree, through the same loader the daemon and `policy check` use. */
function readPolicyFiles(root: string): readonly PolicySource[] {
  try {
    if (!lstatSync(root).isDirectory()) throw new UsageError(`--repo ${root}: not a directory`, '--repo');
  } catch (err) {
    if (err instanceof VirtOffloadError) throw err;
    throw fileError(root, 'cannot read the policy repository', err);
  }
  return loadPolicyWorkTree(root).files;
}

/** Read the repository and build its snapshot; refuse to edit a repository that is already broken. */
export function loadRepo(dir: string): LoadedRepo {
  const root = resolve(dir);
  const files = readPolicyFiles(root);
  const built = buildSnapshot(files);
  if (!built.ok) {
    throw new PolicyError(`the policy repository ${root} has ${built.errors.length} error${built.errors.length === 1 ? '' : 's'}; fix them before editing it (virt-offload policy check)`, built.errors);
  }
  return { dir: root, files, snapshot: built.snapshot };
}

export function fileText(repo: LoadedRepo, path: string): string {
  const f = repo.files.find((s) => s.path === path);
  if (f === undefined) throw new VirtOffloadError('EINTERNAL', `${path} is not among the files read`);
  return f.text;
}

/**
 * Write `text` to repository-relative `path` (before: its current text, undefined for a new
 * file). Checked with every other file in memory first; re-read and re-checked after; on any
 * failure the previous content is put back and a PolicyError says what was wrong.
 */
export function commitEdit(repo: LoadedRepo, path: string, text: string, before: string | undefined): void {
  const others = repo.files.filter((f) => f.path !== path);
  const planned = buildSnapshot([...others, { path, text }]);
  if (!planned.ok) throw new PolicyError(`the edit would leave the policy repository invalid; nothing was written`, planned.errors);

  const abs = join(repo.dir, path);
  refuseLinkedDirectories(repo.dir, path);
  const mode = existingMode(abs);
  // Optimistic check: someone may have changed the file since it was read.
  const now = currentText(abs);
  if (now !== before) {
    throw new VirtOffloadError('EIO', `${abs} ${before === undefined ? 'appeared' : 'changed'} while the edit was prepared; nothing was written, run the command again`);
  }
  if (before === undefined) {
    try {
      mkdirSync(dirname(abs), { recursive: true });
    } catch (err) {
      throw fileError(dirname(abs), 'cannot create', err);
    }
  }
  atomicWrite(abs, text, mode);

  let problem: PolicyError | undefined;
  try {
    const after = buildSnapshot(readPolicyFiles(repo.dir));
    if (!after.ok) problem = new PolicyError(`after writing ${path} the policy repository does not build (restored the previous content)`, after.errors);
  } catch (err) {
    problem = new PolicyError(`after writing ${path} the policy repository could not be read again (restored the previous content): ${err instanceof Error ? err.message : String(err)}`);
  }
  if (problem !== undefined) {
    if (before === undefined) unlinkSync(abs);
    else atomicWrite(abs, before, mode);
    throw problem;
  }
}

/**
 * No directory between the repository and the file may be a symbolic link: a `binaries` link
 * committed by someone would make the edit land outside the repository (and the policy would
 * not have it). Missing directories are fine (they are made, as directories).
 */
function refuseLinkedDirectories(root: string, path: string): void {
  const parts = path.split('/').slice(0, -1);
  let dir = root;
  for (const part of parts) {
    dir = join(dir, part);
    let st;
    try {
      st = lstatSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fileError(dir, 'cannot read', err);
    }
    if (st.isSymbolicLink()) throw new VirtOffloadError('EIO', `${dir} is a symbolic link; policy edits are written only to directories inside the repository; nothing was written`);
    if (!st.isDirectory()) throw new VirtOffloadError('EIO', `${dir} is not a directory; nothing was written`);
  }
}

/** The permission bits of the file being replaced (0o644 for a new one); a symbolic link is refused. */
function existingMode(abs: string): number {
  try {
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) throw new VirtOffloadError('EIO', `${abs} is a symbolic link; edit the file it points to (a rename would replace the link)`);
    return st.mode & 0o777;
  } catch (err) {
    if (err instanceof VirtOffloadError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0o644;
    throw fileError(abs, 'cannot read', err);
  }
}

function currentText(abs: string): string | undefined {
  try {
    return readFileSync(abs, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileError(abs, 'cannot read', err);
  }
}

/** Temp file beside the target, fsync, rename over it, fsync the directory. */
export function atomicWrite(abs: string, text: string, mode = 0o644): void {
  // A hidden temp name: the policy loader skips dot-files, so a reader never parses it.
  const tempPath = join(dirname(abs), `.${randomBytes(6).toString('hex')}.policy-write.tmp`);
  const file = createAtomicFile(abs, { mode, tempPath, what: 'policy file' });
  try {
    file.write(Buffer.from(text, 'utf8'));
    file.commit();
  } catch (err) {
    file.abort();
    throw err;
  }
}

// ---- argument checks (usage errors, exit 2) ---------------------------------------------

export function stringOption(opts: Record<string, unknown>, key: string): string | undefined {
  const v = opts[key];
  return typeof v === 'string' ? v : undefined;
}

export function checkBinaryName(name: string, option: string): void {
  try {
    renderBinaryFile({ name, versions: [] });
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(`${option}: ${err.message}`, option);
    throw err;
  }
}

export function checkVersion(version: string, option: string): void {
  try {
    formatVersionLine({ status: 'approved', version, measurements: [] });
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(`${option}: ${err.message}`, option);
    throw err;
  }
}

/** --vm values: `all` alone, or members vm:NAME, uuid:UUID, group:NAME, each once; returned normalized. */
export function parseVmOption(values: readonly string[] | undefined): VmsSpec | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.includes('all')) {
    if (values.length > 1) throw new UsageError(`--vm all stands alone (got ${values.join(' ')}; --vm takes every word after it up to the next option)`, '--vm');
    return 'all';
  }
  const seen = new Set<string>();
  const out: string[] = [];
  for (const v of values) {
    const parsed = parseMember(v);
    // The problem says what a member looks like already.
    if ('problem' in parsed) throw new UsageError(`--vm ${v}: ${parsed.problem}`, '--vm');
    const key = formatMember(parsed.member);
    if (seen.has(key)) throw new UsageError(`--vm ${v} is given twice`, '--vm');
    seen.add(key);
    out.push(key);
  }
  return out;
}

// ---- output -----------------------------------------------------------------------------

/** One written line: where it is and what it says. */
export interface WrittenLine {
  readonly file: string;
  readonly line: number;
  readonly text: string;
}

/** The line numbers and text of the version lines of `versions` in `text` (a file that parses). */
export function versionLines(path: string, text: string, versions: readonly string[]): WrittenLine[] {
  const decls = parsePolicyFile(path, text).ast.binary?.versions ?? [];
  const lines = text.split('\n');
  const out: WrittenLine[] = [];
  for (const v of versions) {
    const decl = decls.find((d) => d.version === v);
    if (decl !== undefined) out.push({ file: path, line: decl.line, text: lines[decl.line - 1]!.trim() });
  }
  return out;
}

export function printResult(json: boolean, record: Record<string, unknown>, summary: string, lines: readonly WrittenLine[], warnings: readonly string[]): void {
  for (const w of warnings) process.stderr.write(`virt-offload: warning: ${w}\n`);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...record, lines, warnings })}\n`);
    return;
  }
  process.stdout.write(`${summary}\n`);
  for (const l of lines) process.stdout.write(`  ${l.file}:${l.line}: ${l.text}\n`);
}

// ---- lookups with messages that list what exists ----------------------------------------

export function findBinary(repo: LoadedRepo, name: string): BinaryPolicy {
  const b = repo.snapshot.binaries.get(name);
  if (b !== undefined) return b;
  const names = [...repo.snapshot.binaries.keys()];
  const shown = names.length === 0 ? 'none' : names.length > 20 ? `${names.slice(0, 20).join(', ')}, … (${names.length})` : names.join(', ');
  throw new PolicyError(`${repo.dir}: no binary ${name} in the policy repository (binaries: ${shown}); policy add creates one`);
}

/** `1.0 (superseded by 1.1), 1.2 (approved)` */
export function describeVersions(b: BinaryPolicy): string {
  const all = [...b.versions.values()].map((v) => `${v.version} (${v.status}${v.status === 'superseded' ? ` by ${v.supersededBy}` : ''})`);
  return all.length === 0 ? 'none' : all.join(', ');
}
