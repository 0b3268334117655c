// applyVcdiff against deltas made by the real xdelta3 (Debian package xdelta3), on real
// binaries built with gcc: the result must equal the new binary byte for byte, and every
// delta the decoder would get wrong (application header, secondary compression, adler32
// checksum, truncation, garbage, wrong base) must be refused with a PatchError.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyVcdiff, inspectVcdiff, MAX_TARGET_BYTES, MAX_WINDOWS, PatchError } from '../../lib/patch/index.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';

const xdelta3 = requireTool('xdelta3', 'xdelta3');
const gcc = requireTool('gcc', 'gcc');
const { dir, cleanup } = scratchDir('vo-patch-');
test.after(cleanup);

function build(name: string, source: string): Uint8Array {
  const c = join(dir, `${name}.c`);
  writeFileSync(c, source);
  run(gcc, ['-O1', '-o', join(dir, name), c]);
  return readFileSync(join(dir, name));
}

function xdelta(args: readonly string[], oldName: string, newName: string, out: string): Uint8Array {
  run(xdelta3, ['-e', '-f', ...args, '-s', join(dir, oldName), join(dir, newName), join(dir, out)]);
  return readFileSync(join(dir, out));
}

const oldBin = build('old', '#include <stdio.h>\nint main(void) { puts("hello 1.0"); return 0; }\n');
const newBin = build(
  'new',
  '#include <stdio.h>\n#include <string.h>\nstatic const char msg[] = "hello 1.1, now with a longer greeting";\nint main(int argc, char **argv) { puts(msg); return argc > 1 ? (int)strlen(argv[1]) % 7 : 0; }\n',
);
const plain = xdelta(['-A', '-S', 'none', '-n'], 'old', 'new', 'plain.vcdiff');

function refused(fn: () => unknown, code: string, pattern: RegExp): PatchError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, PatchError, String(err));
    const e = err as PatchError;
    assert.is(e.code, code, e.message);
    assert.match(e.message, pattern);
    return e;
  }
  assert.unreachable('the delta was accepted');
  throw new Error('unreachable');
}

test('a plain xdelta3 delta (-A -S none -n) between two gcc builds reproduces the new binary exactly', () => {
  assert.ok(!Buffer.from(oldBin).equals(Buffer.from(newBin)));
  const out = applyVcdiff(oldBin, plain);
  assert.is(out.length, newBin.length);
  assert.ok(Buffer.from(out).equals(Buffer.from(newBin)), 'patched bytes differ from the new binary');
  const summary = inspectVcdiff(plain, oldBin.length, MAX_TARGET_BYTES);
  assert.is(summary.targetBytes, newBin.length);
});

test('many windows (-W 16384) over a larger file with inserts, deletes and runs', () => {
  const a = new Uint8Array(300_000);
  let x = 12345;
  for (let i = 0; i < a.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    a[i] = x >>> 24;
  }
  const b = Buffer.concat([a.subarray(0, 1000), Buffer.alloc(10, 0x78), a.subarray(1010, 150_000), Buffer.from('inserted'.repeat(100)), a.subarray(150_000, 250_000), a.subarray(251_000)]);
  writeFileSync(join(dir, 'big1'), a);
  writeFileSync(join(dir, 'big2'), b);
  const d = xdelta(['-A', '-S', 'none', '-n', '-W', '16384'], 'big1', 'big2', 'big.vcdiff');
  const summary = inspectVcdiff(d, a.length, MAX_TARGET_BYTES);
  assert.ok(summary.windows > 5, `expected several windows, got ${summary.windows}`);
  assert.ok(Buffer.from(applyVcdiff(a, d)).equals(b));
});

test("xdelta3's default output (application header + secondary compression) is refused, naming both", () => {
  const d = xdelta([], 'old', 'new', 'default.vcdiff');
  const e = refused(() => applyVcdiff(oldBin, d), 'EUNSUPPORTED', /Hdr_Indicator .*VCD_DECOMPRESS \(secondary compression\).*VCD_APPHEADER/);
  assert.is(e.offset, 4);
  assert.match(e.message, /xdelta3 -e -A -S none -n/);
});

test('an application header alone (-S none -n, without -A) is refused', () => {
  const d = xdelta(['-S', 'none', '-n'], 'old', 'new', 'apphdr.vcdiff');
  refused(() => applyVcdiff(oldBin, d), 'EUNSUPPORTED', /VCD_APPHEADER \(an application header\)/);
});

test("xdelta3's adler32 window checksum (-A -S none without -n) is refused: the decoder would decode wrong bytes", () => {
  const d = xdelta(['-A', '-S', 'none'], 'old', 'new', 'adler.vcdiff');
  const e = refused(() => applyVcdiff(oldBin, d), 'EUNSUPPORTED', /window 0: Win_Indicator 0x5 carries xdelta3's adler32 checksum/);
  assert.is(e.offset, 5);
});

test('every truncation of a one-window delta is refused (the 5-byte header alone is an empty file)', () => {
  assert.is(inspectVcdiff(plain, oldBin.length, MAX_TARGET_BYTES).windows, 1);
  for (let n = 0; n < plain.length; n++) {
    if (n === 5) {
      assert.is(applyVcdiff(oldBin, plain.subarray(0, 5)).length, 0);
      continue;
    }
    refused(() => applyVcdiff(oldBin, plain.subarray(0, n)), 'EMALFORMED', /./);
  }
});

test('trailing garbage after the last window is refused', () => {
  refused(() => applyVcdiff(oldBin, Buffer.concat([plain, Buffer.from([0x00, 0x05])])), 'EMALFORMED', /window 1/);
});

test('bad magic, unknown indicator bits, VCD_TARGET and bad code tables are refused', () => {
  refused(() => applyVcdiff(oldBin, Buffer.from('PK\x03\x04\x00')), 'EMALFORMED', /not a VCDIFF delta: magic is 50 4b 03 04/);
  refused(() => applyVcdiff(oldBin, Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x08])), 'EMALFORMED', /Hdr_Indicator 0x8 has bits/);
  refused(() => applyVcdiff(oldBin, Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x02])), 'EUNSUPPORTED', /VCD_CODETABLE/);
  refused(() => applyVcdiff(oldBin, Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])), 'EUNSUPPORTED', /VCD_TARGET/);
  refused(() => applyVcdiff(oldBin, Buffer.from([0xd6, 0xc3, 0xc4, 0x00, 0x00, 0x03])), 'EMALFORMED', /both VCD_SOURCE and VCD_TARGET/);
});

