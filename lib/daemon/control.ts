// The control socket: line-JSON commands from the libvirt hook and the CLI, one reply line
// per command, in order. The socket is 0600 (root's), so whoever speaks here is trusted;
// its input is still checked (size, shape) so a broken client gets an error, not a crash.
//
//   {"cmd":"add-vm","name":"web1","uuid":"6f1c…"}  → {"ok":true,"socket":"<runDir>/vm/web1.sock"}
//   {"cmd":"remove-vm","name":"web1"}             → {"ok":true,"removed":true}
//   {"cmd":"reload"}                              → {"ok":true,"commit":"…","storeChanges":0} | {"ok":false,"error":"…","commit":"<kept>"}
//   {"cmd":"status"}                              → {"ok":true,"policy":{…},"vms":[…],"limits":{…}}
//   anything else                                 → {"ok":false,"error":"…"}
import type { Socket } from 'node:net';
import { VirtOffloadError } from '../errors.js';
import { decodeJsonLine, encodeJsonLine, type JsonObject, LineSplitter } from '../transport/index.js';
import type { DaemonLog } from './log.js';

/** Longest command line accepted. */
export const MAX_CONTROL_LINE = 64 * 1024;

/** What the control socket drives (the Daemon; an interface here so the two files do not import each other). */
export interface ControlTarget {
  addVm(vm: { readonly name: string; readonly uuid: string }): Promise<string>;
  removeVm(name: string): Promise<boolean>;
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
        // Commands run one after another, replies in order.
        queue = queue.then(() => command(line, daemon, log).then(reply));
      });
    } catch (err) {
      reply({ ok: false, error: err instanceof Error ? err.message : String(err) });
      socket.end();
    }
  });
}

async function command(line: Uint8Array, daemon: ControlTarget, log: DaemonLog): Promise<JsonObject> {
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
      case 'add-vm': {
        const { name, uuid } = msg;
        if (typeof name !== 'string' || typeof uuid !== 'string') return { ok: false, error: 'add-vm needs "name" and "uuid" strings' };
        return { ok: true, socket: await daemon.addVm({ name, uuid }) };
      }
      case 'remove-vm': {
        if (typeof msg.name !== 'string') return { ok: false, error: 'remove-vm needs a "name" string' };
        return { ok: true, removed: await daemon.removeVm(msg.name) };
      }
      case 'reload': {
        const r = await daemon.reload();
        return { ...r, commit: r.commit ?? null } as unknown as JsonObject;
      }
      case 'status':
        return { ok: true, ...(JSON.parse(JSON.stringify(daemon.status())) as JsonObject) };
      default:
        return { ok: false, error: `unknown command ${JSON.stringify(String(cmd)).slice(0, 80)} (expected add-vm, remove-vm, reload, status)` };
    }
  } catch (err) {
    if (err instanceof VirtOffloadError) return { ok: false, error: err.message };
    log.error(`control command ${String(cmd).slice(0, 40)} failed unexpectedly: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return { ok: false, error: 'internal error (see the daemon log)' };
  }
}
