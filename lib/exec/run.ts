// run(): start an installed binary by measurement, sandboxed, with the policy entry's limits.
//
// Order of a run (bubblewrap):
//  1. check argv/env against the limits and the rules (nothing is read yet)
//  2. measure the installed file and keep the canonical bytes that were hashed (verified.ts);
//     refuse on mismatch; nothing has started (or take the bytes the caller measured in its
//     own memory: verifyBytes())
//  3. pick the command for the format and the policy's interpreter (ELF direct, script with
//     the named interpreter, WASM under node:wasi), refuse any other pairing
//  4. create the run's cgroup (memory, pids) and spawn bwrap (argv array, no shell) with
//     --info-fd and --block-fd: bwrap reports the sandbox's first process (pid 1 of the new pid
//     namespace) and waits before exec; that process is in the cgroup before it is released,
//     so the program and everything it forks are counted from their first instruction. On
//     cgroup v1 bwrap is born in the run's cgroups (cgroup.ts: the spawning thread steps in
//     and out, which skips the RCU grace period a move of another process waits for); on v2
//     it is moved in right after spawn, off the event loop, while it sets up. The limits are
//     written once bwrap is in, before the program is released
//  5. stream stdout/stderr (bounded by limits.outputBytes); at the wall limit, at the output
//     cap or on abort, SIGKILL pid 1 of the namespace (the kernel then kills every process in
//     it), every process in the cgroup and bwrap itself
//  6. read the cgroup's events (OOM kills, fork refusals), kill what is left, remove the cgroup
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as osConstants, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Profile } from '../measure/index.js';
import type { Interpreter, Limits } from '../policy/index.js';
import { bwrapArgs, insideLibraryDirs, probeBwrap, SANDBOX_DIR, systemBinds } from './bwrap.js';
import { hostCgroups, RunCgroup, type CgroupLayout } from './cgroup.js';
import { ExecError } from './errors.js';
import { inheritableFds } from './fds.js';
import { seccompFilter } from './seccomp.js';
import { DEFAULT_MAX_BINARY_BYTES, loadVerified, type VerifiedBinary } from './verified.js';
import { WASI_NODE_FLAGS, WASI_NODE_TASKS, WASI_RUNNER_SOURCE } from './wasi-runner.js';

export type SandboxChoice = 'bwrap' | { readonly unsandboxed: string };

export interface ExecConfig {
  /** bubblewrap binary; an absolute path, never looked up on PATH. Default /usr/bin/bwrap. */
  readonly bwrapPath?: string;
  /** node binary for WASI modules. Default: the node running this code. */
  readonly nodePath?: string;
  /** Host uid/gid bwrap (and the unsandboxed profile) run as when the daemon is root. Default 65534. */
  readonly hostUid?: number;
  readonly hostGid?: number;
  /** Largest installed file copied into a sandbox. */
  readonly maxBinaryBytes?: number;
  readonly profile?: Profile;
  /** Cgroup layout to use instead of the detected one (null: behave as if there were none). */
  readonly cgroups?: CgroupLayout | null;
}

export interface StartInfo {
  /** Host pid of bwrap (or of the program, unsandboxed). */
  readonly pid: number;
  /** Host pid of pid 1 of the sandbox's pid namespace (undefined unsandboxed). */
  readonly sandboxInitPid: number | undefined;
  readonly cgroupDirs: readonly string[];
}

export interface RunOptions {
  /**
   * The installed file to measure now and run (the usual case), or bytes already measured in
   * the caller's own memory (verifyBytes(): an upload the daemon has just hashed and installed).
   */
  readonly binary: { readonly path: string; readonly measurement: string } | { readonly verified: VerifiedBinary };
  /** Arguments after the program name. */
  readonly argv?: readonly string[];
  readonly stdin?: Uint8Array | string;
  /**
   * Variables added to PATH=/usr/bin:/bin and LANG=C.UTF-8. Refused: LD_*, MALLOC_*, PATH and
   * the C library's other file-steering variables (REFUSED_ENV); any variable at all for a
   * script (its interpreter may read it as code). A WASI module gets them, node does not.
   */
  readonly env?: Readonly<Record<string, string>>;
  readonly limits: Limits;
  readonly interpreter?: Interpreter;
  readonly sandbox: SandboxChoice;
  readonly onStdout?: (chunk: Buffer) => void;
  readonly onStderr?: (chunk: Buffer) => void;
  readonly onStart?: (info: StartInfo) => void;
  /**
   * The share group of the run (the daemon gives the VM's name): runs of one group share one
   * cgroup above their own, so they get the CPU time of one sibling between them.
   */
  readonly shareGroup?: string;
  readonly signal?: AbortSignal;
  readonly config?: ExecConfig;
}

