// The short way for usual files (fast-file.ts) must compile a file exactly as the parser
// does, or leave it to the parser: same compiled form, same snapshot, same errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildSnapshot } from '../../lib/policy/index.js';
import { DIGEST_STRIDE, intsLength, type CompiledFile } from '../../lib/policy/compiled.js';
import { compileUsualFile, FAST_MAX_VERSIONS, fastFileOptions } from '../../lib/policy/fast-file.js';
import { compileFile } from '../../lib/policy/snapshot.js';
import { lines, m, sources } from './helpers.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function withFast<T>(on: boolean, f: () => T): T {
  fastFileOptions.enabled = on;
  try {
    return f();
  } finally {
    fastFileOptions.enabled = true;
  }
}

/** Everything a compiled file holds, with the binary's part of the shared slabs copied out. */
function view(c: CompiledFile): unknown {
  const b = c.binary;
  if (b === undefined) return { ...c, errors: c.errors.map((e) => e.message) };
  const { ints, intsAt, digests, digestsAt, ...rest } = b;
  return {
    path: c.path,
    groups: c.groups,
    errors: c.errors.map((e) => e.message),
    binary: { ...rest, ints: [...ints.subarray(intsAt, intsAt + intsLength(b.count, b.measurementCount))], digests: [...digests.subarray(digestsAt, digestsAt + DIGEST_STRIDE * b.measurementCount)] },
  };
}

/** The build of `files` (snapshot or errors, as JSON) and each file's compiled form, one way. */
function build(files: Record<string, string>, fast: boolean): { result: string; compiled: string } {
  return withFast(fast, () => {
    const r = buildSnapshot(sources(files));
    const result = JSON.stringify(r.ok ? r.snapshot : r.errors.map((e) => e.message));
    const compiled = JSON.stringify(Object.entries(files).map(([path, text]) => view(compileFile(path, text))));
    return { result, compiled };
  });
}

/** Both ways agree; whether the short way took the first file. */
function same(files: Record<string, string>, label = ''): boolean {
  const general = build(files, false);
  const fast = build(files, true);
  assert.is(fast.compiled, general.compiled, `compiled form differs:\n${label}${Object.values(files).join('\n---\n')}`);
  assert.is(fast.result, general.result, `build differs:\n${label}${Object.values(files).join('\n---\n')}`);
  const [path, text] = Object.entries(files)[0]!;
  return compileUsualFile(path, text) !== undefined;
}

const taken = (text: string, path = 'x.policy'): boolean => same({ [path]: text });

test('usual files take the short way and compile as the parser compiles them', () => {
  const header = ['# x: a tool', 'binary x', 'interpreter /usr/bin/python3', 'limits wall=30s memory=256M', 'vms vm:a vm:b  # build hosts', 'vms group:g', ''];
  const groups = lines('group g vm:c uuid:0A0B0C0D-0000-4000-8000-000000000000');
  const file = lines(
    ...header,
    `version 1.0 superseded by=1.1 ${m(1)}`,
    `version 1.1 revoked reason="bad # not a comment" ${m(2)}  # trailing`,
    '',
    '   # an indented comment',
    `\tversion\t1.2\tsuperseded\tby=1.3\t${m(3, 'blake3')}#tight`,
    `version 1.3 approved ${m(4)}`,
    `version release-2.0-build.77 approved ${m(5)}`,
  );
  assert.ok(same({ 'x.policy': file, 'groups.policy': groups }));
  // No newline at the end, and one version only.
  assert.ok(taken(`binary x\nvms all\nversion a-very-long-version-1 approved ${m(1)}`));
});

