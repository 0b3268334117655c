// Typed bindings for the part of libvirt-dbus virt-offload uses: org.libvirt.Connect on
// /org/libvirt/QEMU (ListDomains, DomainLookupByName, DomainDefineXML, signal DomainEvent) and
// org.libvirt.Domain on each domain's object path (GetXMLDesc, AttachDevice, DetachDevice,
// Get/SetMetadata, Create, Destroy, Undefine, signals DeviceAdded/DeviceRemoved/…).
//
// - Every call has a time limit (dbus-next has none; one call was seen to stall 7.5 s).
// - Flags are plain numbers: dbus-next rejects a BigInt for type `u` with a misleading message.
// - Errors: LibvirtCallError with the method, the domain and libvirt's text (libvirt-dbus sends
//   org.libvirt.Error with text only, no code); "Domain not found" → LibvirtNoDomainError.
// - Signals are taken only from the current owner of org.libvirt (any bus client can send a
//   unicast signal to us), tracked from replies and NameOwnerChanged.
// - Subscribe (watchDevices) BEFORE the call that triggers a signal: libvirt-dbus may send
//   DeviceAdded before the method reply.
import { waitForProbe } from '../io/index.js';
import { VirtOffloadError } from '../errors.js';
import { BusCallFailure, openBus, systemBusAddress, type BusMessage, type BusPort } from './dbus.js';
import { LibvirtCallError, LibvirtConnectError, LibvirtNoDomainError, LibvirtSignalTimeoutError, LibvirtTimeoutError } from './errors.js';

