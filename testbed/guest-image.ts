// The tiny test guest, built at test time from Debian packages and cached under
// <repoRoot>/.cache/guest/. Nothing is installed on the host:
// - `apt-get download` fetches the versioned kernel package that linux-image-amd64 depends on
//   (linux-image-6.1.0-N-amd64) and busybox-static into .cache/guest/debs/;
// - `dpkg-deb --fsys-tarfile | tar -x --wildcards` streams the kernel's data.tar and keeps only
//   /boot/vmlinuz-* and the six virtio-serial modules (~9 MB instead of `dpkg -x`'s 400 MB);
// - the compressed payload of the bzImage is unpacked into the ELF `vmlinux`: QEMU boots it
//   through PVH (`-kernel vmlinux`): spawn → ready marker 2.1–2.3 s under TCG here (research/
//   platform.md: 3.6–4.5 s on a loaded machine, 7–8.6 s when booting the bzImage);
// - the initramfs (newc cpio, gzip) is written here in Node: busybox, its applet links, the
//   modules (decompressed when the package ships .ko.xz: busybox insmod may not read xz),
//   testbed/guest/init and vo-port.
// Every artifact's name carries the package versions (and a hash of what goes into it), so a
// kernel update or an edit of the init script builds anew, and an unchanged one is reused.
// `withNode: true` adds the host's `node` and the libraries `ldd` lists (≈100 MB, ≈42 MB
// compressed; boot with ≥ 1024 MiB) for running the TypeScript guest client inside the guest:
// build ~1.3 s, boot ~4 s, first `node` start in the guest ~2 s. Node is at the host's path
// (/usr/bin/node here); put scripts in with startGuest's `extraFiles`.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoRoot, requireTool, run } from './tools.js';

/** Modules of Debian's kernel the guest loads, in insmod (dependency) order. */
export const GUEST_MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_console'] as const;
/** Where each module lives under lib/modules/<kver>/kernel/. */
const MODULE_DIRS: Record<(typeof GUEST_MODULES)[number], string> = {
  virtio_ring: 'drivers/virtio',
  virtio: 'drivers/virtio',
  virtio_pci_legacy_dev: 'drivers/virtio',
  virtio_pci_modern_dev: 'drivers/virtio',
  virtio_pci: 'drivers/virtio',
  virtio_console: 'drivers/char',
};
/** Bump when the layout of what is built changes, so old cache entries are not reused. */
const FORMAT = 'guest-image-1';

export const guestCacheDir = join(repoRoot, '.cache', 'guest');
const debsDir = join(guestCacheDir, 'debs');
const fixturesDir = join(repoRoot, 'testbed', 'guest');

export interface GuestImage {
  /** ELF vmlinux (PVH boot) or, when the payload could not be unpacked, the bzImage. */
  kernel: string;
  /** gzip'd newc cpio. */
  initrd: string;
  /** e.g. 6.1.0-56-amd64 */
  kernelRelease: string;
  /** Debian package names and versions the image was built from. */
  packages: Record<string, string>;
  withNode: boolean;
  /** Memory the guest needs: the initramfs is unpacked into RAM. */
  memoryMiB: number;
}

export interface GuestImageOptions {
  /** Add the host's node binary and its libraries (≈100 MB more; boot with ≥ 1024 MiB). */
  withNode?: boolean;
  /** Told about each slow step (download, extraction, initramfs) before it starts; nothing when all is cached. */
  progress?: (step: string) => void;
}

