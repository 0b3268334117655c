// The QMP client against a real QEMU (TCG, no guest, started paused): negotiation, commands,
// errors, events, chardev hot-plug, concurrency, timeouts and QEMU dying under a call.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  QmpCapabilityError,
  QmpClient,
  QmpConnectError,
  QmpDisconnectedError,
  QmpExecuteError,
  QmpStateError,
  QmpTimeoutError,
  type QmpEvent,
} from '../../lib/qmp/index.js';
import { TransportClosedError } from '../../lib/transport/index.js';
import { startQemu, type QemuInstance } from '../helpers/qemu.js';
import { recordingLogger, rejectsWith } from './helpers.js';

interface Status {
  status: string;
  running: boolean;
}

const live = suite<{ qemu: QemuInstance; client: QmpClient; log: ReturnType<typeof recordingLogger> }>('QmpClient against QEMU');

live.before(async (ctx) => {
  ctx.qemu = await startQemu();
  ctx.log = recordingLogger();
  ctx.client = new QmpClient({ logger: ctx.log, timeoutMs: 10_000 });
});
live.after(async (ctx) => {
  await ctx.client.disconnect();
  await ctx.qemu.stop();
});

live('execute before connecting is a QmpStateError naming the state and the required one', async ({ client }) => {
  const err = await rejectsWith(client.execute('query-status'), QmpStateError);
  assert.is(err.state, 'idle');
  assert.is(err.required, 'running');
  assert.match(err.message, /execute query-status needs the client to be running, it is idle/);
  assert.throws(() => client.listen(), (e: unknown) => e instanceof QmpStateError);
  await rejectsWith(client.waitEvent('STOP'), QmpStateError);
});

live('greeting and qmp_capabilities: version, capabilities, runstate, traffic logged', async ({ client, qemu, log }) => {
  const states: string[] = [];
  const connecting = client.connect(qemu.qmpSocket);
  states.push(client.runstate);
  const greeting = await connecting;
  states.push(client.runstate);
  assert.equal(states, ['connecting', 'running']);
  assert.ok(greeting.version.qemu.major >= 7, `QEMU ${greeting.version.qemu.major}`);
  assert.type(greeting.version.package, 'string');
  assert.ok(greeting.capabilities.includes('oob'), 'QEMU offers oob');
  assert.is(client.oob, false, 'oob is enabled only when asked');
  assert.is(client.greeting, greeting);
  const sent = log.lines.find((l) => l.includes(' --> '));
  assert.ok(sent !== undefined && /"execute":"qmp_capabilities","id":"vo#00001"/.test(sent), `first line sent: ${sent}`);
  assert.ok(log.lines.some((l) => l.includes(' <-- ') && l.includes('"QMP"')), 'greeting logged as received');
  assert.ok(log.lines.some((l) => /<-- \{"return": \{\}, "id": "vo#00001"\}/.test(l)), 'capabilities reply logged');
  await rejectsWith(client.connect(qemu.qmpSocket), QmpStateError, 'second connect');
});

live('query-status and query-version', async ({ client }) => {
  const status = await client.execute<Status>('query-status');
  assert.is(status.status, 'prelaunch');
  assert.is(status.running, false);
  const version = await client.execute<{ qemu: { major: number; minor: number; micro: number }; package: string }>('query-version');
  assert.equal(version, { qemu: { ...client.greeting!.version.qemu }, package: client.greeting!.version.package });
});