export interface LimitsHit {
  readonly wall: boolean;
  readonly memory: boolean;
  readonly pids: boolean;
  readonly output: boolean;
}

export interface RunResult {
  /** The program's exit status, null when it was killed by a signal. */
  readonly exitCode: number | null;
  /**
   * The signal that ended it. bwrap folds a signal death of the program into exit status
   * 128+N (as shells do), so a status from 129 to 192 is reported as that signal.
   */
  readonly signal: string | null;
  readonly durationMs: number;
  /** The program's stdout; empty when onStdout was given (each chunk went there instead). */
  readonly stdout: Buffer;
  /** Its stderr; empty when onStderr was given. */
  readonly stderr: Buffer;
  /** Output was cut at limits.outputBytes (stdout and stderr together). */
  readonly truncated: boolean;
  readonly limitsHit: LimitsHit;
  readonly aborted: boolean;
  /** 'bwrap' or 'unsandboxed:<profile name>', for the audit record. */
  readonly sandbox: string;
  readonly measurement: string;
}

const BASE_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' });
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** bwrap outside the sandbox, and its pid 1 of the namespace (which reaps orphans), count against pids.max. */
const BWRAP_TASKS = 2;

/**
 * Variables that make the C library load or read files of the caller's choosing (glibc drops
 * them for set-uid programs: its "unsecure" list), and PATH, which the sandbox fixes. A program
 * that writes a guest's bytes to /tmp could otherwise be made to load them as code.
 */
const REFUSED_ENV: ReadonlyMap<string, string> = new Map([
  ...['GCONV_PATH', 'GETCONF_DIR', 'LOCPATH', 'NLSPATH', 'TZDIR', 'HOSTALIASES', 'LOCALDOMAIN', 'NIS_PATH', 'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TMPDIR', 'GLIBC_TUNABLES'].map(
    (n) => [n, 'it steers the C library'] as const,
  ),
  ['PATH', 'the sandbox sets PATH=/usr/bin:/bin'],
]);

/** Refuse argv/env that break the policy's limits or could steer the loader. */
export function checkRequest(argv: readonly string[], env: Readonly<Record<string, string>>, limits: Limits): void {
  if (argv.length > limits.args) throw new ExecError('bad-request', `${argv.length} arguments given; the policy allows ${limits.args}`);
  let bytes = 0;
  for (const [i, a] of argv.entries()) {
    if (typeof a !== 'string') throw new ExecError('bad-request', `argument ${i} is not a string`);
    if (a.includes('\0')) throw new ExecError('bad-request', `argument ${i} contains a NUL byte`);
    bytes += Buffer.byteLength(a, 'utf8') + 1;
  }
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) throw new ExecError('bad-request', `environment variable name '${name.slice(0, 64)}' is not [A-Za-z_][A-Za-z0-9_]*`);
    // LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT… choose what the loader maps: not the guest's call.
    if (name.startsWith('LD_')) throw new ExecError('bad-request', `environment variable ${name} is refused (it steers the dynamic loader)`);
    if (typeof value !== 'string' || value.includes('\0')) throw new ExecError('bad-request', `environment variable ${name} has a NUL byte or is not a string`);
    const why =
      REFUSED_ENV.get(name) ??
      (name.startsWith('MALLOC_') ? 'it steers the C library' : undefined) ??
      // TZ=/path or TZ=:path makes the C library read that file as a time zone; a zone name is fine.
      (name === 'TZ' && (value.startsWith(':') || value.includes('/')) ? 'a TZ naming a file steers the C library; give a zone rule such as UTC0' : undefined);
    if (why !== undefined) throw new ExecError('bad-request', `environment variable ${name} is refused (${why})`);
    bytes += Buffer.byteLength(name, 'utf8') + Buffer.byteLength(value, 'utf8') + 2;
  }
  if (bytes > limits.argBytes) throw new ExecError('bad-request', `arguments and environment are ${bytes} bytes; the policy allows ${limits.argBytes}`);
}

