// parsePolicyFile: every keyword's happy path, then a table of malformed lines, each
// checked for the file:line it is reported at and a fragment of what it says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_LIMITS, parsePolicyFile, PolicySyntaxError, resolveLimits } from '../../lib/policy/index.js';
import { isMeasurement } from '../../lib/policy/names.js';
import { tryParseMeasurement } from '../../lib/measure/measurement.js';
import { lines, m } from './helpers.js';

test('every keyword, comments, quotes and blank lines', () => {
  const text = lines(
    '# a comment line',
    'group web vm:web-1 vm:Web.2 uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162',
    'group all-web group:web   # trailing comment',
    '',
    'binary tool',
    '\tinterpreter "/opt/my tools/bin/python3"',
    'limits wall=90s memory=1G output=0 pids=8 args=0 argbytes=0',
    'vms group:all-web vm:build',
    'vms uuid:0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b',
    `version 1.0 superseded by=1.1 ${m(1)} ${m(2, 'blake3')}`,
    `version 1.1 revoked reason="said \\"hi\\" \\\\ # not a comment" ${m(3)}`,
    `version 1.2 approved ${m(4)}#comment right after`,
    `version 1.3 superseded by="1.2" "${m(5)}"`,
  );
  const { ast, errors } = parsePolicyFile('bin/tool.policy', text);
  assert.equal(errors, []);
  assert.equal(ast.groups.map((g) => [g.name, g.line, g.members.map((x) => `${x.kind}:${x.value}`)]), [
    ['web', 2, ['vm:web-1', 'vm:Web.2', 'uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162']],
    ['all-web', 3, ['group:web']],
  ]);
  const b = ast.binary!;
  assert.is(b.name, 'tool');
  assert.is(b.line, 5);
  assert.equal(b.interpreter, { value: { kind: 'path', path: '/opt/my tools/bin/python3' }, line: 6 });
  assert.equal(b.limits, { values: { wall: 90_000, memory: 1 << 30, output: 0, pids: 8, args: 0, argbytes: 0 }, line: 7 });
  assert.equal(b.vms.map((v) => [v.all, v.members.length, v.line]), [[false, 2, 8], [false, 1, 9]]);
  assert.equal(b.versions, [
    { status: 'superseded', by: '1.1', version: '1.0', measurements: [m(1), m(2, 'blake3')], line: 10 },
    { status: 'revoked', reason: 'said "hi" \\ # not a comment', version: '1.1', measurements: [m(3)], line: 11 },
    { status: 'approved', version: '1.2', measurements: [m(4)], line: 12 },
    { status: 'superseded', by: '1.2', version: '1.3', measurements: [m(5)], line: 13 },
  ]);
});

test('interpreter wasi / none, vms all, no trailing newline, groups-only file', () => {
  const a = parsePolicyFile('w.policy', `binary w\ninterpreter wasi\nvms all\nversion 1 approved ${m(1)}`);
  assert.equal(a.errors, []);
  assert.equal(a.ast.binary!.interpreter!.value, { kind: 'wasi' });
  assert.equal(a.ast.binary!.vms, [{ all: true, members: [], line: 3 }]);
  const b = parsePolicyFile('n.policy', 'binary n\ninterpreter none\n');
  assert.equal(b.errors, []);
  assert.equal(b.ast.binary!.interpreter!.value, { kind: 'none' });
  assert.equal(b.ast.binary!.vms, []); // no vms line: nobody may run it (fail closed)
  const g = parsePolicyFile('groups.policy', 'group a vm:x\n');
  assert.equal(g.errors, []);
  assert.is(g.ast.binary, undefined);
  assert.equal(parsePolicyFile('empty.policy', '').errors, []);
});

test('limit units: largest exact unit, defaults fill the rest', () => {
  const parse = (l: string) => parsePolicyFile('x.policy', `binary x\nlimits ${l}\n`);
  assert.equal(parse('wall=1500ms').ast.binary!.limits!.values, { wall: 1500 });
  assert.equal(parse('wall=2m memory=3M output=5K argbytes=7').ast.binary!.limits!.values, { wall: 120_000, memory: 3 << 20, output: 5 << 10, argbytes: 7 });
  assert.equal(parse('cpu=50%').ast.binary!.limits!.values, { cpu: 50 });
  assert.equal(parse('cpu=250%').ast.binary!.limits!.values, { cpu: 250 });
  assert.equal(resolveLimits({ wall: 1000 }), { ...DEFAULT_LIMITS, wallMs: 1000 });
  assert.equal(DEFAULT_LIMITS, { wallMs: 30_000, memoryBytes: 256 << 20, outputBytes: 16 << 20, pids: 64, args: 64, argBytes: 64 << 10, cpuPercent: 100 });
});

