// The libvirt route: the offload port as a libvirt `<channel type='unix'>` with a virtio target,
// hot-plugged through libvirt-dbus (AttachDevice/DetachDevice, live), so libvirt knows the
// device (no tainting, it shows in the live XML, it is chowned for QEMU's user).
// - Attach is idempotent: a channel with our port name and socket in the live XML → alreadyAttached.
// - libvirt cannot hot-plug a virtio-serial controller: a domain without one gets
//   HotplugNoSerialControllerError, which tells the user to run `virt-offload enable DOMAIN`
//   (the controller goes into the persistent definition and exists from the next boot).
// - Detach sends the channel's full XML (as the live XML has it) and waits for DeviceRemoved
//   of its alias, subscribed before the call (the signal can precede the reply).
// Calls on one route run one at a time, like the QMP route.
import { statSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { Mutex } from '../io/index.js';
import {
  LibvirtCallError,
  LibvirtConnection,
  LibvirtFlags,
  LibvirtSignalTimeoutError,
  channels,
  parseXml,
  serializeXml,
  unixChannelXml,
  virtioSerialControllers,
  type ChannelInfo,
  type LibvirtDomain,
} from '../libvirt/index.js';
import { HotplugConflictError, HotplugError, HotplugNoSerialControllerError, HotplugStepError, HotplugTimeoutError } from './errors.js';
import {
  checkSocketPath,
  DEFAULT_PORT_NAME,
  offloadIds,
  type AttachResult,
  type AttachSpec,
  type DetachResult,
  type DetachSpec,
  type HotplugStep,
  type OffloadDeviceRoute,
} from './types.js';

export interface LibvirtRouteOptions {
  /** The libvirt domain (by name) the route hot-plugs into. */
  domain: string;
  /** An open connection; default: one opened on first use (system bus) and closed by close(). */
  connection?: LibvirtConnection;
  /** Time limit of each libvirt-dbus call and of the wait for DeviceRemoved; default 10 s. */
  timeoutMs?: number;
}

export class LibvirtRoute implements OffloadDeviceRoute {
  readonly domain: string;
  readonly #timeoutMs: number;
  /** The connection passed in (never closed or replaced here). */
  readonly #given: LibvirtConnection | undefined;
  /** The connection opened here; replaced when the bus went away (dbus-daemon restarted…). */
  #owned: LibvirtConnection | undefined;
  /** attach/detach run one at a time: each plans from the state it reads. */
  readonly #calls = new Mutex();

  constructor(options: LibvirtRouteOptions) {
    if (typeof options.domain !== 'string' || options.domain === '') throw new UsageError('a libvirt domain name is needed', '--libvirt');
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError(`timeout must be a positive whole number of milliseconds, got ${timeoutMs}`, '--timeout');
    this.domain = options.domain;
    this.#timeoutMs = timeoutMs;
    this.#given = options.connection;
  }

  attach(spec: AttachSpec): Promise<AttachResult> {
    return this.#calls.run(async () => {
      const started = Date.now();
      checkSocketPath(spec.socketPath);
      const reconnect = spec.reconnectSeconds ?? 1;
      if (!Number.isSafeInteger(reconnect) || reconnect < 1) throw new UsageError(`reconnect interval must be a whole number of seconds ≥ 1, got ${reconnect}`, '--reconnect');
      const portName = spec.portName ?? DEFAULT_PORT_NAME;
      const alias = channelAlias(portName);
      const domain = await this.#lookup(spec.vm);
      const live = await this.#liveXml(spec.vm, domain);

      const existing = channels(live).find((c) => c.targetType === 'virtio' && c.targetName === portName);
      if (existing) {
        if (existing.type === 'unix' && existing.sourcePath === spec.socketPath) {
          return this.#attachResult(spec.vm, portName, existing, [], started);
        }
        throw new HotplugConflictError(
          spec.vm,
          existing.alias ?? portName,
          `the domain already has a virtio port named ${portName} (${describeChannel(existing)}), not ours on ${spec.socketPath}: detach it first`,
        );
      }
      if (virtioSerialControllers(live).length === 0) throw new HotplugNoSerialControllerError(spec.vm, this.domain);
      // libvirt stats (and chowns, for QEMU's user) the socket while attaching: it must exist.
      if (!isSocket(spec.socketPath)) {
        throw new HotplugStepError(spec.vm, `attach virtio port ${portName}`, new Error(`${spec.socketPath} is not a listening unix socket yet: libvirt needs it to exist (it hands it to QEMU's user); start the daemon first`));
      }

      const xml = unixChannelXml({ socketPath: spec.socketPath, portName, alias, reconnectSeconds: reconnect });
      const step: HotplugStep = {
        kind: 'add-port',
        id: alias,
        command: 'AttachDevice',
        arguments: { xml, flags: LibvirtFlags.AFFECT_LIVE },
        summary: `attach channel ${alias} (virtio port ${portName} → ${spec.socketPath}) to the running domain`,
      };
      try {
        await domain.attachDevice(xml, LibvirtFlags.AFFECT_LIVE, { timeoutMs: this.#timeoutMs });
      } catch (err) {
        if (err instanceof LibvirtCallError && /no virtio-serial controllers? (are )?available/i.test(err.libvirtMessage)) {
          throw new HotplugNoSerialControllerError(spec.vm, this.domain);
        }
        throw new HotplugStepError(spec.vm, step.summary, err);
      }
      const after = channels(await this.#liveXml(spec.vm, domain)).find((c) => c.alias === alias);
      if (!after) throw new HotplugStepError(spec.vm, step.summary, new Error(`AttachDevice succeeded but the live XML has no channel ${alias}`));
      return this.#attachResult(spec.vm, portName, after, [step], started);
    });
  }

  detach(spec: DetachSpec): Promise<DetachResult> {
    return this.#calls.run(async () => {
      const started = Date.now();
      const portName = spec.portName ?? DEFAULT_PORT_NAME;
      channelAlias(portName); // checks the name
      const domain = await this.#lookup(spec.vm);
      const existing = channels(await this.#liveXml(spec.vm, domain)).find((c) => c.targetType === 'virtio' && c.targetName === portName);
      if (!existing) return { vm: spec.vm, portName, steps: [], alreadyDetached: true, elapsedMs: Date.now() - started };
      if (!existing.alias) throw new HotplugStepError(spec.vm, `detach virtio port ${portName}`, new Error('the live XML gives the channel no alias'));

      const xml = serializeXml(existing.element);
      const step: HotplugStep = {
        kind: 'remove-port',
        id: existing.alias,
        command: 'DetachDevice',
        arguments: { xml, flags: LibvirtFlags.AFFECT_LIVE },
        summary: `detach channel ${existing.alias} (virtio port ${portName}) from the running domain`,
      };
      const watch = await this.#step(spec.vm, step.summary, () => domain.watchDevices());
      try {
        await domain.detachDevice(xml, LibvirtFlags.AFFECT_LIVE, { timeoutMs: this.#timeoutMs });
        const outcome = await watch.wait(['DeviceRemoved', 'DeviceRemovalFailed'], existing.alias, this.#timeoutMs);
        if (outcome === 'DeviceRemovalFailed') throw new Error(`libvirt reported DeviceRemovalFailed for ${existing.alias}`);
      } catch (err) {
        if (err instanceof LibvirtSignalTimeoutError) {
          // The signal may have been lost (libvirt-dbus restarted…): the live XML decides.
          const still = channels(await this.#liveXml(spec.vm, domain)).some((c) => c.alias === existing.alias);
          if (still) throw new HotplugTimeoutError(spec.vm, existing.alias, this.#timeoutMs);
        } else {
          throw err instanceof HotplugError ? err : new HotplugStepError(spec.vm, step.summary, err);
        }
      } finally {
        await watch.close();
      }
      return { vm: spec.vm, portName, steps: [step], alreadyDetached: false, elapsedMs: Date.now() - started };
    });
  }

  /** Close the connection the route opened itself (not one passed in). */
  close(): Promise<void> {
    return this.#calls.run(async () => {
      this.#owned?.close();
      this.#owned = undefined;
    });
  }

  #attachResult(vm: string, portName: string, channel: ChannelInfo, steps: HotplugStep[], started: number): AttachResult {
    const alias = channel.alias ?? channelAlias(portName);
    const bus = channel.address ? `virtio-serial${channel.address.controller}.${channel.address.bus}` : 'virtio-serial0.0';
    // libvirt names a device's QEMU chardev "char" + its alias.
    return { vm, portName, chardevId: `char${alias}`, portId: alias, bus, steps, alreadyAttached: steps.length === 0, elapsedMs: Date.now() - started };
  }

  async #lookup(vm: string): Promise<LibvirtDomain> {
    return this.#step(vm, `look up libvirt domain ${this.domain}`, async () => (await this.#connection()).lookupDomain(this.domain, { timeoutMs: this.#timeoutMs }));
  }

  /** Calls run one at a time (#calls), so no two callers open a connection at once. */
  async #connection(): Promise<LibvirtConnection> {
    if (this.#given) return this.#given;
    if (this.#owned && !this.#owned.closed) return this.#owned;
    this.#owned = await LibvirtConnection.connect({ timeoutMs: this.#timeoutMs });
    return this.#owned;
  }

  async #liveXml(vm: string, domain: LibvirtDomain): Promise<ReturnType<typeof parseXml>> {
    return this.#step(vm, `read the live XML of domain ${this.domain}`, async () => parseXml(await domain.getXMLDesc(0, { timeoutMs: this.#timeoutMs }), `domain ${this.domain} (live XML)`));
  }

  async #step<T>(vm: string, what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw err instanceof HotplugError ? err : new HotplugStepError(vm, what, err);
    }
  }
}

/** libvirt user alias of our channel for a port: ua-vo-port0 for virt-offload.0 (ua- + [A-Za-z0-9_-]). */
export function channelAlias(portName: string): string {
  return `ua-${offloadIds(portName).port.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

function describeChannel(c: ChannelInfo): string {
  return `type ${c.type ?? '?'}${c.sourcePath !== undefined ? ` on ${c.sourcePath}` : ''}${c.alias !== undefined ? `, alias ${c.alias}` : ''}`;
}
