// The daemon: a control socket for the hook and the CLI, one listening unix socket per VM
// (the chardev backend of its offload port), the active policy snapshot, the store, the
// audit log. startDaemon() wires them; the CLI (`virt-offload serve`) adds signals.
//
// Fail closed: until a policy loads, every request is denied (no-policy); a reload that
// fails keeps the last good snapshot and says so loudly; a reload that succeeds reconciles
// the store (each change audited).
import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync, type Stats } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { openAuditLog, type AuditLog } from '../audit/index.js';
import { VirtOffloadError } from '../errors.js';
import { closeInheritedFds, hostCgroups, removeShareGroup, removeStaleRuns, type ExecConfig, type SandboxChoice } from '../exec/index.js';
import { DOMAIN_NAME, PolicyError, UUID, type PolicySnapshot, type VmIdentity } from '../policy/index.js';
import { headCommit, PolicyReloader, uncommittedPolicyChanges } from '../policy/loader.js';
import { DEFAULT_MAX_FRAME, type ProtocolLimits } from '../protocol/index.js';
import { openStore, reconcile, recover, type Store } from '../store/index.js';
import { VERSION } from '../version.js';
import { VmConnection, type ConnectionBounds, type ConnectionStats } from './connection.js';
import { handleControl, type SocketOwner } from './control.js';
import { type DeviceRouteFactory, type DeviceStatus, VmDevice } from './device.js';
import { type DaemonLog, silentLog } from './log.js';
import { lstatOrUndefined, Mutex, untrustedAncestorProblem, untrustedAncestorProblemBeforeMake, untrustedDirProblem } from '../io/index.js';
import { patchSource } from './patch-source.js';
import { acceptedCommitPath, readAcceptedCommit, rollbackProblem, writeAcceptedCommit } from './accepted-commit.js';
import { UploadBudget } from './admission.js';
import { VerifiedCache } from './verified-cache.js';
import type { PipelineContext, UploadInstall } from './pipeline.js';
import { mallocTuned, mmapThreshold } from './malloc-tuning.js';

/** glibc reads its tunables once, when the process starts: what status reports is the environment then. */
const MALLOC_AT_START = { tuned: mallocTuned(process.env), thresholdBytes: mmapThreshold(process.env) ?? null };

const MiB = 1024 * 1024;

/** What the host announces to guests unless told otherwise. */
export const DEFAULT_PROTOCOL_LIMITS: ProtocolLimits = Object.freeze({
  maxFrame: DEFAULT_MAX_FRAME,
  maxUpload: 64 * MiB,
  maxArgs: 1024,
  maxArgBytes: 256 * 1024,
  maxConcurrent: 4,
  frameTimeoutMs: 10_000,
  uploadTimeoutMs: 120_000,
});

export const DEFAULT_BOUNDS: ConnectionBounds = Object.freeze({ maxGarbageBytes: 1 * MiB, maxErrors: 32, maxQueuedBytes: 64 * MiB, maxRequestsPerSecond: 200, requestBurst: 200, uploadIdleMs: 10_000 });
/** Upload bytes the daemon holds for all VMs together: twice what one VM may hold by default (4 × 64 MiB). */
export const DEFAULT_UPLOAD_BUDGET = 512 * MiB;