/** Kernel and initramfs of the test guest; downloads and builds only what is missing. */
export async function ensureGuestImage(options: GuestImageOptions = {}): Promise<GuestImage> {
  const withNode = options.withNode ?? false;
  const progress = options.progress ?? (() => {});
  const { kernelPkg, kernelVersion, busyboxVersion } = resolvePackages();
  const packages = { [kernelPkg]: kernelVersion, 'busybox-static': busyboxVersion };

  const kernelDir = join(guestCacheDir, `kernel-${fileSafe(kernelPkg)}-${fileSafe(kernelVersion)}`);
  if (!existsSync(join(kernelDir, 'done'))) {
    progress(`kernel: apt-get download ${kernelPkg}=${kernelVersion} (~70 MB, once) and extract vmlinux + virtio modules`);
    await extractKernel(kernelPkg, kernelVersion, kernelDir);
  }
  const kernelRelease = readFileSync(join(kernelDir, 'done'), 'utf8').trim();
  const kernel = existsSync(join(kernelDir, 'vmlinux')) ? join(kernelDir, 'vmlinux') : join(kernelDir, 'vmlinuz');

  const busyboxDir = join(guestCacheDir, `busybox-${fileSafe(busyboxVersion)}`);
  if (!existsSync(join(busyboxDir, 'done'))) {
    progress(`busybox: apt-get download busybox-static=${busyboxVersion} (once)`);
    await extractBusybox(busyboxVersion, busyboxDir);
  }

  const node = withNode ? hostNode() : undefined;
  const fixtures = ['init', 'vo-port'].map((f) => [f, readFileSync(join(fixturesDir, f))] as const);
  const key = createHash('sha256');
  key.update(`${FORMAT}\n${kernelPkg}=${kernelVersion}\nbusybox-static=${busyboxVersion}\n`);
  for (const [name, bytes] of fixtures) key.update(`${name}\n${bytes.length}\n`).update(bytes);
  if (node) key.update(`node\n${node.identity}\n`);
  const initrd = join(guestCacheDir, `initrd-${fileSafe(kernelVersion)}-${key.digest('hex').slice(0, 16)}${withNode ? '-node' : ''}.cpio.gz`);
  if (!existsSync(initrd)) {
    progress(`initramfs: busybox, modules${node ? ', node and its libraries' : ''} → ${basename(initrd)}`);
    buildInitrd(initrd, { kernelDir, busyboxDir, fixtures, node });
    // Older builds of the same variant (other versions, an edited init) are not used again.
    pruneCache((f) => f !== basename(initrd) && /^initrd-.*\.cpio\.gz$/.test(f) && f.endsWith('-node.cpio.gz') === withNode);
  }

  return { kernel, initrd, kernelRelease, packages, withNode, memoryMiB: withNode ? 1024 : 256 };
}

// ---- package resolution and download -------------------------------------------------------

interface Resolved {
  kernelPkg: string;
  kernelVersion: string;
  busyboxVersion: string;
}

/**
 * Package names and candidate versions. apt-cache costs ~0.4 s a call, so the answer is kept in
 * .cache/guest/resolved.json together with a stamp of /var/lib/apt/lists (names, sizes, mtimes):
 * it is asked again only after an `apt-get update` changed the lists.
 */
function resolvePackages(): Resolved {
  const memo = join(guestCacheDir, 'resolved.json');
  const stamp = aptListsStamp();
  try {
    const saved = JSON.parse(readFileSync(memo, 'utf8')) as { stamp?: string; resolved?: Resolved };
    if (saved.stamp === stamp && saved.resolved) return saved.resolved;
  } catch {
    // no memo yet, or unreadable: ask apt-cache
  }
  const kernelPkg = kernelPackageName();
  const resolved = { kernelPkg, kernelVersion: candidateVersion(kernelPkg), busyboxVersion: candidateVersion('busybox-static') };
  mkdirSync(guestCacheDir, { recursive: true });
  writeFileSync(memo, `${JSON.stringify({ stamp, resolved }, null, 2)}\n`);
  return resolved;
}

function aptListsStamp(): string {
  const lists = '/var/lib/apt/lists';
  try {
    return readdirSync(lists)
      .sort()
      .map((f) => {
        const st = statSync(join(lists, f));
        return `${f}:${st.size}:${st.mtimeMs}`;
      })
      .join('\n');
  } catch {
    return 'no-lists';
  }
}