interface CommandPlan {
  /** argv; [0] is executed. Paths of `files` are relative to the run directory. */
  readonly command: (dir: string) => string[];
  readonly files: readonly { readonly name: string; readonly data: readonly Uint8Array[]; readonly perms: string }[];
  readonly roBinds: readonly string[];
  /** Tasks the runner itself needs on top of limits.pids (node for WASI). */
  readonly extraTasks: number;
  /** Whether the caller's env goes to the process (false for WASI: it goes to the module only). */
  readonly processEnv: boolean;
}

const PROG = 'prog';

/** The ELF class, data encoding and machine (as lib/measure names them) this host executes. */
const HOST_ELF: Readonly<Record<string, string>> = { x64: 'ELF64 LE x86-64', arm64: 'ELF64 LE aarch64', ppc64: 'ELF64 LE ppc64', s390x: 'ELF64 BE s390', riscv64: 'ELF64 LE riscv', loong64: 'ELF64 LE loongarch' };

/** How to start this binary given the policy's interpreter; refuses every other pairing. */
export function planCommand(bin: VerifiedBinary, interpreter: Interpreter, argv: readonly string[], env: Readonly<Record<string, string>>, nodePath: string): CommandPlan {
  const prog = { name: PROG, data: bin.chunks, perms: '0555' };
  const where = `${bin.path} (${bin.format})`;
  if (interpreter.kind === 'none') {
    if (bin.format !== 'elf') {
      const hint = bin.format === 'raw' ? 'a script runs only with the interpreter its policy names' : 'only ELF executables run directly';
      throw new ExecError('not-runnable', `${where}: policy interpreter is none; ${hint}`, { path: bin.path, measurement: bin.measurement });
    }
    // The kernel refuses an ELF of another machine (ENOEXEC), and execvp(3) then hands the file
    // to /bin/sh as a script: an approved "ELF" would run as shell commands with the guest's
    // argv and env. Only the host's own kind is run.
    const host = HOST_ELF[process.arch];
    const kind = `${String(bin.details.class)} ${String(bin.details.data)} ${String(bin.details.machine)}`;
    if (host === undefined || kind !== host) {
      throw new ExecError('not-runnable', `${where}: it is an ${kind} executable; this host runs ${host ?? `no ELF it knows (arch ${process.arch})`}`, { path: bin.path, measurement: bin.measurement });
    }
    const interp = bin.details.interpreter;
    if (typeof interp === 'string') {
      // The kernel maps PT_INTERP before a single instruction of the program runs (pitfall 7):
      // it must be a loader the host ships, inside the directories the sandbox binds.
      if (!interp.startsWith('/') || !insideLibraryDirs(interp, systemBinds())) {
        throw new ExecError('not-runnable', `${where}: its PT_INTERP '${interp}' is not a file in the system library directories`, { path: bin.path, measurement: bin.measurement });
      }
    }
    return { command: (dir) => [join(dir, PROG), ...argv], files: [prog], roBinds: [], extraTasks: 0, processEnv: true };
  }
  if (interpreter.kind === 'path') {
    if (bin.format !== 'raw') {
      throw new ExecError('not-runnable', `${where}: policy names interpreter ${interpreter.path}, which runs scripts, not ${bin.format} binaries`, { path: bin.path, measurement: bin.measurement });
    }
    let ok = false;
    try {
      const st = statSync(interpreter.path);
      ok = st.isFile() && (st.mode & 0o111) !== 0;
    } catch {
      ok = false;
    }
    if (!ok) throw new ExecError('not-runnable', `interpreter ${interpreter.path} named by the policy is not an executable file on this host`, { path: interpreter.path, measurement: bin.measurement });
    // An interpreter reads its own variables as code or as where to find code (BASH_ENV,
    // ENV, PERL5OPT, PYTHONSTARTUP, NODE_OPTIONS, RUBYOPT…): they would run bytes nobody
    // measured. No list of them is complete, so a script gets none of the caller's.
    const names = Object.keys(env);
    if (names.length > 0) {
      throw new ExecError('bad-request', `environment variables are refused for a script (interpreter ${interpreter.path} may read them as code that was not measured): ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', …' : ''}`, {
        path: bin.path,
        measurement: bin.measurement,
      });
    }
    return { command: (dir) => [interpreter.path, join(dir, PROG), ...argv], files: [prog], roBinds: [interpreter.path], extraTasks: 0, processEnv: true };
  }
  if (bin.format !== 'wasm') {
    throw new ExecError('not-runnable', `${where}: policy interpreter is wasi, which runs WebAssembly modules only`, { path: bin.path, measurement: bin.measurement });
  }
  const enc = new TextEncoder();
  return {
    command: (dir) => [nodePath, ...WASI_NODE_FLAGS, join(dir, 'runner.cjs'), join(dir, 'wasi.json')],
    files: [
      prog,
      { name: 'runner.cjs', data: [enc.encode(WASI_RUNNER_SOURCE)], perms: '0444' },
      // The config names the module by its path in the run directory, known only per mode.
      { name: 'wasi.json', data: [], perms: '0444' },
    ],
    roBinds: [nodePath],
    extraTasks: WASI_NODE_TASKS,
    processEnv: false,
  };
}