export const LIBVIRT_BUS_NAME = 'org.libvirt';
export const LIBVIRT_QEMU_PATH = '/org/libvirt/QEMU';
const CONNECT_IFACE = 'org.libvirt.Connect';
const DOMAIN_IFACE = 'org.libvirt.Domain';
const DBUS = { name: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', iface: 'org.freedesktop.DBus' };

/** libvirt's flag values (libvirt-domain.h) for the calls here. */
export const LibvirtFlags = {
  /** virDomainModificationImpact */
  AFFECT_CURRENT: 0,
  AFFECT_LIVE: 1,
  AFFECT_CONFIG: 2,
  /** virDomainXMLFlags: SECURE keeps passwords (needed when the XML is defined again). */
  XML_SECURE: 1,
  XML_INACTIVE: 2,
  /** virDomainMetadataType */
  METADATA_DESCRIPTION: 0,
  METADATA_TITLE: 1,
  METADATA_ELEMENT: 2,
  /** virConnectListAllDomainsFlags */
  LIST_ACTIVE: 1,
  LIST_INACTIVE: 2,
} as const;

export interface LibvirtConnectionOptions {
  /** D-Bus address; default DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket. */
  busAddress?: string;
  /** Time limit of each call (and of connecting); default 10 s. */
  timeoutMs?: number;
  /** An already open bus connection (unit tests pass a fake). */
  bus?: BusPort;
}

export interface DomainEvent {
  /** Object path of the domain. */
  path: string;
  /** virDomainEventType (0 defined, 2 started, 5 stopped, …) and its detail. */
  event: number;
  detail: number;
}

export type DeviceSignal = 'DeviceAdded' | 'DeviceRemoved' | 'DeviceRemovalFailed';

export interface CallOptions {
  timeoutMs?: number;
}

interface Pending {
  reject: (err: Error) => void;
}

export class LibvirtConnection {
  readonly busAddress: string;
  readonly timeoutMs: number;
  readonly #bus: BusPort;
  readonly #pending = new Set<Pending>();
  /** Unique bus name of libvirt-dbus, once known. */
  #owner: string | undefined;
  #closed: Error | undefined;

  private constructor(bus: BusPort, busAddress: string, timeoutMs: number) {
    this.#bus = bus;
    this.busAddress = busAddress;
    this.timeoutMs = timeoutMs;
    bus.onClose((cause) => {
      this.#closed = new LibvirtConnectError(busAddress, 'the bus connection closed', cause);
      for (const p of [...this.#pending]) p.reject(this.#closed);
    });
    bus.onSignal((msg) => {
      if (msg.sender === DBUS.name && msg.member === 'NameOwnerChanged' && msg.body[0] === LIBVIRT_BUS_NAME) {
        this.#owner = typeof msg.body[2] === 'string' && msg.body[2] !== '' ? msg.body[2] : undefined;
      }
    });
  }

  /** Connect to the system bus (no call to libvirt yet; libvirt-dbus starts on the first call). */
  static async connect(options: LibvirtConnectionOptions = {}): Promise<LibvirtConnection> {
    const busAddress = options.busAddress ?? systemBusAddress();
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new TypeError(`timeoutMs must be a positive whole number of milliseconds, got ${timeoutMs}`);
    let bus = options.bus;
    if (!bus) {
      try {
        bus = await openBus(busAddress, timeoutMs);
      } catch (err) {
        throw new LibvirtConnectError(busAddress, err instanceof Error ? err.message : String(err), err);
      }
    }
    const conn = new LibvirtConnection(bus, busAddress, timeoutMs);
    await conn.#addMatch(`type='signal',sender='${DBUS.name}',interface='${DBUS.iface}',member='NameOwnerChanged',arg0='${LIBVIRT_BUS_NAME}'`);
    return conn;
  }

  /** The domains libvirt knows (flags: LibvirtFlags.LIST_*; 0 = all), with their names. */
  async listDomains(flags = 0, options?: CallOptions): Promise<LibvirtDomain[]> {
    const reply = await this.#connectCall('ListDomains', 'u', [flags], undefined, options);
    const paths = stringArray(reply.body[0], 'ListDomains');
    const names = await Promise.all(paths.map((p) => this.#property(p, 'Name', undefined, options)));
    return paths.map((p, i) => new LibvirtDomain(this, p, String(names[i])));
  }

  /** The domain named `name`; LibvirtNoDomainError when libvirt has none. */
  async lookupDomain(name: string, options?: CallOptions): Promise<LibvirtDomain> {
    const reply = await this.#connectCall('DomainLookupByName', 's', [name], name, options);
    return new LibvirtDomain(this, objectPath(reply.body[0], 'DomainLookupByName'), name);
  }

  /** Define (or redefine: same name and UUID) a persistent domain from XML. */
  async defineDomain(xml: string, options?: CallOptions): Promise<LibvirtDomain> {
    const reply = await this.#connectCall('DomainDefineXML', 's', [xml], undefined, options);
    const path = objectPath(reply.body[0], 'DomainDefineXML');
    const name = await this.#property(path, 'Name', undefined, options);
    return new LibvirtDomain(this, path, String(name));
  }

  /** Listen to Connect.DomainEvent (lifecycle events of every domain); resolves once subscribed. */
  async onDomainEvent(listener: (event: DomainEvent) => void): Promise<{ close(): Promise<void> }> {
    const rule = `type='signal',sender='${LIBVIRT_BUS_NAME}',interface='${CONNECT_IFACE}',member='DomainEvent',path='${LIBVIRT_QEMU_PATH}'`;
    const off = this.#bus.onSignal((msg) => {
      if (!this.#fromLibvirt(msg) || msg.interface !== CONNECT_IFACE || msg.member !== 'DomainEvent') return;
      const [path, event, detail] = msg.body;
      if (typeof path === 'string' && typeof event === 'number' && typeof detail === 'number') listener({ path, event, detail });
    });
    await this.#addMatch(rule);
    return { close: () => (off(), this.#removeMatch(rule)) };
  }

  /** The bus connection ended (close(), or the bus went away): every call now fails. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  close(): void {
    this.#bus.close();
    this.#closed ??= new LibvirtConnectError(this.busAddress, 'the connection was closed');
  }

  // ---- used by LibvirtDomain ----

  /** @internal A call on org.libvirt.Domain at `path`. */
  domainCall(domain: LibvirtDomain, member: string, signature: string, body: unknown[], options?: CallOptions): Promise<BusMessage> {
    return this.#call({ destination: LIBVIRT_BUS_NAME, path: domain.path, interface: DOMAIN_IFACE, member, signature, body }, domain.name, options);
  }

  /** @internal A property of org.libvirt.Domain at `path`. */
  domainProperty(domain: LibvirtDomain, property: string, options?: CallOptions): Promise<unknown> {
    return this.#property(domain.path, property, domain.name, options);
  }

  /** @internal Subscribe to device signals of one domain. */
  async watchDomain(domain: LibvirtDomain): Promise<DeviceWatch> {
    const rule = `type='signal',sender='${LIBVIRT_BUS_NAME}',interface='${DOMAIN_IFACE}',path='${domain.path}'`;
    const seen: Array<{ signal: DeviceSignal; alias: string }> = [];
    const waiters = new Set<() => void>();
    const off = this.#bus.onSignal((msg) => {
      if (!this.#fromLibvirt(msg) || msg.path !== domain.path || msg.interface !== DOMAIN_IFACE) return;
      if (msg.member !== 'DeviceAdded' && msg.member !== 'DeviceRemoved' && msg.member !== 'DeviceRemovalFailed') return;
      if (typeof msg.body[0] !== 'string') return;
      seen.push({ signal: msg.member, alias: msg.body[0] });
      if (seen.length > 256) seen.shift();
      for (const w of [...waiters]) w();
    });
    try {
      await this.#addMatch(rule);
    } catch (err) {
      off();
      throw err;
    }
    let closed = false;
    return {
      seen: () => [...seen],
      wait: (signals, alias, timeoutMs) =>
        waitForProbe<DeviceSignal>(
          waiters,
          timeoutMs,
          () => {
            const hit = seen.find((s) => signals.includes(s.signal) && s.alias === alias);
            if (hit) return { value: hit.signal };
            return this.#closed ? { error: this.#closed } : undefined;
          },
          () => new LibvirtSignalTimeoutError(signals.join('/'), domain.name, `device ${alias}`, timeoutMs),
        ),
      close: async () => {
        if (closed) return;
        closed = true;
        off();
        await this.#removeMatch(rule).catch(() => {});
      },
    };
  }

  // ---- internals ----

  #connectCall(member: string, signature: string, body: unknown[], domain: string | undefined, options?: CallOptions): Promise<BusMessage> {
    return this.#call({ destination: LIBVIRT_BUS_NAME, path: LIBVIRT_QEMU_PATH, interface: CONNECT_IFACE, member, signature, body }, domain, options);
  }

  async #property(path: string, property: string, domain: string | undefined, options?: CallOptions): Promise<unknown> {
    const reply = await this.#call(
      { destination: LIBVIRT_BUS_NAME, path, interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: [DOMAIN_IFACE, property] },
      domain,
      options,
      `Get(${property})`,
    );
    const v = reply.body[0] as { value?: unknown } | undefined;
    return v && typeof v === 'object' && 'value' in v ? v.value : v;
  }

  #addMatch(rule: string): Promise<void> {
    return this.#call({ destination: DBUS.name, path: DBUS.path, interface: DBUS.iface, member: 'AddMatch', signature: 's', body: [rule] }, undefined).then(() => {});
  }

  #removeMatch(rule: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#call({ destination: DBUS.name, path: DBUS.path, interface: DBUS.iface, member: 'RemoveMatch', signature: 's', body: [rule] }, undefined).then(() => {});
  }

  #fromLibvirt(msg: BusMessage): boolean {
    return this.#owner !== undefined && msg.sender === this.#owner;
  }

  /** One call with a time limit; errors become LibvirtCallError / LibvirtTimeoutError. */
  #call(call: Parameters<BusPort['call']>[0], domain: string | undefined, options?: CallOptions, label = call.member): Promise<BusMessage> {
    if (this.#closed) return Promise.reject(this.#closed);
    const timeoutMs = options?.timeoutMs ?? this.timeoutMs;
    return new Promise<BusMessage>((resolve, reject) => {
      const pending: Pending = { reject: (err) => finish(() => reject(err)) };
      const timer = setTimeout(() => pending.reject(new LibvirtTimeoutError(label, domain, timeoutMs)), timeoutMs);
      let settled = false;
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(pending);
        settle();
      };
      this.#pending.add(pending);
      this.#bus.call(call).then(
        (reply) => {
          if (call.destination === LIBVIRT_BUS_NAME && reply.sender) this.#owner = reply.sender;
          finish(() => resolve(reply));
        },
        (err: unknown) => finish(() => reject(mapError(err, label, domain))),
      );
    });
  }
}

