// The QMP client against a scripted fake QEMU (a real unix socket server in this process):
// everything a hostile or broken peer can send ends the session with a typed error.
import { PassThrough, Duplex } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  QmpCapabilityError,
  QmpClient,
  QmpConnectError,
  QmpDisconnectedError,
  QmpEventOverflowError,
  QmpExecuteError,
  QmpProtocolError,
  QmpStateError,
  QmpTimeoutError,
  type QmpProtocolErrorKind,
} from '../../lib/qmp/index.js';
import { FrameError, TransportClosedError, type FrameErrorKind } from '../../lib/transport/index.js';
import { fakePeer, GREETING, okReply, recordingLogger, rejectsWith, runningPeer, type FakePeer } from './helpers.js';

const LIMIT = 4096;
const client = (over: ConstructorParameters<typeof QmpClient>[0] = {}): QmpClient => new QmpClient({ maxMessageBytes: LIMIT, connectTimeoutMs: 2000, ...over });

async function withPeer<T>(peer: Promise<FakePeer>, body: (path: string) => Promise<T>): Promise<T> {
  const p = await peer;
  try {
    return await body(p.path);
  } finally {
    await p.close();
  }
}

const connect = suite('connect refuses a bad peer with QmpConnectError and the cause');

const badGreetings: [string, string, (cause: unknown) => void][] = [
  ['an oversized greeting (no newline yet)', 'x'.repeat(LIMIT + 1), (c) => frame(c, 'too-large')],
  ['an oversized greeting line', `{"QMP": "${'y'.repeat(LIMIT)}"}\n`, (c) => frame(c, 'too-large')],
  ['a JSON array', '[{"QMP": {}}]\r\n', (c) => frame(c, 'not-object')],
  ['a JSON string', '"QMP"\n', (c) => frame(c, 'not-object')],
  ['null', 'null\n', (c) => frame(c, 'not-object')],
  ['not JSON', '{"QMP": {\n', (c) => frame(c, 'not-json')],
  ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a]).toString('latin1'), (c) => frame(c, 'not-utf8')],
  ['no QMP member', '{"greeting": 1}\n', (c) => protocol(c, 'bad-greeting')],
  ['a version without numbers', '{"QMP": {"version": {"qemu": {"major": "7"}, "package": ""}, "capabilities": []}}\n', (c) => protocol(c, 'bad-greeting')],
  ['negative version', '{"QMP": {"version": {"qemu": {"major": -1, "minor": 0, "micro": 0}, "package": ""}, "capabilities": []}}\n', (c) => protocol(c, 'bad-greeting')],
  ['capabilities not strings', '{"QMP": {"version": {"qemu": {"major": 7, "minor": 0, "micro": 0}, "package": ""}, "capabilities": [1]}}\n', (c) => protocol(c, 'bad-greeting')],
  ['a reply instead of a greeting', '{"return": {}}\n', (c) => protocol(c, 'bad-greeting')],
];

function frame(cause: unknown, kind: FrameErrorKind): void {
  assert.ok(cause instanceof FrameError, `cause ${String(cause)}`);
  assert.is(cause.kind, kind);
}
function protocol(cause: unknown, kind: QmpProtocolErrorKind): void {
  assert.ok(cause instanceof QmpProtocolError, `cause ${String(cause)}`);
  assert.is(cause.kind, kind);
}

for (const [what, greeting, check] of badGreetings) {
  connect(`greeting: ${what}`, () =>
    withPeer(
      fakePeer((socket) => void socket.write(greeting, 'latin1')),
      async (path) => {
        const c = client();
        const err = await rejectsWith(c.connect(path), QmpConnectError, what);
        check(err.cause);
        assert.is(err.target, path);
        assert.is(c.runstate, 'idle');
        assert.is(c.lastDisconnect?.reason, 'protocol');
      },
    ),
  );
}

connect('the oversized line is refused before the newline arrives (memory stays bounded)', () =>
  withPeer(
    fakePeer((socket) => {
      // 1 MiB in chunks and never a newline: the client must give up after LIMIT bytes.
      const chunk = 'z'.repeat(64 * 1024);
      for (let i = 0; i < 16 && !socket.destroyed; i++) socket.write(chunk);
    }),
    async (path) => {
      const err = await rejectsWith(client().connect(path), QmpConnectError);
      frame(err.cause, 'too-large');
      const cause = err.cause as FrameError;
      assert.is(cause.limit, LIMIT);
      assert.ok(cause.length > LIMIT && cause.length <= LIMIT + 64 * 1024, `stopped at ${cause.length}`);
    },
  ),
);

