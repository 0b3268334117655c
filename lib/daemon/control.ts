// The control socket: line-JSON commands from the libvirt hook and the CLI, one reply line
// per command, in order. The socket is 0600 (root's), so whoever speaks here is trusted;
// its input is still checked (size, shape) so a broken client gets an error, not a crash.
//
//   {"cmd":"ping"}                                → {"ok":true,"version":"…","attach":true|false}  (the hook's "is the daemon up, and can it attach?")
//   {"cmd":"add-vm","name":"web1","uuid":"6f1c…"}  → {"ok":true,"socket":"<runDir>/vm/web1.sock"}
//   {"cmd":"add-vm",…,"owner":{"uid":64055,"gid":64055}}  → the socket is chown'ed to them (a QEMU of another user, no libvirt)
//   {"cmd":"add-vm",…,"attach":true,"port":"virt-offload.0"}
//   {"cmd":"add-vm",…,"replace":true}  → a name added with another UUID is swapped (refused without it)
//                                                 → {"ok":true,"socket":"…","attach":"scheduled"|"no-route"};
//                                                   the device is attached AFTER this reply is written
//                                                   (libvirt holds the domain while its hook waits)
//   {"cmd":"remove-vm","name":"web1"}             → {"ok":true,"removed":true}  (detaches the device first)
//   {"cmd":"remove-vm","name":"web1","uuid":"…","stopped":true}
//                                                 → removed only if the UUID matches; no detach (QEMU is gone)
//   {"cmd":"reload"}                              → {"ok":true,"commit":"…","storeChanges":0} | {"ok":false,"error":"…","commit":"<kept>"}
//   {"cmd":"status"}                              → {"ok":true,"policy":{…},"vms":[…],"limits":{…}}
//   anything else                                 → {"ok":false,"error":"…"}
import type { Socket } from 'node:net';
import { VirtOffloadError } from '../errors.js';
import { decodeJsonLine, encodeJsonLine, type JsonObject, LineSplitter } from '../transport/index.js';
import { VERSION } from '../version.js';
import type { DaemonLog } from './log.js';

/** Who the VM's socket is handed to (chown), for a QEMU that runs as another user. */
export interface SocketOwner {
  readonly uid: number;
  /** Unchanged when absent. */
  readonly gid?: number;
}

const ID_MAX = 0xfffffffe; // (uid_t)-1 means "unchanged" to chown(2)

/** `owner` of an add-vm: absent, {uid, gid?} of whole ids, or a problem in words. */
function parseOwner(owner: unknown): SocketOwner | undefined | string {
  if (owner === undefined) return undefined;
  const id = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= ID_MAX;
  if (typeof owner !== 'object' || owner === null || Array.isArray(owner)) return '"owner" must be an object {"uid": N, "gid": N}';
  const { uid, gid, ...rest } = owner as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return `"owner" has unknown members: ${Object.keys(rest).join(', ')}`;
  if (!id(uid)) return `"owner.uid" must be a whole number from 0 to ${ID_MAX}`;
  if (gid !== undefined && !id(gid)) return `"owner.gid" must be a whole number from 0 to ${ID_MAX}`;
  return gid === undefined ? { uid: uid as number } : { uid: uid as number, gid: gid as number };
}

/** Longest command line accepted. */
export const MAX_CONTROL_LINE = 64 * 1024;

/** What the control socket drives (the Daemon; an interface here so the two files do not import each other). */
export interface ControlTarget {
  addVm(vm: { readonly name: string; readonly uuid: string }, options?: { readonly owner?: SocketOwner; readonly replace?: boolean }): Promise<string>;
  attachVm(name: string, portName: string): 'scheduled' | 'no-route';
  /** Whether the daemon has a hot-plug route (serve --libvirt). */
  canAttach(): boolean;
  removeVm(name: string, options?: { readonly uuid?: string; readonly stopped?: boolean }): Promise<boolean>;
  reload(): Promise<{ readonly ok: boolean; readonly commit: string | undefined }>;
  status(): object;
}

