// Errors of the guest client. Each maps to one documented exit status of `virt-offload
// submit` (see EXIT_STATUS in client.ts): the port cannot be found or opened, or the channel
// failed (71); the request breaks a limit the host announced (70, like the host's own ERROR).
import { VirtOffloadError } from '../errors.js';

/** No port of that name, or it cannot be opened; `found` lists the port names that exist. */
export class PortNotFoundError extends VirtOffloadError {
  readonly portName: string;
  readonly found: string;

  constructor(portName: string, message: string, found: readonly string[] = []) {
    super('EIO', message);
    this.portName = portName;
    this.found = found.join(', ');
  }
}

/** The channel to the host failed: closed, timed out, or unreadable. */
export class ChannelError extends VirtOffloadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EIO', message, options);
  }
}
