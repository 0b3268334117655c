// The libvirt `qemu` hook of virt-offload (installed as <hooks>/qemu.d/virt-offload by
// `virt-offload hook install`). libvirt runs it as `NAME OPERATION SUBOPERATION EXTRA` with
// the domain XML on stdin, waits for it, and passes its stdout on as the next qemu.d
// script's XML: so it writes NOTHING to stdout, returns within a few seconds, and never calls
// libvirt (libvirt holds the domain while the hook runs: a call back would deadlock).
//
// For a domain with <vo:offload enabled="yes"/> in its metadata it tells the daemon over the
// control socket: started/reconnect → add-vm (the daemon attaches the device after it
// replied), stopped/release → remove-vm. When the daemon is down it logs one line and exits 0,
// unless the metadata says required="yes": then `prepare begin` (and `started begin`) fail,
// which stops the start.
//
// Not zx: the hook runs no command at all (no shell, no child process); it reads stdin,
// parses XML and writes one line to a unix socket, all of which Node does natively. zx would
// add ~120 ms to every domain start for nothing. The hook is bundled into one CommonJS file
// (no dependency), so it needs no node_modules where it is installed.
import { appendFileSync, mkdirSync, readSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ControlError } from './control-error.js';
import { decide, type HookAction } from './decide.js';
import type { DomainFacts } from './domain-xml.js';

// Loaded only on the path that needs them (the bundle turns these into lazy require()s): most
// domains are not ours, and for them the hook should cost little more than Node's start.
const loadXml = () => import('./domain-xml.js');
const loadControl = () => import('./control-client.js');
/** Our namespace, as text: a document without it cannot opt in (libvirt writes it verbatim). */
const NAMESPACE_TEXT = 'http://virt-offload.org/xmlns/domain/1.0';
/** Same value as domain-xml.ts's MAX_DOMAIN_XML (not imported: that would load the XML reader eagerly). */
const MAX_DOMAIN_XML = 1024 * 1024;

/** Written by the installer in front of the bundle (see bin/commands/hook.ts). */
declare const VIRT_OFFLOAD_HOOK_CONFIG: { readonly control?: string; readonly logFile?: string } | undefined;

const config = typeof VIRT_OFFLOAD_HOOK_CONFIG === 'object' && VIRT_OFFLOAD_HOOK_CONFIG !== null ? VIRT_OFFLOAD_HOOK_CONFIG : {};
const CONTROL = config.control ?? '/run/virt-offload/control.sock';
/** Stop draining stdin after this much (the XML beyond MAX_DOMAIN_XML is discarded anyway). */
const MAX_DRAIN = 64 * 1024 * 1024;
const STDIN_DEADLINE_MS = 5000;

const [argName = '', operation = '', subOperation = ''] = process.argv.slice(2);

function log(message: string): void {
  const line = `virt-offload hook: domain ${JSON.stringify(argName.slice(0, 80))} ${operation} ${subOperation}: ${message}`;
  // writeSync, not process.stderr: creating the stderr stream object costs ~1–2 ms of start-up.
  try {
    writeSync(2, `${line}\n`);
  } catch {
    // stderr closed: the log file below still has it.
  }
  // libvirt drops a hook's stderr when it exits 0: keep a copy where the operator can find it.
  if (config.logFile !== undefined) {
    const text = `${new Date().toISOString()} ${line}\n`;
    try {
      appendFileSync(config.logFile, text, { mode: 0o640 });
    } catch (err) {
      // The directory may not exist yet (`hook install` does not make it, and the daemon makes
      // /var/log/virt-offload only for its own audit log): make it, once, then try again.
      // Best effort: a log that cannot be written must not change what the hook does.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        try {
          mkdirSync(dirname(config.logFile), { recursive: true, mode: 0o750 });
          appendFileSync(config.logFile, text, { mode: 0o640 });
        } catch {
          // as above
        }
      }
    }
  }
}

/** Read stdin to EOF: at most MAX_DOMAIN_XML bytes kept; the rest drained and counted. */
function readStdin(): { bytes: Buffer; total: number } {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let total = 0;
  const deadline = Date.now() + STDIN_DEADLINE_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let n: number;
    try {
      n = readSync(0, chunk, 0, chunk.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' && Date.now() < deadline) {
        Atomics.wait(pause, 0, 0, 2);
        continue;
      }
      if (code === 'EOF' || code === 'EBADF' || code === 'EAGAIN') break;
      throw err;
    }
    if (n === 0) break;
    total += n;
    if (keptBytes <= MAX_DOMAIN_XML) {
      kept.push(Buffer.from(chunk.subarray(0, n)));
      keptBytes += n;
    }
    if (total >= MAX_DRAIN || Date.now() >= deadline) break;
  }
  return { bytes: Buffer.concat(kept), total };
}

