// The offload device of one VM, as the daemon drives it: attach through the route the daemon
// chose for the VM (LibvirtRoute for a libvirt domain; injected so tests can pass a fake),
// retrying briefly while the domain is not ready yet (the libvirt hook asks at `started`, while
// libvirt still holds the domain's start job), detach when the VM is removed while still running.
// Never throws to its caller: failures are logged and shown in `status`.
import type { AttachSpec, DetachSpec, OffloadDeviceRoute } from '../hotplug/index.js';
import type { VmIdentity } from '../policy/index.js';
import type { DaemonLog } from './log.js';

/** Chooses how to reach a VM's hypervisor; undefined: the daemon has no route for it. */
export type DeviceRouteFactory = (vm: VmIdentity) => OffloadDeviceRoute | undefined;

/** Waits between attach attempts (ms): 6 tries over ~8 s. */
export const DEFAULT_ATTACH_RETRY_DELAYS_MS: readonly number[] = Object.freeze([250, 500, 1000, 2000, 4000]);

export type DeviceState = 'attaching' | 'attached' | 'failed' | 'detaching' | 'detached' | 'no-route';

export interface DeviceStatus {
  readonly state: DeviceState;
  readonly portName: string;
  /** The route's class name (LibvirtRoute, QmpHotplugRoute…). */
  readonly route: string | undefined;
  readonly attempts: number;
  /** The last failure, when state is failed (or a retry is pending). */
  readonly error: string | undefined;
  /** When the state last changed (ISO time). */
  readonly since: string;
  /** How long the successful attach took from the request, ms. */
  readonly attachMs: number | undefined;
}

export interface VmDeviceOptions {
  readonly vm: VmIdentity;
  readonly socketPath: string;
  readonly portName: string;
  readonly route: OffloadDeviceRoute | undefined;
  readonly log: DaemonLog;
  readonly retryDelaysMs?: readonly number[];
}

export class VmDevice {
  readonly #o: VmDeviceOptions;
  #state: DeviceState;
  #attempts = 0;
  #error: string | undefined;
  #since = new Date().toISOString();
  #attachMs: number | undefined;
  /** Bumped by remove(): an attach loop of an older generation stops. */
  #generation = 0;
  #running: Promise<void> = Promise.resolve();
  /** Ends the attach loop's wait between attempts at once (remove()). */
  #stopWaiting = new AbortController();

  constructor(options: VmDeviceOptions) {
    this.#o = options;
    this.#state = options.route === undefined ? 'no-route' : 'detached';
  }

  get portName(): string {
    return this.#o.portName;
  }