/** The versioned kernel package linux-image-amd64 depends on (e.g. linux-image-6.1.0-56-amd64). */
function kernelPackageName(): string {
  const aptCache = requireTool('apt-cache', 'apt');
  const out = run(aptCache, ['depends', '--important', 'linux-image-amd64']);
  const m = /Depends:\s*(linux-image-[0-9][^\s<>]*-amd64)\b/.exec(out);
  if (!m?.[1]) {
    throw new Error(`apt-cache knows no kernel package behind linux-image-amd64 (run \`apt-get update\`; bookworm's main archive must be in the apt sources):\n${out}`);
  }
  return m[1];
}

function candidateVersion(pkg: string): string {
  const out = run(requireTool('apt-cache', 'apt'), ['policy', pkg]);
  const m = /Candidate:\s*(\S+)/.exec(out);
  if (!m?.[1] || m[1] === '(none)') throw new Error(`apt-cache has no candidate version of ${pkg} (run \`apt-get update\`)`);
  return m[1];
}

/** Path of the .deb of pkg=version in the cache, downloading it if needed. */
function debFile(pkg: string, version: string): string {
  const dpkgDeb = requireTool('dpkg-deb', 'dpkg');
  mkdirSync(debsDir, { recursive: true });
  const find = (): string | undefined =>
    readdirSync(debsDir)
      .filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'))
      .map((f) => join(debsDir, f))
      .find((f) => run(dpkgDeb, ['-f', f, 'Version']).trim() === version);
  const cached = find();
  if (cached) return cached;
  try {
    // Retried by apt itself: a mirror's transient failure should not fail a whole e2e run.
    run(requireTool('apt-get', 'apt'), ['-o', 'Acquire::Retries=3', 'download', `${pkg}=${version}`], { cwd: debsDir });
  } catch (err) {
    throw new Error(
      `could not download ${pkg}=${version} for the test guest: ${(err as Error).message.trim()}\n` +
        `run \`apt-get update && (cd ${debsDir} && apt-get download ${pkg})\` (needs network access to the Debian archive)`,
    );
  }
  const got = find();
  if (!got) throw new Error(`apt-get download ${pkg}=${version} left no matching .deb in ${debsDir}`);
  return got;
}

