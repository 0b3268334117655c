// One request, from the uploaded bytes (or a named measurement) to its final reply:
//   measure (bufferReader over the upload) → decide (active snapshot, this VM) →
//   DENIED, or install into the store → run (exec, sandboxed) → STDOUT/STDERR… → EXIT.
// Every request that began gets exactly one audit record, appended and flushed before its
// final reply is written (principle 4): on the decision path here, or in the connection when
// the session ended the request early (cancel, bad upload, new guest session, disconnect).
import type { AuditLog, AuditRecord } from '../audit/index.js';
import { VirtOffloadError } from '../errors.js';
import { ExecError, run, verifyBytes, type ExecConfig, type SandboxChoice, type VerifiedBinary } from '../exec/index.js';
import { chunksReader } from '../measure/index.js';
import { decide, type Decision, type PolicyEntry, type PolicySnapshot, type VmIdentity } from '../policy/index.js';
import type { ErrorReport, HostSession, RunRequest } from '../protocol/index.js';
import { install, locate, type Store } from '../store/index.js';
import type { VerifiedCache } from './verified-cache.js';
import type { DaemonLog } from './log.js';
import type { Mutex } from '../io/index.js';
import { clipText } from '../text.js';
import type { UploadBudget } from './admission.js';

/** Codes of ERROR replies the daemon adds to the protocol's own. */
export const DAEMON_ERROR_CODES = Object.freeze({
  /** The upload is not a binary the measurement core accepts (malformed or unsupported). */
  unmeasurable: 'unmeasurable',
  /** A `measurement` request for a binary the policy approves but the store does not hold. */
  notInstalled: 'not-installed',
  /** The store could not install the binary. */
  installFailed: 'install-failed',
  /** The exec helper refused or could not start the run (no sandbox, not runnable…). */
  execFailed: 'exec-failed',
  /** argv/env break the policy's limits for this binary (or name LD_* variables). */
  limit: 'limit',
  /** Anything else the daemon did not expect (logged with its stack). */
  internal: 'internal',
});

/** What the pipeline needs from the daemon. */
export interface PipelineContext {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly log: DaemonLog;
  readonly sandbox: SandboxChoice;
  readonly execConfig?: ExecConfig;
  /** Whether `snapshot` was read from a work tree with uncommitted *.policy changes (audited as such). */
  readonly uncommitted?: (snapshot: PolicySnapshot) => boolean;
  /** The snapshot decisions are made with right now (undefined: none loaded → deny). */
  snapshot(): PolicySnapshot | undefined;
  /** Serializes store writers: installs here and the reconciliation after a reload. */
  readonly storeLock: Mutex;
  /**
   * Called after an upload put a new object into the store (or repaired one): the daemon
   * audits the store change, and reconciles the store then, so a superseded version whose
   * successor was waiting for its bytes is uninstalled now rather than at the next reload
   * (that part is not awaited by the request).
   */
  readonly installed?: (change: UploadInstall) => void;
  /** Upload bytes in flight across every VM (admission.ts); undefined: unbounded. */
  readonly uploads?: UploadBudget;
  /** Measured images of installed binaries, so a repeated run does not re-read and re-hash its file. */
  readonly verified?: VerifiedCache;
  /** Called once a request of `vm` is over (its run, if any, has ended and its cgroup is gone). */
  readonly requestEnded?: (vm: VmIdentity) => void;
}

/** A store change an upload made: what was installed, for which VM, under which policy commit. */
export interface UploadInstall {
  readonly measurement: string;
  readonly name: string;
  readonly version: string;
  readonly vm: string;
  readonly repaired: boolean;
  readonly commit: string | null;
}