test('anything unusual or wrong is left to the parser, with its errors', () => {
  const base = ['binary x', 'vms all'];
  const cases: string[] = [
    lines(...base, `version 1 approved ${m(1)} ${m(2)}`), // two measurements (valid, general way)
    lines(...base, `version 1 revoked reason=bare ${m(1)}`), // bare reason (valid)
    lines(...base, `version 1 revoked reason="a \\" quote" ${m(1)}`), // escape (valid)
    lines(...base, `version 1 revoked reason="back\\\\slash" ${m(1)}`), // an escaped backslash (valid)
    lines(...base, `version 1 revoked reason="a"${m(1)}`), // glued to the closing quote
    lines(...base, `version 1 revoked reason="a ${m(1)}`), // unterminated
    lines(...base, `version -1 approved ${m(1)}`),
    lines(...base, `version 1 superseded by=.2 ${m(1)}`, `version .2 approved ${m(2)}`),
    lines(...base, `version 1 approved ${m(1)}x`),
    lines(...base, `version 1 approved ${m(1)}"`),
    lines(...base, `version 1 approved ${m(1)}0`),
    lines(...base, `version 1 approved ${m(1).slice(0, -1)}`),
    lines(...base, `version 1 approved sha512:${m(1).slice(7)}`),
    lines(...base, `version 1 approved ${m(1)} x`),
    lines(...base, `version 1 approvedx ${m(1)}`),
    lines(...base, `version 1 supersededby=2 ${m(1)}`, `version 2 approved ${m(2)}`),
    lines(...base, `version 1 superseded by=2${m(1)}`, `version 2 approved ${m(2)}`),
    lines(...base, `version 1 revokedreason="r" ${m(1)}`),
    lines(...base, `version 1 approved`),
    lines(...base, `version 1`),
    lines(...base, `version 1 "approved" ${m(1)}`),
    lines('binary x', 'interpreter /a"b"', 'vms all', `version 1 approved ${m(1)}`), // a quote in the middle (the lexer refuses it)
    lines('binary x', 'interpreter "none"', 'vms all', `version 1 approved ${m(1)}`), // quoted: a path, not the keyword
    lines('binary x', 'interpreter "/usr/bin/python3"', 'vms all', `version 1 approved ${m(1)}`), // quoted (valid)
    lines('vms all', 'binary x', `version 1 approved ${m(1)}`),
    lines('limits wall=1s', 'binary x', 'vms all', `version 1 approved ${m(1)}`),
    lines('binary x', 'vms all', 'vms all', `version 1 approved ${m(1)}`),
    lines('binary x', 'vms vm:a', 'vms vm:b vm:a', `version 1 approved ${m(1)}`),
    lines('binary x', 'limits wall=1s', 'limits memory=1G', 'vms all', `version 1 approved ${m(1)}`),
    lines('binary x', 'group g vm:a', 'vms group:g', `version 1 approved ${m(1)}`),
    lines(...base, `version 1 approved ${m(1)}`, 'vms group:g'), // a header line after the versions
    lines(...base, `version 1 approved ${m(1)}`, 'binary y'),
    lines(`version 1 approved ${m(1)}`, ...base), // before the binary line
    lines('vms all', `version 1 approved ${m(1)}`), // no binary block
    lines(...base, `version 1 approved ${m(1)}`, `version 1 approved ${m(2)}`), // repeated version
    lines(...base, `version 1 approved ${m(1)}`, `version 2 approved ${m(1)}`), // repeated measurement
    lines(...base, `version 1 superseded by=1 ${m(1)}`), // by itself
    lines(...base, `version 1 superseded by=3 ${m(1)}`), // by nothing
    lines(...base, `version 1 superseded by=2 ${m(1)}`, `version 2 superseded by=1 ${m(2)}`), // loop
    lines(...base, `version 1 revoked reason="" ${m(1)}`),
    lines(...base, `version 1 revoked reason="   " ${m(1)}`),
    lines(...base, `version 1 revoked reason="${'r'.repeat(1025)}" ${m(1)}`),
    lines(...base, `version 1 approved ${m(1).toUpperCase()}`),
    lines(...base, `version 1 approved ${m(1)}`, `# ${'c'.repeat(70_000)}`), // a line too long
    lines(...base, `version 1 approved ${m(1)}\r`), // CR
    lines(...base, `version 1 approved ${m(1)} # \u202e hidden`),
    lines(...base, `version 1 approved ${m(1)}`, '# \u202e in a comment line'),
    lines(...base, '  # \u0007 a comment line first', `version 1 approved ${m(1)}`),
    lines('binary x', '# \u200b in the header', 'vms all', `version 1 approved ${m(1)}`),
    lines('binary x', 'vms all # \u2066', `version 1 approved ${m(1)}`),
    lines(...base, `version 1 revoked reason="a\u2066b" ${m(1)}`),
    lines(...base, `version 1 approved ${m(1)}`, '\u00a0'),
    lines('binary x', 'vms all', 'limits wall=0s', `version 1 approved ${m(1)}`), // an error in the header
    lines(...base, `version ${'v'.repeat(65)} approved ${m(1)}`),
    lines(...base, 'version', `version 1 approved ${m(1)}`),
    lines(...base, `version 1 approved by=2 ${m(1)}`),
    lines(...base, `version 1 superseded ${m(1)}`),
    lines(...base, `version 1 aproved ${m(1)}`),
    lines(...base, `"version" 1 approved ${m(1)}`),
    lines('binary y', 'vms all', `version 1 approved ${m(1)}`), // named unlike its file
    lines(...base, ...Array.from({ length: FAST_MAX_VERSIONS + 1 }, (_, i) => `version ${i} approved ${m(i + 1)}`)),
  ];
  for (const text of cases) assert.not.ok(taken(text), text.slice(0, 300));
  // The file's name: NAME.policy in any folder, nothing glued before NAME.
  const usual = lines('binary x', 'vms all', `version 1 approved ${m(1)}`);
  assert.ok(taken(usual, 'a/b/x.policy'));
  for (const path of ['a/bx.policy', 'bx.policy', 'a/x.policyy', 'a/x.polic', 'x', '.policy']) assert.not.ok(taken(usual, path), path);
  // At the bound, still the short way.
  assert.ok(taken(lines(...base, ...Array.from({ length: FAST_MAX_VERSIONS }, (_, i) => `version ${i} approved ${m(i + 1)}`))));
});