connect('no greeting within the time limit', () =>
  withPeer(
    fakePeer(() => {}),
    async (path) => {
      const err = await rejectsWith(client({ connectTimeoutMs: 150 }).connect(path), QmpConnectError);
      assert.ok(err.cause instanceof QmpTimeoutError);
      assert.is(err.cause.timeoutMs, 150);
    },
  ),
);

connect('the peer closes before greeting', () =>
  withPeer(
    fakePeer((socket) => void socket.end()),
    async (path) => {
      const err = await rejectsWith(client().connect(path), QmpConnectError);
      assert.ok(err.cause instanceof TransportClosedError, String(err.cause));
      assert.is(err.cause.reason, 'eof');
    },
  ),
);

connect('qmp_capabilities refused', () =>
  withPeer(
    fakePeer(async (socket, nextLine) => {
      socket.write(GREETING);
      const { id } = JSON.parse(await nextLine()) as { id: string };
      socket.write(`${JSON.stringify({ id, error: { class: 'GenericError', desc: 'no' } })}\n`);
    }),
    async (path) => {
      const err = await rejectsWith(client().connect(path), QmpConnectError);
      assert.ok(err.cause instanceof QmpExecuteError);
      assert.is(err.cause.command, 'qmp_capabilities');
      assert.is(err.cause.description, 'no');
    },
  ),
);

connect('enableOob when the peer does not offer oob', () =>
  withPeer(
    fakePeer((socket) => void socket.write(GREETING)),
    async (path) => {
      const err = await rejectsWith(client({ enableOob: true }).connect(path), QmpConnectError);
      assert.ok(err.cause instanceof QmpCapabilityError);
      assert.match(err.message, /does not offer the oob capability \(offered: none\)/);
    },
  ),
);