/** The per-request state the connection keeps; the pipeline fills in what it learns. */
export interface Work {
  readonly ticket: number;
  readonly requestId: number;
  readonly request: RunRequest;
  readonly chunks: Uint8Array[];
  received: number;
  readonly started: number;
  readonly abort: AbortController;
  /** Set once the audit record is written: nothing more is recorded or sent for it. */
  done: boolean;
  measurement?: string;
  decision?: Decision;
  uploadTimer?: NodeJS.Timeout;
  /** Re-armed by each DATA frame: an upload that stalls ends sooner than uploadTimeoutMs. */
  idleTimer?: NodeJS.Timeout;
  /** performance.now() when the request's first DATA frame arrived. */
  uploadStarted?: number;
  /** From the first DATA frame to DATA_END, ms (0.1 ms resolution); set at DATA_END. */
  uploadMs?: number;
  /** Upload bytes it holds of the budget shared by all VMs (admission.ts); 0 once given back. */
  held: number;
}

export type FinalReply = Parameters<HostSession['finish']>[1];

/** How the pipeline talks back: output frames and the final reply go through the session. */
export interface WorkSink {
  output(work: Work, stream: 'STDOUT' | 'STDERR', bytes: Uint8Array): void;
  /** Writes the messages the session returns for this final reply (none when the request is no longer live). */
  finish(work: Work, reply: FinalReply): void;
}

