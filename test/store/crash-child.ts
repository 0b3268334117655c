// Child process for crash.test.ts: installs and uninstalls in a loop until it is killed.
// argv: <store root> <spec.json> where spec.json is [{path, measurement, name}]. Prints one
// line per finished operation so the parent can count them.
import { readFileSync } from 'node:fs';
import { installFile, openStore, uninstall } from '../../lib/store/index.js';

const [root, specPath] = process.argv.slice(2) as [string, string];
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Array<{ path: string; measurement: string; name: string }>;
const store = openStore(root, { create: true });
const installed = new Set<string>();

for (let i = 0; ; i++) {
  const item = spec[Math.floor(Math.random() * spec.length)]!;
  if (installed.has(item.measurement)) {
    uninstall(store, item.measurement);
    installed.delete(item.measurement);
    process.stdout.write(`uninstalled ${item.name}\n`);
  } else {
    await installFile(store, { measurement: item.measurement, name: item.name, version: String(i) }, item.path);
    installed.add(item.measurement);
    process.stdout.write(`installed ${item.name}\n`);
  }
}
