// The `virt-offload` command: argv → lib → exit code. Each subcommand's code is imported
// only when that subcommand runs, so `measure` does not pay for the daemon's dependencies.
// It is shipped as one bundle (scripts/bundle.mjs): Node's start-up is the floor of every
// command, and resolving dozens of small modules would add a third to it.
import { Command, CommanderError, Option } from 'commander';
import { UsageError } from '../lib/errors.js';
import { VERSION } from '../lib/version.js';
import { endQuietlyOnClosedPipe, EXIT, reportFailure } from './exit.js';

endQuietlyOnClosedPipe();

/** Join the source-wrapped lines of each paragraph; blank and indented lines stay as they are. */
function unwrapParagraphs(text: string): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const previous = out[out.length - 1];
    const prose = (l: string | undefined): l is string => l !== undefined && l !== '' && !/^\s/.test(l);
    if (prose(previous) && prose(line)) out[out.length - 1] = `${previous} ${line}`;
    else out.push(line);
  }
  return out.join('\n');
}

const program = new Command('virt-offload')
  .description('Measure binaries handed over by virtual machines and run them only if a git-kept allowlist approves them.')
  .version(`virt-offload ${VERSION} (measurement profile v1)`, '-V, --version')
  .showHelpAfterError('(run with --help for usage)')
  // Descriptions are written as source-wrapped paragraphs; let commander wrap them to the
  // terminal instead (a lone newline before a non-blank line becomes a space; blank lines and
  // indented lines such as examples stay). Subcommands inherit this.
  .configureHelp({ commandDescription: (cmd) => unwrapParagraphs(cmd.description()) })
  .exitOverride()
  // Root options only before the subcommand, so `policy add --version 1.2` is the subcommand's.
  .enablePositionalOptions()
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
Exit codes: 0 all measured, 1 a file could not be measured (message names it and why), 2 usage,
141 the reader of --canonical - closed the pipe early (as with | head).`)
  .action(async (files: string[], opts: Record<string, unknown>) => {
    const { runMeasure } = await import('./commands/measure.js');
    process.exitCode = await runMeasure(files, opts);
  });

// ---- policy: the allowlist repository -------------------------------------------------
// Literal import() paths: the bundler follows them, and each subcommand loads only its code.
const policy = program
  .command('policy')
  .summary('manage the allowlist: a git repository of *.policy files (see policies/README.md)')
  .description('Manage the allowlist: a git repository of *.policy files, reviewed as pull requests.\nThe format reference is policies/README.md.');

policy
  .command('check')
  .summary('validate a policy repository (exit 0 valid, 1 errors as file:line)')
  .argument('[dir]', 'policy repository work tree (the same as --repo; default .)')
  .option('--repo <dir>', 'policy repository work tree, as for the other policy commands')
  .option('--json', 'print the result as JSON')
  .option('--require-signed <allowed-signers>', "refuse unless HEAD's commit signature verifies against this allowed-signers file")
  .action(async (dir: string | undefined, opts: Record<string, unknown>) => {
    const repo = typeof opts.repo === 'string' ? opts.repo : undefined;
    if (dir !== undefined && repo !== undefined && dir !== repo) throw new UsageError(`give the repository once: DIR ${dir} and --repo ${repo} differ`, '--repo');
    const { runPolicyCheck } = await import('./commands/policy/check.js');
    process.exitCode = await runPolicyCheck(dir ?? repo ?? '.', opts);
  });

policy
  .command('list')
  .summary('list every binary and version with its status')
  .option('--repo <dir>', 'policy repository work tree', '.')
  .option('--json', 'one JSON object per version')
  .action(async (opts: Record<string, unknown>) => {
    const { runPolicyList } = await import('./commands/policy/list.js');
    process.exitCode = await runPolicyList(opts);
  });

policy
  .command('show')
  .summary("show one binary: versions, measurements, limits, VMs")
  .argument('<name>', 'binary name')
  .option('--repo <dir>', 'policy repository work tree', '.')
  .option('--json', 'print as JSON')
  .action(async (name: string, opts: Record<string, unknown>) => {
    const { runPolicyShow } = await import('./commands/policy/show.js');
    process.exitCode = await runPolicyShow(name, opts);
  });

policy
  .command('diff')
  .summary('review summary of what a change approves, supersedes, revokes and re-scopes')
  .argument('[rev1]', 'older revision (default: HEAD, or HEAD~1 when the work tree is clean)')
  .argument('[rev2]', 'newer revision (default: the work tree)')
  .option('--repo <dir>', 'policy repository (a git work tree)', '.')
  .option('--json', 'print the changes as a JSON array')
  .action(async (rev1: string | undefined, rev2: string | undefined, opts: Record<string, unknown>) => {
    const { runPolicyDiff } = await import('./commands/policy/diff.js');
    process.exitCode = await runPolicyDiff(rev1, rev2, opts);
  });

policy
  .command('add')
  .summary('measure FILE and approve it as a version of a binary')
  .argument('<file>', 'the binary to measure')
  .requiredOption('--name <name>', 'binary name (file binaries/<name>.policy)')
  .requiredOption('--version <version>', 'version to approve')
  .option('--vm <member...>', 'VMs that may run it: vm:NAME, uuid:UUID, group:NAME or all (it takes every word up to the next option: give FILE before it)')
  .option('--repo <dir>', 'policy repository work tree', '.')
  .option('--json', 'print what was written as JSON')
  .action(async (file: string, opts: Record<string, unknown>) => {
    const { runPolicyAdd } = await import('./commands/policy/add.js');
    process.exitCode = await runPolicyAdd(file, opts);
  });

policy
  .command('update')
  .summary('approve a new version and supersede the old one (from a binary or a VCDIFF patch)')
  .argument('<name>', 'binary name')
  .requiredOption('--version <version>', 'the new version')
  .option('--binary <file>', 'the new binary')
  .option('--patch <file>', 'a VCDIFF delta (RFC 3284, xdelta3 -e -A -S none -n -s OLD NEW) against --from')
  .option('--from <oldversion>', 'the version the patch applies to and that becomes superseded')
  .option('--base <file>', "the old version's binary the patch applies to")
  .option('--max-size <size>', 'refuse a patch whose output would be larger: bytes, or K, M, G (default and ceiling 1G)')
  .option('--repo <dir>', 'policy repository work tree', '.')
  .option('--json', 'print what was written as JSON')
  .action(async (name: string, opts: Record<string, unknown>) => {
    const { runPolicyUpdate } = await import('./commands/policy/update.js');
    process.exitCode = await runPolicyUpdate(name, opts);
  });

policy
  .command('revoke')
  .summary('revoke a version (it stays listed, with the reason)')
  .argument('<name>', 'binary name')
  .requiredOption('--version <version>', 'version to revoke')
  .requiredOption('--reason <text>', 'why (shown to reviewers and in denials)')
  .option('--repo <dir>', 'policy repository work tree', '.')
  .option('--json', 'print what was written as JSON')
  .action(async (name: string, opts: Record<string, unknown>) => {
    const { runPolicyRevoke } = await import('./commands/policy/revoke.js');
    process.exitCode = await runPolicyRevoke(name, opts);
  });

// ---- store: the host's content-addressed install store --------------------------------
const store = program
  .command('store')
  .summary('inspect and clean the install store (canonical bytes of approved binaries)')
  .description('The host keeps the canonical bytes of each installed binary under its measurement:\n<store>/objects/<algo>/<hex> (read-only) with a manifest in <store>/manifests/<algo>/<hex>.json.')
  .addHelpText('after', `