/** Stream the .deb's data.tar through tar, extracting only `patterns` into `dest`. */
async function extractFromDeb(deb: string, dest: string, patterns: readonly string[]): Promise<void> {
  const dpkgDeb = requireTool('dpkg-deb', 'dpkg');
  const tar = requireTool('tar', 'tar');
  mkdirSync(dest, { recursive: true });
  const producer = spawn(dpkgDeb, ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'] });
  const consumer = spawn(tar, ['-x', '-C', dest, '--no-same-owner', '--wildcards', ...patterns], { stdio: ['pipe', 'ignore', 'pipe'] });
  producer.stdout.pipe(consumer.stdin);
  // tar reads the archive to its end; a broken pipe only happens when tar failed first.
  consumer.stdin.on('error', () => {});
  const done = (child: typeof producer | typeof consumer, what: string): Promise<void> => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${what} failed (exit ${code ?? signal}): ${stderr.trim()}`))));
    });
  };
  await Promise.all([done(producer, `dpkg-deb --fsys-tarfile ${deb}`), done(consumer, `tar -x ${patterns.join(' ')} (from ${basename(deb)})`)]);
}

// ---- kernel --------------------------------------------------------------------------------

async function extractKernel(pkg: string, version: string, kernelDir: string): Promise<void> {
  const deb = debFile(pkg, version);
  const tmp = `${kernelDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const patterns = ['./boot/vmlinuz-*', ...GUEST_MODULES.map((m) => `./lib/modules/*/kernel/${MODULE_DIRS[m]}/${m}.ko*`)];
  await extractFromDeb(deb, join(tmp, 'deb'), patterns);

  const vmlinuzName = readdirSync(join(tmp, 'deb', 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuzName) throw new Error(`${basename(deb)} has no /boot/vmlinuz-*`);
  const release = vmlinuzName.slice('vmlinuz-'.length);
  renameSync(join(tmp, 'deb', 'boot', vmlinuzName), join(tmp, 'vmlinuz'));

  mkdirSync(join(tmp, 'modules'));
  for (const m of GUEST_MODULES) {
    const dir = join(tmp, 'deb', 'lib', 'modules', release, 'kernel', MODULE_DIRS[m]);
    const file = readdirSync(dir).find((f) => f === `${m}.ko` || f.startsWith(`${m}.ko.`));
    if (!file) throw new Error(`${basename(deb)} has no module ${m} under ${MODULE_DIRS[m]}`);
    writeFileSync(join(tmp, 'modules', `${m}.ko`), decompressModule(join(dir, file)));
  }
  rmSync(join(tmp, 'deb'), { recursive: true });

  const vmlinux = elfFromBzImage(readFileSync(join(tmp, 'vmlinuz')));
  if (vmlinux) writeFileSync(join(tmp, 'vmlinux'), vmlinux);
  writeFileSync(join(tmp, 'done'), `${release}\n`);
  publishDir(tmp, kernelDir);
  // A kernel update replaces the previous kernel (70 MB .deb, 66 MB vmlinux) in the cache.
  pruneCache((f) => f.startsWith('kernel-') && !f.includes('.tmp-') && f !== basename(kernelDir));
  pruneCache((f) => f.startsWith('linux-image-') && f.endsWith('.deb') && f !== basename(deb), debsDir);
}

/** Remove the entries of `dir` (default the guest cache) that `stale` picks. */
function pruneCache(stale: (name: string) => boolean, dir = guestCacheDir): void {
  for (const f of readdirSync(dir)) if (stale(f)) rmSync(join(dir, f), { recursive: true, force: true });
}

/**
 * Move a finished build directory into place. Another test process may have built the same
 * thing meanwhile: its complete copy (with `done`) is as good as ours.
 */
function publishDir(tmp: string, final: string): void {
  if (!existsSync(join(final, 'done'))) rmSync(final, { recursive: true, force: true });
  try {
    renameSync(tmp, final);
  } catch (err) {
    if (!existsSync(join(final, 'done'))) throw err;
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Module bytes, uncompressed: Debian kernels after 6.1 may ship .ko.xz (or .ko.zst). */
function decompressModule(path: string): Buffer {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.ko.xz')) return xzDecompress(readFileSync(path));
  if (path.endsWith('.ko.gz')) return execBytes(requireTool('gzip', 'gzip'), ['-dc'], readFileSync(path));
  throw new Error(`module ${path}: compression not supported by the guest builder (expected .ko, .ko.xz or .ko.gz)`);
}

function xzDecompress(bytes: Uint8Array): Buffer {
  const xz = requireTool('xz', 'xz-utils');
  // --single-stream: the kernel appends the uncompressed size after the xz stream.
  return execBytes(xz, ['-dc', '--single-stream'], bytes);
}

function execBytes(cmd: string, args: string[], input: Uint8Array): Buffer {
  // run() decodes output as UTF-8; binaries need the raw bytes.
  try {
    return execFileSync(cmd, args, { input, maxBuffer: 512 << 20, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; status?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.status}): ${e.stderr?.toString() ?? String(err)}`);
  }
}

/**
 * The ELF vmlinux inside a bzImage, or undefined when it cannot be had (then QEMU boots the
 * bzImage, slower). Boot protocol ≥ 2.08: payload_offset (0x248) and payload_length (0x24c)
 * locate the compressed kernel after the setup sectors ((setup_sects (0x1f1) || 4) + 1) × 512.
 */
export function elfFromBzImage(image: Buffer): Buffer | undefined {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  if (image.readUInt16LE(0x206) < 0x208) return undefined;
  const setupSects = image.readUInt8(0x1f1) || 4;
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const end = start + image.readUInt32LE(0x24c);
  if (end > image.length) return undefined;
  const payload = image.subarray(start, end);
  let elf: Buffer;
  if (payload[0] === 0xfd && payload.toString('latin1', 1, 6) === '7zXZ\0') elf = xzDecompress(payload);
  else if (payload[0] === 0x1f && payload[1] === 0x8b) elf = execBytes(requireTool('gzip', 'gzip'), ['-dc'], payload);
  else return undefined;
  return elf.toString('latin1', 0, 4) === '\x7fELF' ? elf : undefined;
}

// ---- busybox -------------------------------------------------------------------------------

async function extractBusybox(version: string, busyboxDir: string): Promise<void> {
  const deb = debFile('busybox-static', version);
  const tmp = `${busyboxDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  await extractFromDeb(deb, join(tmp, 'deb'), ['./bin/busybox']);
  renameSync(join(tmp, 'deb', 'bin', 'busybox'), join(tmp, 'busybox'));
  rmSync(join(tmp, 'deb'), { recursive: true });
  // The applet list, from the static binary itself (it runs on the x86-64 host).
  const applets = run(join(tmp, 'busybox'), ['--list-full']);
  writeFileSync(join(tmp, 'applets'), applets);
  writeFileSync(join(tmp, 'done'), `${version}\n`);
  publishDir(tmp, busyboxDir);
}

// ---- node (optional) -----------------------------------------------------------------------

interface HostNode {
  /** Host path of the node binary (also its path in the guest). */
  path: string;
  /** Guest path → host file to copy, for node's shared libraries and the dynamic loader. */
  libraries: Map<string, string>;
  identity: string;
}

function hostNode(): HostNode {
  const path = process.execPath;
  const ldd = requireTool('ldd', 'libc-bin');
  const libraries = new Map<string, string>();
  for (const line of run(ldd, [path]).split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1]) libraries.set(m[1], m[1]);
    else if (/not found/.test(line)) throw new Error(`ldd ${path}: ${line.trim()}`);
  }
  const st = statSync(path);
  const identity = [path, process.version, st.size, st.mtimeMs, ...[...libraries.keys()].map((l) => `${l}:${statSync(l).size}`)].join('|');
  return { path, libraries, identity };
}

// ---- initramfs -----------------------------------------------------------------------------

interface BuildInputs {
  kernelDir: string;
  busyboxDir: string;
  fixtures: ReadonlyArray<readonly [string, Buffer]>;
  node: HostNode | undefined;
}

function buildInitrd(out: string, inputs: BuildInputs): void {
  const cpio = new NewcWriter();
  for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'lib', 'lib/modules', 'dev', 'proc', 'sys', 'tmp', 'run', 'root', 'etc']) cpio.dir(d);
  cpio.node('dev/console', 0o020600, 5, 1);
  cpio.node('dev/null', 0o020666, 1, 3);
  cpio.file('bin/busybox', readFileSync(join(inputs.busyboxDir, 'busybox')), 0o755);
  for (const full of readFileSync(join(inputs.busyboxDir, 'applets'), 'utf8').split('\n')) {
    const applet = full.trim().replace(/^\/+/, '');
    if (applet === '' || applet === 'bin/busybox' || applet === 'init' || applet === 'linuxrc') continue;
    cpio.ensureDirs(dirname(applet));
    cpio.symlink(applet, '/bin/busybox');
  }
  for (const m of GUEST_MODULES) cpio.file(`lib/modules/${m}.ko`, readFileSync(join(inputs.kernelDir, 'modules', `${m}.ko`)), 0o644);
  for (const [name, bytes] of inputs.fixtures) cpio.file(name === 'init' ? 'init' : `bin/${name}`, bytes, 0o755);
  if (inputs.node) {
    const { path, libraries } = inputs.node;
    cpio.ensureDirs(dirname(path.slice(1)));
    cpio.file(path.slice(1), readFileSync(path), 0o755);
    for (const [guestPath, hostPath] of libraries) {
      cpio.ensureDirs(dirname(guestPath.slice(1)));
      cpio.file(guestPath.slice(1), readFileSync(hostPath), 0o755);
    }
  }
  // gzip level 1: the node variant compresses in ~2 s instead of ~6 s for a few MB more.
  const gz = gzipSync(cpio.finish(), { level: inputs.node ? 1 : 9 });
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, padTo4(gz));
  renameSync(tmp, out);
}

/** Concatenated initramfs members must start 4-byte aligned: pad with zeros (the kernel skips them). */
export function padTo4(bytes: Buffer): Buffer {
  const pad = (4 - (bytes.length % 4)) % 4;
  return pad === 0 ? bytes : Buffer.concat([bytes, Buffer.alloc(pad)]);
}

/** A file to put into the guest: guest path (absolute) and content or host file. */
export interface GuestFile {
  path: string;
  content?: string | Uint8Array;
  hostPath?: string;
  mode?: number;
}

/**
 * A gzip'd newc cpio of `files`, to append to the image's initrd (the kernel unpacks
 * concatenated archives in order, later ones adding to and overriding earlier ones).
 */
export function extraInitrd(files: readonly GuestFile[]): Buffer {
  const cpio = new NewcWriter();
  for (const f of files) {
    if (!f.path.startsWith('/') || f.path.split('/').includes('..')) throw new Error(`guest file path must be absolute without "..": ${f.path}`);
    const rel = f.path.slice(1);
    cpio.ensureDirs(dirname(rel));
    const bytes = f.content !== undefined ? Buffer.from(f.content) : f.hostPath !== undefined ? readFileSync(f.hostPath) : undefined;
    if (bytes === undefined) throw new Error(`guest file ${f.path}: give content or hostPath`);
    const mode = f.mode ?? (f.hostPath !== undefined && lstatSync(f.hostPath).mode & 0o111 ? 0o755 : 0o644);
    cpio.file(rel, bytes, mode);
  }
  return padTo4(gzipSync(cpio.finish(), { level: 1 }));
}

/** Writer of the "new ASCII" (070701) cpio format the kernel's initramfs unpacker reads. */
class NewcWriter {
  private readonly parts: Buffer[] = [];
  private ino = 1;
  private readonly dirs = new Set<string>(['.', '']);

  dir(path: string): void {
    if (this.dirs.has(path)) return;
    this.dirs.add(path);
    this.entry(path, 0o040755, Buffer.alloc(0), 2);
  }

  ensureDirs(path: string): void {
    if (this.dirs.has(path)) return;
    this.ensureDirs(dirname(path));
    this.dir(path);
  }

  file(path: string, data: Uint8Array, perm: number): void {
    this.entry(path, 0o100000 | perm, data, 1);
  }

  symlink(path: string, target: string): void {
    this.entry(path, 0o120777, Buffer.from(target), 1);
  }

  node(path: string, mode: number, major: number, minor: number): void {
    this.entry(path, mode, Buffer.alloc(0), 1, major, minor);
  }

  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0), 1);
    return Buffer.concat(this.parts);
  }

  private entry(name: string, mode: number, data: Uint8Array, nlink: number, rdevMajor = 0, rdevMinor = 0): void {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [this.ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'latin1');
    this.parts.push(header, nameBytes, Buffer.alloc(pad4(header.length + nameBytes.length)));
    this.parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(pad4(data.length)));
  }
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function fileSafe(s: string): string {
  return s.replace(/[^A-Za-z0-9.+_-]/g, '_');
}