// One malformed input per row: [lines, line the error is reported at, fragment of the message].
const B = 'binary x';
const NEGATIVE: ReadonlyArray<{ lines: string[]; line: number; expect: string }> = [
  { lines: ['binnary x'], line: 1, expect: "unknown keyword 'binnary' (expected group, binary, limits, interpreter, vms, version)" },
  { lines: ['"binary" x'], line: 1, expect: "unknown keyword 'binary'" },
  { lines: [B, `version 1.2 aproved ${m(1)}`], line: 2, expect: "version 1.2: unknown status 'aproved' (expected approved, superseded, revoked)" },
  { lines: [B, 'version'], line: 2, expect: 'version: missing version' },
  { lines: [B, 'version 1.0'], line: 2, expect: 'version 1.0: missing status' },
  { lines: [B, 'version 1.0 approved'], line: 2, expect: 'version 1.0: no measurement' },
  { lines: [B, `version -1 approved ${m(1)}`], line: 2, expect: "bad version '-1'" },
  { lines: [B, `version 1.0 approved sha256:abc`], line: 2, expect: 'exactly 64 lowercase hex digits' },
  { lines: [B, `version 1.0 approved ${m(10).toUpperCase().replace('SHA256', 'sha256')}`], line: 2, expect: 'lowercase hex' },
  { lines: [B, `version 1.0 approved md5:${'0'.repeat(32)}`], line: 2, expect: 'is not a measurement' },
  { lines: [B, `version 1.0 approved ${m(1)} ${m(1)}`], line: 2, expect: 'is listed twice on this line' },
  { lines: [B, `version 1.0 approved ${m(1)}`, `version 1.1 approved ${m(1)}`], line: 3, expect: 'is already listed for version 1.0 (line 2)' },
  { lines: [B, `version 1.0 approved ${m(1)}`, `version 1.0 approved ${m(2)}`], line: 3, expect: 'version 1.0: listed twice for binary x (first at line 2)' },
  { lines: [B, `version 1.0 approved by=1.1 ${m(1)}`], line: 2, expect: 'approved takes no by=' },
  { lines: [B, `version 1.0 superseded ${m(1)}`], line: 2, expect: 'superseded needs by= right after it' },
  { lines: [B, `version 1.0 superseded reason="x" ${m(1)}`], line: 2, expect: 'superseded needs by=' },
  { lines: [B, `version 1.0 superseded by=1.0 ${m(1)}`], line: 2, expect: 'version 1.0: cannot be superseded by itself' },
  { lines: [B, `version 1.0 superseded by=2.0 ${m(1)}`], line: 2, expect: 'superseded by 2.0, which is not a version of binary x' },
  { lines: [B, `version 1.0 superseded by=1.1 ${m(1)}`, `version 1.1 superseded by=1.0 ${m(2)}`], line: 2, expect: 'supersede chain loops (1.0 → 1.1 → 1.0)' },
  { lines: [B, `version 1.0 revoked ${m(1)}`], line: 2, expect: 'revoked needs reason= right after it' },
  { lines: [B, `version 1.0 revoked reason="  " ${m(1)}`], line: 2, expect: 'reason= is empty' },
  { lines: [B, `version 1.0 revoked reason="x" by=2 ${m(1)}`], line: 2, expect: 'unexpected by= among the measurements' },
  { lines: [B, `version 1.0 revoked reason="${'r'.repeat(1025)}" ${m(1)}`], line: 2, expect: 'reason is longer than 1024' },
  { lines: [B, `version 1.0 revoked reason="open ${m(1)}`], line: 2, expect: 'unterminated quoted value' },
  { lines: [B, `version 1.0 revoked reason="a\\nb" ${m(1)}`], line: 2, expect: "unknown escape '\\n'" },
  { lines: [B, `version 1.0 revoked reason=a"b" ${m(1)}`], line: 2, expect: `unexpected '"' in the middle of 'reason=a"'` },
  { lines: [B, `version 1.0 revoked reason="a"b ${m(1)}`], line: 2, expect: "unexpected 'b' right after a closing quote" },
  { lines: [`version 1.0 approved ${m(1)}`], line: 1, expect: "'version' outside a binary block" },
  { lines: ['limits wall=1s'], line: 1, expect: "'limits' outside a binary block" },
  { lines: [B, 'limits'], line: 2, expect: 'limits: no KEY=VALUE pairs' },
  { lines: [B, 'limits cpus=2'], line: 2, expect: "limits: unknown key 'cpus' (expected wall, memory, output, pids, args, argbytes, cpu)" },
  { lines: [B, 'limits cpu=2'], line: 2, expect: "limits: cpu=2: unknown unit '' (expected a whole number of percent of one CPU followed by %, e.g. 50% or 200%)" },
  { lines: [B, 'limits cpu=0%'], line: 2, expect: 'limits: cpu=0% is out of range (1% to 100000%)' },
  { lines: [B, 'limits wall'], line: 2, expect: "limits: 'wall' is not KEY=VALUE" },
  { lines: [B, 'limits wall=30'], line: 2, expect: "unknown unit '' (expected a whole number followed by ms, s or m" },
  { lines: [B, 'limits wall=30h'], line: 2, expect: "unknown unit 'h'" },
  { lines: [B, 'limits wall=1.5s'], line: 2, expect: 'not a number with a unit' },
  { lines: [B, 'limits wall=030s'], line: 2, expect: 'no leading zeros' },
  { lines: [B, 'limits wall=0s'], line: 2, expect: 'wall=0s is out of range (1ms to 1440m)' },
  { lines: [B, 'limits memory=256m'], line: 2, expect: "unknown unit 'm' (expected a whole number of bytes, optionally followed by K, M or G" },
  { lines: [B, 'limits memory=2000G'], line: 2, expect: 'memory=2000G is out of range' },
  { lines: [B, 'limits pids=4K'], line: 2, expect: "unknown unit 'K' (expected a whole number)" },
  { lines: [B, 'limits pids=0'], line: 2, expect: 'pids=0 is out of range' },
  { lines: [B, 'limits wall=1s wall=2s'], line: 2, expect: 'limits: wall is given twice' },
  { lines: [B, 'limits wall=1s', 'limits memory=1G'], line: 3, expect: 'second limits line for binary x (first at line 2)' },
  { lines: [B, 'interpreter'], line: 2, expect: 'interpreter: expected exactly one value' },
  { lines: [B, 'interpreter python3'], line: 2, expect: "interpreter 'python3' must be an absolute path, 'wasi' or 'none'" },
  { lines: [B, 'interpreter /usr/../bin/sh'], line: 2, expect: "has an empty, '.' or '..' component" },
  { lines: [B, 'interpreter /usr//bin/sh'], line: 2, expect: "has an empty, '.' or '..' component" },
  { lines: [B, 'interpreter /usr/bin/'], line: 2, expect: "ends in '/'" },
  { lines: [B, 'interpreter "wasi"'], line: 2, expect: 'must be an absolute path' },
  { lines: [B, 'interpreter wasi', 'interpreter none'], line: 3, expect: 'second interpreter line' },
  { lines: [B, 'vms'], line: 2, expect: 'vms: no VMs' },
  { lines: [B, 'vms all vm:a'], line: 2, expect: "'all' cannot be combined with other VMs on the same line" },
  { lines: [B, 'vms vm:a', 'vms all'], line: 3, expect: "'all' cannot be combined with other vms lines (line 2)" },
  { lines: [B, 'vms all', 'vms vm:a'], line: 3, expect: 'line 2 already allows all VMs' },
  { lines: [B, 'vms all', 'vms all'], line: 3, expect: "'all' cannot be combined" },
  { lines: [B, 'vms vm:a vm:a'], line: 2, expect: 'vms: vm:a is listed twice' },
  { lines: [B, 'vms vm:a', 'vms vm:a'], line: 3, expect: 'vms: vm:a is already listed at line 2' },
  { lines: [B, 'vms web1'], line: 2, expect: "'web1' does not name a VM (expected vm:<domain name>, uuid:<uuid> or group:<name>)" },
  { lines: [B, 'vms vm:-bad'], line: 2, expect: "bad domain name in 'vm:-bad'" },
  { lines: [B, 'vms uuid:1234'], line: 2, expect: "bad UUID in 'uuid:1234'" },
  { lines: [B, 'vms group:Web'], line: 2, expect: "bad group name in 'group:Web'" },
  { lines: ['group'], line: 1, expect: 'group: missing name' },
  { lines: ['group web'], line: 1, expect: 'group web: no members' },
  { lines: ['group Web vm:a'], line: 1, expect: "group: bad name 'Web'" },
  { lines: ['group web vm:a', 'group web vm:b'], line: 2, expect: 'group web is defined twice (first at line 1)' },
  { lines: ['group web vm:a uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162 uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162'], line: 1, expect: 'is listed twice' },
  { lines: [B, 'group web vm:a'], line: 2, expect: 'group lines must come before the' },
  { lines: ['binary'], line: 1, expect: 'binary: expected exactly one name' },
  { lines: ['binary x y'], line: 1, expect: 'binary: expected exactly one name (binary NAME), got 2' },
  { lines: ['binary X'], line: 1, expect: "binary: bad name 'X'" },
  { lines: ['binary y'], line: 1, expect: 'binary y must be in a file named y.policy (this file is x.policy)' },
  { lines: [B, 'binary x'], line: 2, expect: 'a file holds at most one binary block (binary x starts at line 1)' },
  { lines: [B, 'vms vm:a\r'], line: 2, expect: 'forbidden carriage return (use LF line endings) U+000D' },
  { lines: [B, '# a \u202e comment'], line: 2, expect: 'forbidden character U+202E at column 5' },
  { lines: [B, 'vms vm:a\u0000'], line: 2, expect: 'U+0000' },
  { lines: ['\ufeffbinary x'], line: 1, expect: 'U+FEFF' },
  { lines: [B, `vms ${'vm:a '.repeat(20_000)}`], line: 2, expect: 'line is longer than 65536 characters' },
];

