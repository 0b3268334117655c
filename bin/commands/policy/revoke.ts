// `virt-offload policy revoke NAME --version V --reason TEXT`: the version stays listed with
// its measurements (the history is kept) but is denied, with the reason, from now on.
import { UsageError } from '../../../lib/errors.js';
import { PARSE_LIMITS, PolicyError, setVersionStatus } from '../../../lib/policy/index.js';
import { reportFailure } from '../../exit.js';
import { checkBinaryName, checkVersion, commitEdit, describeVersions, fileText, findBinary, loadRepo, printResult, stringOption, versionLines } from './write-repo.js';

export async function runPolicyRevoke(name: string, opts: Record<string, unknown>): Promise<number> {
  try {
    const version = stringOption(opts, 'version') ?? '';
    const reason = stringOption(opts, 'reason') ?? '';
    checkBinaryName(name, 'NAME');
    checkVersion(version, '--version');
    if (reason.trim() === '') throw new UsageError('--reason: give a reason (it is shown to reviewers and in every denial)', '--reason');
    if (reason.length > PARSE_LIMITS.maxReasonChars) throw new UsageError(`--reason: ${reason.length} characters, at most ${PARSE_LIMITS.maxReasonChars}`, '--reason');
    // Line breaks and other control characters would split or hide text in the file.
    if (/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/.test(reason)) throw new UsageError('--reason: control characters (line breaks included) are not allowed', '--reason');

    const repo = loadRepo(stringOption(opts, 'repo') ?? '.');
    const binary = findBinary(repo, name);
    const entry = binary.versions.get(version);
    if (entry === undefined) throw new PolicyError(`${binary.file}: ${name} has no version ${version} (versions: ${describeVersions(binary)})`);
    if (entry.status === 'revoked') throw new PolicyError(`${binary.file}:${entry.line}: ${name} ${version} is already revoked (reason: ${JSON.stringify(entry.reason)})`);

    const before = fileText(repo, binary.file);
    const text = setVersionStatus(before, version, { status: 'revoked', reason }, { file: binary.file });
    commitEdit(repo, binary.file, text, before);

    const warnings: string[] = [];
    const approvedLeft = [...binary.versions.values()].filter((v) => v.status === 'approved' && v.version !== version);
    if (entry.status === 'approved' && approvedLeft.length === 0) warnings.push(`${name} has no approved version left: no VM may run it`);
    printResult(
      opts.json === true,
      { action: 'revoke', name, version, file: binary.file, previousStatus: entry.status, reason },
      `revoked ${name} ${version} in ${binary.file} (was ${entry.status})`,
      versionLines(binary.file, text, [version]),
      warnings,
    );
    return 0;
  } catch (err) {
    return reportFailure(err);
  }
}