export async function processWork(ctx: PipelineContext, vm: VmIdentity, work: Work, sink: WorkSink): Promise<void> {
  try {
    await handleFailure(ctx, vm, work, sink, pipeline(ctx, vm, work, sink));
  } catch (err) {
    // Never an unhandled rejection: one request's failure must not stop the daemon.
    ctx.log.error(`request ${work.requestId} of VM ${vm.name}: failure while reporting a failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, { vm: vm.name });
  } finally {
    ctx.requestEnded?.(vm);
  }
}

async function handleFailure(ctx: PipelineContext, vm: VmIdentity, work: Work, sink: WorkSink, running: Promise<void>): Promise<void> {
  try {
    await running;
  } catch (err) {
    if (work.done) return;
    const known = err instanceof VirtOffloadError;
    if (!known) ctx.log.error(`request ${work.requestId} of VM ${vm.name} failed unexpectedly`, { vm: vm.name, stack: err instanceof Error ? err.stack : String(err) });
    const code = err instanceof ExecError ? (err.kind === 'bad-request' ? DAEMON_ERROR_CODES.limit : DAEMON_ERROR_CODES.execFailed) : DAEMON_ERROR_CODES.internal;
    conclude(ctx, vm, work, sink, { decision: work.decision === undefined ? 'error' : work.decision.allow ? 'allow' : 'deny', code, reason: message(err) }, {
      type: 'ERROR',
      body: errorBody(code, guestText(err, vm, work)),
    });
  }
}

async function pipeline(ctx: PipelineContext, vm: VmIdentity, work: Work, sink: WorkSink): Promise<void> {
  const req = work.request;
  let uploaded: readonly Uint8Array[] | undefined;
  // An upload is measured once, here: the canonical chunks that were hashed are what is run
  // (run() does not read the store file back and hash it a third time; install() hashes it
  // while it writes it, or checks the copy already there).
  let verified: VerifiedBinary | undefined;
  if (req.upload !== undefined) {
    // The frames' payloads as they arrived: measured and installed through one reader, never
    // joined into a further copy of the whole upload.
    uploaded = work.chunks.splice(0);
    try {
      verified = await verifyBytes(uploaded, '(upload)', { algo: 'sha256', profile: 'v1' });
      work.measurement = verified.measurement;
    } catch (err) {
      if (!(err instanceof VirtOffloadError)) throw err;
      if (work.done) return;
      conclude(ctx, vm, work, sink, { decision: 'error', code: DAEMON_ERROR_CODES.unmeasurable, reason: message(err) }, {
        type: 'ERROR',
        body: errorBody(DAEMON_ERROR_CODES.unmeasurable, `the upload cannot be measured: ${message(err)}`),
      });
      return;
    }
  } else {
    work.measurement = req.measurement!;
  }
  if (work.done) return;
  const measurement = work.measurement;
  // Decided with the policy in force once the binary is measured, and decided again wherever
  // the request waited (for the store lock, for the file's measurement): a reload meanwhile
  // may have revoked it, and a revoked binary must neither be installed again nor run.
  let snapshot = ctx.snapshot();
  let decision = decide(snapshot, vm, measurement);
  const policyOf = (snap: PolicySnapshot | undefined) => ({ commit: snap?.commit ?? null, ...(snap !== undefined && ctx.uncommitted?.(snap) === true ? { uncommitted: true } : {}) });
  let policy = policyOf(snapshot);
  work.decision = decision;
  /** The policy entry in force now, or undefined (and the request answered DENIED) when it refuses. */
  const allowedEntry = (): PolicyEntry | undefined => {
    const now = ctx.snapshot();
    if (now !== snapshot) {
      snapshot = now;
      decision = decide(now, vm, measurement);
      policy = policyOf(now);
      work.decision = decision;
    }
    if (decision.allow) return decision.entry;
    conclude(ctx, vm, work, sink, { decision: 'deny', code: decision.code, reason: decision.reason, ...policy }, {
      type: 'DENIED',
      body: { measurement, code: decision.code, reason: clipText(decision.reason, 4096) },
    });
    return undefined;
  };
  let entry = allowedEntry();
  if (entry === undefined) return;
  let path: string;
  if (uploaded !== undefined) {
    const bytes = uploaded;
    try {
      const result = await ctx.storeLock.run(async () => {
        entry = allowedEntry();
        return entry === undefined ? undefined : install(ctx.store, { measurement, name: entry.name, version: entry.version }, chunksReader(bytes));
      });
      if (result === undefined) return;
      path = result.path;
      // Installed: the frames' payloads are not needed again. Dropped here, since this paused
      // function would otherwise keep them (a whole upload, up to --max-upload) through the run.
      uploaded = undefined;
      if (result.action === 'installed' || result.action === 'repaired') {
        ctx.installed?.({ measurement, name: entry.name, version: entry.version, vm: vm.name, repaired: result.action === 'repaired', commit: policy.commit });
      }
    } catch (err) {
      if (!(err instanceof VirtOffloadError) || work.done) throw err;
      conclude(ctx, vm, work, sink, { decision: 'allow', code: DAEMON_ERROR_CODES.installFailed, reason: message(err), ...policy }, {
        type: 'ERROR',
        body: errorBody(DAEMON_ERROR_CODES.installFailed, `the host could not install ${entry.name} ${entry.version}; the reason is in the host's audit log (VM ${vm.name}, request ${work.requestId})`),
      });
      return;
    }
  } else {
    try {
      // Found, not hashed: run() measures the file and runs only the bytes it hashed.
      path = locate(ctx.store, measurement).path;
    } catch (err) {
      if (!(err instanceof VirtOffloadError) || work.done) throw err;
      conclude(ctx, vm, work, sink, { decision: 'allow', code: DAEMON_ERROR_CODES.notInstalled, reason: message(err), ...policy }, {
        type: 'ERROR',
        body: errorBody(DAEMON_ERROR_CODES.notInstalled, `${entry.name} ${entry.version} is approved but not installed on the host; submit the binary itself`),
      });
      return;
    }
  }
  if (work.done) return;
  if (verified !== undefined) {
    verified = { ...verified, path };
    ctx.verified?.remember(verified);
  } else if (ctx.verified !== undefined) {
    // The image measured when this binary last ran (or was uploaded), else the file measured now.
    verified = await ctx.verified.load(path, measurement, ctx.execConfig);
  }
  if (work.done) return;
  // The entry in force now: its limits and interpreter are the ones the run gets.
  entry = allowedEntry();
  if (entry === undefined) return;
  const result = await run({
    binary: verified === undefined ? { path, measurement } : { verified },
    argv: req.argv,
    env: req.env,
    limits: entry.limits,
    interpreter: entry.interpreter,
    sandbox: ctx.sandbox,
    signal: work.abort.signal,
    // The VM's runs share one cgroup: a VM starting many at once slows its own, not another's.
    shareGroup: vm.name,
    onStdout: (chunk) => sink.output(work, 'STDOUT', chunk),
    onStderr: (chunk) => sink.output(work, 'STDERR', chunk),
    ...(ctx.execConfig === undefined ? {} : { config: ctx.execConfig }),
  });
  if (work.done) return;
  const durationMs = Math.max(0, Math.round(result.durationMs));
  conclude(
    ctx,
    vm,
    work,
    sink,
    {
      decision: 'allow',
      ...policy,
      exitCode: result.exitCode,
      signal: result.signal,
      runMs: durationMs,
      sandbox: result.sandbox,
      limitsHit: Object.entries(result.limitsHit).filter(([, hit]) => hit).map(([k]) => k),
    },
    {
      type: 'EXIT',
      body: { exitCode: result.exitCode, signal: result.signal, durationMs, limitsHit: result.limitsHit, measurement, name: entry.name, version: entry.version },
    },
  );
}

