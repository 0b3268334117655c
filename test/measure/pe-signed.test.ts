// The PE canonicalizer on real signed files: Debian's Secure Boot binaries (shim signed by
// Microsoft, grub/MokManager/fallback signed by Debian). The `authenticode` profile must
// produce the digest their signatures carry (read with openssl from the PKCS#7 blobs) and the
// one osslsigncode computes; `v1` must not move when the signature is removed, replaced by
// osslsigncode, or when the CheckSum and TimeDateStamp change; code changes must show; files
// with data appended after the certificate table or non-zero padding must be refused.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedBinaryError } from '../../lib/errors.js';
import { bufferReader, measure, planCanonical, type Profile } from '../../lib/measure/index.js';
import { debianSignedEfiFiles } from '../helpers/debian-efi.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';

// ---- the files, read independently of the code under test -------------------------------

interface Signed {
  readonly name: string;
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly checksum: number;
  readonly timeDateStamp: number;
  readonly certificateEntry: number;
  readonly table: { start: number; end: number };
  /** WIN_CERTIFICATE entries: offset and dwLength. */
  readonly entries: readonly { at: number; length: number }[];
  /** End of the section data, or of the COFF symbol/string tables after it. */
  readonly dataEnd: number;
  readonly text: { start: number; end: number };
}

function describe(path: string): Signed {
  const bytes = new Uint8Array(readFileSync(path));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pe = dv.getUint32(0x3c, true);
  const coff = pe + 4;
  const opt = coff + 20;
  const magic = dv.getUint16(opt, true);
  const dirs = opt + (magic === 0x20b ? 112 : 96);
  const sectionTable = opt + dv.getUint16(coff + 16, true);
  let dataEnd = 0;
  let text = { start: 0, end: 0 };
  for (let i = 0; i < dv.getUint16(coff + 2, true); i++) {
    const at = sectionTable + 40 * i;
    const name = String.fromCharCode(...bytes.subarray(at, at + 8)).replace(/\0+$/, '');
    const start = dv.getUint32(at + 20, true);
    const end = start + dv.getUint32(at + 16, true);
    dataEnd = Math.max(dataEnd, end);
    if (name === '.text') text = { start, end };
  }
  const symbols = dv.getUint32(coff + 8, true);
  if (symbols !== 0) {
    const strings = symbols + 18 * dv.getUint32(coff + 12, true);
    dataEnd = strings + dv.getUint32(strings, true);
  }
  const start = dv.getUint32(dirs + 32, true);
  const table = { start, end: start + dv.getUint32(dirs + 36, true) };
  const entries: { at: number; length: number }[] = [];
  for (let at = table.start; at < table.end; at += Math.ceil(dv.getUint32(at, true) / 8) * 8) {
    entries.push({ at, length: dv.getUint32(at, true) });
  }
  assert.ok(text.end > text.start, `${path} has a .text section`);
  return { name: basename(path), path, bytes, checksum: opt + 64, timeDateStamp: coff + 4, certificateEntry: dirs + 32, table, entries, dataEnd, text };
}

// ---- tools ---------------------------------------------------------------------------

let osslsigncode = '';
let openssl = '';
let files: Signed[] = [];
let scratch: { dir: string; cleanup: () => void };
let key = '';
let cert = '';