function wasiConfig(dir: string, argv: readonly string[], env: Readonly<Record<string, string>>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ module: join(dir, PROG), args: [PROG, ...argv], env }));
}

function signalName(n: number): string | undefined {
  for (const [name, value] of Object.entries(osConstants.signals)) if (value === n) return name;
  return undefined;
}

export function decodeExit(code: number | null, signal: NodeJS.Signals | null, viaBwrap: boolean): { exitCode: number | null; signal: string | null } {
  if (signal !== null) return { exitCode: null, signal };
  if (viaBwrap && code !== null && code > 128 && code <= 128 + 64) {
    const name = signalName(code - 128);
    if (name !== undefined) return { exitCode: null, signal: name };
  }
  return { exitCode: code, signal: null };
}

function spawnIdentity(config: ExecConfig): { uid: number; gid: number } | undefined {
  // As root, run bwrap itself unprivileged: its user namespace then maps the sandbox's uid to
  // host uid 65534, not to root (bwrap run as root maps 65534 inside to 0 outside).
  if (typeof process.getuid === 'function' && process.getuid() === 0) return { uid: config.hostUid ?? 65534, gid: config.hostGid ?? 65534 };
  return undefined;
}

/** Run an installed binary. Resolves with the result; rejects (ExecError) only when nothing could be run. */
export async function run(options: RunOptions): Promise<RunResult> {
  const config = options.config ?? {};
  const argv = options.argv ?? [];
  const env = options.env ?? {};
  const limits = options.limits;
  checkRequest(argv, env, limits);

  const sandboxName = sandboxLabel(options.sandbox);
  const layout = config.cgroups === undefined ? hostCgroups() : config.cgroups ?? undefined;
  const bwrapPath = config.bwrapPath ?? '/usr/bin/bwrap';
  const identity = spawnIdentity(config);
  if (options.sandbox === 'bwrap') {
    const probe = await probeBwrap(bwrapPath, identity);
    if (!probe.ok) throw new ExecError('no-sandbox', `no sandbox available: ${probe.problem}; refusing to run without one (no unsandboxed profile named)`);
  }
  if (layout === undefined) {
    throw new ExecError('no-sandbox', 'no cgroup memory, pids and cpu controllers found (v2 at /sys/fs/cgroup or v1 mounts): memory, process and CPU limits cannot be enforced; refusing to run');
  }

  const maxBinaryBytes = config.maxBinaryBytes ?? DEFAULT_MAX_BINARY_BYTES;
  if ('verified' in options.binary && options.binary.verified.size > maxBinaryBytes) {
    const { path, measurement, size } = options.binary.verified;
    throw new ExecError('too-large', `${path} is ${size} bytes; the exec helper copies at most ${maxBinaryBytes} bytes into a sandbox`, { path, measurement });
  }
  const bin =
    'verified' in options.binary
      ? options.binary.verified
      : await loadInstalled(options.binary.path, options.binary.measurement, config);
  const plan = planCommand(bin, options.interpreter ?? { kind: 'none' }, argv, env, config.nodePath ?? process.execPath);
  if (options.signal?.aborted) throw new ExecError('bad-request', 'run aborted before start', { path: bin.path, measurement: bin.measurement });

  const sandboxed = options.sandbox === 'bwrap';
  // bwrap's runs check while bwrap sets up, before the program is released (runInBwrap).
  if (!sandboxed) refuseLeakyFds();
  // bwrap's runs get their limits once bwrap is in (spawnInside: the daemon's thread must never
  // be inside a limit); an unsandboxed program starts at once, so its limits come first.
  const cgroup = RunCgroup.create(layout, { memoryBytes: limits.memoryBytes, pids: limits.pids + plan.extraTasks + (sandboxed ? BWRAP_TASKS : 0), cpuPercent: limits.cpuPercent }, { limitsLater: sandboxed, ...(options.shareGroup === undefined ? {} : { shareGroup: options.shareGroup }) });
  let tempDir: string | undefined;
  try {
    if (sandboxed) return await runInBwrap(options, bin, plan, cgroup, bwrapPath, identity, env, argv, sandboxName);
    tempDir = privateRunDir();
    return await runUnsandboxed(options, bin, plan, cgroup, tempDir, identity, env, argv, sandboxName);
  } finally {
    try {
      cgroup.killAll();
      await cgroup.removeWhenEmpty();
    } finally {
      if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true });
    }
  }
}