/** Append the request's one audit record (flushed), then write its final reply. */
export function conclude(ctx: PipelineContext, vm: VmIdentity, work: Work, sink: WorkSink, facts: AuditRecord, reply: FinalReply): void {
  if (work.done) return;
  if (!record(ctx, vm, work, facts)) {
    // Fail closed: a decision that is not on disk is not announced; the guest learns only that the host failed.
    sink.finish(work, { type: 'ERROR', body: errorBody(DAEMON_ERROR_CODES.internal, 'the host could not write its audit log') });
    return;
  }
  sink.finish(work, reply);
}

/** The audit record of a request, written once (later calls do nothing); false when the log failed (logged loudly). */
export function record(ctx: PipelineContext, vm: VmIdentity, work: Work, facts: AuditRecord): boolean {
  if (work.done) return true;
  work.done = true;
  const entry = work.decision?.entry;
  try {
    appendRecord(ctx, vm, work, entry, facts);
    return true;
  } catch (err) {
    ctx.log.error(`AUDIT LOG FAILED for request ${work.requestId} of VM ${vm.name}: ${message(err)}`, { vm: vm.name, measurement: work.measurement });
    return false;
  }
}

function appendRecord(ctx: PipelineContext, vm: VmIdentity, work: Work, entry: { name: string; version: string } | undefined, facts: AuditRecord): void {
  ctx.audit.append({
    event: 'request',
    vm: vm.name,
    uuid: vm.uuid,
    requestId: work.requestId,
    measurement: work.measurement ?? null,
    name: entry?.name ?? null,
    version: entry?.version ?? null,
    guestName: work.request.name ?? null,
    bytes: work.request.upload ?? 0,
    argc: work.request.argv.length,
    ...(work.uploadMs === undefined ? {} : { uploadMs: work.uploadMs }),
    ...facts,
    durationMs: Math.round(performance.now() - work.started),
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * What the guest is told about a failure. A request the policy's limits refuse is the guest's
 * to fix, so it gets the reason (argument counts and sizes, no host facts). Anything else is the
 * host's business: store and sandbox errors name host paths, cgroups and tools, which a guest
 * has no need to learn; it gets the code and where the admin finds the reason.
 */
function guestText(err: unknown, vm: VmIdentity, work: Work): string {
  if (err instanceof ExecError && err.kind === 'bad-request') return message(err);
  return `the host could not run the request; the reason is in the host's audit log (VM ${vm.name}, request ${work.requestId})`;
}

/** ERROR bodies are capped at 4096 characters by the protocol. */
export function errorBody(code: string, text: string): ErrorReport {
  return { code, message: clipText(text, 4096) };
}