/** libvirt domain names (the policy's `vm:` members) and UUIDs: the policy's own shapes. */
const VM_NAME = DOMAIN_NAME;
const VM_UUID = UUID;
/** sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

export interface DaemonOptions {
  readonly runDir: string;
  readonly policyRepo: string;
  readonly storeDir: string;
  readonly auditLog: string;
  /** Announced to guests; merged over DEFAULT_PROTOCOL_LIMITS. */
  readonly limits?: Partial<ProtocolLimits>;
  readonly sandbox: SandboxChoice;
  readonly log?: DaemonLog;
  readonly execConfig?: ExecConfig;
  readonly bounds?: Partial<ConnectionBounds>;
  /** Upload bytes in flight across all VMs (default DEFAULT_UPLOAD_BUDGET, never below one upload's maxUpload). */
  readonly uploadBudget?: number;
  /** Allowed-signers file: load only policy commits whose signature verifies. */
  readonly requireSigned?: string;
  /** Poll the policy repo's HEAD this often (ms) and reload when it moved; 0 (default) off. */
  readonly watchIntervalMs?: number;
  /**
   * How to hot-plug a VM's offload device when asked to attach it (the libvirt hook's add-vm):
   * `serve --libvirt` passes LibvirtRoute; tests pass a fake. Without it, attach requests are
   * refused in the status (no-route) and the VM's socket still works for a device added by hand.
   */
  readonly routeFor?: DeviceRouteFactory;
  /** Waits between attach attempts (ms); default DEFAULT_ATTACH_RETRY_DELAYS_MS. */
  readonly attachRetryDelaysMs?: readonly number[];
  /**
   * Directory of VCDIFF deltas (*.vcdiff) between canonical images: a reload builds a newly
   * approved version from one of them and an installed version of the same binary (patch-source.ts).
   */
  readonly patchDir?: string;
}

export interface ReloadResult {
  readonly ok: boolean;
  /** The commit decisions are made with after the reload (undefined: no snapshot). */
  readonly commit: string | undefined;
  readonly error?: string;
  /** Store changes the reconciliation made (installs, removals, failures). */
  readonly storeChanges?: number;
}

export interface VmStatus {
  readonly name: string;
  readonly uuid: string;
  readonly socket: string;
  readonly connected: boolean;
  readonly connection: ConnectionStats | undefined;
  /** The offload device the daemon attaches (undefined: never asked to). */
  readonly device: DeviceStatus | undefined;
}

export interface DaemonStatus {
  readonly policy: { readonly loaded: boolean; readonly commit: string | undefined; readonly uncommitted?: true; readonly loadedAt: string | undefined; readonly lastError: string | undefined };
  readonly vms: readonly VmStatus[];
  readonly limits: ProtocolLimits;
  /**
   * What the daemon holds: its resident memory (each bwrap is forked from it, so every run
   * pays for its page tables), the upload bytes held against the budget shared by all VMs,
   * the cache of measured images, and glibc's mmap threshold from the daemon's environment
   * (malloc-tuning.ts: untuned, uploads leave the heap, and the page tables every fork copies,
   * larger).
   */
  readonly memory: {
    readonly residentBytes: number;
    /** The threshold is fixed between 4 and 32 KiB (MALLOC_TUNABLE sets 32 KiB). */
    readonly mallocTuned: boolean;
    /** The threshold the environment sets, bytes; null when it sets none, or nothing glibc reads as a size. */
    readonly mmapThresholdBytes: number | null;
    readonly uploadsHeldBytes: number;
    readonly uploadBudgetBytes: number;
    readonly imageCache: { readonly binaries: number; readonly bytes: number; readonly maxBytes: number; readonly hits: number; readonly misses: number };
  };
}

export interface Daemon {
  readonly runDir: string;
  readonly controlPath: string;
  /**
   * Create the VM's socket (idempotent for the same name and UUID); returns its path. `owner`:
   * chown it to them. A name already added with another UUID is refused unless `replace`: the
   * UUID is the VM's identity for the policy, so only whoever knows a new domain carries the
   * name (the libvirt hook, at its start) swaps it, and the old one's socket goes.
   */
  addVm(vm: VmIdentity, options?: { readonly owner?: SocketOwner; readonly replace?: boolean }): Promise<string>;
  /**
   * Hot-plug the VM's offload device in the background (retrying while the domain is not
   * ready): call it after answering whoever asked (the libvirt hook blocks libvirt).
   * Returns what was scheduled.
   */
  attachVm(name: string, portName: string, options?: { readonly reattach?: boolean }): 'scheduled' | 'no-route';
  /** Whether attach requests can be served (a route factory was given). */
  canAttach(): boolean;
  /**
   * Detach the device if the daemon attached it and the VM still runs (`stopped` false), then
   * close the VM's socket and connection; false when it was not known (or `uuid` names another domain).
   */
  removeVm(name: string, options?: { readonly uuid?: string; readonly stopped?: boolean }): Promise<boolean>;
  reload(): Promise<ReloadResult>;
  status(): DaemonStatus;
  close(): Promise<void>;
}