live('a refused command is a QmpExecuteError with the message sent, the reply, class and description', async ({ client }) => {
  const err = await rejectsWith(client.execute('device_del', { id: 'vo-missing' }), QmpExecuteError);
  assert.is(err.command, 'device_del');
  assert.ok(['DeviceNotFound', 'GenericError'].includes(err.errorClass), err.errorClass);
  assert.match(err.description, /vo-missing/);
  const sent = err.sent as { execute: string; arguments: unknown; id: string };
  assert.is(sent.execute, 'device_del');
  assert.equal(sent.arguments, { id: 'vo-missing' });
  assert.match(sent.id, /^vo#\d{5}$/);
  assert.is((err.received as { id: string }).id, sent.id);
  assert.match(err.message, /QMP command device_del failed: \w+: .*vo-missing/);
  assert.is(err.toJSON()['errorClass'], err.errorClass);
  const unknown = await rejectsWith(client.execute('vo-no-such-command'), QmpExecuteError);
  assert.is(unknown.errorClass, 'CommandNotFound');
  assert.is(client.runstate, 'running', 'errors do not end the session');
});

live('events: cont → RESUME and stop → STOP through executeAndWait, waitEvent and the iterator', async ({ client }) => {
  const seen: QmpEvent[] = [];
  const all = client.events(['STOP', 'RESUME']);
  const { result, event } = await client.executeAndWait('cont', undefined, { event: 'RESUME' });
  assert.equal(result, {});
  assert.is(event.event, 'RESUME');
  assert.type(event.timestamp.seconds, 'number');
  assert.ok(Math.abs(event.timestamp.seconds - Date.now() / 1000) < 60, 'timestamp is wall-clock seconds');
  assert.is((await client.execute<Status>('query-status')).running, true);
  // The manual form: arm first, then execute.
  const stopped = client.waitEvent('STOP', (e) => e.event === 'STOP');
  await client.execute('stop');
  assert.is((await stopped).event, 'STOP');
  assert.is((await client.execute<Status>('query-status')).status, 'paused');
  for await (const e of all) {
    seen.push(e);
    if (seen.length === 2) break;
  }
  assert.equal(seen.map((e) => e.event), ['RESUME', 'STOP']);
  assert.is(all.queued, 0);
  const timeout = await rejectsWith(client.waitEvent('RESUME', undefined, 200), QmpTimeoutError);
  assert.is(timeout.waitingFor, 'event RESUME');
  assert.is(timeout.timeoutMs, 200);
});

live('executeAndWait: a refused command rejects with its error and leaves no listener armed', async ({ client }) => {
  const err = await rejectsWith(client.executeAndWait('device_del', { id: 'vo-missing' }, { event: 'DEVICE_DELETED', timeoutMs: 300 }), QmpExecuteError);
  assert.match(err.description, /vo-missing/);
  await new Promise((r) => setTimeout(r, 400)); // no unhandled rejection from the cancelled wait
});

live('chardev-add of a socket chardev shows in query-chardev; chardev-remove removes it', async ({ client, qemu }) => {
  const path = join(qemu.dir, 'port.sock');
  const list = async (): Promise<{ label: string; filename: string }[]> => client.execute('query-chardev');
  assert.not.ok((await list()).some((c) => c.label === 'vo-test0'));
  const added = await client.execute('chardev-add', {
    id: 'vo-test0',
    backend: { type: 'socket', data: { addr: { type: 'unix', data: { path } }, server: true, wait: false } },
  });
  assert.equal(added, {});
  const entry = (await list()).find((c) => c.label === 'vo-test0');
  assert.ok(entry !== undefined, 'listed after chardev-add');
  assert.ok(entry.filename.includes(path), entry.filename);
  const dup = await rejectsWith(client.execute('chardev-add', { id: 'vo-test0', backend: { type: 'null', data: {} } }), QmpExecuteError);
  assert.match(dup.description, /vo-test0/);
  assert.equal(await client.execute('chardev-remove', { id: 'vo-test0' }), {});
  assert.not.ok((await list()).some((c) => c.label === 'vo-test0'), 'gone after chardev-remove');
  await rejectsWith(client.execute('chardev-remove', { id: 'vo-test0' }), QmpExecuteError, 'second remove');
});

live('concurrent executes each get their own reply', async ({ client }) => {
  const n = 60;
  const calls = Array.from({ length: n }, (_, i) =>
    i % 3 === 0 ? client.execute('device_del', { id: `vo-missing-${i}` }) : i % 3 === 1 ? client.execute('query-version') : client.execute('query-status'),
  );
  const results = await Promise.allSettled(calls);
  results.forEach((r, i) => {
    if (i % 3 === 0) {
      assert.is(r.status, 'rejected', `call ${i}`);
      const err = (r as PromiseRejectedResult).reason as QmpExecuteError;
      assert.ok(err instanceof QmpExecuteError);
      assert.ok(err.description.includes(`'vo-missing-${i}'`), `call ${i} got ${err.description}`);
    } else {
      assert.is(r.status, 'fulfilled', `call ${i}`);
      const value = (r as PromiseFulfilledResult<Record<string, unknown>>).value;
      assert.ok(i % 3 === 1 ? 'qemu' in value : 'status' in value, `call ${i} got ${JSON.stringify(value)}`);
    }
  });
});

live('exec-oob needs the oob capability; with enableOob a second session negotiates it', async ({ client, qemu }) => {
  const err = await rejectsWith(client.execute('migrate-pause', undefined, { oob: true }), QmpCapabilityError);
  assert.is(err.capability, 'oob');
  await client.disconnect();
  assert.is(client.runstate, 'idle');
  assert.is(client.lastDisconnect?.reason, 'local');
  const oob = new QmpClient({ enableOob: true });
  await oob.connect(qemu.qmpSocket);
  assert.is(oob.oob, true);
  // migrate-pause is allowed out of band; outside postcopy QEMU refuses it, out of band too.
  const refused = await rejectsWith(oob.execute('migrate-pause', undefined, { oob: true }), QmpExecuteError);
  assert.is((refused.sent as Record<string, unknown>)['exec-oob'], 'migrate-pause');
  assert.is(refused.errorClass, 'GenericError');
  await oob.disconnect();
});

live('QEMU serves one QMP client at a time: a second one gets no greeting and times out', async ({ client, qemu }) => {
  await client.connect(qemu.qmpSocket);
  const second = new QmpClient({ connectTimeoutMs: 300 });
  const err = await rejectsWith(second.connect(qemu.qmpSocket), QmpConnectError);
  assert.ok(err.cause instanceof QmpTimeoutError, String(err.cause));
  assert.is(err.target, qemu.qmpSocket);
  assert.is(second.runstate, 'idle');
  assert.is((await client.execute<Status>('query-status')).status, 'paused', 'the first session is unaffected');
});

live('reconnect after disconnect: ids keep counting, the session works', async ({ client, qemu, log }) => {
  await client.disconnect();
  await client.connect(qemu.qmpSocket);
  await client.execute('query-status');
  const ids = log.lines.filter((l) => l.includes(' --> ')).map((l) => /"id":"(vo#\d+)"/.exec(l)?.[1]);
  assert.equal(new Set(ids).size, ids.length, 'no id reused across sessions');
});

live.run();

const dying = suite('QmpClient when QEMU stops answering or dies');

dying('a call QEMU does not answer times out; the session survives and the late reply is dropped', async () => {
  const qemu = await startQemu();
  const log = recordingLogger();
  const client = new QmpClient({ logger: log });
  try {
    await client.connect(qemu.qmpSocket);
    qemu.process.kill('SIGSTOP');
    const err = await rejectsWith(client.execute('query-status', undefined, { timeoutMs: 200 }), QmpTimeoutError);
    assert.is(err.waitingFor, 'reply to query-status');
    assert.is(err.timeoutMs, 200);
    assert.is(client.runstate, 'running');
    qemu.process.kill('SIGCONT');
    assert.is((await client.execute<Status>('query-status')).status, 'prelaunch');
    assert.ok(log.lines.some((l) => l.includes('dropping a reply with an unknown id')), 'late reply dropped');
  } finally {
    qemu.process.kill('SIGCONT');
    await client.disconnect();
    await qemu.stop();
  }
});

dying('QEMU killed mid-call: pending calls and waits reject with QmpDisconnectedError, the iterator ends', async () => {
  const qemu = await startQemu();
  const client = new QmpClient();
  try {
    await client.connect(qemu.qmpSocket);
    const events = client.events();
    const collected = (async () => {
      const got: string[] = [];
      for await (const e of events) got.push(e.event);
      return got;
    })();
    const wait = rejectsWith(client.waitEvent('DEVICE_DELETED', undefined, 30_000), QmpDisconnectedError, 'waitEvent');
    qemu.process.kill('SIGSTOP'); // so the calls below are surely still pending
    const pending = [client.execute('query-status'), client.execute('query-chardev')].map((call) => rejectsWith(call, QmpDisconnectedError));
    await new Promise((r) => setTimeout(r, 50));
    qemu.process.kill('SIGKILL');
    for (const call of pending) {
      const err = await call;
      assert.ok(err.cause instanceof TransportClosedError);
      // EOF, or ECONNRESET when QEMU died with our request unread in its socket buffer.
      assert.ok(['eof', 'error'].includes(err.cause.reason), err.cause.message);
      assert.match(err.waitingFor, /the reply to query-(status|chardev)/);
    }
    await wait;
    assert.equal(await collected, [], 'the events iterator ended');
    assert.is(client.runstate, 'idle');
    assert.ok(client.lastDisconnect !== undefined && client.lastDisconnect.reason !== 'local');
    const after = await rejectsWith(client.execute('query-status'), QmpStateError);
    assert.is(after.state, 'idle');
    const exit = await qemu.exited;
    assert.is(exit.signal, 'SIGKILL');
    const refused = await rejectsWith(client.connect(qemu.qmpSocket), QmpConnectError, 'connect to a dead QEMU');
    assert.match(String((refused.cause as NodeJS.ErrnoException).code), /ECONNREFUSED|ENOENT/);
  } finally {
    await qemu.stop();
  }
});

dying.run();
