// The WebAssembly measurement against the real wabt tools (Debian package `wabt`): modules
// built by wat2wasm with and without debug names, with extra debug custom sections appended,
// with Go-style padded section sizes, and after wasm-strip all measure the same, and that
// measurement is sha256 of wasm-strip's output. The canonical bytes pass wasm-validate.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { measureFile } from '../../lib/io/index.js';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';
import { concat } from '../helpers/bytes.js';
import { leb } from '../helpers/leb128.js';

const wat2wasm = requireTool('wat2wasm', 'wabt');
const wasmStrip = requireTool('wasm-strip', 'wabt');
const wasmValidate = requireTool('wasm-validate', 'wabt');
const wasmObjdump = requireTool('wasm-objdump', 'wabt');

const fixtures = join(repoRoot, 'test/fixtures/wasm');
const { dir, cleanup } = scratchDir('vo-wasm-');
test.after(cleanup);

// ---- byte helpers (inputs here are our own, valid wat2wasm output) ---------------------


function customSection(name: string, payload: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const content = [...leb(nameBytes.length), ...nameBytes, ...payload];
  return Uint8Array.from([0, ...leb(content.length), ...content]);
}


/** Rewrite every section size as a 5-byte LEB128, as Go's linker writes them. */
function padSectionSizes(bytes: Uint8Array): Uint8Array {
  const out: number[] = [...bytes.subarray(0, 8)];
  for (let pos = 8; pos < bytes.length; ) {
    const id = bytes[pos++]!;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++]!;
      size += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
    }
    out.push(id, ...leb(size, 5), ...bytes.subarray(pos, pos + size));
    pos += size;
  }
  return Uint8Array.from(out);
}

// ---- tool and measurement helpers ------------------------------------------------------

let counter = 0;
const scratch = (name: string) => join(dir, `${counter++}-${name}`);

function build(watPath: string, flags: string[] = []): string {
  const out = scratch('module.wasm');
  run(wat2wasm, [...flags, watPath, '-o', out]);
  return out;
}

function write(bytes: Uint8Array, name: string): string {
  const path = scratch(name);
  writeFileSync(path, bytes);
  return path;
}

function strip(path: string): string {
  const out = scratch('stripped.wasm');
  run(wasmStrip, [path, '-o', out]);
  return out;
}