interface VmEntry {
  readonly vm: VmIdentity;
  readonly path: string;
  readonly server: Server;
  conn: VmConnection | undefined;
  device: VmDevice | undefined;
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const log = options.log ?? silentLog;
  const runDir = resolve(options.runDir);
  const limits: ProtocolLimits = Object.freeze({ ...DEFAULT_PROTOCOL_LIMITS, ...options.limits });
  const bounds: ConnectionBounds = Object.freeze({ ...DEFAULT_BOUNDS, ...options.bounds });
  const vmDir = join(runDir, 'vm');
  const controlPath = join(runDir, 'control.sock');
  checkSocketPath(controlPath);
  // Before anything is touched: a second daemon would take over the sockets of the first.
  await refuseLiveDaemon(controlPath);
  prepareAuditLogDir(options.auditLog);
  prepareRunDir(runDir, vmDir, log);

  // Descriptors inherited without close-on-exec would reach every sandboxed program.
  for (const fd of closeInheritedFds()) log.warn(`closed inherited fd ${fd.fd} (${fd.target})`);
  const cgroups = options.execConfig?.cgroups === undefined ? hostCgroups() : (options.execConfig.cgroups ?? undefined);
  if (cgroups !== undefined) for (const dir of removeStaleRuns(cgroups)) log.info(`removed the cgroup of a run of a dead daemon, or an empty VM share group: ${dir}`);

  const store: Store = openStore(options.storeDir, { create: true });
  for (const r of recover(store).removed) log.info(`store: removed ${r.path} (${r.why})`);
  const audit: AuditLog = openAuditLog(options.auditLog);

  let snapshot: PolicySnapshot | undefined;
  let lastError: string | undefined;
  let lastFailedHead: string | undefined;
  const storeLock = new Mutex();
  /** Snapshots loaded from a work tree whose *.policy files differ from HEAD's. */
  const uncommitted = new WeakSet<PolicySnapshot>();
  const reloadLock = new Mutex();
  const verified = new VerifiedCache();
  const ctx: PipelineContext = {
    store,
    audit,
    log,
    sandbox: options.sandbox,
    ...(options.execConfig === undefined ? {} : { execConfig: options.execConfig }),
    snapshot: () => snapshot,
    uncommitted: (snap) => uncommitted.has(snap),
    // A removed VM's last runs may end after its removal: its share group goes with the last.
    requestEnded: (vm) => {
      if (cgroups !== undefined && !vms.has(vm.name)) removeShareGroup(cgroups, vm.name);
    },
    storeLock,
    installed: (change) => afterUploadInstalled(change),
    verified,
    uploads: new UploadBudget(Math.max(options.uploadBudget ?? DEFAULT_UPLOAD_BUDGET, limits.maxUpload)),
  };
  const vms = new Map<string, VmEntry>();
  let closing = false;
  const sources = options.patchDir === undefined ? undefined : patchSource({ dir: resolve(options.patchDir), store, log, maxBytes: limits.maxUpload });

  const appendAudit = (record: Parameters<AuditLog['append']>[0]): void => {
    try {
      audit.append(record);
    } catch (err) {
      log.error(`AUDIT LOG FAILED: ${err instanceof Error ? err.message : String(err)}`, { event: String(record.event) });
    }
  };

  // Never rejects: SIGHUP and the watcher fire and forget.
  const reload = (): Promise<ReloadResult> =>
    reloadLock.run(() => reloadOnce()).catch((err: unknown) => {
      const error = err instanceof Error ? err.message : String(err);
      log.error(`POLICY RELOAD FAILED unexpectedly: ${err instanceof Error ? (err.stack ?? error) : error}`);
      return { ok: false, commit: snapshot?.commit, error };
    });

