// `virt-offload policy update NAME --version V (--binary FILE | --patch DELTA --from OLD --base FILE)`:
// approve version V and mark the version it replaces `superseded by=V`, both lines in one
// atomic file write. With --patch, the new binary is rebuilt in memory from the old one and a
// VCDIFF delta: the base must measure as version OLD, the delta is checked in full before it
// is decoded, and the result is measured (never written anywhere) before the policy is.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { UsageError, VirtOffloadError } from '../../../lib/errors.js';
import { fileError, measureFile, readOpenFile } from '../../../lib/io/index.js';
import { bufferReader, measure, type Algorithm } from '../../../lib/measure/index.js';
import { applyVcdiff, MAX_TARGET_BYTES, PatchError } from '../../../lib/patch/index.js';
import { appendVersionLine, parseSize, PolicyError, setVersionStatus, type BinaryPolicy, type PolicyEntry } from '../../../lib/policy/index.js';
import { reportFailure } from '../../exit.js';
import { checkBinaryName, checkVersion, commitEdit, describeVersions, fileText, findBinary, loadRepo, printResult, stringOption, versionLines } from './write-repo.js';

export async function runPolicyUpdate(name: string, opts: Record<string, unknown>): Promise<number> {
  try {
    const version = stringOption(opts, 'version') ?? '';
    const binaryPath = stringOption(opts, 'binary');
    const patchPath = stringOption(opts, 'patch');
    const from = stringOption(opts, 'from');
    const basePath = stringOption(opts, 'base');
    checkBinaryName(name, 'NAME');
    checkVersion(version, '--version');
    if (from !== undefined) checkVersion(from, '--from');
    if ((binaryPath === undefined) === (patchPath === undefined)) throw new UsageError('give the new version as exactly one of --binary FILE or --patch DELTA', binaryPath === undefined ? '--binary' : '--patch');
    if (patchPath !== undefined) {
      if (from === undefined) throw new UsageError('--patch needs --from OLDVERSION: the version the delta applies to', '--from');
      if (basePath === undefined) {
        throw new UsageError(`--patch needs --base FILE: the binary of ${name} ${from} the delta applies to (finding it in a host store of old binaries is not implemented yet)`, '--base');
      }
    } else if (basePath !== undefined) {
      throw new UsageError('--base is only used with --patch', '--base');
    }
    const maxTargetBytes = maxSizeOption(opts);

    const repo = loadRepo(stringOption(opts, 'repo') ?? '.');
    const binary = findBinary(repo, name);
    if (binary.versions.has(version)) throw new PolicyError(`${binary.file}: ${name} already has a version ${version} (versions: ${describeVersions(binary)})`);
    const old = supersededVersion(binary, from);

    let source: Record<string, unknown>;
    let m: string;
    if (binaryPath !== undefined) {
      const measured = await measureFile(binaryPath, { algo: 'sha256' });
      m = measured.measurement;
      source = { binary: binaryPath, format: measured.format, size: measured.size };
    } else {
      const base = readBounded(basePath!, '--base', MAX_TARGET_BYTES);
      await checkBase(base, basePath!, old);
      const delta = readBounded(patchPath!, '--patch', MAX_TARGET_BYTES);
      let bytes: Uint8Array;
      try {
        bytes = applyVcdiff(base, delta, { maxTargetBytes });
      } catch (err) {
        if (err instanceof PatchError) throw new VirtOffloadError(err.code, `--patch ${patchPath}: ${err.message}`, { cause: err });
        throw err;
      }
      const measured = await measure(bufferReader(bytes), { algo: 'sha256' });
      m = measured.measurement;
      source = { patch: patchPath, base: basePath, from: old.version, format: measured.format, size: measured.size };
    }
    const listed = repo.snapshot.index.get(m);
    if (listed !== undefined) {
      throw new PolicyError(`the new binary's ${m} is already listed at ${listed.file}:${listed.line} as ${listed.name} ${listed.version} (${listed.status}); a measurement is listed once`);
    }

    // Append first: `by=V` must name a version that exists when the file is parsed again.
    const before = fileText(repo, binary.file);
    const added = appendVersionLine(before, { status: 'approved', version, measurements: [m] }, { file: binary.file });
    const text = setVersionStatus(added, old.version, { status: 'superseded', by: version }, { file: binary.file });
    commitEdit(repo, binary.file, text, before);

    printResult(
      opts.json === true,
      { action: 'update', name, version, supersedes: old.version, file: binary.file, measurement: m, ...source },
      `updated ${binary.file}: approved ${name} ${version} (${m}), ${old.version} superseded by ${version}`,
      versionLines(binary.file, text, [old.version, version]),
      binary.vms.length === 0 ? [`${binary.file} has no vms line: no VM may run ${name} until one is added`] : [],
    );
    return 0;
  } catch (err) {
    return reportFailure(err);
  }
}

