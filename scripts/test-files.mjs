// `npm run test:files`: uvu, plus what uvu 0.5 does not do. When a suite's before hook throws,
// uvu's runner returns from its `finally` block, which discards the error: the suite is printed
// as "(0 / N)" with no FAIL and the process exits 0, so a whole test file could stop running (a
// daemon that no longer starts, say) and CI would stay green. uvu-hook-errors.mjs makes uvu
// report that error; this passes uvu's output through and also fails when fewer tests passed
// (or were skipped) than exist, naming the files whose tests did not run.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const uvu = fileURLToPath(new URL('../node_modules/uvu/bin.js', import.meta.url));
// uvu-hook-errors.mjs turns a before hook's error into a reported failure; the count below
// still catches a suite that did not run for any other reason.
const preload = new URL('./uvu-hook-errors.mjs', import.meta.url).href;
const child = spawn(process.execPath, ['--import', preload, uvu, ...process.argv.slice(2)], { stdio: ['inherit', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  out += d.toString();
});
child.on('close', (code, signal) => {
  if (signal !== null) {
    process.stderr.write(`test-files: uvu was killed by ${signal}\n`);
    process.exit(1);
  }
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const count = (label) => Number(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm').exec(plain)?.[1] ?? NaN);
  const total = count('Total');
  const passed = count('Passed');
  const skipped = count('Skipped');
  if (code !== 0) process.exit(code ?? 1);
  if (!(passed + skipped >= total)) {
    // Files (header lines ending in .js) with a suite that ran fewer tests than it has and printed no FAIL.
    const silent = [];
    let file = '?';
    for (const line of plain.split('\n')) {
      if (/\.js\s*$/.test(line.trim())) file = line.trim();
      for (const m of line.matchAll(/\((\d+) \/ (\d+)\)/g)) if (m[1] !== m[2] && !line.includes('FAIL')) silent.push(`${file} (${m[1]} of ${m[2]} ran)`);
    }
    process.stderr.write(`test-files: ${total - passed - skipped} of ${total} tests did not run and were not reported as failures: a suite's before hook threw (uvu 0.5 hides that error). In: ${silent.join(', ') || 'unknown files'}. Run that file alone and catch the hook's error to see it.\n`);
    process.exit(1);
  }
});