  /** Bring the store in line with `snap` (under the store lock); returns how many changes were logged. */
  const reconcileStore = async (snap: PolicySnapshot): Promise<number> => {
    let changes = 0;
    await storeLock.run(() =>
      reconcile(store, snap, {
        ...(sources === undefined ? {} : { sources }),
        log: (r) => {
          changes++;
          // Installed, uninstalled or failed: the next run of it measures its file again.
          verified.forget(r.measurement);
          appendAudit({ event: 'store', ...r });
          const text = `store: ${r.action} ${r.measurement} ${r.name ?? ''} ${r.version ?? ''} (${r.reason})`;
          if (r.action.endsWith('failed')) log.error(text, { measurement: r.measurement });
          else log.info(text, { measurement: r.measurement });
        },
      }),
    );
    return changes;
  };

  // An upload installed a new object: a superseded version that was kept until its successor
  // arrived (reconcile's keep-until-successor rule) can go now. After the request, not in it.
  const afterUploadInstalled = (change: UploadInstall): void => {
    const { measurement, name, version, vm, repaired, commit } = change;
    // A store change like a reconciliation's, in the same form (`audit --action install`).
    const reason = `uploaded by VM ${vm}${repaired ? ' (repaired a damaged copy)' : ''}`;
    appendAudit({ event: 'store', action: 'install', measurement, name, version, reason, commit, vm });
    log.info(`store: install ${measurement} ${name} ${version} (${reason})`, { measurement, vm });
    const snap = snapshot;
    if (snap === undefined || closing) return;
    reconcileStore(snap).catch((err: unknown) => log.error(`store reconciliation after installing ${measurement} failed: ${err instanceof Error ? err.message : String(err)}`, { measurement }));
  };

  // Every reload reads every file, but parses only those whose text (or blob id) changed since
  // the last load: a one-file commit in a 10k-file repository costs a fraction of a full load.
  // The snapshot and its errors are exactly a full load's (test/policy/incremental).
  const reloader = new PolicyReloader(options.policyRepo);
  const acceptedPath = acceptedCommitPath(store);
  const reloadOnce = async (): Promise<ReloadResult> => {
    let next: PolicySnapshot;
    let commit: string;
    const failed = (text: string): ReloadResult => {
      lastError = text;
      lastFailedHead = safeHead(options.policyRepo);
      const kept = snapshot === undefined ? 'NO POLICY IS LOADED: every request is denied' : `keeping the last good policy (commit ${snapshot.commit ?? 'unknown'})`;
      log.error(`POLICY RELOAD FAILED, ${kept}: ${lastError}`, { repo: options.policyRepo });
      appendAudit({ event: 'policy-reload', ok: false, error: lastError.slice(0, 8192), commit: snapshot?.commit ?? null });
      return { ok: false, commit: snapshot?.commit, error: lastError };
    };
    try {
      next = reloader.load({ loadedAt: new Date().toISOString(), ...(options.requireSigned === undefined ? {} : { requireSigned: options.requireSigned }) });
      // Only committed policy is enforced: a commit is what a reviewer approved and what every
      // decision names; files in a plain directory (a wrong --repo, or a copy) were reviewed by nobody.
      if (next.commit === undefined) {
        return failed(`policy repository ${options.policyRepo} has no git commit (it is not a git work tree, or nothing is committed yet): the daemon enforces only committed policy (git init; git add *.policy; git commit)`);
      }
      commit = next.commit;
      // Signed: only a commit that descends from the last one this host accepted (a rollback
      // to an older signed commit would approve again what later ones revoked).
      if (options.requireSigned !== undefined) {
        const accepted = readAcceptedCommit(acceptedPath);
        const problem = accepted === undefined ? undefined : rollbackProblem(options.policyRepo, accepted, commit, acceptedPath);
        if (problem !== undefined) return failed(problem);
        if (accepted !== commit) writeAcceptedCommit(acceptedPath, commit);
      }
    } catch (err) {
      if (!(err instanceof VirtOffloadError)) throw err;
      return failed(policyErrorText(err));
    }
    const previous = snapshot?.commit;
    snapshot = next;
    lastError = undefined;
    lastFailedHead = undefined;
    // Signed loads read HEAD's files only (the work tree must equal them); otherwise the work
    // tree is read, and edits nobody committed would pass for HEAD's reviewed commit.
    const dirty = options.requireSigned === undefined && uncommittedPolicyChanges(options.policyRepo) === true;
    if (dirty) uncommitted.add(next);
    appendAudit({ event: 'policy-reload', ok: true, commit, ...(dirty ? { uncommitted: true } : {}), previous: previous ?? null, files: next.files.length });
    if (dirty) log.warn(`policy work tree ${options.policyRepo} has UNCOMMITTED changes to *.policy files: they are in force, and every decision is recorded with commit ${commit} and "uncommitted": true; commit them for review`, { commit });
    log.info(`policy loaded: commit ${commit}, ${next.binaries.size} binaries, ${next.index.size} measurements (${reloader.stats.compiled} of ${reloader.stats.files} files parsed)`, { commit });
    if (next.files.length === 0) {
      // Like `store gc`: an empty repository is far more likely a wrong --repo than a wish to uninstall everything.
      log.warn(`policy repository ${options.policyRepo} has no *.policy files: everything is denied, the store is left as it is`);
      return { ok: true, commit, storeChanges: 0 };
    }
    const changes = await reconcileStore(next);
    return { ok: true, commit, storeChanges: changes };
  };