Exit codes: 0 done (verify: every object matches its measurement), 1 the store is missing or
unsafe, verify found a problem (each is named), or gc could not load the policy (nothing is
removed then), 2 usage.`);
const STORE_DIR = '/var/lib/virt-offload/store';
// Mirrors lib/audit's DEFAULT_AUDIT_LOG (not imported: the bundle would load the module eagerly).
const AUDIT_LOG = '/var/log/virt-offload/audit.jsonl';

store
  .command('ls')
  .summary('list installed measurements: name, version, size, installed-at')
  .option('--store <dir>', 'store directory', STORE_DIR)
  .option('--json', 'one JSON object per measurement')
  .action(async (opts: Record<string, unknown>) => {
    const { runStoreLs } = await import('./commands/store/ls.js');
    process.exitCode = await runStoreLs(opts);
  });

store
  .command('verify')
  .summary('re-hash every installed object (exit 1 naming any that differs or is incomplete)')
  .option('--store <dir>', 'store directory', STORE_DIR)
  .option('--json', 'one JSON object per file checked')
  .action(async (opts: Record<string, unknown>) => {
    const { runStoreVerify } = await import('./commands/store/verify.js');
    process.exitCode = await runStoreVerify(opts);
  });

store
  .command('gc')
  .summary('remove what the policy does not approve (superseded, revoked, unlisted)')
  .requiredOption('--repo <dir>', 'policy repository work tree')
  .option('--store <dir>', 'store directory', STORE_DIR)
  .option('--json', 'one JSON object per removal')
  .option('--audit-log <file>', 'append every removal to this audit log (JSON lines)', AUDIT_LOG)
  .action(async (opts: Record<string, unknown>) => {
    const { runStoreGc } = await import('./commands/store/gc.js');
    process.exitCode = await runStoreGc(opts);
  });

// ---- audit: what was decided and changed -------------------------------------------------
program
  .command('audit')
  .summary('show audit records (decisions, installs, removals), newest last')
  .option('--audit-log <file>', 'audit log to read', AUDIT_LOG)
  .option('--decision <decision>', 'only records with this decision (allow, deny…)')
  .option('--action <action>', 'only records of this store action (install, uninstall…)')
  .option('--measurement <m>', 'only records about this measurement')
  .option('--vm <name>', 'only records about this VM')
  .option('--since <iso-time>', 'only records at or after this time, e.g. 2026-11-23T00:00:00Z')
  .option('-n, --last <count>', 'only the last COUNT matching records')
  .option('--json', 'print the records as JSON lines')
  .action(async (opts: Record<string, unknown>) => {
    const { runAudit } = await import('./commands/audit.js');
    process.exitCode = await runAudit(opts);
  });

// ---- serve: the daemon ------------------------------------------------------------------
program
  .command('serve')
  .summary('run the daemon: per-VM offload sockets, measure → policy → store → sandboxed run')
  .description(`Run the host daemon. It listens on <run-dir>/control.sock (line JSON: add-vm, remove-vm,
reload, status; used by the hook and the CLI) and on <run-dir>/vm/<name>.sock per VM (the chardev
backend of its offload port). Each request is measured, decided against the policy at --repo
(no policy loaded: everything is denied), installed into --store, run in bubblewrap and
audited (flushed) before the reply. SIGHUP, a reload command or a new HEAD commit reloads the
policy; a failed reload keeps the last good one. Stops on SIGTERM or SIGINT.`)
  .option('--run-dir <dir>', 'directory of the control and VM sockets', '/run/virt-offload')
  .option('--repo <dir>', 'policy repository: a git work tree with a commit (required); uncommitted *.policy edits are enforced and flagged, unless --require-signed')
  .option('--store <dir>', 'store directory (created if missing)', STORE_DIR)
  .option('--audit-log <file>', 'audit log (JSON lines, appended and flushed)', AUDIT_LOG)
  .option('--unsandboxed <name>', 'run programs WITHOUT bubblewrap under this named profile (not recommended)')
  .option('--require-signed <allowed-signers>', "load only policy commits whose signature verifies against this allowed-signers file")
  .option('--max-upload <size>', 'largest binary a guest may upload: bytes, or K, M, G (default 64M)')
  .option('--max-concurrent <n>', 'requests in flight per VM (default 4)')
  .option('--watch-interval <ms>', 'check the policy repository HEAD this often, 0 to only reload on SIGHUP', '5000')
  .option('--patch-dir <dir>', 'VCDIFF deltas (*.vcdiff, between canonical images) a reload may apply to an installed version to install its approved successor')
  .option('--libvirt', "hot-plug the offload port of the VMs the libvirt hook adds, through libvirt-dbus (the VM's name is the domain's)")
  .option('--libvirt-timeout <ms>', 'time limit of each libvirt-dbus call (default 10000)')
  .option('--log-level <level>', 'error, warn, info or debug', 'info')
  .option('--json', 'log JSON lines instead of journald-style text')
  .addHelpText('after', `
