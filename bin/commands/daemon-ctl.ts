// `virt-offload status|reload|vm add|vm remove`: the running daemon, through its control socket
// (<run-dir>/control.sock, line JSON: lib/daemon/control.ts). The libvirt hook speaks the same
// commands; these are for the admin's shell, and for hosts without libvirt, where nothing else
// adds a VM's socket.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError, VirtOffloadError } from '../../lib/errors.js';
import { DOMAIN_NAME, UUID } from '../../lib/policy/index.js';
import { controlRequest } from '../../hooks/control-client.js';
import { EXIT, reportFailure } from '../exit.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** One command to the daemon; its reply, or a failure that names the socket. */
async function ask(opts: Record<string, unknown>, request: Record<string, unknown>, replyMs = 10_000): Promise<Record<string, unknown>> {
  const path = join(str(opts.runDir)!, 'control.sock');
  try {
    // A status reply is ~330 bytes per VM: 64 MiB is room for any host.
    return await controlRequest(path, request, { connectMs: 2000, replyMs, maxReplyBytes: 64 * 1024 * 1024 });
  } catch (err) {
    throw new VirtOffloadError('EIO', `${(err as Error).message}${(err as { kind?: string }).kind === 'unreachable' ? ' (start it with `virt-offload serve`, or give its --run-dir)' : ''}`);
  }
}

/** Print the reply as JSON (--json) or as `text`; a reply with ok false is a failure (exit 1). */
function answer(opts: Record<string, unknown>, reply: Record<string, unknown>, text: () => string): number {
  if (opts.json === true) process.stdout.write(`${JSON.stringify(reply)}\n`);
  if (reply.ok !== true) {
    if (opts.json !== true) process.stderr.write(`virt-offload: the daemon refused: ${String(reply.error ?? 'no reason given')}\n`);
    return EXIT.failed;
  }
  if (opts.json !== true) process.stdout.write(text());
  return EXIT.ok;
}

export async function runStatus(opts: Record<string, unknown>): Promise<number> {
  try {
    const reply = await ask(opts, { cmd: 'status' });
    return answer(opts, reply, () => describeStatus(reply));
  } catch (err) {
    return reportFailure(err);
  }
}

export async function runReload(opts: Record<string, unknown>): Promise<number> {
  try {
    // A reload reads the repository and may install and remove store objects: give it time.
    const reply = await ask(opts, { cmd: 'reload' }, 120_000);
    if (reply.ok !== true && opts.json !== true) {
      process.stderr.write(`virt-offload: the reload failed: ${String(reply.error ?? 'no reason given')}\n`);
      process.stderr.write(`virt-offload: the policy in force is ${reply.commit === undefined || reply.commit === null ? 'none (everything is denied)' : `still commit ${String(reply.commit)}`}\n`);
      return EXIT.failed;
    }
    return answer(opts, reply, () => `policy reloaded: commit ${typeof reply.commit === 'string' ? reply.commit : '(none)'}${typeof reply.storeChanges === 'number' ? `, ${reply.storeChanges} store change(s)` : ''}\n`);
  } catch (err) {
    return reportFailure(err);
  }
}

export async function runVmAdd(name: string, opts: Record<string, unknown>): Promise<number> {
  try {
    const uuid = str(opts.uuid)!;
    if (!DOMAIN_NAME.test(name)) throw new UsageError(`VM name ${JSON.stringify(name)}: expected [A-Za-z0-9][A-Za-z0-9._+-]{0,63} (a libvirt domain name)`, 'NAME');
    if (!UUID.test(uuid)) throw new UsageError(`--uuid ${uuid}: expected a UUID like 6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162`, '--uuid');
    const port = str(opts.port);
    if (port !== undefined && opts.attach !== true) throw new UsageError('--port needs --attach', '--port');
    const request: Record<string, unknown> = { cmd: 'add-vm', name, uuid };
    if (opts.replace === true) request.replace = true;
    const owner = str(opts.owner);
    if (owner !== undefined) request.owner = resolveOwner(owner);
    if (opts.attach === true) {
      request.attach = true;
      if (port !== undefined) request.port = port;
    }
    const reply = await ask(opts, request);
    return answer(opts, reply, () => {
      let text = `${name}: socket ${String(reply.socket)}\n`;
      if (reply.attach === 'scheduled') text += `${name}: the offload port is being attached (see \`virt-offload status\`)\n`;
      if (reply.attach === 'no-route') text += `${name}: NOT attached: the daemon has no hot-plug route (serve --libvirt); attach it with \`virt-offload attach --qmp …\`\n`;
      return text;
    });
  } catch (err) {
    return reportFailure(err);
  }
}

const ID = /^(0|[1-9][0-9]{0,9})$/;

/**
 * `--owner USER[:GROUP]` as ids: numbers as they are, names from /etc/passwd and /etc/group
 * (a user alone brings its primary group). Users only a directory service knows: give numbers.
 */