/** loadVerified() with the measurement profile and size ceiling `config` names: how run() reads an installed file. */
export function loadInstalled(path: string, measurement: string, config: ExecConfig = {}): Promise<VerifiedBinary> {
  return loadVerified(path, measurement, {
    ...(config.profile !== undefined ? { profile: config.profile } : {}),
    ...(config.maxBinaryBytes !== undefined ? { maxBytes: config.maxBinaryBytes } : {}),
  });
}

/** Refuse while an fd without close-on-exec is open: the program would inherit it (fds.ts). */
function refuseLeakyFds(): void {
  const leaks = inheritableFds();
  if (leaks.length > 0) {
    const list = leaks.map((f) => `${f.fd} (${f.target})`).join(', ');
    throw new ExecError('leaky-fd', `fd ${list} is open without close-on-exec and would be inherited by the program; close it (closeInheritedFds() at start-up)`);
  }
}

function sandboxLabel(choice: SandboxChoice): string {
  if (choice === 'bwrap') return 'bwrap';
  if (typeof choice !== 'object' || choice === null || typeof choice.unsandboxed !== 'string' || !PROFILE_NAME.test(choice.unsandboxed)) {
    throw new ExecError('no-sandbox', 'an unsandboxed run needs an explicitly named profile ([A-Za-z0-9._-], up to 64 characters)');
  }
  return `unsandboxed:${choice.unsandboxed}`;
}

const STDERR_HEAD_BYTES = 4096;

/** Shared bookkeeping of one running child: output cap, timers, kill, result. */
class Supervisor {
  readonly stdout: Buffer[] = [];
  readonly stderr: Buffer[] = [];
  /** The first STDERR_HEAD_BYTES of stderr, kept even when it is streamed. */
  readonly stderrHead: Buffer[] = [];
  stderrHeadBytes = 0;
  outputBytes = 0;
  truncated = false;
  wallHit = false;
  aborted = false;
  readonly started = performance.now();
  private ended: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private onAbort: (() => void) | undefined;

  constructor(
    private readonly options: RunOptions,
    private readonly killTree: () => void,
  ) {}

