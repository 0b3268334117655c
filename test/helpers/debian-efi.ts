// Real signed PE files for the tests: Debian's Secure Boot binaries (shim signed by
// Microsoft, grub, MokManager and fallback signed by Debian). `apt-get download` fetches the
// .debs without installing anything (it works without root once the apt lists exist); `dpkg-deb -x`
// unpacks them under <repoRoot>/.cache/, where later runs find them and do nothing.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, requireTool, run } from '../../testbed/tools.js';

/** The Debian (bookworm) packages whose signed .efi files the tests use. */
export const DEBIAN_EFI_PACKAGES = ['shim-signed', 'grub-efi-amd64-signed', 'shim-helpers-amd64-signed'] as const;

const cacheDir = join(repoRoot, '.cache');
const debsDir = join(cacheDir, 'debs');
const efiDir = join(cacheDir, 'efi');
/** Written last, so an interrupted extraction is redone. */
const doneMarker = join(efiDir, '.extracted');

/** Paths of every `*.efi.signed` file in the packages, sorted; downloads and extracts once. */
export function debianSignedEfiFiles(): string[] {
  if (!existsSync(doneMarker)) fetchAndExtract();
  const files = findSigned(efiDir).sort();
  if (files.length === 0) throw new Error(`no *.efi.signed files under ${efiDir}; remove ${efiDir} and run the tests again`);
  return files;
}

function fetchAndExtract(): void {
  const aptGet = requireTool('apt-get', 'apt');
  const dpkgDeb = requireTool('dpkg-deb', 'dpkg');
  mkdirSync(debsDir, { recursive: true });
  const missing = DEBIAN_EFI_PACKAGES.filter((p) => !readdirSync(debsDir).some((f) => f.startsWith(`${p}_`)));
  if (missing.length > 0) {
    try {
      run(aptGet, ['-o', 'Acquire::Retries=3', 'download', ...missing], { cwd: debsDir });
    } catch (err) {
      throw new Error(
        `could not download Debian's signed EFI packages (${missing.join(', ')}): ${(err as Error).message.trim()}\n` +
          `run \`apt-get update && (cd ${debsDir} && apt-get download ${missing.join(' ')})\` (needs bookworm's main archive in the apt sources)`,
      );
    }
  }
  mkdirSync(efiDir, { recursive: true });
  for (const deb of readdirSync(debsDir).filter((f) => f.endsWith('.deb'))) run(dpkgDeb, ['-x', join(debsDir, deb), efiDir]);
  writeFileSync(doneMarker, `${DEBIAN_EFI_PACKAGES.join('\n')}\n`);
}

function findSigned(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) out.push(...findSigned(path));
    else if (st.isFile() && name.endsWith('.efi.signed')) out.push(path);
  }
  return out;
}