test('a measurement repeated in another file is reported against its first listing either way', () => {
  const files = {
    'a.policy': lines('binary a', 'vms all', `version 1 approved ${m(1)}`, `version 2 approved ${m(2)}`),
    'b.policy': lines('binary b', 'vms all', `version 1 superseded by=2 ${m(2)}`, `version 2 approved ${m(3)}`),
  };
  assert.ok(same(files));
  assert.ok(buildSnapshot(sources(files)).ok === false);
});

test('generated files of every shape: both ways agree, and the short way takes the usual ones', () => {
  const random = rng(23);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const blank = [' ', '\t', '  ', ' \t '];
  const lead = ['', '', '', ' ', '\t'];
  const tails = ['', '', '', ' ', '\t', ' # a comment "quoted" # twice', '#', ' #', '#tight', ' extra', ` ${m(999)}`, '"'];
  const headers = [
    'interpreter /usr/bin/python3', 'interpreter wasi', 'interpreter none', 'interpreter ./relative', 'interpreter /usr/bin/', 'interpreter /a/../b', 'interpreter', 'interpreter /a /b', 'interpreter "/a b"',
    'limits wall=10s output=1M', 'limits pids=10 args=5 argbytes=1K memory=1G', 'limits cpu=50%', 'limits cpu=5', 'limits cpu=100%%', 'limits wall=10x', 'limits wall=10s wall=20s', 'limits =5', 'limits wall=', 'limits', 'limits colour=red', 'limits wall=10s#glued', 'limits wall="10s"',
    'vms group:g', 'vms vm:a vm:a', 'vms vm:b uuid:0a0b0c0d-0000-4000-8000-000000000000', 'vms uuid:0A0B0C0D-0000-4000-8000-000000000000', 'vms all', 'vms all vm:a', 'vms vm:a all', 'vms', 'vms group:Bad', 'vms vm:', 'vms vm:a#glued', 'vms "vm:q"', 'vms\tvm:t\tgroup:g  # tabs',
    '# comment', '', '   ', '# "quoted" in a comment', 'group h vm:z', 'binary x', 'binary y', 'version', 'unknown keyword',
  ];
  const usualHeaders = ['interpreter /usr/bin/python3', 'limits wall=10s output=1M', 'vms vm:b uuid:0A0B0C0D-0000-4000-8000-000000000000', 'vms\tvm:t\tgroup:g  # tabs', '# comment', ''];
  const reasons = ['r', 'a longer reason # with a hash', '', ' ', 'tab\tinside', 'quote\\"d', 'back\\\\slash', 'é accent'];
  let fast = 0;
  let valid = 0;
  for (let f = 0; f < 1500; f++) {
    const count = 1 + Math.floor(random() * 12);
    const name = (i: number): string => (i % 4 === 0 ? `${i}.0` : `release-${i}.0-build.${f}`);
    const head: string[] = random() < 0.05 ? [pick(headers), 'binary x'] : ['binary x'];
    for (let h = Math.floor(random() * 4); h > 0; h--) head.push(random() < 0.7 ? pick(usualHeaders) : pick(headers));
    if (random() < 0.05) {
      const at = Math.floor(random() * head.length);
      const line = head[at]!;
      const c = Math.floor(random() * (line.length + 1));
      head[at] = line.slice(0, c) + pick([' ', '#', '"', ':', '=', 'A', '']) + line.slice(c + 1);
    }
    if (random() < 0.9 && !head.some((l) => l.startsWith('vms'))) head.push('vms group:g');
    const body: string[] = [];
    for (let i = 0; i < count; i++) {
      const r = random();
      const status =
        i === count - 1 || r < 0.15 ? 'approved'
        : r < 0.25 ? `revoked reason="${pick(reasons)}"`
        : r < 0.27 ? `superseded by=${name(Math.floor(random() * count))}`
        : r < 0.28 ? `superseded by=nowhere`
        : `superseded by=${name(i + 1)}`;
      const digest = random() < 0.03 ? m(f * 100 + Math.floor(random() * count)) : m(f * 100 + i);
      const version = random() < 0.02 ? name(Math.max(0, i - 1)) : name(i);
      let line = `${pick(lead)}version${pick(blank)}${version}${pick(blank)}${status.replace(' ', pick(blank))}${pick(blank)}${digest}${random() < 0.2 ? pick(tails) : ''}`;
      // One character changed, dropped or added somewhere, now and then: lines just off the usual shape.
      if (random() < 0.08) {
        const at = Math.floor(random() * line.length);
        const c = pick([' ', '\t', '#', '"', '\\', '=', 'A', 'F', 'g', '0', 'é', ':', '-', '.', '']);
        line = line.slice(0, at) + c + line.slice(at + (random() < 0.5 ? 1 : 0));
      }
      body.push(line);
      if (random() < 0.05) body.push(pick(['', '  ', '# between', pick(headers)]));
    }
    const files = { 'x.policy': lines(...head, ...body), 'g.policy': lines('group g vm:c') };
    const took = same(files, `file ${f}\n`);
    if (took) fast++;
    if (buildSnapshot(sources(files)).ok) valid++;
  }
  assert.ok(fast > 200, `only ${fast} of 1500 files took the short way: the generator no longer exercises it`);
  assert.ok(valid > fast / 2, `only ${valid} files build`);
});

test.run();