  // Adds and removals of one VM name run one at a time: a restart's add must not be undone by
  // the end of its predecessor's removal (which unlinks the socket path the add just bound),
  // and two adds must not both bind the path. Other VMs do not wait.
  const vmLocks = new Map<string, { readonly mutex: Mutex; users: number }>();
  const underVmLock = async <T>(name: string, task: () => Promise<T>): Promise<T> => {
    let lock = vmLocks.get(name);
    if (lock === undefined) vmLocks.set(name, (lock = { mutex: new Mutex(), users: 0 }));
    lock.users++;
    try {
      return await lock.mutex.run(task);
    } finally {
      if (--lock.users === 0) vmLocks.delete(name);
    }
  };

  const addVm = async (vm: VmIdentity, addOptions: { readonly owner?: SocketOwner; readonly replace?: boolean } = {}): Promise<string> => {
    if (closing) throw new VirtOffloadError('EUSAGE', 'the daemon is shutting down');
    if (typeof vm.name !== 'string' || !VM_NAME.test(vm.name)) throw new VirtOffloadError('EUSAGE', `VM name must match ${VM_NAME.source}`);
    if (typeof vm.uuid !== 'string' || !VM_UUID.test(vm.uuid)) throw new VirtOffloadError('EUSAGE', `VM ${vm.name}: uuid must be a UUID (8-4-4-4-12 hex digits)`);
    const identity: VmIdentity = Object.freeze({ name: vm.name, uuid: vm.uuid.toLowerCase() });
    return underVmLock(vm.name, async () => {
      const path = await addVmLocked(identity, addOptions.replace === true);
      // Without libvirt nobody else hands the socket to QEMU's user: the admin names it.
      const owner = addOptions.owner;
      if (owner !== undefined) {
        const who = `uid ${owner.uid}${owner.gid === undefined ? '' : `, gid ${owner.gid}`}`;
        try {
          chownSync(path, owner.uid, owner.gid ?? -1);
        } catch (err) {
          throw new VirtOffloadError('EIO', `VM ${identity.name}: cannot hand ${path} to ${who}: ${(err as Error).message} (the VM is added; its socket stays the daemon's)`, { cause: err });
        }
        log.info(`VM ${identity.name}: socket handed to ${who}`, { vm: identity.name });
      }
      return path;
    });
  };