Example:
  virt-offload serve --repo /etc/virt-offload/policy --run-dir /run/virt-offload --libvirt
Environment: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=32768 (as examples/virt-offload.service
  sets it) keeps the memory uploads pass through from growing the heap, whose page tables every
  bwrap fork copies.
Exit codes: 0 stopped by a signal, 1 could not start (the message says why), 2 usage.`)
  .action(async (opts: Record<string, unknown>) => {
    const { runServe } = await import('./commands/serve.js');
    process.exitCode = await runServe(opts);
  });

// ---- the running daemon, through its control socket ----------------------------------------
const RUN_DIR = '/run/virt-offload';
program
  .command('status')
  .summary("show the running daemon's state: the policy in force, each VM's socket and device, its memory")
  .option('--run-dir <dir>', "the daemon's --run-dir (its control socket is <run-dir>/control.sock)", RUN_DIR)
  .option('--json', "print the daemon's reply as JSON")
  .addHelpText('after', '\nExit codes: 0 shown, 1 no daemon answered (or it refused), 2 usage.')
  .action(async (opts: Record<string, unknown>) => {
    const { runStatus } = await import('./commands/daemon-ctl.js');
    process.exitCode = await runStatus(opts);
  });

program
  .command('reload')
  .summary('make the running daemon reload the policy now (as SIGHUP does) and say which commit is in force')
  .option('--run-dir <dir>', "the daemon's --run-dir", RUN_DIR)
  .option('--json', "print the daemon's reply as JSON")
  .addHelpText('after', '\nExit codes: 0 reloaded, 1 the reload failed (the last good policy stays in force) or no daemon answered, 2 usage.')
  .action(async (opts: Record<string, unknown>) => {
    const { runReload } = await import('./commands/daemon-ctl.js');
    process.exitCode = await runReload(opts);
  });

const vm = program
  .command('vm')
  .summary("add or remove a VM's socket on the running daemon (the libvirt hook does this by itself)")
  .description(`Add or remove a VM on the running daemon: its socket <run-dir>/vm/<name>.sock is the