  attach(child: ChildProcess): void {
    const cap = this.options.limits.outputBytes;
    const take = (stream: Readable | null, into: Buffer[], cb: ((c: Buffer) => void) | undefined) => {
      stream?.on('data', (chunk: Buffer) => {
        if (this.truncated) return;
        const room = cap - this.outputBytes;
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        if (part.length > 0) {
          // Kept only when nobody takes it as it comes: the daemon streams each chunk to the
          // guest, and keeping a copy too would hold up to the policy's output limit per run
          // in the daemon's memory, outside any cgroup.
          if (cb === undefined) into.push(part);
          else cb(part);
          // The start of stderr, always: when bwrap cannot build the sandbox, it says why there.
          if (into === this.stderr && this.stderrHeadBytes < STDERR_HEAD_BYTES) {
            this.stderrHead.push(part.subarray(0, STDERR_HEAD_BYTES - this.stderrHeadBytes));
            this.stderrHeadBytes += Math.min(part.length, STDERR_HEAD_BYTES - this.stderrHeadBytes);
          }
          this.outputBytes += part.length;
        }
        if (chunk.length > room) {
          this.truncated = true;
          this.killTree();
        }
      });
    };
    take(child.stdout, this.stdout, this.options.onStdout);
    take(child.stderr, this.stderr, this.options.onStderr);
    this.timer = setTimeout(() => {
      this.wallHit = true;
      this.killTree();
    }, this.options.limits.wallMs);
    const signal = this.options.signal;
    if (signal !== undefined) {
      this.onAbort = () => {
        this.aborted = true;
        this.killTree();
      };
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /**
   * Resolves when the child exited and its stdio closed (or 2 s after exit, if something holds a
   * pipe). Rejects when it could not be started; the callers await it only after other awaits,
   * so it is marked handled at once: a spawn failure (EAGAIN, EACCES) meanwhile would otherwise
   * be an unhandled rejection, which ends the daemon.
   */
  wait(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const waiting = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let straggler: NodeJS.Timeout | undefined;
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        // Every process of the run is dead once the sandbox's pid 1 is; a pipe still open after
        // that belongs to nobody we wait for.
        straggler = setTimeout(() => {
          for (const s of child.stdio) s?.destroy();
        }, 2000).unref();
      });
      child.on('close', (code, signal) => {
        // Cleared, not left to fire: through the child's stdio listeners it holds this run's
        // Supervisor, and with it the measured image of the binary, for 2 s after every run (a
        // daemon taking 8 MiB uploads back to back held ~30 of them: 390 MB instead of ~70,
        // and every bwrap forked from it started later).
        clearTimeout(straggler);
        resolve(exit ?? { code, signal });
      });
    });
    waiting.catch(() => {});
    return waiting;
  }

  finish(): number {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.onAbort !== undefined) this.options.signal?.removeEventListener('abort', this.onAbort);
    this.ended ??= performance.now();
    return this.ended - this.started;
  }
}

function writeAll(stream: Writable | null | undefined, data: readonly Uint8Array[]): void {
  if (!stream) return;
  stream.on('error', () => {
    // EPIPE: the reader died; bwrap reports why on stderr and exits non-zero.
  });
  for (const chunk of data) stream.write(chunk);
  stream.end();
}

function feedStdin(child: ChildProcess, stdin: Uint8Array | string | undefined): void {
  if (stdin === undefined || child.stdin === null) return;
  child.stdin.on('error', () => {
    // The program need not read its input.
  });
  child.stdin.end(stdin);
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/**
 * Niceness of every run. A program that spins (or forks up to its pids limit and spins) then
 * yields the CPU to the daemon, which serves every VM, and to the host's own work; there is no
 * CPU limit per run yet (cgroup cpu controller: not wired), so this is what keeps one guest's
 * busy loop from slowing the rest of the host to its pace.
 */
export const RUN_NICE = 10;

function lowerPriority(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    setPriority(pid, RUN_NICE);
  } catch {
    // Gone already (it exited), or not ours to change: the run goes on at its inherited priority.
  }
}

