// The tiny program node runs inside the sandbox to start a WASI preview1 module. It is copied
// into the sandbox as text (like the module itself), so nothing of the host's dist/ tree has
// to be bound. Node's own docs say node:wasi is not a sandbox: it is one layer, the bubblewrap
// sandbox and the cgroup limits around node are the others. No preopens: the module gets no
// file system at all. The module's env comes from the config file, never from node's own
// environment (NODE_OPTIONS and friends stay out of the guest's reach).
export const WASI_RUNNER_SOURCE = `'use strict';
const { readFileSync } = require('node:fs');
const { WASI } = require('node:wasi');
const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const wasi = new WASI({ version: 'preview1', args: config.args, env: config.env, preopens: {}, returnOnExit: true });
(async () => {
  const module = await WebAssembly.compile(readFileSync(config.module));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  process.exitCode = wasi.start(instance);
})().catch((err) => {
  process.stderr.write('wasi: ' + (err && err.message ? err.message : String(err)) + '\\n');
  process.exitCode = 70;
});
`;

/** Node flags for the runner: no ExperimentalWarning on the module's stderr. */
export const WASI_NODE_FLAGS: readonly string[] = ['--disable-warning=ExperimentalWarning'];

/** Extra tasks node itself needs (main thread, V8 platform workers, libuv pool): added to the pids limit. */
export const WASI_NODE_TASKS = 16;
