// `virt-offload policy add FILE --name N --version V [--vm MEMBER...]`: measure FILE (sha256,
// profile v1) and approve it as version V of binary N: a new `binaries/N.policy`, or one more
// version line in the binary's existing file. Refuses a measurement that is already listed
// anywhere in the repository (it would approve the same bytes under two names or versions).
import { UsageError } from '../../../lib/errors.js';
import { measureFile } from '../../../lib/io/index.js';
import { appendVersionLine, PolicyError, renderBinaryFile, type VersionSpec, type VmsSpec } from '../../../lib/policy/index.js';
import { reportFailure } from '../../exit.js';
import { checkBinaryName, checkVersion, commitEdit, fileText, loadRepo, parseVmOption, printResult, stringOption, versionLines } from './write-repo.js';

export async function runPolicyAdd(file: string, opts: Record<string, unknown>): Promise<number> {
  try {
    const name = stringOption(opts, 'name') ?? '';
    const version = stringOption(opts, 'version') ?? '';
    checkBinaryName(name, '--name');
    checkVersion(version, '--version');
    const vms = parseVmOption(Array.isArray(opts.vm) ? (opts.vm as string[]) : undefined);
    const repo = loadRepo(stringOption(opts, 'repo') ?? '.');

    const measured = await measureFile(file, { algo: 'sha256' });
    const m = measured.measurement;
    const listed = repo.snapshot.index.get(m);
    if (listed !== undefined) {
      throw new PolicyError(`${file}: ${m} is already listed at ${listed.file}:${listed.line} as ${listed.name} ${listed.version} (${listed.status}); a measurement is listed once`);
    }

    const spec: VersionSpec = { status: 'approved', version, measurements: [m] };
    const existing = repo.snapshot.binaries.get(name);
    const warnings: string[] = [];
    let path: string;
    let before: string | undefined;
    let text: string;
    if (existing !== undefined) {
      path = existing.file;
      if (existing.versions.has(version)) {
        throw new PolicyError(`${path}: ${name} already has a version ${version} (versions: ${[...existing.versions.keys()].join(', ')})`);
      }
      if (vms !== undefined && !sameVms(vms, existing.vms)) {
        throw new UsageError(
          `--vm: ${name} already exists (${path}) with ${existing.vms.length === 0 ? 'no vms line' : `vms ${existing.vms.join(' ')}`}; --vm only sets the VMs of a new binary (changing them re-scopes every version: edit the vms line in a reviewed change)`,
          '--vm',
        );
      }
      before = fileText(repo, path);
      text = appendVersionLine(before, spec, { file: path });
      if (existing.vms.length === 0) warnings.push(`${path} has no vms line: no VM may run ${name} until one is added`);
    } else {
      path = `binaries/${name}.policy`;
      if (repo.files.some((f) => f.path === path)) throw new PolicyError(`${path} exists but does not define binary ${name}`);
      text = renderBinaryFile({ name, versions: [spec], ...(vms === undefined ? {} : { vms }) }, { file: path });
      if (vms === undefined) warnings.push(`no --vm given: ${path} has no vms line, so no VM may run ${name} until one is added`);
    }
    // The binary's interpreter decides how the host runs it; none runs only an ELF of the host's
    // kind (lib/exec planCommand), and `policy add` writes no interpreter line for a new binary.
    const interpreter = existing?.interpreter.kind ?? 'none';
    if (interpreter === 'none' && measured.format !== 'elf') {
      warnings.push(`${file} is ${measured.format === 'raw' ? 'not a binary the measurement core knows (a script?)' : `a ${measured.format.toUpperCase()} binary`}, and ${name} has no interpreter line: the host runs only ELF executables without one; add 'interpreter PATH' (a script) or 'interpreter wasi' (WebAssembly) to ${path} (policies/README.md)`);
    }
    commitEdit(repo, path, text, before);

    const lines = versionLines(path, text, [version]);
    printResult(
      opts.json === true,
      { action: 'add', name, version, file: path, created: before === undefined, measurement: m, format: measured.format, size: measured.size, source: file },
      `${before === undefined ? 'created' : 'updated'} ${path}: approved ${name} ${version} (${m})`,
      lines,
      warnings,
    );
    return 0;
  } catch (err) {
    return reportFailure(err);
  }
}

function sameVms(given: VmsSpec, existing: readonly string[]): boolean {
  const a = given === 'all' ? ['all'] : [...given];
  return a.length === existing.length && a.every((m) => existing.includes(m));
}