const NO_ROUTE = 'the virt-offload daemon cannot hot-plug devices (it was started without --libvirt)';

/** Set once the XML said the device is required: an internal error then stops the start too. */
let requiredByDomain = false;

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

async function main(): Promise<number> {
  const stdin = readStdin();
  if (stdin.total > MAX_DOMAIN_XML) {
    log(`domain XML on stdin is ${stdin.total} bytes, more than the ${MAX_DOMAIN_XML} read: ignored, nothing done`);
    return 0;
  }
  const xml = stdin.bytes.toString('utf8');
  if (!xml.includes(NAMESPACE_TEXT)) return 0;
  const { DomainXmlError, readDomainFacts } = await loadXml();
  let facts: DomainFacts;
  try {
    facts = readDomainFacts(xml);
  } catch (err) {
    if (!(err instanceof DomainXmlError)) throw err;
    log(`cannot read the domain XML (${err.message}): nothing done`);
    return 0;
  }
  const action: HookAction = decide(operation, subOperation, facts);
  if (action.kind === 'none') return 0;
  for (const problem of facts.offload?.problems ?? []) log(`metadata: ${problem}`);
  const required = facts.offload?.required === true;
  requiredByDomain = required;
  const name = facts.name ?? argName;
  if (name !== argName) {
    log(`the domain XML names ${JSON.stringify(name.slice(0, 80))}, not the domain libvirt named: nothing done`);
    return action.kind === 'check' || (action.kind === 'add' && action.failStartOnError) ? 1 : 0;
  }
  const uuid = facts.uuid;
  try {
    // No socket file: the daemon is not running; say so without loading the socket code.
    try {
      statSync(CONTROL);
    } catch (err) {
      throw new ControlError('unreachable', `the virt-offload daemon is not running (no control socket ${CONTROL}: ${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const { controlRequest } = await loadControl();
    switch (action.kind) {
      case 'check': {
        const reply = await controlRequest(CONTROL, { cmd: 'ping' });
        if (reply.ok !== true) throw new ControlError('protocol', `the daemon refused ping: ${String(reply.error)}`);
        if (reply.attach === false) throw new ControlError('protocol', NO_ROUTE);
        return 0;
      }
      case 'add': {
        if (uuid === undefined || !UUID.test(uuid)) throw new ControlError('protocol', `the domain XML has no valid <uuid>`);
        // replace: libvirt is starting a domain of this name with this UUID now; a registration
        // under another UUID is a domain of the same name whose stop the daemon missed.
        const reply = await controlRequest(CONTROL, { cmd: 'add-vm', name, uuid, attach: true, port: action.port, replace: true });
        if (reply.ok !== true) throw new ControlError('protocol', `the daemon refused add-vm: ${String(reply.error).slice(0, 300)}`);
        if (reply.attach === 'no-route') throw new ControlError('protocol', NO_ROUTE);
        return 0;
      }
      case 'remove': {
        const reply = await controlRequest(CONTROL, { cmd: 'remove-vm', name, ...(uuid === undefined ? {} : { uuid }), stopped: true });
        if (reply.ok !== true) throw new ControlError('protocol', `the daemon refused remove-vm: ${String(reply.error).slice(0, 300)}`);
        return 0;
      }
    }
  } catch (err) {
    if (!(err instanceof ControlError)) throw err;
    const e = err;
    // A stop of a domain that is not opted in (switched off while it ran) with no daemon to
    // ask: nothing can be left behind, and nothing is worth a line in libvirt's log.
    if (action.kind === 'remove' && facts.offload?.enabled !== true && e.kind === 'unreachable') return 0;
    const fatal = action.kind === 'check' || (action.kind === 'add' && action.failStartOnError);
    if (fatal) {
      log(`${e.message}; the domain requires the offload device (required="yes"): refusing to start it`);
      return 1;
    }
    const what = action.kind === 'add' ? 'the offload device is not attached' : 'the daemon did not remove the VM';
    log(`${e.message}; ${what}${required ? '' : ' (not required: the domain goes on)'}`);
    return 0;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A bug of ours must not stop a domain that does not require us; one that does is refused.
    const stopStart = requiredByDomain && (operation === 'prepare' || operation === 'started');
    log(`internal error: ${err instanceof Error ? err.message : String(err)}${stopStart ? ' (required="yes": refusing to start)' : ''}`);
    process.exit(stopStart ? 1 : 0);
  },
);