for (const [i, row] of NEGATIVE.entries()) {
  test(`negative ${i + 1}: ${row.expect.slice(0, 60)}`, () => {
    const { errors } = parsePolicyFile('dir/x.policy', lines(...row.lines));
    const hit = errors.find((e) => e.line === row.line && e.message.includes(row.expect));
    if (hit === undefined) assert.unreachable(`no error at line ${row.line} containing ${JSON.stringify(row.expect)}; got ${JSON.stringify(errors.map((e) => e.message))}`);
    assert.ok(hit instanceof PolicySyntaxError);
    assert.is(hit.file, 'dir/x.policy');
    assert.is(hit.code, 'EMALFORMED');
    assert.ok(hit.message.startsWith(`dir/x.policy:${row.line}: `));
  });
}

test('every error is collected, not just the first, with its own line', () => {
  const { errors } = parsePolicyFile('x.policy', lines('binary x', 'limits cpu=1', 'bogus', `version 1 aproved ${m(1)}`, 'vms vm:ok'));
  assert.equal(errors.map((e) => e.line), [2, 3, 4]);
  assert.equal(errors[0]!.toJSON(), { error: 'PolicySyntaxError', code: 'EMALFORMED', message: errors[0]!.message, file: 'x.policy', line: 2, detail: errors[0]!.detail });
});