export function resolveOwner(text: string, files: { passwd?: string; group?: string } = {}): { uid: number; gid?: number } {
  const [user = '', group, extra] = text.split(':');
  if (extra !== undefined || user === '' || group === '') throw new UsageError(`--owner ${text}: expected USER or USER:GROUP (names or numbers)`, '--owner');
  const table = (path: string, given: string | undefined) => {
    if (given !== undefined) return given;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new UsageError(`--owner ${text}: cannot read ${path} to look the name up (${(err as NodeJS.ErrnoException).code ?? 'error'}); give numbers`, '--owner');
    }
  };
  const lookup = (path: string, given: string | undefined, name: string): string[] | undefined =>
    table(path, given)
      .split('\n')
      .map((line) => line.split(':'))
      .find((fields) => fields[0] === name);
  const id = (value: string, what: string): number => {
    const n = Number(value);
    if (!ID.test(value) || n > 0xfffffffe) throw new UsageError(`--owner ${text}: ${what} ${value} is not a valid id`, '--owner');
    return n;
  };
  let uid: number;
  let gid: number | undefined;
  if (ID.test(user)) uid = id(user, 'uid');
  else {
    const entry = lookup('/etc/passwd', files.passwd, user);
    if (entry === undefined || entry.length < 4) throw new UsageError(`--owner ${text}: no user ${user} in /etc/passwd`, '--owner');
    uid = id(entry[2]!, 'uid');
    gid = id(entry[3]!, 'gid');
  }
  if (group !== undefined) {
    if (ID.test(group)) gid = id(group, 'gid');
    else {
      const entry = lookup('/etc/group', files.group, group);
      if (entry === undefined || entry.length < 3) throw new UsageError(`--owner ${text}: no group ${group} in /etc/group`, '--owner');
      gid = id(entry[2]!, 'gid');
    }
  }
  return gid === undefined ? { uid } : { uid, gid };
}

export async function runVmRemove(name: string, opts: Record<string, unknown>): Promise<number> {
  try {
    const uuid = str(opts.uuid);
    if (uuid !== undefined && !UUID.test(uuid)) throw new UsageError(`--uuid ${uuid}: expected a UUID like 6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162`, '--uuid');
    // Detaching through libvirt waits for the guest to let the device go.
    const reply = await ask(opts, { cmd: 'remove-vm', name, ...(uuid === undefined ? {} : { uuid }) }, 60_000);
    if (reply.ok === true && reply.removed !== true) {
      if (opts.json === true) process.stdout.write(`${JSON.stringify(reply)}\n`);
      else process.stderr.write(`virt-offload: the daemon has no VM ${name}${uuid === undefined ? '' : ` with UUID ${uuid}`}\n`);
      return EXIT.failed;
    }
    return answer(opts, reply, () => `${name}: removed (its socket is gone)\n`);
  } catch (err) {
    return reportFailure(err);
  }
}

interface VmLine {
  name?: unknown;
  uuid?: unknown;
  socket?: unknown;
  connected?: unknown;
  connection?: { requests?: unknown; inFlight?: unknown } | null;
  device?: { state?: unknown; portName?: unknown; route?: unknown; error?: unknown; attachMs?: unknown } | null;
}

/** Bytes as MiB with one decimal ("?" for what is not a number). */
function mib(bytes: unknown): string {
  return typeof bytes === 'number' ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : '?';
}

/** The status reply as an admin reads it: the policy in force first, then one block per VM. */
function describeStatus(reply: Record<string, unknown>): string {
  const policy = (reply.policy ?? {}) as { loaded?: unknown; commit?: unknown; uncommitted?: unknown; loadedAt?: unknown; lastError?: unknown };
  const lines: string[] = [];
  if (policy.loaded === true) {
    lines.push(`policy: commit ${typeof policy.commit === 'string' ? policy.commit : '(none)'}${policy.uncommitted === true ? ' + UNCOMMITTED changes to *.policy files' : ''} (loaded ${String(policy.loadedAt)})`);
  }
  if (policy.loaded !== true) lines.push('policy: NONE LOADED: every request is denied');
  if (typeof policy.lastError === 'string') lines.push(`  last reload FAILED: ${policy.lastError}`);
  const vms = Array.isArray(reply.vms) ? (reply.vms as VmLine[]) : [];
  lines.push(`VMs: ${vms.length}`);
  for (const vm of vms) {
    lines.push(`  ${String(vm.name)}  ${String(vm.uuid)}`);
    lines.push(`    socket ${String(vm.socket)}: ${vm.connected === true ? `connected, ${String(vm.connection?.requests ?? 0)} request(s), ${String(vm.connection?.inFlight ?? 0)} in flight` : 'nobody connected'}`);
    const d = vm.device;
    if (d !== undefined && d !== null) {
      const extra = d.state === 'attached' && typeof d.attachMs === 'number' ? ` in ${d.attachMs} ms` : typeof d.error === 'string' ? `: ${d.error}` : '';
      lines.push(`    device ${String(d.portName)}: ${String(d.state)}${typeof d.route === 'string' ? ` (${d.route})` : ''}${extra}`);
    }
  }
  const memory = reply.memory as { residentBytes?: unknown; mallocTuned?: unknown; uploadsHeldBytes?: unknown; uploadBudgetBytes?: unknown; imageCache?: { binaries?: unknown; bytes?: unknown; maxBytes?: unknown; hits?: unknown; misses?: unknown } } | undefined;
  if (memory !== undefined && memory !== null) {
    const c = memory.imageCache ?? {};
    lines.push(
      `memory: ${mib(memory.residentBytes)} resident${memory.mallocTuned === false ? ' (glibc malloc untuned: GLIBC_TUNABLES, see the README)' : ''}; uploads held ${mib(memory.uploadsHeldBytes)} of ${mib(memory.uploadBudgetBytes)}; ` +
        `measured images cached: ${String(c.binaries)} (${mib(c.bytes)} of ${mib(c.maxBytes)}; ${String(c.hits)} hits, ${String(c.misses)} misses)`,
    );
  }
  return `${lines.join('\n')}\n`;
}
