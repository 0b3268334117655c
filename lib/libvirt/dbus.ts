// The one place dbus-next is used (the vendor wall): a bus connection reduced to what the
// libvirt bindings need. dbus-next is loaded only when a connection is opened (its import costs
// ~60 ms of start-up, research/platform.md), and introspection is never used: calls are built
// as raw messages with the signatures libvirt-dbus documents (17 ms instead of 51 ms for a
// fresh process's first call). Unit tests replace the whole thing with a fake BusPort.

/** A message as the bindings see it (method returns and signals). */
export interface BusMessage {
  path?: string;
  interface?: string;
  member?: string;
  sender?: string;
  signature?: string;
  body: unknown[];
}

export interface BusCall {
  destination: string;
  path: string;
  interface: string;
  member: string;
  /** D-Bus signature of body; '' or undefined for no arguments. */
  signature?: string;
  body?: unknown[];
}

/** A call answered with a D-Bus error (org.libvirt.Error, org.freedesktop.DBus.Error.*). */
export class BusCallFailure extends Error {
  constructor(
    readonly errorName: string,
    readonly text: string,
  ) {
    super(`${errorName}: ${text}`);
    this.name = 'BusCallFailure';
  }
}

/** What LibvirtConnection needs from a bus connection. */
export interface BusPort {
  /** Resolves with the reply; rejects with BusCallFailure for an error reply. Never times out by itself. */
  call(call: BusCall): Promise<BusMessage>;
  /** Every signal delivered to this connection (match rules decide which). */
  onSignal(listener: (msg: BusMessage) => void): () => void;
  /** Called once when the connection ends (peer closed, socket error). */
  onClose(listener: (cause: Error | undefined) => void): void;
  close(): void;
}

const DEFAULT_SYSTEM_BUS = 'unix:path=/run/dbus/system_bus_socket';

/** The system bus address: DBUS_SYSTEM_BUS_ADDRESS when set, else the standard socket. */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['DBUS_SYSTEM_BUS_ADDRESS'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_SYSTEM_BUS;
}

const SIGNAL = 4;
const ERROR = 3;

/**
 * Connect to the bus at `address` and complete the Hello exchange (the bus then knows us).
 * Rejects with the socket error, or with a plain Error after `timeoutMs`.
 */
export async function openBus(address: string, timeoutMs: number): Promise<BusPort> {
  const mod = (await import('dbus-next')) as typeof import('dbus-next') & { default?: typeof import('dbus-next') };
  const dbus = mod.default ?? mod;
  // sessionBus() is dbus-next's "connect to this address"; it is the system bus when the address is.
  const bus = dbus.sessionBus({ busAddress: address });
  // dbus-next's MessageBus does not forward its connection's 'end'; without it a bus that goes
  // away is noticed only through the per-call timeouts.
  const connection = (bus as unknown as { _connection?: { on(event: 'end', listener: () => void): void } })._connection;

  const signalListeners = new Set<(msg: BusMessage) => void>();
  const closeListeners = new Set<(cause: Error | undefined) => void>();
  let closed = false;
  const fireClose = (cause: Error | undefined): void => {
    if (closed) return;
    closed = true;
    for (const l of closeListeners) l(cause);
  };

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        bus.disconnect();
      } catch {
        // the socket may not even be open
      }
      reject(new Error(`no Hello reply within ${timeoutMs} ms`));
    }, timeoutMs);
    bus.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    bus.once('error', (err: unknown) => {
      clearTimeout(timer);
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });

  bus.on('error', (err: unknown) => fireClose(err instanceof Error ? err : new Error(String(err))));
  connection?.on('end', () => fireClose(undefined));
  bus.on('message', (msg) => {
    if (msg.type !== SIGNAL) return;
    const m: BusMessage = { path: msg.path, interface: msg.interface, member: msg.member, sender: msg.sender, signature: msg.signature, body: msg.body };
    for (const l of signalListeners) l(m);
  });

  return {
    async call(c) {
      const message = new dbus.Message({
        destination: c.destination,
        path: c.path,
        interface: c.interface,
        member: c.member,
        signature: c.signature ?? '',
        body: c.body ?? [],
      });
      let reply;
      try {
        reply = await bus.call(message);
      } catch (err) {
        if (err instanceof dbus.DBusError) throw new BusCallFailure(err.type, err.text);
        throw err;
      }
      if (!reply) return { body: [] };
      if (reply.type === ERROR) throw new BusCallFailure(reply.errorName, String(reply.body[0] ?? ''));
      return { path: reply.path, interface: reply.interface, member: reply.member, sender: reply.sender, signature: reply.signature, body: reply.body };
    },
    onSignal(listener) {
      signalListeners.add(listener);
      return () => signalListeners.delete(listener);
    },
    onClose(listener) {
      closeListeners.add(listener);
    },
    close() {
      bus.disconnect();
      fireClose(undefined);
    },
  };
}