test('error count and file size are bounded', () => {
  const many = parsePolicyFile('x.policy', 'bogus\n'.repeat(5000));
  assert.is(many.errors.length, 1001);
  assert.match(many.errors[1000]!.message, 'too many errors; stopped after 1000');
  const huge = parsePolicyFile('x.policy', '#'.repeat(16 * 1024 * 1024 + 1));
  assert.equal(huge.errors.map((e) => e.message), ['x.policy: file is larger than 16777216 characters']);
});

test('hostile sizes stay linear: many vms lines, many measurements per line', () => {
  const started = performance.now();
  const vms = Array.from({ length: 200_000 }, (_, i) => `vms vm:a${i}`);
  assert.equal(parsePolicyFile('x.policy', `binary x\n${vms.join('\n')}\n`).errors, []);
  const wide = Array.from({ length: 100 }, (_, l) => `version ${l} approved ${Array.from({ length: 800 }, (_, i) => m(l * 1000 + i)).join(' ')}`);
  assert.equal(parsePolicyFile('x.policy', lines('binary x', ...wide)).errors, []);
  assert.ok(performance.now() - started < 5000, `took ${performance.now() - started} ms`);
});

test("a quoted or key=value token never becomes a keyword, status or 'all'", () => {
  const { errors } = parsePolicyFile('x.policy', lines('binary x', 'vms "all"', `version 1 "approved" ${m(1)}`));
  assert.equal(errors.map((e) => e.line), [2, 3]);
});

test('isMeasurement agrees with lib/measure tryParseMeasurement', () => {
  const samples = [m(1), m(2, 'blake3'), 'sha256:', `sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`, `SHA256:${'a'.repeat(64)}`, `sha256:${'A'.repeat(64)}`,
    `sha512:${'a'.repeat(64)}`, `blake3:${'g'.repeat(64)}`, ` ${m(3)}`, `${m(3)}\n`, 'x'];
  for (const s of samples) assert.is(isMeasurement(s), tryParseMeasurement(s) !== undefined, s);
});

test.run();