chardev backend of the VM's offload port, and the VM's identity for the policy (vm:NAME, uuid:UUID).
On a host without libvirt: add the VM, then attach the port with \`virt-offload attach --qmp\`.`);
vm.command('add')
  .summary("create the VM's socket (idempotent for the same name and UUID); print its path")
  .argument('<name>', "the VM's name (the libvirt domain name; vm:NAME in the policy)")
  .requiredOption('--uuid <uuid>', "the VM's UUID (uuid:UUID in the policy)")
  .option('--attach', 'also hot-plug the offload port (needs serve --libvirt)')
  .option('--port <name>', 'name of the port in the guest, with --attach (default virt-offload.0)')
  .option('--owner <user[:group]>', "hand the socket (mode 0600) to QEMU's user, when QEMU runs as another user and libvirt does not do it")
  .option('--replace', 'when the name is already added with another UUID, replace that VM (its socket and connection go); refused without it')
  .option('--run-dir <dir>', "the daemon's --run-dir", RUN_DIR)
  .option('--json', "print the daemon's reply as JSON")
  .addHelpText('after', `
Example (no libvirt; QEMU runs as the user qemu):
  virt-offload vm add vm1 --uuid 6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162 --owner qemu
  virt-offload attach --qmp /run/vm1.qmp --socket /run/virt-offload/vm/vm1.sock
Exit codes: 0 added, 1 the daemon refused or did not answer, 2 usage.`)
  .action(async (name: string, opts: Record<string, unknown>) => {
    const { runVmAdd } = await import('./commands/daemon-ctl.js');
    process.exitCode = await runVmAdd(name, opts);
  });
vm.command('remove')
  .summary("remove the VM's socket (detaching its offload port first, when the daemon attached it)")
  .argument('<name>', "the VM's name")
  .option('--uuid <uuid>', 'remove it only if its UUID is this one')
  .option('--run-dir <dir>', "the daemon's --run-dir", RUN_DIR)
  .option('--json', "print the daemon's reply as JSON")
  .addHelpText('after', '\nExit codes: 0 removed, 1 no such VM, or the daemon refused or did not answer, 2 usage.')
  .action(async (name: string, opts: Record<string, unknown>) => {
    const { runVmRemove } = await import('./commands/daemon-ctl.js');
    process.exitCode = await runVmRemove(name, opts);
  });

