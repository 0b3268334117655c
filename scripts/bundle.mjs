// Bundle the CLI with esbuild: dist/virt-offload.cjs (argument parsing and dispatch) plus one
// CommonJS bundle per subcommand in dist/commands/, loaded only when that subcommand runs.
// Why: every `virt-offload` command pays Node's start-up plus module loading. Loading ~20
// ESM files cost ~15 ms on top of `node -e 0` here; one CJS file a few ms; but one bundle of
// every subcommand (daemon, policy, store…) grew to 400 KB that `measure` parsed on each run
// (bench/measure holds the CLI to 1.3x of `node -e 0`). hash-wasm and the VCDIFF decoder stay
// external: only --algo blake3 and `policy update --patch` load them from node_modules.
import { chmodSync, readFileSync } from 'node:fs';
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // dbus-next (serve --libvirt, enable) stays in node_modules: it requires optional modules
  // (x11, usocket) that esbuild cannot resolve, and the xml2js override applies there.
  external: ['hash-wasm', '@ably/vcdiff-decoder', 'dbus-next'],
  minifySyntax: true,
  minifyWhitespace: true,
  sourcemap: 'linked',
  logLevel: 'warning',
  // Emit require() for the lazy import()s: a real dynamic import() would start Node's ESM
  // loader, which cost ~30 ms of start-up here.
  supported: { 'dynamic-import': false },
};

// The subcommand modules the entry point imports lazily (literal import() paths).
const entry = readFileSync('bin/virt-offload.ts', 'utf8');
const commands = [...new Set([...entry.matchAll(/import\('\.\/(commands\/[^']+)\.js'\)/g)].map((m) => m[1]))];
if (commands.length === 0) throw new Error('bundle: found no subcommand imports in bin/virt-offload.ts');

// In the entry bundle, each `import('./commands/x.js')` becomes require('./commands/x.cjs'),
// resolved next to dist/virt-offload.cjs at run time.
const lazyCommands = {
  name: 'lazy-commands',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\/.+\.js$/ }, (args) =>
      args.importer.endsWith('virt-offload.js') ? { path: args.path.replace(/\.js$/, '.cjs'), external: true } : undefined,
    );
  },
};

await build({
  ...common,
  entryPoints: ['dist/bin/virt-offload.js'],
  outfile: 'dist/virt-offload.cjs',
  banner: { js: '#!/usr/bin/env node' },
  plugins: [lazyCommands],
});
await build({
  ...common,
  entryPoints: commands.map((c) => `dist/bin/${c}.js`),
  outbase: 'dist/bin',
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
});
chmodSync('dist/virt-offload.cjs', 0o755);

// The libvirt hook: one self-contained CommonJS file (nothing from node_modules at run time)
// that `virt-offload hook install` copies under /etc/libvirt/hooks/qemu.d/.
await build({
  ...common,
  external: [],
  sourcemap: false,
  // Every domain start compiles this file: keep it small.
  minify: true,
  entryPoints: ['dist/hooks/qemu.js'],
  outfile: 'dist/hooks/virt-offload-qemu.cjs',
});
