// Runs git for the policy loader and the CLI: always through execFile-style calls (no shell),
// with bounded output, no terminal prompts and a fixed locale, so hostile revision names or
// paths can never become options or shell words and git's messages are predictable.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCommit } from './objects.js';
import { GitError, gitOrThrow, runGit } from './run.js';

/** Where `dir` sits in a git work tree: its top level and its path below it ('' or 'sub/dir/'); undefined outside git. */
export function workTreeOf(dir: string): { topLevel: string; prefix: string } | undefined {
  const r = runGit(dir, ['rev-parse', '--is-inside-work-tree', '--show-toplevel', '--show-prefix']);
  if (r.status !== 0) {
    // Not a repository is an answer; a repository git will not open is a failure to report.
    if (/dubious ownership/.test(r.stderr)) throw new GitError(dir, ['rev-parse'], `git refuses to read ${dir}: ${r.stderr.trim().split('\n')[0] ?? ''} (see git config safe.directory)`);
    return undefined;
  }
  const [inside, topLevel, prefix] = r.stdout.toString('utf8').split('\n');
  if (inside !== 'true' || topLevel === undefined) return undefined;
  return { topLevel, prefix: prefix ?? '' };
}

/**
 * HEAD's commit id for the work tree `dir` is in, with one git call (the daemon asks every few
 * seconds, and each load asks twice): undefined outside a work tree or before the first commit.
 */
export function headCommitOf(dir: string): string | undefined {
  const r = runGit(dir, ['rev-parse', '--is-inside-work-tree', '--verify', '--quiet', '--end-of-options', 'HEAD^{commit}']);
  if (r.status !== 0) {
    // Not a repository (128) or no commit yet (1) is an answer; one git will not open is not.
    if (/dubious ownership/.test(r.stderr)) throw new GitError(dir, ['rev-parse'], `git refuses to read ${dir}: ${r.stderr.trim().split('\n')[0] ?? ''} (see git config safe.directory)`);
    return undefined;
  }
  const [inside, id = ''] = r.stdout.toString('utf8').split('\n');
  if (inside !== 'true') return undefined;
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(id)) throw new GitError(dir, ['rev-parse', 'HEAD'], `git rev-parse HEAD answered '${id}', not a commit id`);
  return id;
}

/**
 * The full commit id `rev` names, or undefined when it names no commit (an unborn HEAD, an
 * unknown name). A revision that looks like an option is refused before git sees it.
 */
export function resolveCommit(dir: string, rev: string): string | undefined {
  checkRevision(rev);
  const r = runGit(dir, ['rev-parse', '--verify', '--quiet', '--end-of-options', `${rev}^{commit}`]);
  if (r.status !== 0) return undefined;
  const id = r.stdout.toString('utf8').trim();
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(id)) throw new GitError(dir, ['rev-parse', rev], `git rev-parse ${rev} answered '${id}', not a commit id`);
  return id;
}

/** Refuse revision names git could read as an option or that hold control characters. */
export function checkRevision(rev: string): void {
  // eslint-disable-next-line no-control-regex
  if (rev === '' || rev.startsWith('-') || /[\x00-\x1f\x7f]/.test(rev)) {
    throw new GitError('.', ['rev-parse', rev], `'${rev}' is not a revision name (it is empty, starts with '-' or holds control characters)`);
  }
}

export type SignatureCheck =
  | { readonly ok: true; readonly message: string }
  | { readonly ok: false; readonly reason: 'unsigned' | 'bad'; readonly message: string };

/** Where ssh-keygen is (Debian's openssh-client): an absolute path, never looked up. */
export const SSH_KEYGEN = '/usr/bin/ssh-keygen';

/**
 * Verify `commit`'s SSH signature against the allowed-signers file (absolute path) with
 * ssh-keygen directly, as `git verify-commit` would, but with nothing of git's configuration:
 * the repository's .git/config could name another program for gpg.ssh.program (which then
 * "verifies" anything, and runs as the daemon), and git would accept an OpenPGP or X.509
 * signature checked against whatever keyring the daemon's user has. Only an SSH signature by
 * a key of the file counts, and it is checked as of now (git checks it as of the committer
 * date, which the signer chooses: a retired key could sign "in the past").
 */
