// Bundle the CLI into one CommonJS file (dist/virt-offload.cjs) with esbuild.
// Why: every `virt-offload` command pays Node's start-up plus module loading; loading ~20
// ESM files costs ~15 ms on top of `node -e 0` here, one bundled CJS file a few ms
// (bench/measure holds the CLI to 1.3x of `node -e 0`). hash-wasm and the VCDIFF
// decoder stay external: only --algo blake3 and `policy update --patch` load them.
import { chmodSync } from 'node:fs';
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/bin/virt-offload.js'],
  outfile: 'dist/virt-offload.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['hash-wasm', '@ably/vcdiff-decoder'],
  minifySyntax: true,
  minifyWhitespace: true,
  sourcemap: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
chmodSync('dist/virt-offload.cjs', 0o755);