function kill(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

async function runInBwrap(
  options: RunOptions,
  bin: VerifiedBinary,
  plan: CommandPlan,
  cgroup: RunCgroup,
  bwrapPath: string,
  identity: { uid: number; gid: number } | undefined,
  env: Readonly<Record<string, string>>,
  argv: readonly string[],
  sandboxName: string,
): Promise<RunResult> {
  const INFO_FD = 3;
  const BLOCK_FD = 4;
  const FIRST_FILE_FD = 5;
  const files = plan.files.map((f, i) => ({
    fd: FIRST_FILE_FD + i,
    dest: join(SANDBOX_DIR, f.name),
    perms: f.perms,
    data: f.name === 'wasi.json' ? [wasiConfig(SANDBOX_DIR, argv, env)] : f.data,
  }));
  // bwrap reads the compiled filter from this fd and installs it right before the exec.
  const filter = seccompFilter();
  const SECCOMP_FD = FIRST_FILE_FD + files.length;
  const args = bwrapArgs({
    files,
    roBinds: plan.roBinds,
    env: { ...BASE_ENV, ...(plan.processEnv ? env : {}) },
    infoFd: INFO_FD,
    blockFd: BLOCK_FD,
    ...(filter === undefined ? {} : { seccompFd: SECCOMP_FD }),
    command: plan.command(SANDBOX_DIR),
  });
  const stdio: StdioOptions = [
    options.stdin === undefined ? 'ignore' : 'pipe',
    'pipe',
    'pipe',
    'pipe',
    'pipe',
    ...files.map(() => 'pipe' as const),
    ...(filter === undefined ? [] : ['pipe' as const]),
  ];
  const spawnBwrap = (): ChildProcess => spawn(bwrapPath, args, { stdio, env: {}, cwd: '/', ...(identity ?? {}) });
  // v1: bwrap is born in the run's cgroups (cgroup.ts, "Joining a run's cgroup"). Elsewhere it
  // is moved in right after spawn, off the event loop, while it sets up; pid 1 of the sandbox,
  // cloned afterwards, is then born inside too, or moved below before it is released.
  const inside = cgroup.spawnInside(spawnBwrap);
  const child = inside?.value ?? spawnBwrap();
  const moved =
    inside !== undefined || child.pid === undefined
      ? Promise.resolve()
      : cgroup.addAsync(child.pid).catch(() => {
          // bwrap died already (its stderr says why), or the move failed: pid 1 is moved below
        });
  let limitsError: unknown;
  try {
    cgroup.applyLimits();
  } catch (err) {
    limitsError = err;
  }
  let initPid: number | undefined;
  const killTree = () => {
    // pid 1 of the namespace first: its death makes the kernel kill every process in the
    // namespace. Once bwrap has exited (and been reaped) its pids may be reused: from then on
    // only the cgroup's own list is trusted.
    if (!exited(child)) kill(initPid);
    cgroup.killAll();
    if (!exited(child)) kill(child.pid);
  };
  const sup = new Supervisor(options, killTree);
  sup.attach(child);
  const done = sup.wait(child);

  for (const f of files) writeAll(child.stdio[f.fd] as Writable | null, f.data);
  if (filter !== undefined) writeAll(child.stdio[SECCOMP_FD] as Writable | null, [filter]);
  // Our ends of the fds bwrap writes to or reads from must be drained so 'close' can fire.
  const infoStream = child.stdio[INFO_FD] as Readable | null;
  const blockStream = child.stdio[BLOCK_FD] as Writable | null;
  blockStream?.on('error', () => {});
  for (const f of files) (child.stdio[f.fd] as Readable | null)?.resume();

  let setupError: ExecError | undefined;
  // While bwrap sets up (it runs nothing of the program before the release below): an fd
  // leaked to bwrap and its pid 1 dies with them when this refuses.
  let leakError: unknown;
  try {
    refuseLeakyFds();
  } catch (err) {
    leakError = err;
  }
  const info = await readAll(infoStream, 4096);
  await moved;
  const m = /"child-pid"\s*:\s*([0-9]+)/.exec(info);
  if (m === null) {
    // bwrap died before it could clone: its stderr says why.
  } else {
    initPid = Number(m[1]);
    try {
      if (leakError !== undefined) throw leakError;
      if (limitsError !== undefined) throw limitsError;
      // Cloned before bwrap's own move (or that move failed): move it now, before it is released.
      if (!cgroup.holds(initPid)) cgroup.add(initPid);
      // Everything the program starts inherits this from the sandbox's pid 1.
      lowerPriority(child.pid);
      lowerPriority(initPid);
      options.onStart?.({ pid: child.pid!, sandboxInitPid: initPid, cgroupDirs: cgroup.dirs });
      blockStream?.end(Buffer.from([1]));
      feedStdin(child, options.stdin);
    } catch (err) {
      killTree();
      setupError = err instanceof ExecError ? err : new ExecError('cgroup', `cannot start the run: ${String(err)}`, { cause: err });
    }
  }
  if (m === null) killTree();
  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await done;
  } catch (err) {
    throw new ExecError('no-sandbox', `cannot start ${bwrapPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    sup.finish();
  }
  if (setupError !== undefined) throw setupError;
  if (m === null) {
    const stderr = Buffer.concat(sup.stderrHead).toString('utf8').trim().slice(0, 2000);
    throw new ExecError('sandbox-failed', `bubblewrap could not build the sandbox for ${bin.path} (exit ${exit.code ?? exit.signal}): ${stderr}`, {
      path: bin.path,
      measurement: bin.measurement,
    });
  }
  return result(sup, cgroup, exit, true, sandboxName, bin);
}

function result(sup: Supervisor, cgroup: RunCgroup, exit: { code: number | null; signal: NodeJS.Signals | null }, viaBwrap: boolean, sandbox: string, bin: VerifiedBinary): RunResult {
  const durationMs = sup.finish();
  const events = cgroup.events();
  const decoded = decodeExit(exit.code, exit.signal, viaBwrap);
  return {
    ...decoded,
    durationMs,
    stdout: Buffer.concat(sup.stdout),
    stderr: Buffer.concat(sup.stderr),
    truncated: sup.truncated,
    limitsHit: { wall: sup.wallHit, memory: events.oomKills > 0, pids: events.pidsMaxHits > 0, output: sup.truncated },
    aborted: sup.aborted,
    sandbox,
    measurement: bin.measurement,
  };
}

function readAll(stream: Readable | null, max: number): Promise<string> {
  return new Promise((resolve) => {
    if (stream === null) return resolve('');
    let text = '';
    stream.on('data', (d: Buffer) => {
      if (text.length < max) text += d.toString('utf8');
    });
    stream.on('error', () => resolve(text));
    stream.on('end', () => resolve(text));
    stream.on('close', () => resolve(text));
  });
}

/** A fresh root-owned directory only its owner can list; others may traverse it to exec. */
function privateRunDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'virt-offload-run-'));
  chmodSync(dir, 0o711);
  return dir;
}

/**
 * The operator's explicitly named unsandboxed profile: no namespaces, but the same verified
 * bytes (written to a fresh private directory, mode 0555), the same uid drop, env, cgroup
 * limits and output cap. Weaker than bwrap: the program is moved into the cgroup right after
 * spawn (no block point), so a child forked in its first instructions escapes the pids and
 * memory limits; it still dies with the process group at the wall limit unless it called setsid.
 */
async function runUnsandboxed(
  options: RunOptions,
  bin: VerifiedBinary,
  plan: CommandPlan,
  cgroup: RunCgroup,
  dir: string,
  identity: { uid: number; gid: number } | undefined,
  env: Readonly<Record<string, string>>,
  argv: readonly string[],
  sandboxName: string,
): Promise<RunResult> {
  for (const f of plan.files) {
    const data = f.name === 'wasi.json' ? [wasiConfig(dir, argv, env)] : f.data;
    writeFileSync(join(dir, f.name), Buffer.concat(data.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))), { mode: Number.parseInt(f.perms, 8), flag: 'wx' });
    chmodSync(join(dir, f.name), Number.parseInt(f.perms, 8));
  }
  const [file, ...args] = plan.command(dir);
  const childEnv = { ...BASE_ENV, ...(plan.processEnv ? env : {}) };
  const child = spawn(file!, args, { stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: childEnv, cwd: dir, detached: true, ...(identity ?? {}) });
  const killTree = () => {
    // Also after the program exited: children it left in its group keep the group id reserved
    // (a pid is not reused while a process group still carries it), so kill(-pid) reaches
    // them and nothing else; an empty group's id could only be hit if, within these
    // milliseconds, the pid were reused by a new process that also made itself group leader.
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // group gone
      }
    }
    cgroup.killAll();
  };
  const sup = new Supervisor(options, killTree);
  sup.attach(child);
  const done = sup.wait(child);
  let exit;
  try {
    if (child.pid !== undefined) {
      lowerPriority(child.pid);
      try {
        cgroup.add(child.pid);
      } catch {
        // exited already
      }
      options.onStart?.({ pid: child.pid, sandboxInitPid: undefined, cgroupDirs: cgroup.dirs });
    }
    feedStdin(child, options.stdin);
    try {
      exit = await done;
    } catch (err) {
      throw new ExecError('sandbox-failed', `cannot start ${file}: ${(err as Error).message}`, { path: bin.path, measurement: bin.measurement, cause: err });
    }
  } finally {
    killTree();
    // Also when the spawn failed or onStart threw: the wall timer would hold the run's
    // options, the measured image among them, until the wall limit.
    sup.finish();
  }
  return result(sup, cgroup, exit, false, sandboxName, bin);
}