/** --from, or the binary's only approved version; it must be approved now. */
function supersededVersion(binary: BinaryPolicy, from: string | undefined): PolicyEntry {
  if (from !== undefined) {
    const e = binary.versions.get(from);
    if (e === undefined) throw new PolicyError(`${binary.file}: ${binary.name} has no version ${from} (versions: ${describeVersions(binary)})`);
    if (e.status !== 'approved') {
      throw new PolicyError(`${binary.file}:${e.line}: ${binary.name} ${from} is ${e.status}${e.status === 'superseded' ? ` by ${e.supersededBy}` : ''}, not approved; only an approved version can be superseded`);
    }
    return e;
  }
  const approved = [...binary.versions.values()].filter((v) => v.status === 'approved');
  if (approved.length === 1) return approved[0]!;
  if (approved.length === 0) throw new PolicyError(`${binary.file}: ${binary.name} has no approved version to supersede (versions: ${describeVersions(binary)}); use policy add`);
  throw new UsageError(`${binary.name} has ${approved.length} approved versions (${approved.map((v) => v.version).join(', ')}): say which one is superseded with --from`, '--from');
}

/** The base must be a binary of version OLD: one of its listed measurements, recomputed. */
async function checkBase(base: Uint8Array, path: string, old: PolicyEntry): Promise<void> {
  const algos = [...new Set(old.measurements.map((m) => m.slice(0, m.indexOf(':')) as Algorithm))];
  const got: string[] = [];
  for (const algo of algos) {
    const r = await measure(bufferReader(base), { algo });
    if (old.measurements.includes(r.measurement)) return;
    got.push(r.measurement);
  }
  throw new PolicyError(
    `--base ${path}: wrong base: it measures ${got.join(' / ')}, but ${old.name} ${old.version} is listed (${old.file}:${old.line}) as ${old.measurements.join(' ')}; give the binary of ${old.name} ${old.version}`,
  );
}

/** A whole regular file in memory, refusing anything larger than `max` bytes before reading. */
function readBounded(path: string, option: string, max: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fileError(path, `cannot open ${option}`, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new VirtOffloadError('EIO', `${option} ${path}: not a regular file`);
    if (st.size > max) throw new VirtOffloadError('EIO', `${option} ${path}: ${st.size} bytes, more than the limit of ${max}`);
    const bytes = readOpenFile(fd, st.size);
    if (bytes.length !== st.size) throw new VirtOffloadError('EIO', `${option} ${path}: shrank while it was read (${bytes.length} of ${st.size} bytes)`);
    return bytes;
  } catch (err) {
    if (err instanceof VirtOffloadError) throw err;
    throw fileError(path, `cannot read ${option}`, err);
  } finally {
    closeSync(fd);
  }
}

/** --max-size BYTES (if the option is registered): a lower bound than the 1 GiB ceiling. */
function maxSizeOption(opts: Record<string, unknown>): number {
  const raw = opts.maxSize;
  if (raw === undefined) return MAX_TARGET_BYTES;
  const text = String(raw);
  const value = parseSize(text) ?? NaN;
  if (!(value > 0 && value <= MAX_TARGET_BYTES)) throw new UsageError(`--max-size ${text}: expected a size up to 1G (bytes, or K, M, G)`, '--max-size');
  return value;
}