connect('a socket that does not exist: the system error is the cause', async () => {
  const err = await rejectsWith(client().connect('/nonexistent/vo-qmp.sock'), QmpConnectError);
  assert.is((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  assert.match(err.message, /cannot connect to QMP at \/nonexistent\/vo-qmp\.sock/);
});

connect.run();

const session = suite('a running session ends with a typed error when the peer misbehaves');

/** Connect to a peer that, after negotiation, answers the first command with `line`. */
async function afterFirstCommand(line: (id: string) => string, check: (err: QmpDisconnectedError, c: QmpClient) => void): Promise<void> {
  await withPeer(
    runningPeer(async (socket, nextLine) => {
      const { id } = JSON.parse(await nextLine()) as { id: string };
      socket.write(line(id));
    }),
    async (path) => {
      const c = client();
      await c.connect(path);
      const events = c.events();
      const other = c.execute('query-version'); // a second pending call: also rejected
      const err = await rejectsWith(c.execute('query-status'), QmpDisconnectedError);
      check(err, c);
      await rejectsWith(other, QmpDisconnectedError, 'the other pending call');
      assert.is((await events.next()).done, true, 'events iterator ended');
      assert.is(c.runstate, 'idle');
    },
  );
}

function closedBy(err: QmpDisconnectedError): TransportClosedError {
  assert.ok(err.cause instanceof TransportClosedError);
  assert.is(err.cause.reason, 'protocol');
  return err.cause;
}

session('an oversized line', () =>
  afterFirstCommand(
    () => `{"return": "${'a'.repeat(LIMIT)}"}\n`,
    (err, c) => {
      const closed = closedBy(err);
      assert.ok(closed.cause instanceof FrameError && closed.cause.kind === 'too-large');
      assert.is(c.lastDisconnect, closed);
    },
  ),
);

session('a non-object line', () =>
  afterFirstCommand(
    () => '[]\n',
    (err) => {
      const cause = closedBy(err).cause;
      assert.ok(cause instanceof FrameError && cause.kind === 'not-object');
    },
  ),
);

const violations: [string, (id: string) => string, QmpProtocolErrorKind][] = [
  ['a reply without an id (QEMU could not parse our command)', () => '{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n', 'no-id'],
  ['an event without a timestamp', () => '{"event": "STOP"}\n', 'bad-event'],
  ['an event with non-object data', () => '{"event": "STOP", "data": [], "timestamp": {"seconds": 1, "microseconds": 2}}\n', 'bad-event'],
  ['an event with an empty name', () => '{"event": "", "timestamp": {"seconds": 1, "microseconds": 2}}\n', 'bad-event'],
  ['a second greeting', () => GREETING, 'unexpected'],
  ['a message that is neither reply nor event', () => '{"hello": 1}\n', 'unexpected'],
];
for (const [what, line, kind] of violations) {
  session(what, () => afterFirstCommand(line, (err) => protocol(closedBy(err).cause, kind)));
}

session('a malformed reply rejects its own call with QmpProtocolError and ends the session', async () => {
  for (const [reply, why] of [
    ['{"id": "ID"}', /neither "return" nor "error"/],
    ['{"id": "ID", "return": 1, "error": {"class": "X", "desc": "y"}}', /both/],
    ['{"id": "ID", "error": "boom"}', /"error" is not an object/],
    ['{"id": "ID", "error": {"class": 1, "desc": "y"}}', /string members "class" and "desc"/],
  ] as const) {
    await withPeer(
      runningPeer(async (socket, nextLine) => {
        const { id } = JSON.parse(await nextLine()) as { id: string };
        socket.write(`${reply.replace('ID', id)}\n`);
      }),
      async (path) => {
        const c = client();
        await c.connect(path);
        const err = await rejectsWith(c.execute('query-status'), QmpProtocolError, reply);
        assert.is(err.kind, 'bad-reply');
        assert.match(err.message, why);
        assert.is(c.runstate, 'idle');
      },
    );
  }
});

session('replies split into single bytes and CRLF line ends; events routed in between', () =>
  withPeer(
    runningPeer(async (socket, nextLine) => {
      const { id } = JSON.parse(await nextLine()) as { id: string };
      const text = `{"timestamp": {"seconds": 5, "microseconds": 6}, "event": "RESUME"}\r\n\r\n${JSON.stringify({ return: { ok: 'é' }, id })}\r\n`;
      for (const byte of Buffer.from(text)) {
        socket.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
    }),
    async (path) => {
      const c = client();
      await c.connect(path);
      const resumed = c.waitEvent('RESUME');
      assert.equal(await c.execute('cont'), { ok: 'é' });
      assert.equal(await resumed, { event: 'RESUME', data: {}, timestamp: { seconds: 5, microseconds: 6 } });
      await c.disconnect();
    },
  ),
);

session('a timed-out call: the late reply is dropped, later calls still match their replies', () =>
  withPeer(
    runningPeer(async (socket, nextLine) => {
      const first = await nextLine();
      const second = await nextLine();
      socket.write(okReply(first, 'late'));
      socket.write(okReply(second, 'second'));
    }),
    async (path) => {
      const log = recordingLogger();
      const c = client({ logger: log });
      await c.connect(path);
      const err = await rejectsWith(c.execute('slow', undefined, { timeoutMs: 100 }), QmpTimeoutError);
      assert.is(err.waitingFor, 'reply to slow');
      assert.is(await c.execute('fast'), 'second');
      assert.ok(log.lines.some((l) => /dropping a reply with an unknown id: "vo#00002"/.test(l)), log.lines.join('\n'));
      await c.disconnect();
    },
  ),
);

session('an event listener nobody reads fails with QmpEventOverflowError after its limit', () =>
  withPeer(
    runningPeer(async (socket, nextLine) => {
      socket.write(okReply(await nextLine()));
      for (let i = 0; i < 5; i++) socket.write(`{"event": "E${i}", "data": {"i": ${i}}, "timestamp": {"seconds": 1, "microseconds": 2}}\n`);
    }),
    async (path) => {
      const c = client();
      await c.connect(path);
      const listener = c.listen({ maxQueued: 3 });
      await c.execute('go');
      await new Promise((r) => setTimeout(r, 100));
      const got: string[] = [];
      const err = await rejectsWith(
        (async () => {
          for await (const e of listener) got.push(e.event);
        })(),
        QmpEventOverflowError,
      );
      assert.is(err.limit, 3);
      assert.equal(got, ['E0', 'E1', 'E2'], 'what was queued is still delivered first');
      await c.disconnect();
    },
  ),
);

session('a predicate that throws fails only its own wait', () =>
  withPeer(
    runningPeer(async (socket, nextLine) => {
      const stop = await nextLine();
      socket.write('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n');
      socket.write(okReply(stop));
      socket.write(okReply(await nextLine()));
    }),
    async (path) => {
      const c = client();
      await c.connect(path);
      const boom = new Error('predicate failed');
      const bad = c
        .waitEvent('STOP', () => {
          throw boom;
        })
        .catch((e: unknown) => e);
      const good = c.waitEvent('STOP');
      await c.execute('stop');
      assert.is(await bad, boom);
      assert.is((await good).event, 'STOP');
      assert.equal(await c.execute('query-status'), {});
      await c.disconnect();
    },
  ),
);

session('attach() runs a session over any connected Duplex', async () => {
  const toClient = new PassThrough();
  const fromClient = new PassThrough();
  const c = client();
  const greeted = c.attach(Duplex.from({ readable: toClient, writable: fromClient }));
  toClient.write(GREETING);
  const line = await new Promise<string>((resolve) => fromClient.once('data', (b: Buffer) => resolve(b.toString())));
  assert.is(line, '{"execute":"qmp_capabilities","id":"vo#00001"}\n');
  toClient.write(okReply(line));
  const greeting = await greeted;
  assert.is(greeting.version.package, 'fake');
  assert.is(c.runstate, 'running');
  const pending = c.execute('query-status');
  toClient.end();
  const err = await rejectsWith(pending, QmpDisconnectedError);
  assert.is((err.cause as TransportClosedError).reason, 'eof');
});

session('attach() of a stream that is already closed fails at once, not at the timeout', async () => {
  const stream = Duplex.from({ readable: new PassThrough(), writable: new PassThrough() });
  stream.destroy();
  const started = Date.now();
  const err = await rejectsWith(client({ connectTimeoutMs: 5000 }).attach(stream), QmpConnectError);
  assert.ok(err.cause instanceof TransportClosedError, String(err.cause));
  assert.ok(Date.now() - started < 1000);
});

session('the default limit is 10 MiB: a reply just under it is parsed, one byte more ends the session', () =>
  withPeer(
    runningPeer(async (socket, nextLine) => {
      const limit = 10 * 1024 * 1024;
      const frame = (id: string, length: number): string => {
        const head = `{"id": "${id}", "return": "`;
        return `${head}${'b'.repeat(length - head.length - 2)}"}\n`;
      };
      const { id: first } = JSON.parse(await nextLine()) as { id: string };
      socket.write(frame(first, limit));
      const { id: second } = JSON.parse(await nextLine()) as { id: string };
      socket.write(frame(second, limit + 1));
    }),
    async (path) => {
      const c = new QmpClient();
      await c.connect(path);
      const big = await c.execute<string>('first');
      assert.is(big.length, 10 * 1024 * 1024 - '{"id": "vo#00002", "return": ""}'.length);
      const err = await rejectsWith(c.execute('second'), QmpDisconnectedError);
      const cause = (err.cause as TransportClosedError).cause;
      assert.ok(cause instanceof FrameError && cause.kind === 'too-large' && cause.limit === 10 * 1024 * 1024);
    },
  ),
);

session('error objects carry a pinned set of facts', async () => {
  const err = new QmpExecuteError({ execute: 'device_del', id: 'vo#00001' } as { execute: string }, { error: {} }, 'DeviceNotFound', "Device 'x' not found");
  assert.equal(Reflect.ownKeys(err).filter((k) => k !== 'stack').sort(), ['code', 'command', 'description', 'errorClass', 'message', 'name', 'received', 'sent']);
  assert.equal(err.toJSON(), {
    error: 'QmpExecuteError',
    code: 'EIO',
    message: "QMP command device_del failed: DeviceNotFound: Device 'x' not found",
    command: 'device_del',
    errorClass: 'DeviceNotFound',
    description: "Device 'x' not found",
  });
  const state = new QmpStateError('execute query-status', 'idle', 'running');
  assert.equal(Reflect.ownKeys(state).filter((k) => k !== 'stack').sort(), ['code', 'message', 'name', 'required', 'state']);
  assert.is(state.name, 'QmpStateError');
});

session.run();