// ---- submit: inside a guest, hand a binary to the host --------------------------------------
program
  .command('submit')
  .summary('inside a guest: run a binary on the host through the offload port (exit: its exit code)')
  .description("Upload FILE through the virtio-serial offload port and run it on the host with ARGS, if the host's policy approves its measurement; its stdout and stderr are streamed to ours. With --measurement, run a binary already installed on the host, without uploading it.")
  .argument('[file-and-args...]', 'FILE then its ARGS (put ARGS after --); with --measurement: ARGS only')
  .option('--measurement <m>', 'run the installed binary with this measurement (sha256:<hex>) instead of uploading')
  .option('--name <name>', 'what to call the binary in the host logs (default: the file name)')
  .option('--port <name|path>', 'port name under /dev/virtio-ports or in /sys/class/virtio-ports/*/name, or a path (with a /)', 'virt-offload.0')
  .option('--wait <seconds>', 'give up when the host does not answer within this time', '30')
  .option('--resync', 'send the 64 KiB resync marker before the first HELLO (after a client was killed mid-upload: saves the 1 s wait for the retry that sends it)')
  .addHelpText('after', `
Examples:
  virt-offload submit ./tool -- --verbose input.txt
  virt-offload submit --measurement sha256:3f5a… -- --help
  virt-offload submit --port /dev/vport1p1 ./tool
Exit codes: the program's own exit code, or
  125 the program was killed by a signal (named on stderr)
   77 denied by the host's policy (the measurement and the reason on stderr)
   70 the host refused the request (an ERROR reply, or a limit it announced: file size, arguments)
   71 the channel failed (no port, no answer within --wait, the host went away)
   66 FILE cannot be read
  130 interrupted (Ctrl-C); the request was cancelled on the host
  141 stdout was closed by its reader (e.g. | head); the request was cancelled on the host
    2 usage error
A program may itself exit with one of these; the message on stderr tells them apart.`)
  .action(async (operands: string[], opts: Record<string, unknown>) => {
    const { runSubmit } = await import('./commands/submit.js');
    // Exit at once: a read pending on a port device would otherwise keep the process alive.
    process.exit(await runSubmit(operands, opts));
  });

// ---- attach / detach: hot-plug the offload port over QMP or libvirt ---------------------
program
  .command('attach')
  .summary('hot-plug the offload port into a running VM (QMP socket or libvirt domain)')
  .description(`Give a running VM the virtio-serial port NAME whose chardev connects to the daemon's socket
for that VM (QEMU is the client and retries every second, so a daemon restart heals). Adds only
what is missing: our chardev, a virtio-serial-pci controller when the VM has no virtio-serial bus
(on pc onto pci.0, on q35 behind a free pcie-root-port), the port. Running it again is a no-op.
A step that fails removes what this run added.
With --libvirt DOMAIN instead: one <channel type='unix'> (mode connect, virtio target NAME) is
attached live through libvirt-dbus; the domain needs a virtio-serial controller, which libvirt
cannot hot-plug (\`virt-offload enable DOMAIN\` adds one for the next boot).`)
  .option('--qmp <socket>', "the VM's QMP unix socket (this or --libvirt)")
  .option('--libvirt <domain>', 'the running libvirt domain (this or --qmp)')
  .option('--socket <path>', "the daemon's listening socket for this VM, absolute (required)")
  .option('--name <name>', 'port name the guest sees', 'virt-offload.0')
  .option('--timeout <seconds>', 'wait this long for QEMU to confirm a removal when undoing', '10')
  .option('--json', 'print the result (steps carried out) as JSON')
  .addHelpText('after', `
Example:
  virt-offload attach --qmp /run/vm1/qmp.sock --socket /run/virt-offload/vm/vm1.sock
  virt-offload attach --libvirt vm1 --socket /run/virt-offload/vm/vm1.sock
Exit codes: 0 attached (or already was), 1 failed (the QMP command, QEMU's error class and
description, or the libvirt call and libvirt's message are named; what this run added was
removed), 2 usage.`)
  .action(async (opts: Record<string, unknown>) => {
    const { runAttach } = await import('./commands/attach.js');
    process.exitCode = await runAttach(opts);
  });

program
  .command('detach')
  .summary('remove the offload port from a running VM (QMP socket or libvirt domain)')
  .description(`Remove the port NAME that attach added: device_del and wait for QEMU's DEVICE_DELETED, then our
virtio-serial-pci controller if attach added it and nothing else is on it, then our chardev.
A VM without them is left alone (exit 0). With --libvirt DOMAIN: DetachDevice of our channel,
then wait for libvirt's DeviceRemoved.`)
  .option('--qmp <socket>', "the VM's QMP unix socket (this or --libvirt)")
  .option('--libvirt <domain>', 'the running libvirt domain (this or --qmp)')
  .option('--name <name>', 'port name', 'virt-offload.0')
  .option('--timeout <seconds>', "wait this long for each DEVICE_DELETED (a PCI unplug needs the guest OS's consent)", '10')
  .option('--json', 'print the result (steps carried out) as JSON')
  .addHelpText('after', `
Example:
  virt-offload detach --qmp /run/vm1/qmp.sock
  virt-offload detach --libvirt vm1
Exit codes: 0 detached (or nothing was attached), 1 failed (e.g. no DEVICE_DELETED in time), 2 usage.`)
  .action(async (opts: Record<string, unknown>) => {
    const { runDetach } = await import('./commands/detach.js');
    process.exitCode = await runDetach(opts);
  });

