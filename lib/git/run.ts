// Running git itself (no shell, bounded output, no prompts, a fixed locale, and settings that
// keep the repository's configuration from making git run programs). git.ts and objects.ts
// build on it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { VirtOffloadError } from '../errors.js';

/** git failed, or is missing, or answered more than we accept. `args` is the command run. */
export class GitError extends VirtOffloadError {
  readonly dir: string;
  readonly args: string;
  readonly exitStatus: number | undefined;

  constructor(dir: string, args: readonly string[], message: string, exitStatus?: number) {
    super('EIO', message);
    this.dir = dir;
    this.args = args.join(' ');
    this.exitStatus = exitStatus;
  }
}

/** An object whose content does not hash to its id: the object store was altered, or is damaged. */
export class AlteredObjectError extends GitError {}

export interface GitResult {
  readonly status: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface GitOptions {
  /** Bytes on stdin (for `cat-file --batch`). */
  readonly input?: Uint8Array | string;
  /** Largest stdout accepted; more is an error, never a truncated answer. Default 64 MiB. */
  readonly maxOutput?: number;
}

const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;

// Variables that would make git read another repository, index or object store than the
// directory it is run in (set, e.g., when virt-offload runs inside a git hook).
const REDIRECTING = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_COMMON_DIR', 'GIT_NAMESPACE', 'GIT_REPLACE_REF_BASE', 'GIT_NO_REPLACE_OBJECTS', 'GIT_CONFIG_PARAMETERS', 'GIT_CONFIG_COUNT'];

function gitEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', GIT_TERMINAL_PROMPT: '0', GIT_PAGER: 'cat', PAGER: 'cat' };
  for (const key of REDIRECTING) delete env[key];
  // `git replace` objects would let a local ref swap what a commit id stands for.
  env.GIT_NO_REPLACE_OBJECTS = '1';
  return env;
}

/**
 * Settings given on every call, over whatever the repository's .git/config (or the user's)
 * says: none of the programs git could be told to run for the commands we use runs. Who can
 * write .git/config is not necessarily who may approve binaries (a mirror's sync job, with
 * --require-signed), and the daemon may be root. Signatures are not verified by git at all
 * (verifyCommit), and no `git status` is run (a filter driver, filter.NAME.clean, could not be
 * switched off by name here).
 */
export const GIT_SAFETY: readonly string[] = Object.freeze(
  [
    'core.fsmonitor=false',
    'core.hooksPath=/dev/null',
    'core.untrackedCache=false',
    'core.sshCommand=/bin/false',
    'core.pager=cat',
    'diff.external=',
    'gpg.program=/bin/false',
    'gpg.openpgp.program=/bin/false',
    'gpg.x509.program=/bin/false',
    'gpg.ssh.program=/bin/false',
    'protocol.allow=never',
    'submodule.recurse=false',
  ].flatMap((setting) => ['-c', setting]),
);

/** Run `git ARGS` in `dir`; a non-zero exit is returned, not thrown (callers decide what it means). */
export function runGit(dir: string, args: readonly string[], options: GitOptions = {}): GitResult {
  const maxOutput = options.maxOutput ?? DEFAULT_MAX_OUTPUT;
  const r = spawnSync('git', [...GIT_SAFETY, ...args], {
    cwd: dir,
    input: options.input,
    maxBuffer: maxOutput,
    // LC_ALL=C: messages we match on are English; no prompt may block a daemon or CI.
    env: gitEnvironment(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    // spawn says ENOENT both for a missing program and a missing working directory.
    if (code === 'ENOENT' && !existsSync(dir)) throw new GitError(dir, args, `cannot run git in ${dir}: no such directory`);
    if (code === 'ENOENT') throw new GitError(dir, args, 'git is not installed (install it with apt-get install git)');
    if (code === 'ENOBUFS') throw new GitError(dir, args, `git ${args[0] ?? ''} printed more than ${maxOutput} bytes; refusing to read it`);
    throw new GitError(dir, args, `cannot run git ${args[0] ?? ''} in ${dir}: ${r.error.message}`);
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Like runGit, but a non-zero exit throws a GitError quoting git's message. */
export function gitOrThrow(dir: string, args: readonly string[], options: GitOptions = {}): Buffer {
  const r = runGit(dir, args, options);
  if (r.status !== 0) {
    const why = r.stderr.trim().split('\n').slice(0, 5).join('; ') || `exit status ${r.status}`;
    throw new GitError(dir, args, `git ${args.filter((a) => !a.startsWith('-c')).slice(0, 3).join(' ')} failed in ${dir}: ${why}`, r.status);
  }
  return r.stdout;
}
