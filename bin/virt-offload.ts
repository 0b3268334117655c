// The `virt-offload` command: argv → lib → exit code. Each subcommand's code is imported
// only when that subcommand runs, so `measure` does not pay for the daemon's dependencies.
// It is shipped as one bundle (scripts/bundle.mjs): Node's start-up is the floor of every
// command, and resolving dozens of small modules would add a third to it.
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../lib/version.js';
import { EXIT, reportFailure } from './exit.js';

const program = new Command('virt-offload')
  .description('Measure binaries handed over by virtual machines and run them only if a git-kept allowlist approves them.')
  .version(`virt-offload ${VERSION} (measurement profile v1)`, '-V, --version')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .addHelpText('after', `
Exit codes:
  0  success
  1  the operation failed for at least one input (each failure is reported)
  2  usage error (unknown option, bad value, missing argument)`);

program
  .command('measure')
  .summary('print the measurement of binaries (sha256sum-style lines)')
  .description(`Measure each FILE with the v1 profile: ELF, PE and WebAssembly binaries are canonicalized
(metadata, debug data and signatures left out, by the format's loading rules); anything else is
hashed whole. The format is chosen by magic bytes, never by name.`)
  .argument('<file...>', 'files to measure')
  .option('--json', 'print one JSON object per file (path, measurement, format, profile, size, hashedBytes)')
  .addOption(new Option('--algo <algo>', 'digest algorithm').choices(['sha256', 'blake3']).default('sha256'))
  .addOption(new Option('--profile <profile>', 'measurement profile (authenticode: the standard PE signing digest)').choices(['v1', 'authenticode']).default('v1'))
  .option('--explain', 'list every kept, zeroed, rewritten and excluded byte range with its reason')
  .option('--canonical <out>', 'write the canonical bytes (what the host installs) to OUT, "-" for stdout; one FILE only')
  .addHelpText('after', `
Output: "<algo>:<hex>  <path>" per file, like sha256sum, so grep/sort/awk work.
Examples:
  virt-offload measure /usr/bin/ls
  virt-offload measure --json ./tool | jq -r .measurement
  virt-offload measure --explain ./tool
  virt-offload measure --canonical - ./tool | sha256sum   # equals the measurement
Exit codes: 0 all measured, 1 a file could not be measured (message names it and why), 2 usage.`)
  .action(async (files: string[], opts: Record<string, unknown>) => {
    const { runMeasure } = await import('./commands/measure.js');
    process.exitCode = await runMeasure(files, opts);
  });

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help / version text).
    const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
    process.exitCode = ok ? EXIT.ok : EXIT.usage;
  } else {
    process.exitCode = reportFailure(err);
  }
});
