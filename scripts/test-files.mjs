// `npm run test:files`: uvu, plus what uvu 0.5 does not do. When a suite's before hook throws,
// uvu's runner returns from its `finally` block, which discards the error: the suite is printed
// as "(0 / N)" with no FAIL and the process exits 0, so a whole test file could stop running (a
// daemon that no longer starts, say) and CI would stay green. uvu-hook-errors.mjs makes uvu
// report that error; this passes uvu's output through and also fails when fewer tests passed
// than exist (naming the files whose tests did not run), or when any test was skipped. uvu prints
// a failure's details right below its suite, long before the end of a 200 s run; a CI log that
// keeps only its tail then says "Passed: 775" and nothing of which test failed. So the failures
// are printed again, with their files, last.
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
  if (code !== 0) {
    repeatFailures(plain);
    process.exit(code ?? 1);
  }
  // uvu does not count a skipped test in Total: every test in Total must have passed.
  if (!(passed >= total) || skipped > 0) {
    // Files (header lines ending in .js) with a suite that ran fewer tests than it has and printed no FAIL.
    const silent = [];
    let file = '?';
    for (const line of plain.split('\n')) {
      if (/\.js\s*$/.test(line.trim())) file = line.trim();
      for (const m of line.matchAll(/\((\d+) \/ (\d+)\)/g)) if (m[1] !== m[2] && !line.includes('FAIL')) silent.push(`${file} (${m[1]} of ${m[2]} ran)`);
    }
    if (skipped > 0) process.stderr.write(`test-files: ${skipped} test(s) skipped: a test that cannot run here must fail and say what to install, not skip\n`);
    if (passed < total) process.stderr.write(`test-files: ${total - passed} of ${total} tests did not run and were not reported as failures (a suite that stopped early). In: ${silent.join(', ') || 'unknown files'}.\n`);
    process.exit(1);
  }
});

/** Prints each FAIL block of uvu's output again, under the name of its test file. */
function repeatFailures(plain) {
  const blocks = [];
  let file = '?';
  let block = null;
  for (const line of plain.split('\n')) {
    const header = /^\S.*\.test\.m?js\s*$/.test(line);
    // A block ends at the next file, suite (its name line, or its first progress mark), or the totals.
    if (header || /^\s*Total:/.test(line) || /\(\d+ \/ \d+\)\s*$/.test(line) || /^ \S/.test(line) || /^[•✘]/.test(line)) {
      if (block) blocks.push(block);
      block = null;
      if (header) file = line.trim();
      continue;
    }
    if (/^\s*FAIL\s/.test(line)) {
      if (block) blocks.push(block);
      block = [`${file}:`, line];
    } else if (block && block.length < 60) block.push(line);
  }
  if (block) blocks.push(block);
  if (blocks.length === 0) {
    process.stdout.write('\ntest-files: uvu failed without a FAIL block (a test file that could not be loaded, or uvu stopped early): see its error output above\n');
    return;
  }
  process.stdout.write(`\ntest-files: ${blocks.length} failure(s), repeated here:\n`);
  for (const b of blocks) process.stdout.write(`${b.join('\n').trimEnd()}\n\n`);
}