  const addVmLocked = async (identity: VmIdentity, replace: boolean): Promise<string> => {
    if (closing) throw new VirtOffloadError('EUSAGE', 'the daemon is shutting down');
    const known = vms.get(identity.name);
    if (known !== undefined) {
      if (known.vm.uuid === identity.uuid) return known.path;
      if (!replace) {
        throw new VirtOffloadError('EUSAGE', `VM ${identity.name} is already added with UUID ${known.vm.uuid}, not ${identity.uuid}: remove it first (virt-offload vm remove ${identity.name}), or add it with --replace if another domain now carries the name`);
      }
      // Same name, another UUID: a different domain now carries the name. Its predecessor's socket must go.
      log.warn(`VM ${identity.name}: UUID ${known.vm.uuid} replaced by ${identity.uuid}; the old VM's socket and connection go`, { vm: identity.name });
      await removeVmLocked(identity.name, { stopped: true });
    }
    const path = join(vmDir, `${identity.name}.sock`);
    checkSocketPath(path);
    removeStaleSocket(path);
    const entry: VmEntry = { vm: identity, path, server: createServer(), conn: undefined, device: undefined };
    entry.server.on('connection', (socket: Socket) => {
      if (entry.conn !== undefined && !entry.conn.closed) {
        // One port, one peer: a new connection means QEMU reconnected; the old one is dead.
        entry.conn.close('replaced by a new connection on the VM socket');
      }
      entry.conn = new VmConnection(identity, socket, limits, ctx, bounds, (c) => {
        if (entry.conn === c) entry.conn = undefined;
      }, `virt-offload/${VERSION}`);
      log.info(`VM ${identity.name}: guest channel connected`, { vm: identity.name });
    });
    await listenPrivate(entry.server, path);
    vms.set(identity.name, entry);
    log.info(`VM ${identity.name} (${identity.uuid}) added: ${path}`, { vm: identity.name });
    return path;
  };

  const attachVm = (name: string, portName: string, attachOptions: { readonly reattach?: boolean } = {}): 'scheduled' | 'no-route' => {
    const entry = vms.get(name);
    if (entry === undefined) throw new VirtOffloadError('EUSAGE', `VM ${name} is not known to the daemon (add-vm first)`);
    if (entry.device !== undefined && entry.device.portName !== portName) {
      throw new VirtOffloadError('EUSAGE', `VM ${name} already has the offload port ${entry.device.portName}; asked for ${portName}`);
    }
    entry.device ??= new VmDevice({
      vm: entry.vm,
      socketPath: entry.path,
      portName,
      route: options.routeFor?.(entry.vm),
      log,
      ...(options.attachRetryDelaysMs === undefined ? {} : { retryDelaysMs: options.attachRetryDelaysMs }),
    });
    entry.device.attach(attachOptions);
    return entry.device.status().state === 'no-route' ? 'no-route' : 'scheduled';
  };

  const removeVm = (name: string, removal: { readonly uuid?: string; readonly stopped?: boolean } = {}): Promise<boolean> => underVmLock(name, () => removeVmLocked(name, removal));

  const removeVmLocked = async (name: string, removal: { readonly uuid?: string; readonly stopped?: boolean } = {}): Promise<boolean> => {
    const entry = vms.get(name);
    if (entry === undefined) return false;
    if (removal.uuid !== undefined && removal.uuid.toLowerCase() !== entry.vm.uuid) return false;
    vms.delete(name);
    // Detach (when still running) while the socket still exists: QEMU's side closes cleanly.
    await entry.device?.remove(removal.stopped === true);
    entry.conn?.close('the VM was removed');
    await new Promise<void>((done) => entry.server.close(() => done()));
    removeStaleSocket(entry.path);
    // Its runs' share group (a run still ending keeps it: it goes when that run's request ends).
    if (cgroups !== undefined) removeShareGroup(cgroups, name);
    log.info(`VM ${name} removed`, { vm: name });
    return true;
  };

