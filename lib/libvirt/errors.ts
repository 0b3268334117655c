// Errors of the libvirt-dbus bindings. Every failure names the libvirt-dbus method, the domain
// when there is one, and what libvirt (or the bus) said:
//
//   LibvirtError
//   ├── LibvirtConnectError      the system bus could not be reached (address, cause)
//   ├── LibvirtCallError         the call was answered with an error (D-Bus error name + text)
//   │   └── LibvirtNoDomainError   libvirt knows no such domain
//   ├── LibvirtTimeoutError      no answer within the per-call time limit
//   └── LibvirtSignalTimeoutError an expected signal (DeviceRemoved…) did not arrive in time
import { VirtOffloadError, type ErrorCode } from '../errors.js';

export abstract class LibvirtError extends VirtOffloadError {
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
  }
}

/** The bus could not be connected to (or the connection failed before Hello completed). */
export class LibvirtConnectError extends LibvirtError {
  readonly busAddress: string;
  constructor(busAddress: string, message: string, cause?: unknown) {
    super('EIO', `cannot connect to the D-Bus system bus at ${busAddress}: ${message}`, cause);
    this.busAddress = busAddress;
  }
}

/**
 * A libvirt-dbus method answered with an error. libvirt's own errors arrive as
 * `org.libvirt.Error` with libvirt's text and no code; bus errors (ServiceUnknown when
 * libvirt-dbus is not installed, AccessDenied for a caller outside the libvirt group) keep
 * their D-Bus error name.
 */
export class LibvirtCallError extends LibvirtError {
  readonly method: string;
  readonly domain: string | undefined;
  readonly errorName: string;
  /** libvirt's (or the bus's) message, verbatim. */
  readonly libvirtMessage: string;

  constructor(method: string, domain: string | undefined, errorName: string, libvirtMessage: string) {
    super('EIO', `${domain !== undefined ? `domain ${domain}: ` : ''}${method} failed: ${libvirtMessage || errorName}${hint(errorName)}`);
    this.method = method;
    this.domain = domain;
    this.errorName = errorName;
    this.libvirtMessage = libvirtMessage;
  }
}

/** libvirt has no domain of that name (or the object path of a domain that was undefined). */
export class LibvirtNoDomainError extends LibvirtCallError {}

/** A call got no answer within its time limit (dbus-next itself never gives up). */
export class LibvirtTimeoutError extends LibvirtError {
  readonly method: string;
  readonly domain: string | undefined;
  readonly timeoutMs: number;
  constructor(method: string, domain: string | undefined, timeoutMs: number) {
    super('EIO', `${domain !== undefined ? `domain ${domain}: ` : ''}${method}: no answer from libvirt-dbus within ${timeoutMs} ms`);
    this.method = method;
    this.domain = domain;
    this.timeoutMs = timeoutMs;
  }
}

/** A signal the caller waits for (DeviceRemoved of an alias…) did not come in time. */
export class LibvirtSignalTimeoutError extends LibvirtError {
  readonly signal: string;
  readonly domain: string;
  readonly timeoutMs: number;
  constructor(signal: string, domain: string, detail: string, timeoutMs: number) {
    super('EIO', `domain ${domain}: no ${signal} for ${detail} within ${timeoutMs} ms`);
    this.signal = signal;
    this.domain = domain;
    this.timeoutMs = timeoutMs;
  }
}

function hint(errorName: string): string {
  if (errorName === 'org.freedesktop.DBus.Error.ServiceUnknown') return ' (is libvirt-dbus installed? `apt-get install libvirt-dbus`; libvirtd must be running)';
  if (errorName === 'org.freedesktop.DBus.Error.AccessDenied') return ' (talking to libvirt needs root or the libvirt group)';
  return '';
}
