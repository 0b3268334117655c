// `virt-offload store gc --repo DIR`: remove every installed measurement the policy at DIR
// does not approve for some VM (superseded, revoked, unlisted, no VMs), and leftovers of
// interrupted writes older than a safety margin. Fails closed: a policy that does not load,
// or a directory with no policy files, removes nothing.
import { DEFAULT_AUDIT_LOG, openAuditLog, type AuditLog } from '../../../lib/audit/index.js';
import { VirtOffloadError } from '../../../lib/errors.js';
import { PolicyError, type PolicySnapshot } from '../../../lib/policy/index.js';
import { loadPolicySnapshot, uncommittedPolicyChanges } from '../../../lib/policy/loader.js';
import { reconcile, recover, type ReconcileRecord, type Store } from '../../../lib/store/index.js';
import { EXIT, reportFailure } from '../../exit.js';
import { openExistingStore } from './common.js';

/** Temp files and half installs younger than this may belong to a live daemon: left alone. */
const RECOVER_MARGIN_MS = 10 * 60 * 1000;

export async function runStoreGc(opts: Record<string, unknown>): Promise<number> {
  const json = opts.json === true;
  const repo = typeof opts.repo === 'string' ? opts.repo : '.';
  try {
    const store = openExistingStore(opts);
    const snapshot = loadSnapshot(repo);
    if (typeof snapshot === 'number') return snapshot;
    if (snapshot.files.length === 0) {
      process.stderr.write(`virt-offload: no *.policy files under ${repo}: refusing to remove everything from the store (check --repo)\n`);
      return EXIT.failed;
    }
    // The work tree is what gc follows; edits nobody committed are said so, and recorded.
    const dirty = snapshot.commit !== undefined && uncommittedPolicyChanges(repo) === true;
    if (dirty) process.stderr.write(`virt-offload: warning: ${repo} has uncommitted changes to *.policy files; gc follows them, and its records say "uncommitted": true\n`);
    // Every change is on disk in the audit log before gc goes on (fails closed: no log, no gc).
    const audit = openAuditLog(typeof opts.auditLog === 'string' ? opts.auditLog : DEFAULT_AUDIT_LOG);
    try {
      return await collect(store, snapshot, audit, json, dirty);
    } finally {
      audit.close();
    }
  } catch (err) {
    return reportFailure(err);
  }
}

/** Recover leftovers and remove what the snapshot does not approve, auditing each change. */
async function collect(store: Store, snapshot: PolicySnapshot, audit: AuditLog, json: boolean, dirty: boolean): Promise<number> {
  for (const r of recover(store, { minAgeMs: RECOVER_MARGIN_MS }).removed) {
    audit.append({ event: 'store', action: 'recover', path: r.path, reason: r.why, command: 'store gc' });
    process.stdout.write(json ? `${JSON.stringify({ action: 'recover', path: r.path, reason: r.why })}\n` : `removed ${r.path} (${r.why})\n`);
  }
  const print = (r: ReconcileRecord): void => {
    // The daemon's form of a store change (event store), so one filter finds both.
    audit.append({ event: 'store', ...r, ...(dirty ? { uncommitted: true } : {}), command: 'store gc' });
    if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      const verb = r.action === 'uninstall' ? 'removed' : r.action;
      process.stdout.write(`${verb} ${r.measurement}${r.name === undefined ? '' : ` ${r.name} ${r.version ?? ''}`} (${r.reason})\n`);
    }
  };
  // No byte sources: gc only removes. Superseded versions go even if no successor is installed.
  const summary = await reconcile(store, snapshot, { log: print, keepUntilSuccessor: false });
  if (!json) process.stdout.write(`store ${store.root}: ${summary.removed.length} removed, ${summary.kept.length} approved kept${snapshot.commit === undefined ? '' : ` (policy commit ${snapshot.commit.slice(0, 12)})`}\n`);
  if (summary.failed.length > 0) {
    process.stderr.write(`virt-offload: ${summary.failed.length} removal${summary.failed.length === 1 ? '' : 's'} failed:\n${summary.failed.map((f) => `  ${f.measurement}: ${f.error}`).join('\n')}\n`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

/** The work tree's snapshot, or its errors printed and the exit code (nothing is removed). */
function loadSnapshot(repo: string): PolicySnapshot | number {
  try {
    return loadPolicySnapshot(repo);
  } catch (err) {
    if (err instanceof PolicyError && err.errors.length > 0) {
      for (const e of err.errors) process.stderr.write(`${e.message}\n`);
      process.stderr.write(`virt-offload: ${err.summary}: nothing removed (run \`virt-offload policy check ${repo}\`)\n`);
      return EXIT.failed;
    }
    if (err instanceof VirtOffloadError) return reportFailure(err);
    throw err;
  }
}