test.before(() => {
  osslsigncode = requireTool('osslsigncode', 'osslsigncode');
  openssl = requireTool('openssl', 'openssl');
  files = debianSignedEfiFiles().map(describe);
  scratch = scratchDir('vo-pe-signed-');
  key = join(scratch.dir, 'key.pem');
  cert = join(scratch.dir, 'cert.pem');
  run(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=virt-offload test signer']);
});

test.after(() => scratch?.cleanup());

async function digest(bytes: Uint8Array, profile: Profile): Promise<string> {
  const r = await measure(bufferReader(bytes), { profile });
  assert.is(r.format, 'pe');
  return r.measurement.replace(/^sha256:/, '');
}

/**
 * What `osslsigncode verify` reports. It exits non-zero here because Debian's and
 * Microsoft's UEFI CAs are not in the system trust store; the digests are printed anyway.
 */
function osslVerify(path: string): { algorithm: string; current: string; calculated: string } | { failure: string } {
  const r = spawnSync(osslsigncode, ['verify', '-in', path], { encoding: 'utf8' });
  const out = `${r.stdout}\n${r.stderr}`;
  const field = (label: string) => new RegExp(`^${label}\\s*:\\s*([0-9A-Fa-f]+)\\s*$`, 'm').exec(out)?.[1]?.toLowerCase();
  const algorithm = /^Message digest algorithm\s*:\s*(\S+)/m.exec(out)?.[1];
  const current = field('Current message digest');
  const calculated = field('Calculated message digest');
  if (algorithm === undefined || current === undefined || calculated === undefined) return { failure: out.trim() };
  return { algorithm, current, calculated };
}

/** The digest each embedded PKCS#7 signature signs (SpcIndirectDataContent's DigestInfo), via openssl. */
function signedDigests(file: Signed): { algorithm: string; digest: string }[] {
  return file.entries.map(({ at, length }, i) => {
    const der = join(scratch.dir, `${file.name}.sig${i}.der`);
    writeFileSync(der, file.bytes.subarray(at + 8, at + length));
    const lines = run(openssl, ['asn1parse', '-inform', 'DER', '-in', der]).split('\n');
    // SpcIndirectDataContent { SpcAttributeTypeAndOptionalValue (SPC_PE_IMAGE_DATA_OBJID …), DigestInfo }
    const peImageData = lines.findIndex((l) => l.includes(':1.3.6.1.4.1.311.2.1.15'));
    assert.ok(peImageData > 0, `${file.name} signature ${i} is an Authenticode PE signature`);
    const algorithmLine = lines.slice(peImageData + 1).find((l) => l.includes('OBJECT'))!;
    const digestLine = lines.slice(peImageData + 1).find((l) => l.includes('OCTET STRING') && l.includes('[HEX DUMP]'))!;
    return {
      algorithm: algorithmLine.split(':').pop()!.trim(),
      digest: digestLine.split('[HEX DUMP]:').pop()!.trim().toLowerCase(),
    };
  });
}

/** The file without its certificate table, cut by hand (osslsigncode refuses shim's two-entry table). */
function unsignByHand(file: Signed): Uint8Array {
  const out = file.bytes.slice(0, file.table.start);
  new DataView(out.buffer).setBigUint64(file.certificateEntry, 0n, true);
  return out;
}

function osslSign(input: Uint8Array, name: string): { path: string; bytes: Uint8Array } {
  const inPath = join(scratch.dir, `${name}.in`);
  const outPath = join(scratch.dir, `${name}.signed`);
  writeFileSync(inPath, input);
  run(osslsigncode, ['sign', '-certs', cert, '-key', key, '-h', 'sha256', '-in', inPath, '-out', outPath]);
  return { path: outPath, bytes: new Uint8Array(readFileSync(outPath)) };
}

function expectSha256Verify(path: string, expected: string, what: string): void {
  const v = osslVerify(path);
  assert.ok('algorithm' in v, `osslsigncode verify ${what}: ${'failure' in v ? v.failure : ''}`);
  if (!('algorithm' in v)) return;
  assert.is(v.algorithm.toLowerCase(), 'sha256', `${what}: the signature's digest algorithm must be sha256 to compare`);
  assert.is(v.current, v.calculated, `${what}: osslsigncode's own check`);
  assert.is(v.calculated, expected, `${what}: our authenticode digest vs osslsigncode`);
}

function assertRefused(bytes: Uint8Array, fragment: string, what: string): void {
  for (const profile of ['v1', 'authenticode'] as const) {
    try {
      planCanonical(bufferReader(bytes), profile);
    } catch (err) {
      assert.instance(err, MalformedBinaryError, `${what}: ${String(err)}`);
      assert.ok((err as Error).message.includes(fragment), `${what}: "${(err as Error).message}" should contain "${fragment}"`);
      continue;
    }
    assert.unreachable(`${what}: expected a MalformedBinaryError containing "${fragment}" (${profile})`);
  }
}

// ---- tests ---------------------------------------------------------------------------

test('Debian ships the expected signed EFI binaries', () => {
  const names = files.map((f) => f.name);
  for (const expected of ['shimx64.efi.signed', 'grubx64.efi.signed', 'mmx64.efi.signed', 'fbx64.efi.signed']) {
    assert.ok(names.includes(expected), `${expected} in ${names.join(', ')}`);
  }
});

test('authenticode profile = the digest every embedded signature signs = what osslsigncode calculates', async () => {
  let comparedWithOssl = 0;
  let multiSigned = 0;
  for (const file of files) {
    const ours = await digest(file.bytes, 'authenticode');
    const embedded = signedDigests(file);
    assert.ok(embedded.length >= 1);
    for (const [i, s] of embedded.entries()) {
      assert.is(s.algorithm, 'sha256', `${file.name} signature ${i}: digest algorithm must be sha256 to compare`);
      assert.is(s.digest, ours, `${file.name} signature ${i}`);
    }
    if (file.entries.length === 1) {
      expectSha256Verify(file.path, ours, file.name);
      comparedWithOssl++;
    } else {
      // osslsigncode 2.9 reads only single-entry tables ("Corrupted attribute certificate
      // table"); the embedded digests above are the reference for this file.
      multiSigned++;
    }
  }
  assert.ok(comparedWithOssl >= 3, `files compared with osslsigncode: ${comparedWithOssl}`);
  assert.ok(multiSigned >= 1, `files with more than one signature (shim): ${multiSigned}`);
});

test('removing the signature (osslsigncode or by hand) and re-signing with a new key: v1 unchanged, authenticode = osslsigncode', async () => {
  for (const file of files) {
    const v1 = await digest(file.bytes, 'v1');
    const auth = await digest(file.bytes, 'authenticode');
    const byHand = unsignByHand(file);
    assert.is(await digest(byHand, 'v1'), v1, `${file.name} without certificate table`);
    assert.is(await digest(byHand, 'authenticode'), auth, `${file.name} without certificate table: authenticode`);
    if (file.entries.length === 1) {
      const out = join(scratch.dir, `${file.name}.unsigned`);
      run(osslsigncode, ['remove-signature', '-in', file.path, '-out', out]);
      const unsigned = new Uint8Array(readFileSync(out));
      assert.is(await digest(unsigned, 'v1'), v1, `${file.name} after osslsigncode remove-signature`);
      assert.is(await digest(unsigned, 'authenticode'), auth, `${file.name} after osslsigncode remove-signature: authenticode`);
    }
    const resigned = osslSign(byHand, file.name);
    assert.ok(resigned.bytes.length > byHand.length, 'osslsigncode appended a certificate table');
    assert.is(await digest(resigned.bytes, 'v1'), v1, `${file.name} re-signed`);
    const resignedAuth = await digest(resigned.bytes, 'authenticode');
    assert.is(resignedAuth, auth, `${file.name} re-signed: the signed content did not change`);
    expectSha256Verify(resigned.path, resignedAuth, `${file.name} re-signed`);
  }
});

test('an unsigned file ending off an 8-byte boundary: authenticode pads it as osslsigncode does when signing', async () => {
  let exercised = 0;
  for (const file of files) {
    if (file.dataEnd % 8 === 0) continue;
    exercised++;
    // Without the certificate table and without the zero padding before it.
    const bare = unsignByHand(file).slice(0, file.dataEnd);
    assert.ok(bare.length % 8 !== 0);
    const ours = await digest(bare, 'authenticode');
    assert.is(ours, await digest(file.bytes, 'authenticode'), `${file.name}: same content as the signed file`);
    const signed = osslSign(bare, `${file.name}.bare`);
    expectSha256Verify(signed.path, ours, `${file.name} signed from ${bare.length} bytes`);
    assert.is(await digest(bare, 'v1'), await digest(file.bytes, 'v1'));
  }
  assert.ok(exercised >= 1, 'mmx64/shimx64 end their symbol table off an 8-byte boundary');
});

test('CheckSum and TimeDateStamp patches leave v1 unchanged; a changed .text byte changes both profiles', async () => {
  for (const file of files) {
    const v1 = await digest(file.bytes, 'v1');
    const auth = await digest(file.bytes, 'authenticode');
    const patched = (edit: (dv: DataView) => void) => {
      const copy = file.bytes.slice();
      edit(new DataView(copy.buffer));
      return copy;
    };
    const checksum = patched((dv) => dv.setUint32(file.checksum, dv.getUint32(file.checksum, true) ^ 0x5a5a5a5a, true));
    assert.is(await digest(checksum, 'v1'), v1, `${file.name} CheckSum`);
    assert.is(await digest(checksum, 'authenticode'), auth, `${file.name} CheckSum: authenticode`);
    const stamp = patched((dv) => dv.setUint32(file.timeDateStamp, 0x12345678, true));
    assert.is(await digest(stamp, 'v1'), v1, `${file.name} TimeDateStamp`);
    assert.is.not(await digest(stamp, 'authenticode'), auth, `${file.name} TimeDateStamp is signed content`);
    const middle = file.text.start + Math.floor((file.text.end - file.text.start) / 2);
    const code = patched((dv) => dv.setUint8(middle, dv.getUint8(middle) ^ 0x01));
    assert.is.not(await digest(code, 'v1'), v1, `${file.name} .text byte`);
    assert.is.not(await digest(code, 'authenticode'), auth, `${file.name} .text byte: authenticode`);
  }
});

test('refused: data appended after the certificate table, non-zero padding before or inside it', () => {
  let before = 0;
  let inside = 0;
  for (const file of files) {
    for (const extra of [[0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [1]]) {
      const appended = Uint8Array.from([...file.bytes, ...extra]);
      assertRefused(appended, `bytes of trailing data after the certificate table`, `${file.name} + ${extra.length} bytes`);
    }
    if (file.table.start > file.dataEnd) {
      before++;
      const copy = file.bytes.slice();
      copy[file.table.start - 1] = 0x41;
      assertRefused(copy, 'is not zero', `${file.name} padding before the certificate table`);
    }
    for (const { at, length } of file.entries) {
      if (length % 8 === 0) continue;
      inside++;
      const copy = file.bytes.slice();
      copy[at + length] = 0x41;
      assertRefused(copy, 'padding', `${file.name} WIN_CERTIFICATE padding`);
      assertRefused(copy, 'is not zero', `${file.name} WIN_CERTIFICATE padding`);
    }
  }
  assert.ok(before >= 1, 'some file has padding before its certificate table');
  assert.ok(inside >= 1, 'some file has padding after a WIN_CERTIFICATE');
});

test.run();