  /**
   * Start attaching in the background (no-op while attaching, or without a route). When the
   * device was attached, the route is asked again: a `started` hook means a new QEMU, which
   * has no port yet even though a stop was never seen (the route finds an existing port and
   * leaves it). `reattach`: when the route finds the port already there, detach and attach it
   * again. After a daemon restart the VM's socket is a new file: under libvirt only a fresh
   * attach makes libvirt hand it to QEMU's user (it relabels the socket on attach), so QEMU can
   * reconnect.
   */
  attach(options: { readonly reattach?: boolean } = {}): void {
    if (this.#o.route === undefined) {
      this.#o.log.warn(`VM ${this.#o.vm.name}: attach requested, but the daemon has no hot-plug route (start serve with --libvirt)`, { vm: this.#o.vm.name });
      return;
    }
    if (this.#state === 'attaching') return;
    const generation = this.#generation;
    this.#set('attaching');
    this.#attempts = 0;
    this.#running = this.#attachLoop(this.#o.route, generation, options.reattach === true);
  }

  /**
   * Stop attaching; when the device is attached and the VM still runs (`stopped` false),
   * detach it. `stopped`: QEMU is gone (libvirt's stopped/release), and the device with it:
   * nothing is waited for (an attempt in flight is left to fail; its result is ignored), so the
   * hook that asked, and libvirt behind it, are not held up, nor the VM's next start.
   */
  async remove(stopped: boolean): Promise<void> {
    this.#generation++;
    this.#stopWaiting.abort();
    this.#stopWaiting = new AbortController();
    if (!stopped) await this.#running;
    const route = this.#o.route;
    if (route !== undefined && this.#state === 'attached' && !stopped) {
      this.#set('detaching');
      try {
        const spec: DetachSpec = { vm: this.#o.vm.name, portName: this.#o.portName };
        await route.detach(spec);
        this.#o.log.info(`VM ${this.#o.vm.name}: offload port ${this.#o.portName} detached`, { vm: this.#o.vm.name });
      } catch (err) {
        this.#error = message(err);
        this.#o.log.error(`VM ${this.#o.vm.name}: DETACH FAILED: ${this.#error}`, { vm: this.#o.vm.name });
      }
    }
    if (this.#state !== 'no-route') this.#set('detached');
    // A route's close may queue behind its call in flight (LibvirtRoute's calls go one at a
    // time, each up to its D-Bus timeout): once QEMU is gone, it is closed when that call ends,
    // and nobody waits for it.
    if (stopped) void this.#running.catch(() => undefined).then(() => closeRoute(route));
    else await closeRoute(route);
  }

  status(): DeviceStatus {
    return {
      state: this.#state,
      portName: this.#o.portName,
      route: this.#o.route?.constructor.name,
      attempts: this.#attempts,
      error: this.#error,
      since: this.#since,
      attachMs: this.#attachMs,
    };
  }

  async #attachLoop(route: OffloadDeviceRoute, generation: number, reattach: boolean): Promise<void> {
    const { vm, log } = this.#o;
    const delays = this.#o.retryDelaysMs ?? DEFAULT_ATTACH_RETRY_DELAYS_MS;
    const started = Date.now();
    const spec: AttachSpec = { vm: vm.name, portName: this.#o.portName, socketPath: this.#o.socketPath };
    for (let attempt = 0; ; attempt++) {
      if (generation !== this.#generation) return;
      this.#attempts = attempt + 1;
      try {
        let result = await route.attach(spec);
        if (result.alreadyAttached && reattach && generation === this.#generation) {
          log.info(`VM ${vm.name}: offload port ${this.#o.portName} found attached; detaching and attaching it again for the new socket`, { vm: vm.name });
          await route.detach({ vm: vm.name, portName: this.#o.portName });
          result = await route.attach(spec);
        }
        if (generation !== this.#generation) return; // removed meanwhile: remove() decides what to undo
        this.#error = undefined;
        this.#attachMs = Date.now() - started;
        this.#set('attached');
        log.info(`VM ${vm.name}: offload port ${this.#o.portName} ${result.alreadyAttached ? 'was already attached' : 'attached'} (${this.#attachMs} ms, attempt ${attempt + 1})`, { vm: vm.name });
        return;
      } catch (err) {
        this.#error = message(err);
        const delay = delays[attempt];
        // What will not heal by waiting: a usage error (bad port name, socket path), a domain
        // without a virtio-serial controller, a port name taken by someone else's channel.
        const final = delay === undefined || (err as { code?: unknown }).code === 'EUSAGE' || PERMANENT.has((err as Error).name);
        if (final) {
          if (generation !== this.#generation) return;
          this.#set('failed');
          log.error(`VM ${vm.name}: ATTACH FAILED after ${attempt + 1} attempt(s): ${this.#error}`, { vm: vm.name });
          return;
        }
        if (generation !== this.#generation) return;
        log.debug(`VM ${vm.name}: attach attempt ${attempt + 1} failed (${this.#error}); retrying in ${delay} ms`, { vm: vm.name });
        await pause(delay, this.#stopWaiting.signal);
      }
    }
  }

  #set(state: DeviceState): void {
    this.#state = state;
    this.#since = new Date().toISOString();
  }
}

/** Wait `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) return done();
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      done();
    }, ms);
    const stop = (): void => {
      clearTimeout(timer);
      done();
    };
    signal.addEventListener('abort', stop, { once: true });
  });
}

const PERMANENT = new Set(['HotplugNoSerialControllerError', 'HotplugConflictError', 'UsageError']);

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 2000);
}

/** Routes that hold a connection (libvirt's D-Bus) may offer close(); let it go with the VM. */
async function closeRoute(route: OffloadDeviceRoute | undefined): Promise<void> {
  const close = (route as { close?: () => unknown } | undefined)?.close;
  if (typeof close !== 'function') return;
  try {
    await close.call(route);
  } catch {
    // Nothing left to do with it.
  }
}
