// One request to the daemon's control socket (line JSON, lib/daemon/control.ts): connect,
// write one line, read one reply line, close. Short timeouts: libvirt waits for the hook.
import { connect } from 'node:net';
import { ControlError } from './control-error.js';

export interface ControlTimeouts {
  /** Give up when the socket does not accept within this (a unix socket accepts at once or fails). */
  readonly connectMs: number;
  /** Give up when no complete reply line arrives within this after connecting. */
  readonly replyMs: number;
  /** Longest reply line read (default MAX_REPLY; `status` of a host with many VMs needs more). */
  readonly maxReplyBytes?: number;
}

export const DEFAULT_TIMEOUTS: ControlTimeouts = { connectMs: 1000, replyMs: 3000 };
/** Longest reply line read (a status reply is far shorter than this). */
const MAX_REPLY = 256 * 1024;

export function controlRequest(path: string, request: Record<string, unknown>, timeouts: ControlTimeouts = DEFAULT_TIMEOUTS): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let connected = false;
    let settled = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: ControlError | undefined, reply?: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(reply!);
    };
    let timer = setTimeout(() => finish(new ControlError('timeout', `control socket ${path} did not accept within ${timeouts.connectMs} ms`)), timeouts.connectMs);
    socket.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      timer = setTimeout(() => finish(new ControlError('timeout', `the daemon did not answer within ${timeouts.replyMs} ms on ${path}`)), timeouts.replyMs);
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      const nl = chunk.indexOf(0x0a);
      chunks.push(nl === -1 ? chunk : chunk.subarray(0, nl));
      size += chunk.length;
      if (nl === -1) {
        const max = timeouts.maxReplyBytes ?? MAX_REPLY;
        if (size > max) finish(new ControlError('protocol', `reply longer than ${max} bytes on ${path}`));
        return;
      }
      let reply: unknown;
      try {
        reply = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        finish(new ControlError('protocol', `reply on ${path} is not JSON`));
        return;
      }
      if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) finish(new ControlError('protocol', `reply on ${path} is not a JSON object`));
      else finish(undefined, reply as Record<string, unknown>);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
        finish(new ControlError('unreachable', `the virt-offload daemon is not running (nothing listens on ${path}: ${err.code})`));
      } else {
        finish(new ControlError(connected ? 'protocol' : 'unreachable', `control socket ${path}: ${err.message}`));
      }
    });
    socket.on('close', () => finish(new ControlError(connected ? 'protocol' : 'unreachable', `control socket ${path} closed without a reply`)));
  });
}
