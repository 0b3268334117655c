// `virt-offload serve`: the daemon. Runs until SIGTERM/SIGINT; SIGHUP reloads the policy.
// Logs go to stderr with journald level prefixes (`<3>`…), or as JSON lines with --json.
import { statSync } from 'node:fs';
import { createLogger, mallocHint, startDaemon, type Daemon, type DaemonLog, type DaemonOptions, type LogLevel } from '../../lib/daemon/index.js';
import { UsageError, VirtOffloadError } from '../../lib/errors.js';
import type { SandboxChoice } from '../../lib/exec/index.js';
import { parseSize } from '../../lib/policy/index.js';
import { EXIT, reportFailure } from '../exit.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

function count(opts: Record<string, unknown>, key: string, flag: string, min: number, max: number): number | undefined {
  const text = str(opts[key]);
  if (text === undefined) return undefined;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text) || Number(text) < min || Number(text) > max) throw new UsageError(`${flag} ${text}: expected a whole number from ${min} to ${max}`, flag);
  return Number(text);
}

/** `path` given for `flag` must be a `kind`; a missing one is refused unless `mayBeMissing`. */
function checkPath(path: string, flag: string, kind: 'file' | 'directory', mayBeMissing = false): void {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if (mayBeMissing) return;
    throw new VirtOffloadError('EIO', `${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
  }
  if (kind === 'file' ? !st.isFile() : !st.isDirectory()) throw new VirtOffloadError('EIO', `${flag} ${path}: not a ${kind}`);
}

export async function runServe(opts: Record<string, unknown>): Promise<number> {
  try {
    const runDir = str(opts.runDir)!;
    const policyRepo = str(opts.repo);
    if (policyRepo === undefined) throw new UsageError('--repo DIR is required (the policy repository work tree)', '--repo');
    // A mistyped path would start a daemon that denies everything: refuse to start instead. A
    // repository whose policy does not load is another matter: the daemon starts, denies, and
    // loads it once a good commit arrives.
    checkPath(policyRepo, '--repo', 'directory');
    if (str(opts.requireSigned) !== undefined) checkPath(str(opts.requireSigned)!, '--require-signed', 'file');
    // --patch-dir may not exist yet (patches often arrive with a later policy commit); a file
    // in its place is a mistake.
    if (str(opts.patchDir) !== undefined) checkPath(str(opts.patchDir)!, '--patch-dir', 'directory', true);
    const unsandboxed = str(opts.unsandboxed);
    if (unsandboxed !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(unsandboxed)) {
      throw new UsageError(`--unsandboxed ${unsandboxed}: a profile name is [A-Za-z0-9][A-Za-z0-9._-]{0,63}`, '--unsandboxed');
    }
    const level = str(opts.logLevel) ?? 'info';
    if (!LEVELS.includes(level as LogLevel)) throw new UsageError(`--log-level ${level}: expected ${LEVELS.join(', ')}`, '--log-level');
    const sandbox: SandboxChoice = unsandboxed === undefined ? 'bwrap' : { unsandboxed };
    const uploadText = str(opts.maxUpload);
    const maxUpload = uploadText === undefined ? undefined : parseSize(uploadText);
    if (uploadText !== undefined && maxUpload === undefined) throw new UsageError(`--max-upload ${uploadText}: expected a size: bytes, or a whole number of K, M or G (e.g. 64M)`, '--max-upload');
    const maxConcurrent = count(opts, 'maxConcurrent', '--max-concurrent', 1, 1024);
    const watch = count(opts, 'watchInterval', '--watch-interval', 0, 86_400_000);
    const log = createLogger({ json: opts.json === true, level: level as LogLevel });
    if (unsandboxed !== undefined) log.warn(`running WITHOUT a sandbox (profile ${unsandboxed}), as configured by --unsandboxed`);
    const mallocAdvice = mallocHint(process.env);
    if (mallocAdvice !== undefined) log.info(mallocAdvice);

    const libvirtTimeout = count(opts, 'libvirtTimeout', '--libvirt-timeout', 1, 600_000);
    if (libvirtTimeout !== undefined && opts.libvirt !== true) throw new UsageError('--libvirt-timeout needs --libvirt', '--libvirt-timeout');
    // Loaded only with --libvirt: the D-Bus code is not needed otherwise.
    const routeFor = opts.libvirt === true ? await libvirtRoutes(libvirtTimeout) : undefined;

    const daemon = await startDaemon({
      runDir,
      policyRepo,
      storeDir: str(opts.store)!,
      auditLog: str(opts.auditLog)!,
      sandbox,
      log,
      limits: { ...(maxUpload === undefined ? {} : { maxUpload }), ...(maxConcurrent === undefined ? {} : { maxConcurrent }) },
      watchIntervalMs: watch ?? 5000,
      ...(str(opts.requireSigned) === undefined ? {} : { requireSigned: str(opts.requireSigned)! }),
      ...(str(opts.patchDir) === undefined ? {} : { patchDir: str(opts.patchDir)! }),
      ...(routeFor === undefined ? {} : { routeFor }),
    });
    // The hook speaks only when a domain starts or stops: after a daemon restart, the domains
    // already running would stay without a device until their next start. Adopt them now.
    if (routeFor !== undefined) void adoptRunningDomains(daemon, log, libvirtTimeout);
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading the policy');
      void daemon.reload();
    });
    await new Promise<void>((done) => {
      const stop = (signal: string) => {
        log.info(`${signal}: stopping`);
        void daemon.close().then(done);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}

/** serve --libvirt: each VM the hook adds is the libvirt domain of that name, hot-plugged over libvirt-dbus. */
async function libvirtRoutes(timeoutMs: number | undefined): Promise<NonNullable<DaemonOptions['routeFor']>> {
  const { LibvirtRoute } = await import('../../lib/hotplug/index.js');
  return (vm) => new LibvirtRoute({ domain: vm.name, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
}

/**
 * serve --libvirt at start: add every running domain whose metadata opts in and attach its
 * port; a port still there from before the restart is detached and attached again (libvirt
 * gives QEMU's user access to the socket only on attach, and the socket is a new file).
 * Failures are logged; the daemon serves either way.
 */
async function adoptRunningDomains(daemon: Daemon, log: DaemonLog, timeoutMs: number | undefined): Promise<void> {
  const { LibvirtConnection, LibvirtFlags, parseXml, readOffloadMetadata } = await import('../../lib/libvirt/index.js');
  let conn;
  try {
    conn = await LibvirtConnection.connect(timeoutMs === undefined ? {} : { timeoutMs });
    for (const domain of await conn.listDomains(LibvirtFlags.LIST_ACTIVE)) {
      try {
        const root = parseXml(await domain.getXMLDesc(0), `domain ${domain.name}`);
        const meta = readOffloadMetadata(root);
        if (meta?.enabled !== true) continue;
        const uuidElement = root.children.find((c) => c.kind === 'element' && c.uri === '' && c.local === 'uuid');
        const uuid = uuidElement?.kind === 'element' ? uuidElement.children.map((c) => (c.kind === 'text' ? c.text : '')).join('').trim() : '';
        await daemon.addVm({ name: domain.name, uuid });
        // The port may still be there from before the restart, but on the old socket file.
        daemon.attachVm(domain.name, meta.port, { reattach: true });
        log.info(`VM ${domain.name}: running domain with virt-offload metadata adopted at start`, { vm: domain.name });
      } catch (err) {
        log.error(`VM ${domain.name}: cannot adopt the running domain: ${err instanceof Error ? err.message : String(err)}`, { vm: domain.name });
      }
    }
  } catch (err) {
    log.warn(`cannot list the running libvirt domains (those with virt-offload metadata get their port at their next start or libvirtd reconnect): ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    conn?.close();
  }
}