  const status = (): DaemonStatus => ({
    policy: { loaded: snapshot !== undefined, commit: snapshot?.commit, ...(snapshot !== undefined && uncommitted.has(snapshot) ? { uncommitted: true } : {}), loadedAt: snapshot?.loadedAt, lastError },
    vms: [...vms.values()].map((e) => ({ name: e.vm.name, uuid: e.vm.uuid, socket: e.path, connected: e.conn !== undefined, connection: e.conn?.stats, device: e.device?.status() })),
    limits,
    memory: {
      residentBytes: process.memoryUsage.rss(),
      mallocTuned: MALLOC_AT_START.tuned,
      mmapThresholdBytes: Number.isNaN(MALLOC_AT_START.thresholdBytes) ? null : MALLOC_AT_START.thresholdBytes,
      uploadsHeldBytes: ctx.uploads?.reserved ?? 0,
      uploadBudgetBytes: ctx.uploads?.maxBytes ?? 0,
      imageCache: { binaries: verified.size, bytes: verified.bytes, maxBytes: verified.maxBytes, hits: verified.hits, misses: verified.misses },
    },
  });

  const daemon: Daemon = {
    runDir,
    controlPath,
    addVm,
    attachVm,
    canAttach: () => options.routeFor !== undefined,
    removeVm,
    reload,
    status,
    close: async () => {
      if (closing) return;
      closing = true;
      clearInterval(watcher);
      await new Promise<void>((done) => control.close(() => done()));
      for (const socket of controlClients) socket.destroy();
      removeStaleSocket(controlPath);
      // The devices stay: QEMU reconnects to a restarted daemon's socket by itself.
      for (const name of [...vms.keys()]) await removeVm(name, { stopped: true });
      // Wait for a reload in progress, then let go of the log.
      await reloadLock.run(async () => undefined);
      await storeLock.run(async () => undefined);
      audit.close();
      log.info('daemon stopped');
    },
  };

  await reload();

  const controlClients = new Set<Socket>();
  const control = createServer((socket) => {
    controlClients.add(socket);
    socket.on('close', () => controlClients.delete(socket));
    handleControl(socket, daemon, log);
  });
  checkSocketPath(controlPath);
  removeStaleSocket(controlPath);
  await listenPrivate(control, controlPath);

  let watcher: NodeJS.Timeout | undefined;
  if ((options.watchIntervalMs ?? 0) > 0) {
    watcher = setInterval(() => {
      const head = safeHead(options.policyRepo);
      if (head === undefined || head === snapshot?.commit || head === lastFailedHead) return;
      log.info(`policy repository HEAD moved to ${head}: reloading`);
      void reload();
    }, options.watchIntervalMs);
    watcher.unref();
  }
  log.info(`virt-offload ${VERSION} serving: control socket ${controlPath}, store ${store.root}, audit log ${audit.path}, sandbox ${typeof options.sandbox === 'string' ? options.sandbox : `UNSANDBOXED profile ${options.sandbox.unsandboxed}`}`);
  return daemon;
}

function safeHead(dir: string): string | undefined {
  try {
    return headCommit(dir);
  } catch {
    return undefined;
  }
}

/**
 * A failed load in one line (reload reply, status, log, audit record): a PolicyError's summary,
 * then up to 20 of its errors. Its message already lists them all on lines of their own.
 */
function policyErrorText(err: VirtOffloadError): string {
  if (!(err instanceof PolicyError) || err.errors.length === 0) return err.message;
  const shown = err.errors.slice(0, 20).map((e) => e.message);
  return `${err.summary}: ${shown.join('; ')}${err.errors.length > 20 ? `; … ${err.errors.length - 20} more` : ''}`;
}

function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new VirtOffloadError('EUSAGE', `socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes (a unix socket limit); use a shorter --run-dir`);
}

/**
 * Refuse while another daemon answers on `controlPath`. Starting anyway would unlink its
 * control and VM sockets: it would keep running, cut off from the hook, the CLI and its VMs.
 * A socket nobody listens on (ECONNREFUSED) is a dead daemon's, and is replaced.
 */
async function refuseLiveDaemon(controlPath: string): Promise<void> {
  try {
    if (!lstatSync(controlPath).isSocket()) return; // removeStaleSocket refuses it, with its own words
  } catch {
    return;
  }
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = connect(controlPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve('another virt-offload daemon is serving it');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? undefined : `cannot tell whether a daemon is serving it (${err.message})`));
  });
  if (problem !== undefined) throw new VirtOffloadError('EUSAGE', `${controlPath}: ${problem}; stop that daemon first, or give this one another --run-dir`);
}