// Hand-made windows without a source segment: [Win_Indicator 0][delta length][target length]
// [Delta_Indicator 0][data len][inst len][addr len][data][inst][addr].
function window(target: number, data: number[], inst: number[], addr: number[]): number[] {
  const body = [target, 0, data.length, inst.length, addr.length, ...data, ...inst, ...addr];
  return [0x00, body.length, ...body];
}
const header = [0xd6, 0xc3, 0xc4, 0x00, 0x00];

test('hand-made deltas: ADD, RUN and an overlapping COPY decode; out-of-range COPY, short data, size mismatch refused', () => {
  // ADD 3 "abc" (code 4), COPY 6 mode HERE back 3 (code 35+6-4+... explicit: code 35 size 6).
  const ok = applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(9, [0x61, 0x62, 0x63], [4, 35, 6], [3])]));
  assert.is(Buffer.from(ok).toString(), 'abcabcabc');
  const run = applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(5, [0x7a], [0, 5], [])]));
  assert.is(Buffer.from(run).toString(), 'zzzzz');
  // COPY from address 3 when only 3 bytes exist (here = 3): reads the future.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(9, [0x61, 0x62, 0x63], [4, 19, 6], [3])])), 'EMALFORMED', /COPY at 0x.* reads from address 3, outside 0\.\.2/);
  // ADD 3 with 2 data bytes.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(3, [0x61, 0x62], [4], [])])), 'EMALFORMED', /ADD of 3 bytes .* runs past the data section/);
  // Target length 4, instructions write 3.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(4, [0x61, 0x62, 0x63], [4], [])])), 'EMALFORMED', /instructions produce 3 bytes, but the target window length is 4/);
  // Unused data byte.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...window(3, [0x61, 0x62, 0x63, 0x64], [4], [])])), 'EMALFORMED', /1 bytes of the data section are not used/);
  // A 6-byte integer (leading zero groups) and an integer over 2^31-1.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])), 'EMALFORMED', /more than 5 bytes/);
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, 0x00, 0x88, 0x80, 0x80, 0x80, 0x00])), 'EMALFORMED', /larger than 0x7fffffff/);
});

test('window counts: one empty window alone is an empty file (as xdelta3 writes it); empty windows among others, and more than MAX_WINDOWS, are refused', () => {
  const empty = window(0, [], [], []);
  assert.is(applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...empty])).length, 0);
  const one = window(1, [0x7a], [0, 1], []);
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...one, ...empty])), 'EMALFORMED', /window 1 has an empty target/);
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, ...empty, ...one])), 'EMALFORMED', /window 0 has an empty target/);
  // MAX_WINDOWS one-byte windows decode; one more is refused before anything is decoded.
  const many = (n: number) => {
    const out = new Uint8Array(header.length + n * one.length);
    out.set(header);
    for (let i = 0; i < n; i++) out.set(one, header.length + i * one.length);
    return out;
  };
  assert.is(applyVcdiff(new Uint8Array(0), many(MAX_WINDOWS)).length, MAX_WINDOWS);
  refused(() => applyVcdiff(new Uint8Array(0), many(MAX_WINDOWS + 1)), 'EMALFORMED', new RegExp(`more than ${MAX_WINDOWS} windows`));
});

test('a base shorter than the source segments (wrong base) is refused', () => {
  refused(() => applyVcdiff(oldBin.subarray(0, 100), plain), 'EMALFORMED', /source segment .* extends past the end of the base \(0x64 bytes\): wrong base/);
});

test('the target size bound is enforced before anything is decoded', () => {
  refused(() => applyVcdiff(oldBin, plain, { maxTargetBytes: newBin.length - 1 }), 'EMALFORMED', new RegExp(`larger than the limit of ${newBin.length - 1} bytes`));
  assert.is(applyVcdiff(oldBin, plain, { maxTargetBytes: newBin.length }).length, newBin.length);
  // A window claiming 2 GiB - 1 is refused under the default 1 GiB ceiling.
  refused(() => applyVcdiff(new Uint8Array(0), Uint8Array.from([...header, 0x00, 0x0a, 0x87, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0])), 'EMALFORMED', /limit of 1073741824 bytes/);
});

test('single-byte mutations of a real delta: PatchError or some output, never another exception', () => {
  let refusedCount = 0;
  let x = 7;
  for (let i = 0; i < 2000; i++) {
    const d = Uint8Array.from(plain);
    x = (x * 1103515245 + 12345) >>> 0;
    const at = x % d.length;
    d[at] = (d[at]! ^ (1 + ((x >>> 16) % 255))) & 0xff;
    try {
      const out = applyVcdiff(oldBin, d, { maxTargetBytes: 1 << 20 });
      assert.ok(out.length <= 1 << 20);
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
      refusedCount++;
    }
  }
  assert.ok(refusedCount > 100, `only ${refusedCount} mutations refused`);
});

test.run();