program
  .command('enable')
  .argument('<domain>', 'the libvirt domain')
  .summary('prepare a libvirt domain for the offload port: virtio-serial controller + our metadata')
  .description(`Edit the domain's persistent definition (one DomainDefineXML through libvirt-dbus): add a
virtio-serial controller if it has none (libvirt cannot hot-plug one, so a running domain gets it
at its next boot), and set the opt-in the libvirt hook reads:
  <vo:offload enabled="yes" required="no" port="virt-offload.0"/>
(namespace vo = http://virt-offload.org/xmlns/domain/1.0).
Running it again changes nothing.`)
  .option('--required', 'the domain must not start without the offload device (required="yes")')
  .option('--port <name>', 'port name the guest sees', 'virt-offload.0')
  .option('--json', 'print the result as JSON')
  .addHelpText('after', `
Example:
  virt-offload enable vm1 && virsh shutdown vm1 && virsh start vm1
Exit codes: 0 enabled (or already was), 1 failed (libvirt's message is named), 2 usage.`)
  .action(async (domain: string, opts: Record<string, unknown>) => {
    const { runEnable } = await import('./commands/enable.js');
    process.exitCode = await runEnable(domain, opts);
  });

// ---- hook: the libvirt qemu hook ---------------------------------------------------------
const hook = program
  .command('hook')
  .summary('install or remove the libvirt qemu hook that tells the daemon about opted-in domains')
  .description(
    'The hook (hooks/README.md) runs when libvirt starts or stops a domain. For a domain whose <metadata> has ' +
      '<vo:offload enabled="yes"/> (namespace http://virt-offload.org/xmlns/domain/1.0) it asks the daemon (serve) ' +
      'to add the VM and hot-plug its offload port, and to remove it when the domain stops. It never calls libvirt ' +
      'and never blocks a start when the daemon is down, unless the domain\'s metadata says required="yes".',
  )
  .addHelpText('after', `
Exit codes: 0 done (or nothing to do), 1 failed (the file and why are named), 2 usage.`);

hook
  .command('install')
  .summary('write the hook to <hooks-dir>/qemu.d/virt-offload (atomic, idempotent)')
  .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
  .option('--run-dir <dir>', "the daemon's --run-dir (the hook talks to <run-dir>/control.sock)", '/run/virt-offload')
  .option('--node <path>', 'absolute path of the node the hook runs with (default: the one running this command)')
  .option('--log-file <file>', 'the hook appends what it did and why to this file (libvirt drops the stderr of a hook that exits 0)', '/var/log/virt-offload/hook.log')
  .option('--no-log-file', 'log to stderr only')
  .option('--json', 'print the result as JSON')
  .addHelpText('after', `
libvirtd looks for hooks when it starts (and on SIGHUP): if no qemu hook existed then, this one
is ignored until libvirtd reloads; the command says so when that is the case.
Example:
  virt-offload hook install && kill -HUP "$(cat /run/libvirtd.pid)"`)
  .action(async (opts: Record<string, unknown>) => {
    const { runHookInstall } = await import('./commands/hook.js');
    process.exitCode = await runHookInstall(opts);
  });

hook
  .command('uninstall')
  .summary('remove <hooks-dir>/qemu.d/virt-offload (only a file the installer wrote)')
  .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
  .option('--json', 'print the result as JSON')
  .action(async (opts: Record<string, unknown>) => {
    const { runHookUninstall } = await import('./commands/hook.js');
    process.exitCode = await runHookUninstall(opts);
  });

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help / version text).
    // 'commander.help' is both `help [command]` (exit code 0) and the help a command group
    // prints when no subcommand is given (exit code 1 from commander): that one is a usage error.
    const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0);
    process.exitCode = ok ? EXIT.ok : EXIT.usage;
  } else {
    process.exitCode = reportFailure(err);
  }
});