/**
 * The run directory and its vm/ directory, where QEMU connects to the VMs' sockets. QEMU often
 * runs as an unprivileged user (libvirt's DAC driver hands it each socket file on attach), so
 * both must be searchable by others (0711: no listing); a umask (systemd's UMask=0077) must not
 * make them 0700. A run directory we did not create is not changed, only checked.
 *
 * Whoever can write either of them, or a directory above, can put a socket of their own where
 * the hook and the CLI send their commands, or where QEMU connects a VM: both are refused,
 * as are symlinks and directories of another owner.
 */
function prepareRunDir(runDir: string, vmDir: string, log: DaemonLog): void {
  const why = 'the daemon keeps its control and VM sockets there';
  const mode = makeTrustedDir(runDir, 'run directory', 0o711, why).mode & 0o777;
  if ((mode & 0o001) === 0) log.warn(`run directory ${runDir} is not searchable by other users (mode ${mode.toString(8)}): QEMU running as an unprivileged user cannot reach the VM sockets in it; make it 0711`);
  // Checked before the chmod: a symlink here would chmod whatever it points to.
  makeTrustedDir(vmDir, 'VM socket directory', 0o711, why);
  chmodSync(vmDir, 0o711);
}

/**
 * The audit log's directory, made (0750) and checked before the log is opened: whoever can
 * write it can delete or replace the audit trail. It must be writable by its owner only, owned
 * by root or us, and not a symlink; a directory above must not be writable by others without
 * the sticky bit, nor by its group unless root owns it (Ubuntu's /var/log is root:syslog 0775).
 * The directories above are checked before the mkdir too, from the nearest one that exists,
 * and all of it again after: under a sticky /tmp another user could make a missing directory
 * between the first check and the mkdir.
 */
function prepareAuditLogDir(auditLog: string): void {
  makeTrustedDir(dirname(resolve(auditLog)), 'audit log directory', 0o750, `the daemon keeps its audit log (${auditLog}) there`, { groupWritable: true });
}

/**
 * Make `dir` (`mode`, whatever the umask) when it is missing, and check it: not a symlink,
 * writable by its owner only, owned by root or us, under directories others cannot swap
 * (`ancestors`: see untrustedAncestorProblem). The directories above are checked before the
 * mkdir too, from the nearest one that exists: under a directory others may write, what it makes
 * could be swapped for a symlink. `why` ends each refusal. Returns the directory's lstat.
 */
function makeTrustedDir(dir: string, what: string, mode: number, why: string, ancestors: { readonly groupWritable?: boolean } = {}): Stats {
  const refuse = (problem: string | undefined): void => {
    if (problem !== undefined) throw new VirtOffloadError('EUSAGE', `${problem}; ${why}`);
  };
  if (lstatOrUndefined(dir) === undefined) {
    refuse(untrustedAncestorProblemBeforeMake(dir, `the ${what}`, ancestors));
    let created: string | undefined;
    try {
      created = mkdirSync(dir, { recursive: true, mode });
    } catch (err) {
      throw new VirtOffloadError('EIO', `cannot create the ${what} ${dir}: ${(err as Error).message}`, { cause: err });
    }
    if (created !== undefined) chmodSync(dir, mode);
  }
  const st = lstatOrUndefined(dir);
  refuse(st === undefined ? `${what} ${dir} vanished while the daemon started` : (untrustedDirProblem(dir, st, what) ?? untrustedAncestorProblem(dir, `the ${what}`, ancestors)));
  return st!;
}


/** A socket file left by a dead daemon is removed; anything else at that path is refused. */
function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new VirtOffloadError('EIO', `${path} exists and is not a socket; refusing to replace it`);
  unlinkSync(path);
}

/** Listen on a unix socket that only its owner may connect to (0600 from the moment it exists). */
async function listenPrivate(server: Server, path: string): Promise<void> {
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    // For a path, the bind happens inside listen() itself: the umask applies to it alone.
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', fail);
        done();
      });
    } finally {
      process.umask(old);
    }
  });
  chmodSync(path, 0o600);
}