export function handleControl(socket: Socket, daemon: ControlTarget, log: DaemonLog): void {
  const splitter = new LineSplitter(MAX_CONTROL_LINE);
  let queue: Promise<void> = Promise.resolve();
  const reply = (message: JsonObject): void => {
    if (!socket.destroyed) socket.write(encodeJsonLine(message));
  };
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    try {
      splitter.push(chunk, (line) => {
        // Commands run one after another, replies in order; work that must wait for the
        // reply (the hot-plug the hook asked for) runs once the reply is written.
        queue = queue.then(() =>
          command(line, daemon, log).then((r) => {
            reply(r.reply);
            r.after?.();
          }),
        );
      });
    } catch (err) {
      reply({ ok: false, error: err instanceof Error ? err.message : String(err) });
      socket.end();
    }
  });
}

/** Port names as lib/hotplug accepts them (checked here so a bad one is refused in the reply). */
const PORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

interface Outcome {
  readonly reply: JsonObject;
  readonly after?: () => void;
}

async function command(line: Uint8Array, daemon: ControlTarget, log: DaemonLog): Promise<Outcome> {
  let after: (() => void) | undefined;
  const reply = await commandReply(line, daemon, log, (fn) => {
    after = fn;
  });
  return after === undefined ? { reply } : { reply, after };
}

async function commandReply(line: Uint8Array, daemon: ControlTarget, log: DaemonLog, afterReply: (fn: () => void) => void): Promise<JsonObject> {
  let msg: JsonObject;
  try {
    const decoded = decodeJsonLine(line);
    if (decoded === undefined) return { ok: false, error: 'empty line' };
    msg = decoded.message;
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  const cmd = msg.cmd;
  try {
    switch (cmd) {
      case 'ping':
        return { ok: true, version: VERSION, attach: daemon.canAttach() };
      case 'add-vm': {
        const { name, uuid, attach, port, owner, replace } = msg;
        if (typeof name !== 'string' || typeof uuid !== 'string') return { ok: false, error: 'add-vm needs "name" and "uuid" strings' };
        const socketOwner = parseOwner(owner);
        if (typeof socketOwner === 'string') return { ok: false, error: `add-vm: ${socketOwner}` };
        if (attach !== undefined && typeof attach !== 'boolean') return { ok: false, error: 'add-vm: "attach" must be true or false' };
        if (replace !== undefined && typeof replace !== 'boolean') return { ok: false, error: 'add-vm: "replace" must be true or false' };
        const portName = port ?? 'virt-offload.0';
        if (typeof portName !== 'string' || !PORT_NAME.test(portName)) return { ok: false, error: `add-vm: "port" must match ${PORT_NAME.source}` };
        const socket = await daemon.addVm({ name, uuid }, { ...(socketOwner === undefined ? {} : { owner: socketOwner }), replace: replace === true });
        if (attach !== true) return { ok: true, socket };
        // Start once the reply is out: libvirt waits for the hook that waits for this reply.
        afterReply(() => {
          try {
            daemon.attachVm(name, portName);
          } catch (err) {
            log.error(`VM ${name}: attach not started: ${err instanceof Error ? err.message : String(err)}`, { vm: name });
          }
        });
        return { ok: true, socket, attach: daemon.canAttach() ? 'scheduled' : 'no-route' };
      }
      case 'remove-vm': {
        const { name, uuid, stopped } = msg;
        if (typeof name !== 'string') return { ok: false, error: 'remove-vm needs a "name" string' };
        if (uuid !== undefined && typeof uuid !== 'string') return { ok: false, error: 'remove-vm: "uuid" must be a string' };
        if (stopped !== undefined && typeof stopped !== 'boolean') return { ok: false, error: 'remove-vm: "stopped" must be true or false' };
        return { ok: true, removed: await daemon.removeVm(name, { ...(uuid === undefined ? {} : { uuid }), stopped: stopped === true }) };
      }
      case 'reload': {
        const r = await daemon.reload();
        return { ...r, commit: r.commit ?? null } as unknown as JsonObject;
      }
      case 'status':
        return { ok: true, ...(JSON.parse(JSON.stringify(daemon.status())) as JsonObject) };
      default:
        return { ok: false, error: `unknown command ${JSON.stringify(String(cmd)).slice(0, 80)} (expected ping, add-vm, remove-vm, reload, status)` };
    }
  } catch (err) {
    if (err instanceof VirtOffloadError) return { ok: false, error: err.message };
    log.error(`control command ${String(cmd).slice(0, 40)} failed unexpectedly: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return { ok: false, error: 'internal error (see the daemon log)' };
  }
}
