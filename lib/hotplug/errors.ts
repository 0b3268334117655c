// Errors of the hot-plug layer. Every failure names the VM, what was being done and, when QEMU
// refused a command, the command, QEMU's error class and its description (copied from the
// QmpExecuteError in `cause`, so `--json` shows them).
import { VirtOffloadError, type ErrorCode } from '../errors.js';
import { QmpExecuteError } from '../qmp/index.js';

export abstract class HotplugError extends VirtOffloadError {
  /** The VM label of the spec. */
  readonly vm: string;

  constructor(code: ErrorCode, vm: string, message: string, cause?: unknown) {
    super(code, `${vm}: ${message}`, cause === undefined ? undefined : { cause });
    this.vm = vm;
  }
}

/**
 * A QMP command of a hot-plug step failed (or the connection failed under it). `rolledBack`
 * lists what this call had added and removed again; `rollbackProblem` is set when undoing
 * failed too (the VM may then keep a partial device: `detach` removes it).
 */
export class HotplugStepError extends HotplugError {
  readonly step: string;
  readonly command: string | undefined;
  readonly errorClass: string | undefined;
  readonly description: string | undefined;
  rolledBack: string | undefined;
  rollbackProblem: string | undefined;

  constructor(vm: string, step: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('EIO', vm, `${step} failed: ${why}`, cause);
    this.step = step;
    if (cause instanceof QmpExecuteError) {
      this.command = cause.command;
      this.errorClass = cause.errorClass;
      this.description = cause.description;
    }
  }
}

/** The VM cannot take the device as it is configured (q35 without a free root port, …). */
export class HotplugUnsupportedError extends HotplugError {
  constructor(vm: string, message: string) {
    super('EUNSUPPORTED', vm, message);
  }
}

/**
 * A libvirt domain without a virtio-serial controller cannot take the offload port live
 * (libvirt cannot hot-plug the controller): `virt-offload enable DOMAIN` adds one to the
 * persistent definition, in effect from the next boot.
 */
export class HotplugNoSerialControllerError extends HotplugUnsupportedError {
  readonly domain: string;
  readonly remedy: string;
  constructor(vm: string, domain: string) {
    const remedy = `virt-offload enable ${domain}`;
    super(vm, `domain ${domain} has no virtio-serial controller, and libvirt cannot hot-plug one: run \`${remedy}\` (it adds one to the persistent definition; it takes effect at the next boot of the domain)`);
    this.domain = domain;
    this.remedy = remedy;
  }
}

/**
 * Something with one of our ids exists but is not what this spec asks for (our chardev points
 * at another socket, our port has another name): refused rather than silently replaced.
 */
export class HotplugConflictError extends HotplugError {
  readonly id: string;
  constructor(vm: string, id: string, message: string) {
    super('EIO', vm, message);
    this.id = id;
  }
}

/** QEMU did not report DEVICE_DELETED in time (a PCI unplug needs the guest OS to agree). */
export class HotplugTimeoutError extends HotplugError {
  readonly id: string;
  readonly timeoutMs: number;
  constructor(vm: string, id: string, timeoutMs: number) {
    super('EIO', vm, `device ${id}: no DEVICE_DELETED within ${timeoutMs} ms after device_del (is the guest OS running? a PCI unplug needs its consent; the unplug stays pending)`);
    this.id = id;
    this.timeoutMs = timeoutMs;
  }
}
