// The host side of an offload run, with the shipped CLI (dist/virt-offload.cjs) for real:
// a git policy repository edited with `virt-offload policy …`, small C tools built with gcc,
// a `virt-offload serve` process (JSON logs parsed, control socket, audit log), and polling
// helpers. Used by the e2e, hotplug, libvirt and guest tests and examples/demo.ts.
// The daemon is started through `setpriv --pdeathsig KILL`: it dies with the process that
// started it, even when that process is SIGKILLed; stop() ends it with SIGTERM (SIGKILL after 5 s).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { withMallocTuning } from '../lib/daemon/index.js';
import { repoRoot, requireTool, run, waitUntil } from './tools.js';

/** The shipped CLI bundle (npm run build). */
export const cliPath = join(repoRoot, 'dist', 'virt-offload.cjs');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `virt-offload ARGS` (never through a shell). */
export function voResult(args: readonly string[], options: { cwd?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Run `virt-offload ARGS` without blocking this process, for tests whose other end (a fake
 * host, a QMP session, libvirt) lives in it; `during` gets the child as it starts. Killed
 * (SIGKILL) after timeoutMs. `cli`: another build of the entry point than the bundle.
 */
export function voAsync(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; during?: (child: ChildProcess) => void; timeoutMs?: number; cli?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.cli ?? cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 30_000, killSignal: 'SIGKILL', env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    options.during?.(child);
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Run `virt-offload ARGS`; its stdout, or an error with its exit code and stderr. */
export function vo(args: readonly string[], options: { cwd?: string } = {}): string {
  const r = voResult(args, options);
  if (r.status !== 0) throw new Error(`virt-offload ${args.join(' ')} exited with ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

const GIT_ID = ['-c', 'user.name=Policy Reviewer', '-c', 'user.email=policy@example.invalid', '-c', 'commit.gpgsign=false'];

/** An empty git repository for policies. */
export function initPolicyRepo(dir: string): void {
  run(requireTool('git', 'git'), ['init', '-q', '-b', 'main', dir]);
}

/** Commit everything in the work tree; returns the new HEAD. */
export function commitAll(repo: string, message: string): string {
  const git = requireTool('git', 'git');
  run(git, ['-C', repo, 'add', '-A']);
  run(git, ['-C', repo, ...GIT_ID, 'commit', '-q', '-m', message]);
  return run(git, ['-C', repo, 'rev-parse', 'HEAD']).trim();
}

/** Compile one C file (given as text) into `out` with gcc; returns `out`. */
export function buildC(out: string, source: string, defines: Record<string, string> = {}): string {
  const gcc = requireTool('gcc', 'gcc');
  const args = ['-O2', '-x', 'c', '-', '-o', out, ...Object.entries(defines).map(([k, v]) => `-D${k}=${v}`)];
  run(gcc, args, { input: source });
  return out;
}

/** `virt-offload measure FILE` on the host: the measurement. */
export function measureOnHost(file: string): string {
  return vo(['measure', file]).split(/\s+/)[0]!;
}

/** The JSON lines of an audit log (none when it does not exist yet). */
export function readAudit(path: string): Array<Record<string, unknown>> {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  // Another process appends to it: a record still being written (no newline yet) is left out.
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** `virt-offload store ls --json`: the installed measurements with name and version. */
export function storeList(store: string): Array<{ measurement: string; name?: string; version?: string }> {
  return vo(['store', 'ls', '--store', store, '--json'])
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { measurement: string; name?: string; version?: string });
}

/** (The shared poller, for the offload tests and the demo that import it from here.) */
export { waitUntil };

/** Resident set size of a process in KiB (from /proc/PID/status). */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`/proc/${pid}/status has no VmRSS line`);
  return Number(m[1]);
}

/** Send one line-JSON command to a control socket; the one-line reply. */
export function controlCommand(path: string, command: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((done, fail) => {
    const s = connect(path);
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      fail(new Error(`control socket ${path}: no reply to ${JSON.stringify(command)} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    s.on('data', (d: Buffer) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      s.destroy();
      done(JSON.parse(text.slice(0, nl)) as Record<string, unknown>);
    });
    s.write(`${JSON.stringify(command)}\n`);
  });
}

export interface ServeOptions {
  repo: string;
  store: string;
  auditLog: string;
  runDir: string;
  patchDir?: string;
  /** Default 200 ms: a new HEAD commit is picked up quickly. */
  watchIntervalMs?: number;
  extraArgs?: readonly string[];
  /** Called with each parsed log line as it arrives (the demo prints some). */
  onLog?: (line: Record<string, unknown>) => void;
}

export interface ServeProcess {
  pid: number;
  controlPath: string;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  /** stderr lines that were not JSON (a crash trace). */
  otherStderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  control(command: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** add-vm; returns the VM's socket path. */
  addVm(name: string, uuid: string): Promise<string>;
  /** The commit the daemon decides with (control status). */
  policyCommit(): Promise<string | undefined>;
  /** Poll control status until the daemon decides with `commit`. */
  waitForCommit(commit: string, timeoutMs?: number): Promise<void>;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit status. Idempotent. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Start `virt-offload serve --json` and wait until it serves its control socket. */
export async function startServe(options: ServeOptions): Promise<ServeProcess> {
  requireTool('bwrap', 'bubblewrap');
  const setpriv = requireTool('setpriv', 'util-linux');
  const args = [
    cliPath, 'serve', '--json',
    '--repo', options.repo,
    '--store', options.store,
    '--audit-log', options.auditLog,
    '--run-dir', options.runDir,
    '--watch-interval', String(options.watchIntervalMs ?? 200),
    ...(options.patchDir === undefined ? [] : ['--patch-dir', options.patchDir]),
    ...(options.extraArgs ?? []),
  ];
  // In the environment examples/virt-offload.service gives it (lib/daemon/malloc-tuning.ts).
  const child = spawn(setpriv, ['--pdeathsig', 'KILL', '--', process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: withMallocTuning(process.env) });
  child.on('error', () => {});
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${setpriv} … virt-offload serve`);
  const logs: Array<Record<string, unknown>> = [];
  const otherStderr: string[] = [];
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        logs.push(parsed);
        options.onLog?.(parsed);
      } catch {
        otherStderr.push(line);
      }
    }
  });
  let status: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.on('exit', (code, signal) => {
      live.delete(child);
      status = { code, signal };
      done(status);
    }),
  );
  const controlPath = join(options.runDir, 'control.sock');
  const tail = (): string => JSON.stringify(logs.slice(-5)) + otherStderr.slice(-10).join('\n');
  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopping ??= (async () => {
      if (status !== undefined) return status;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const s = await exited;
      clearTimeout(killer);
      return s;
    })();
    return stopping;
  };
  try {
    await waitUntil('virt-offload serve to serve its control socket', () => {
      if (status !== undefined) throw new Error(`virt-offload serve exited (${status.signal ?? status.code}) before serving: ${tail()}`);
      return existsSync(controlPath) && logs.some((l) => /serving/.test(String(l.message)));
    }, 20_000, tail);
  } catch (err) {
    await stop();
    throw err;
  }
  const control = (command: Record<string, unknown>): Promise<Record<string, unknown>> => controlCommand(controlPath, command);
  const policyCommit = async (): Promise<string | undefined> => {
    const s = await control({ cmd: 'status' });
    return ((s.policy as Record<string, unknown> | undefined)?.commit as string | undefined) ?? undefined;
  };
  return {
    pid,
    controlPath,
    logs,
    otherStderr,
    exited,
    running: () => status === undefined,
    control,
    addVm: async (name, uuid) => {
      const r = await control({ cmd: 'add-vm', name, uuid });
      if (r.ok !== true || typeof r.socket !== 'string') throw new Error(`add-vm ${name}: ${JSON.stringify(r)}`);
      return r.socket;
    },
    policyCommit,
    waitForCommit: async (commit, timeoutMs = 15_000) => {
      let last: string | undefined;
      await waitUntil(`the daemon to load policy commit ${commit}`, async () => (last = await policyCommit()) === commit, timeoutMs, () => `it decides with ${last ?? 'no policy'}; ${tail()}`);
    },
    stop,
  };
}