/** A subscription to one domain's device signals; signals are kept from the moment it exists. */
export interface DeviceWatch {
  /** Resolves with the first of `signals` seen for `alias` (also one seen before this call). */
  wait(signals: readonly DeviceSignal[], alias: string, timeoutMs: number): Promise<DeviceSignal>;
  seen(): Array<{ signal: DeviceSignal; alias: string }>;
  close(): Promise<void>;
}

export class LibvirtDomain {
  constructor(
    readonly connection: LibvirtConnection,
    /** D-Bus object path (/org/libvirt/QEMU/domain/_<uuid>). */
    readonly path: string,
    readonly name: string,
  ) {}

  /** The domain XML; flags LibvirtFlags.XML_* (XML_INACTIVE: the persistent definition). */
  async getXMLDesc(flags = 0, options?: CallOptions): Promise<string> {
    const reply = await this.connection.domainCall(this, 'GetXMLDesc', 'u', [flags], options);
    return stringValue(reply.body[0], 'GetXMLDesc');
  }

  /** flags: LibvirtFlags.AFFECT_* (AFFECT_LIVE: hot-plug into the running domain). */
  async attachDevice(xml: string, flags: number, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'AttachDevice', 'su', [xml, flags], options);
  }

  /** Starts the unplug; for a live device the DeviceRemoved signal says when it is gone. */
  async detachDevice(xml: string, flags: number, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'DetachDevice', 'su', [xml, flags], options);
  }

  /**
   * The metadata element of namespace `uri` (type METADATA_ELEMENT), or undefined when the
   * domain has none (libvirt says "metadata not found"). flags: AFFECT_LIVE / AFFECT_CONFIG.
   */
  async getMetadata(type: number, uri: string, flags = 0, options?: CallOptions): Promise<string | undefined> {
    try {
      const reply = await this.connection.domainCall(this, 'GetMetadata', 'isu', [type, uri, flags], options);
      return stringValue(reply.body[0], 'GetMetadata');
    } catch (err) {
      if (err instanceof LibvirtCallError && /metadata not found/i.test(err.libvirtMessage)) return undefined;
      throw err;
    }
  }

  /**
   * Set (or, with metadata '', clear) the metadata element of namespace `uri`, written with
   * prefix `key`. flags: AFFECT_LIVE | AFFECT_CONFIG.
   */
  async setMetadata(type: number, metadata: string, key: string, uri: string, flags: number, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'SetMetadata', 'isssu', [type, metadata, key, uri, flags], options);
  }

  async isActive(options?: CallOptions): Promise<boolean> {
    return (await this.connection.domainProperty(this, 'Active', options)) === true;
  }

  async create(flags = 0, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'Create', 'u', [flags], options);
  }

  async destroy(flags = 0, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'Destroy', 'u', [flags], options);
  }

  async undefine(flags = 0, options?: CallOptions): Promise<void> {
    await this.connection.domainCall(this, 'Undefine', 'u', [flags], options);
  }

  /** Subscribe to DeviceAdded/DeviceRemoved/DeviceRemovalFailed; do it before the call. */
  watchDevices(): Promise<DeviceWatch> {
    return this.connection.watchDomain(this);
  }
}

