// The bubblewrap command line of a run, and a once-per-process check that bubblewrap works.
//
// What the sandbox sees (platform.md pitfall 10, peers.md (d) 10):
// - every namespace unshared (user, pid, net, ipc, uts, mount, cgroup), no --share-net
// - uid/gid 65534 inside, all capabilities dropped, no nested user namespace (bubblewrap
//   >= 0.8.0: --disable-userns), a seccomp filter (seccomp.ts), --die-with-parent, --new-session
//   (TIOCSTI, CVE-2017-5226), --clearenv then only PATH, LANG and the caller's checked env
// - an empty root tmpfs with: a new /proc, a minimal /dev, a private /tmp (the cwd), the
//   program's canonical bytes copied in at /run/virt-offload/ (see verified.ts), and read-only
//   binds of the system library directories plus /etc/ld.so.cache.
//
// Libraries: the dynamic loader resolves DT_NEEDED through RUNPATH, $ORIGIN, ld.so.cache and
// the multiarch default paths, and programs dlopen more at run time (NSS, gconv, plugins).
// Re-implementing that to bind single files would be a second loader that can disagree with the
// real one, and `ldd` would run untrusted code. So the library directories are bound whole and
// read-only: they hold only world-readable files the distribution ships, no secrets. /etc,
// /home, /root, /var, /usr/bin, the store and every other host path stay out of the sandbox.
// PT_INTERP is checked on the host to lie inside those directories, or the run is refused.
import { lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';

/** Where the program (and WASI runner files) appear inside the sandbox. */
export const SANDBOX_DIR = '/run/virt-offload';
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;

/** Host library locations mirrored into the sandbox: a directory is bound read-only, a symlink recreated. */
const LIBRARY_PATHS = ['/usr/lib', '/usr/lib64', '/usr/lib32', '/usr/libx32', '/lib', '/lib64', '/lib32', '/libx32'];
const LD_CACHE = '/etc/ld.so.cache';

export interface SystemBinds {
  readonly args: readonly string[];
  /** Real paths of the bound library directories (PT_INTERP must resolve inside one). */
  readonly libraryDirs: readonly string[];
}

let cachedBinds: SystemBinds | undefined;

/** Binds of the host's library directories, computed once. */
export function systemBinds(): SystemBinds {
  if (cachedBinds !== undefined) return cachedBinds;
  const args: string[] = [];
  const libraryDirs: string[] = [];
  for (const path of LIBRARY_PATHS) {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      args.push('--symlink', readlinkSync(path), path);
    } else if (st.isDirectory()) {
      args.push('--ro-bind', path, path);
      libraryDirs.push(realpathSync(path));
    }
  }
  try {
    if (statSync(LD_CACHE).isFile()) args.push('--ro-bind', LD_CACHE, LD_CACHE);
  } catch {
    // no cache: the loader searches its default directories
  }
  cachedBinds = { args: Object.freeze(args), libraryDirs: Object.freeze(libraryDirs) };
  return cachedBinds;
}

/** Whether `path` (an absolute host path) resolves to a file inside one of the bound library directories. */
export function insideLibraryDirs(path: string, binds: SystemBinds): boolean {
  let real: string;
  try {
    real = realpathSync(path);
    if (!statSync(real).isFile()) return false;
  } catch {
    return false;
  }
  return binds.libraryDirs.some((dir) => real.startsWith(`${dir}/`));
}

export interface BwrapPlan {
  /** Files copied into the sandbox: stdio index of the pipe, destination, mode. */
  readonly files: readonly { readonly fd: number; readonly dest: string; readonly perms: string }[];
  /** Extra host files bound read-only at the same path (an interpreter, node). */
  readonly roBinds: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** bwrap writes {"child-pid": N} here once the sandbox's first process exists. */
  readonly infoFd?: number;
  /** bwrap waits for a byte here before it execs the command (time to join the cgroup). */
  readonly blockFd?: number;
  /** bwrap reads a compiled seccomp filter here and installs it before the exec (seccomp.ts). */
  readonly seccompFd?: number;
  /** argv inside the sandbox, [0] is the path executed. */
  readonly command: readonly string[];
}

/** The full bwrap argument vector. Never passed through a shell. */
export function bwrapArgs(plan: BwrapPlan, binds: SystemBinds = systemBinds()): string[] {
  const args = [
    '--unshare-all',
    '--unshare-user',
    // No nested user namespace: in one a program holds every capability over new network,
    // mount… namespaces, the kernel surface (nf_tables…) of many privilege escalations.
    '--disable-userns',
    '--assert-userns-disabled',
    '--uid', String(SANDBOX_UID),
    '--gid', String(SANDBOX_GID),
    '--cap-drop', 'ALL',
    '--die-with-parent',
    '--new-session',
    '--clearenv',
    '--hostname', 'sandbox',
    '--proc', '/proc',
    '--dev', '/dev',
    '--tmpfs', '/tmp',
    ...binds.args,
  ];
  for (const path of plan.roBinds) args.push('--ro-bind', path, path);
  for (const f of plan.files) args.push('--perms', f.perms, '--file', String(f.fd), f.dest);
  for (const [name, value] of Object.entries(plan.env)) args.push('--setenv', name, value);
  args.push('--chdir', '/tmp');
  if (plan.infoFd !== undefined) args.push('--info-fd', String(plan.infoFd));
  if (plan.blockFd !== undefined) args.push('--block-fd', String(plan.blockFd));
  if (plan.seccompFd !== undefined) args.push('--seccomp', String(plan.seccompFd));
  args.push('--', ...plan.command);
  return args;
}

export interface SandboxProbe {
  readonly ok: boolean;
  readonly problem?: string;
}

const probes = new Map<string, Promise<SandboxProbe>>();

/**
 * Does bubblewrap at `bwrapPath` build this module's sandbox here? Runs `true` inside it once
 * per process and caches the answer (a kernel without user namespaces, a missing binary…).
 */
export function probeBwrap(bwrapPath: string, spawnAs?: { uid: number; gid: number }): Promise<SandboxProbe> {
  const key = `${bwrapPath}:${spawnAs?.uid ?? ''}`;
  let p = probes.get(key);
  if (p === undefined) {
    p = new Promise<SandboxProbe>((resolve) => {
      const truePath = '/usr/bin/true';
      const args = bwrapArgs({ files: [], roBinds: [truePath], env: {}, command: [truePath] });
      let stderr = '';
      // The environment the runs give bwrap (run.ts): none of the daemon's.
      const child = spawn(bwrapPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: {}, ...(spawnAs ?? {}) });
      child.stderr.on('data', (d: Buffer) => {
        if (stderr.length < 4096) stderr += d.toString('utf8');
      });
      child.on('error', (err) => resolve({ ok: false, problem: `cannot start ${bwrapPath}: ${err.message}` }));
      child.on('close', (code, signal) => {
        if (code === 0) resolve({ ok: true });
        else resolve({ ok: false, problem: `${bwrapPath} could not build a sandbox (exit ${code ?? signal}): ${stderr.trim()}` });
      });
    });
    probes.set(key, p);
  }
  return p;
}