export function verifyCommit(dir: string, commit: string, allowedSigners: string): SignatureCheck {
  // The commit object as it is, checked against its id (objects.ts): what is verified is what the id names.
  const { raw } = readCommit(dir, commit);
  const split = splitSignature(raw, commit.length === 64 ? 'gpgsig-sha256' : 'gpgsig');
  if (split === undefined) return { ok: false, reason: 'unsigned', message: '' };
  if (split.ambiguous === true) return { ok: false, reason: 'bad', message: 'the commit carries more than one signature header' };
  if (!split.signature.startsWith('-----BEGIN SSH SIGNATURE-----')) {
    return { ok: false, reason: 'bad', message: 'the signature is not an SSH signature (only the SSH keys of the allowed-signers file are trusted)' };
  }
  const tmp = mkdtempSync(join(tmpdir(), 'vo-verify-'));
  try {
    const sig = join(tmp, 'commit.sig');
    writeFileSync(sig, split.signature, { mode: 0o600 });
    const keygen = (args: readonly string[], input?: Uint8Array) => {
      const r = spawnSync(SSH_KEYGEN, args, { input, env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1024 * 1024 });
      if (r.error !== undefined) {
        const code = (r.error as NodeJS.ErrnoException).code;
        throw new GitError(dir, ['verify-commit', commit], code === 'ENOENT' ? `${SSH_KEYGEN} is missing: install openssh-client to verify signed commits` : `cannot run ${SSH_KEYGEN}: ${r.error.message}`);
      }
      return { status: r.status ?? -1, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8').trim() };
    };
    const found = keygen(['-Y', 'find-principals', '-f', allowedSigners, '-s', sig]);
    const principals = found.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    if (found.status !== 0 || principals.length === 0) return { ok: false, reason: 'bad', message: found.stderr || 'No principal matched.' };
    const problems: string[] = [];
    for (const principal of principals) {
      const checked = keygen(['-Y', 'verify', '-f', allowedSigners, '-I', principal, '-n', 'git', '-s', sig], split.payload);
      if (checked.status === 0) return { ok: true, message: (checked.stdout.trim() || checked.stderr).split('\n')[0]! };
      problems.push(checked.stderr || `exit status ${checked.status}`);
    }
    return { ok: false, reason: 'bad', message: problems.join('; ') };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * A commit object's signature and the bytes it signs, as git's parse_buffer_signed_by_header()
 * takes them apart: the signature is the header of the repository's own hash (`gpgsig` for
 * SHA-1, `gpgsig-sha256` for SHA-256) with its continuation lines; the payload is the object
 * without it, and without any other `gpgsig…` header git also leaves out. Undefined when it
 * has no such header; `ambiguous` when it has it twice.
 */
export function splitSignature(raw: Uint8Array, header: 'gpgsig' | 'gpgsig-sha256'): { signature: string; payload: Uint8Array; ambiguous?: true } | undefined {
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  const end = text.indexOf('\n\n');
  const headerEnd = end < 0 ? text.length : end + 1;
  const sig: string[] = [];
  const kept: string[] = [];
  let inSig = false;
  let other = false;
  let count = 0;
  let at = 0;
  while (at < headerEnd) {
    const nl = text.indexOf('\n', at);
    const lineEnd = nl < 0 || nl >= headerEnd ? headerEnd : nl + 1;
    const line = text.slice(at, lineEnd);
    at = lineEnd;
    if (inSig && line.startsWith(' ')) {
      sig.push(line.slice(1));
      continue;
    }
    inSig = false;
    if (line.startsWith(`${header} `)) {
      count++;
      inSig = true;
      other = false;
      sig.push(line.slice(header.length + 1));
      continue;
    }
    if (line.startsWith('gpgsig')) other = true;
    else if (other && !line.startsWith(' ')) other = false;
    if (!other) kept.push(line);
  }
  if (count === 0) return undefined;
  if (count > 1) return { signature: '', payload: new Uint8Array(0), ambiguous: true };
  const payload = Buffer.from(kept.join('') + text.slice(headerEnd), 'latin1');
  return { signature: sig.join(''), payload };
}
