// bench/hotplug: time from an attach request to the offload port being visible in the running
// tiny guest (TCG), through our QMP route vs the raw QMP command sequence, in the same run.
//   ours:     a fresh QMP connection + QmpHotplugRoute.attach() (what `virt-offload attach` does
//             in-process: reads the VM's state, plans, chardev-add, device_add onto the bus)
//   baseline: a minimal script: connect, greeting, qmp_capabilities, the same chardev-add and
//             device_add virtserialport onto the same bus, nothing else
//   visible:  a watcher in the guest polls /sys/class/virtio-ports/*/name every ~2 ms (shell
//             builtins only) and, once the port and its /dev node are there, writes a token
//             into it; the clock stops when the host's listening socket reads that token.
//   target:   ours ≤ 1.2× the baseline's median.
// The two alternate on one guest (detach between, not timed). Usage: node dist/bench/hotplug/run.js [--runs N]
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { QmpHotplugRoute } from '../../lib/hotplug/index.js';
import { QmpClient } from '../../lib/qmp/index.js';
import { startGuest, type Guest } from '../../testbed/guest-vm.js';
import { scratchDir } from '../../testbed/tools.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '12' } } });
const runs = Number(values.runs);
const TARGET = 1.2;
const PORT = 'virt-offload.0';
const BUS = 'vser0.0'; // startGuest's virtio-serial-pci controller

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The host end: QEMU's chardev connects here; resolves tokens the guest writes. */
function listener(path: string) {
  const waiting = new Map<string, (t: number) => void>();
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      const now = performance.now();
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const m = /seen (\S+)/.exec(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (m) waiting.get(m[1]!)?.(now);
      }
    });
  });
  return {
    listen: () => new Promise<void>((done, fail) => server.once('error', fail).listen(path, done)),
    seen: (token: string, timeoutMs: number) =>
      new Promise<number>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`the guest did not report port ${PORT} (token ${token}) within ${timeoutMs} ms`)), timeoutMs);
        waiting.set(token, (t) => {
          clearTimeout(timer);
          waiting.delete(token);
          done(t);
        });
      }),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** In the guest, in the background: wait for the port, then write the token into it. */
async function watch(guest: Guest, token: string): Promise<void> {
  const script = `(
i=0
while [ $i -lt 5000 ]; do
  for f in /sys/class/virtio-ports/*/name; do
    [ -r "$f" ] || continue
    read -r n < "$f"
    if [ "$n" = "${PORT}" ]; then
      d=\${f%/name}; d=/dev/\${d##*/}
      if [ -c "$d" ]; then echo "seen ${token}" > "$d"; exit 0; fi
    fi
  done
  usleep 2000
  i=$((i+1))
done
) </dev/null >/dev/null 2>&1 &
echo started`;
  const r = await guest.exec(script, 20_000);
  if (r.code !== 0 || !r.output.includes('started')) throw new Error(`guest watcher did not start: ${r.output}`);
}

/** The baseline: the raw QMP sequence over a fresh connection, as a minimal script sends it. */
function rawAttach(qmpPath: string, socketPath: string): Promise<void> {
  const commands = [
    { execute: 'qmp_capabilities' },
    { execute: 'chardev-add', arguments: { id: 'raw-chr', backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: socketPath } }, server: false, reconnect: 1 } } } },
    { execute: 'device_add', arguments: { driver: 'virtserialport', bus: BUS, chardev: 'raw-chr', name: PORT, id: 'raw-port' } },
  ];
  return new Promise((done, fail) => {
    const s = connect(qmpPath);
    let buf = '';
    let next = 0;
    s.setEncoding('utf8');
    s.on('error', fail);
    s.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if ('event' in msg) continue;
        if ('error' in msg) return fail(new Error(`raw QMP: ${JSON.stringify(msg.error)}`));
        // The greeting, then one reply per command.
        if (next === commands.length) {
          s.end();
          return done();
        }
        s.write(`${JSON.stringify(commands[next++])}\n`);
      }
    });
  });
}

async function rawDetach(qmpPath: string): Promise<void> {
  const qmp = new QmpClient();
  await qmp.connect(qmpPath);
  try {
    const gone = qmp.waitEvent('DEVICE_DELETED', (e) => (e.data as { device?: string } | undefined)?.device === 'raw-port', 10_000);
    await qmp.execute('device_del', { id: 'raw-port' });
    await gone;
    await qmp.execute('chardev-remove', { id: 'raw-chr' });
  } finally {
    await qmp.disconnect();
  }
}

async function withRoute<T>(qmpPath: string, work: (r: QmpHotplugRoute) => Promise<T>): Promise<T> {
  const qmp = new QmpClient();
  await qmp.connect(qmpPath);
  try {
    return await work(new QmpHotplugRoute(qmp));
  } finally {
    await qmp.disconnect();
  }
}

const scratch = scratchDir('vo-bench-hotplug-');
let guest: Guest | undefined;
try {
  const qmpPath = join(scratch.dir, 'qmp.sock');
  const socketPath = join(scratch.dir, 'daemon.sock');
  const host = listener(socketPath);
  await host.listen();
  guest = await startGuest({ qmpSocket: qmpPath, virtioSerial: true });
  console.log(`bench/hotplug: guest booted in ${guest.bootMs} ms (pc, TCG); ${runs} attaches per method, alternating`);

  const methods = [
    {
      name: 'raw QMP sequence (baseline)',
      attach: () => rawAttach(qmpPath, socketPath),
      detach: () => rawDetach(qmpPath),
    },
    {
      name: 'QmpHotplugRoute.attach (ours)',
      attach: async () => {
        await withRoute(qmpPath, (r) => r.attach({ vm: 'bench', socketPath, portName: PORT }));
      },
      detach: async () => {
        await withRoute(qmpPath, (r) => r.detach({ vm: 'bench', portName: PORT }));
      },
    },
  ];
  const visible = methods.map(() => [] as number[]);
  const replied = methods.map(() => [] as number[]);
  let n = 0;
  // One untimed round each first (page cache, QEMU's first hot-plug).
  for (let i = -1; i < runs; i++) {
    for (const [k, m] of methods.entries()) {
      const token = `t${n++}`;
      await watch(guest, token);
      const seen = host.seen(token, 20_000);
      const t0 = performance.now();
      await m.attach();
      const t1 = performance.now();
      const t2 = await seen;
      if (i >= 0) {
        replied[k]!.push(t1 - t0);
        visible[k]!.push(t2 - t0);
      }
      await m.detach();
    }
  }
  host.close();

  console.log(`${'method'.padEnd(32)} ${'commands done'.padStart(14)} ${'port visible'.padStart(13)} ${'min'.padStart(9)}   ratio (medians)`);
  const base = median(visible[0]!);
  for (const [k, m] of methods.entries()) {
    const v = median(visible[k]!);
    console.log(`${m.name.padEnd(32)} ${median(replied[k]!).toFixed(1).padStart(11)} ms ${v.toFixed(1).padStart(10)} ms ${Math.min(...visible[k]!).toFixed(1).padStart(6)} ms   ${(v / base).toFixed(2)}x`);
  }
  const ratio = median(visible[1]!) / base;
  console.log(`ours: ${ratio.toFixed(2)}x the raw sequence, request → port visible in the guest (target ≤ ${TARGET}x): ${ratio <= TARGET ? 'OK' : 'OVER TARGET'}`);
} finally {
  await guest?.stop();
  scratch.cleanup();
}