function mapError(err: unknown, method: string, domain: string | undefined): Error {
  if (err instanceof VirtOffloadError) return err;
  if (err instanceof BusCallFailure) {
    const noDomain =
      (err.errorName === 'org.libvirt.Error' && /^Domain not found\b/i.test(err.text)) ||
      err.errorName === 'org.freedesktop.DBus.Error.UnknownObject';
    return noDomain ? new LibvirtNoDomainError(method, domain, err.errorName, err.text) : new LibvirtCallError(method, domain, err.errorName, err.text);
  }
  return new LibvirtCallError(method, domain, 'org.virt_offload.Error.Transport', err instanceof Error ? err.message : String(err));
}

function stringValue(v: unknown, method: string): string {
  if (typeof v !== 'string') throw new LibvirtCallError(method, undefined, 'org.virt_offload.Error.BadReply', `expected a string in the reply, got ${typeof v}`);
  return v;
}

function objectPath(v: unknown, method: string): string {
  const s = stringValue(v, method);
  if (!s.startsWith('/')) throw new LibvirtCallError(method, undefined, 'org.virt_offload.Error.BadReply', `expected an object path, got ${JSON.stringify(s.slice(0, 80))}`);
  return s;
}

function stringArray(v: unknown, method: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new LibvirtCallError(method, undefined, 'org.virt_offload.Error.BadReply', 'expected an array of object paths in the reply');
  return v;
}