const sha256File = (path: string) => `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;

/** Measure a file and write its canonical bytes (from onChunk) next to it. */
async function measureAndWrite(path: string): Promise<{ measurement: string; canonicalPath: string; dropped: number; kept: string }> {
  const chunks: Uint8Array[] = [];
  const r = await measureFile(path, { onChunk: (c) => chunks.push(c.slice()) });
  assert.is(r.format, 'wasm');
  const canonicalPath = `${path}.canonical`;
  writeFileSync(canonicalPath, concat(chunks));
  return { measurement: r.measurement, canonicalPath, dropped: Number(r.details.customSectionsDropped), kept: String(r.details.customSectionsKept) };
}

const sectionNames = (path: string): string => run(wasmObjdump, ['-h', path]);

// Node's engine, to run what was measured.
const engine = (globalThis as unknown as {
  WebAssembly: { instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: Record<string, (...a: number[]) => number> } }> };
}).WebAssembly;

// ---- the tests -------------------------------------------------------------------------

for (const fixture of ['dispatch', 'strings']) {
  const wat = join(fixtures, `${fixture}.wat`);

  test(`${fixture}: debug names, extra debug sections, padded sizes and wasm-strip all measure the same, = sha256(wasm-strip output)`, async () => {
    const plain = build(wat);
    const named = build(wat, ['--debug-names']);
    assert.match(sectionNames(named), '"name"', 'wat2wasm --debug-names writes a name section');
    assert.not.match(sectionNames(plain), 'Custom');

    const debug = (name: string, text: string) => customSection(name, new TextEncoder().encode(text));
    const extra = write(
      concat([
        readFileSync(named),
        debug('producers', '\x01\x08language\x01\x03WAT\x0210'),
        debug('.debug_info', 'not really DWARF'),
        debug('.debug_str', 'main\0'),
        debug('sourceMappingURL', '\x0dmodule.map.js'),
        debug('external_debug_info', '\x0cmodule.debug'),
      ]),
      'extra.wasm',
    );
    run(wasmValidate, [extra]);
    const goPadded = write(padSectionSizes(readFileSync(extra)), 'go-padded.wasm');
    run(wasmValidate, [goPadded]);
    assert.ok(readFileSync(goPadded).length > readFileSync(extra).length);

    const stripped = strip(extra);
    const inputs = { plain, named, extra, goPadded, stripped, strippedPadded: strip(goPadded), strippedNamed: strip(named) };
    const results = Object.fromEntries(await Promise.all(Object.entries(inputs).map(async ([k, p]) => [k, await measureAndWrite(p)] as const)));

    const m = results.plain!.measurement;
    for (const [k, r] of Object.entries(results)) {
      assert.is(r.measurement, m, `${k} measures like the plain build`);
      assert.is(r.kept, 'none');
      run(wasmValidate, [r.canonicalPath]); // the canonical bytes are a valid module
    }
    assert.is(results.named!.dropped, 1);
    assert.is(results.extra!.dropped, 6);
    assert.is(results.goPadded!.dropped, 6);
    assert.is(m, sha256File(stripped), 'measurement = sha256 of wasm-strip output');
    assert.is(m, sha256File(inputs.strippedPadded), 'wasm-strip also re-encodes section sizes minimally');
    assert.is(m, sha256File(plain));
  });

  test(`${fixture}: a change in code changes the measurement`, async () => {
    const source = readFileSync(wat, 'utf8');
    // Add one to the i32.const on the line marked CODE-EDIT.
    const edited = source.replace(/^.*;; CODE-EDIT$/m, (line) => line.replace(/i32\.const (\d+)/, (_, n: string) => `i32.const ${Number(n) + 1}`));
    assert.is.not(edited, source, 'the fixture has a CODE-EDIT marker');
    const editedWat = scratch(`${fixture}-edited.wat`);
    writeFileSync(editedWat, edited);
    const a = await measureAndWrite(build(wat, ['--debug-names']));
    const b = await measureAndWrite(build(editedWat, ['--debug-names']));
    assert.is.not(b.measurement, a.measurement);
  });

  test(`${fixture}: dylink.0 is kept, so its presence changes the measurement and wasm-strip (which removes it) does too`, async () => {
    // The expected consequence of keeping dylink.0: it tells a dynamic linker how much memory
    // and table space the module needs, so a module with it is a different thing to run than
    // the same code without it, and wasm-strip's output (which drops every custom section)
    // is a different module. Only debug-only custom sections are measured away.
    const plain = readFileSync(build(wat));
    const memInfo = Uint8Array.from([0x01, 0x04, 0x10, 0x02, 0x00, 0x00]); // WASM_DYLINK_MEM_INFO
    const dylink = write(concat([plain.subarray(0, 8), customSection('dylink.0', memInfo), plain.subarray(8)]), 'dylink.wasm');
    run(wasmValidate, [dylink]);
    assert.match(run(wasmObjdump, ['-x', dylink]), 'mem_size     : 16', 'wabt reads it as a dylink.0 section');

    const without = await measureAndWrite(write(plain, 'plain.wasm'));
    const withDylink = await measureAndWrite(dylink);
    assert.is(withDylink.kept, '"dylink.0"');
    assert.is.not(withDylink.measurement, without.measurement);
    assert.is(withDylink.measurement, sha256File(dylink), 'nothing to drop: the module is its own canonical form');
    run(wasmValidate, [withDylink.canonicalPath]);

    const strippedDylink = await measureAndWrite(strip(dylink));
    assert.is.not(strippedDylink.measurement, withDylink.measurement);
    assert.is(strippedDylink.measurement, without.measurement);

    // Debug data next to dylink.0 still drops out.
    const named = readFileSync(build(wat, ['--debug-names']));
    const dylinkNamed = write(concat([named.subarray(0, 8), customSection('dylink.0', memInfo), named.subarray(8), customSection('.debug_line', Uint8Array.of(1, 2))]), 'dylink-named.wasm');
    assert.is((await measureAndWrite(dylinkNamed)).measurement, withDylink.measurement);
  });
}

test('wat2wasm --no-canonicalize-leb128s pads sizes inside the code section too: that is content, and still = sha256(wasm-strip output)', async () => {
  // wabt's padding also reaches function body sizes and name-subsection sizes. Profile v1
  // re-encodes only section sizes and keeps section contents byte for byte (the engine, not
  // the measurement, interprets them), exactly as wasm-strip does; so this build measures
  // differently from the minimal one, and still equals sha256 of its wasm-strip output.
  const wat = join(fixtures, 'dispatch.wat');
  const minimal = await measureAndWrite(build(wat));
  const paddedPath = build(wat, ['--no-canonicalize-leb128s', '--debug-names']);
  const padded = await measureAndWrite(paddedPath);
  assert.is(padded.measurement, sha256File(strip(paddedPath)));
  assert.is.not(padded.measurement, minimal.measurement);
  run(wasmValidate, [padded.canonicalPath]);
});

test('the canonical bytes are what runs: Node instantiates them and they compute', async () => {
  const named = build(join(fixtures, 'dispatch.wat'), ['--debug-names']);
  const r = await measureAndWrite(write(padSectionSizes(readFileSync(named)), 'padded.wasm'));
  const { instance } = await engine.instantiate(readFileSync(r.canonicalPath), {});
  const { fold, apply } = instance.exports;
  assert.is(fold!(2, 4), 24, 'product of 1..4 through the table'); // op 2 = $mul
  assert.is(apply!(3, 2, 5), 2005); // op 3 = $scaled: 2 * 1000 + 5
});

test.run();
