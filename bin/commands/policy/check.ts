// `virt-offload policy check [DIR]`: validate a policy repository for CI. Exit 0 when every
// file parses and every rule holds, 1 with each problem as `file:line: message` (paths
// relative to DIR, so CI problem matchers can point at them), 2 for usage errors.
import { VirtOffloadError } from '../../../lib/errors.js';
import { PolicyError, type PolicySnapshot } from '../../../lib/policy/index.js';
import { loadPolicySnapshot, workTreeMatchesHead } from '../../../lib/policy/loader.js';
import { EXIT, reportFailure } from '../../exit.js';

export async function runPolicyCheck(dir: string, opts: Record<string, unknown>): Promise<number> {
  const json = opts.json === true;
  const requireSigned = typeof opts.requireSigned === 'string' ? opts.requireSigned : undefined;
  let snapshot: PolicySnapshot;
  try {
    snapshot = loadPolicySnapshot(dir, requireSigned === undefined ? {} : { requireSigned });
  } catch (err) {
    if (!(err instanceof VirtOffloadError)) return reportFailure(err);
    if (json) {
      const errors = err instanceof PolicyError ? err.errors.map((e) => ({ file: e.file, line: e.line, message: e.detail })) : [];
      const { errors: _listed, ...error } = err.toJSON();
      process.stdout.write(`${JSON.stringify({ ok: false, message: err instanceof PolicyError ? err.summary : err.message.split('\n')[0], errors, error })}\n`);
    }
    if (err instanceof PolicyError && err.errors.length > 0) {
      if (!json) for (const e of err.errors) process.stdout.write(`${e.message}\n`);
      // The summary comes after the list it introduces elsewhere ("…has 2 errors:").
      process.stderr.write(`virt-offload: ${err.summary}${json ? '' : ' (listed above)'}\n`);
      return EXIT.failed;
    }
    return json ? EXIT.failed : reportFailure(err);
  }
  const stats = count(snapshot);
  // Valid (the daemon would deny everything), but most likely the wrong directory.
  if (snapshot.files.length === 0) process.stderr.write(`virt-offload: warning: no *.policy files under ${dir}\n`);
  // Without --require-signed the work tree may hold changes HEAD does not: say so.
  const uncommitted = snapshot.commit !== undefined && requireSigned === undefined && !workTreeMatchesHead(dir);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: true, commit: snapshot.commit ?? null, uncommitted, signed: requireSigned !== undefined, files: snapshot.files.length, ...stats })}\n`);
    return EXIT.ok;
  }
  const commit = snapshot.commit === undefined ? 'not a git commit' : `commit ${snapshot.commit.slice(0, 12)}${uncommitted ? ' + uncommitted changes' : ''}${requireSigned !== undefined ? ' (signature verified)' : ''}`;
  process.stdout.write(`policy OK: ${plural(stats.binaries, 'binary', 'binaries')}, ${plural(stats.versions, 'version')}, ${plural(stats.measurements, 'measurement')}, ${commit}\n`);
  return EXIT.ok;
}

function count(s: PolicySnapshot): { binaries: number; versions: number; measurements: number; groups: number } {
  let versions = 0;
  for (const b of s.binaries.values()) versions += b.versions.size;
  return { binaries: s.binaries.size, versions, measurements: s.index.size, groups: s.groups.size };
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
