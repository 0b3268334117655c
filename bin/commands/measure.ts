// `virt-offload measure FILE...`: argv options → lib/measure → stdout lines and an exit code.
import { writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UsageError, VirtOffloadError, type BinaryFormat } from '../../lib/errors.js';
import { createAtomicFile, fileError, openFileReader } from '../../lib/io/index.js';
import { formatExplanation, measure, alignedScratch, type Algorithm, type MeasureResult, type Profile } from '../../lib/measure/index.js';
import { EXIT, EXIT_STDOUT_CLOSED, reportFailure } from '../exit.js';
import { ProgressLine } from '../progress.js';

interface MeasureOptions {
  json: boolean;
  algo: Algorithm;
  profile: Profile;
  explain: boolean;
  canonical: string | undefined;
}

function readOptions(raw: Record<string, unknown>): MeasureOptions {
  return {
    json: raw.json === true,
    algo: raw.algo as Algorithm, // commander has checked it against the choices
    profile: raw.profile as Profile,
    explain: raw.explain === true,
    canonical: typeof raw.canonical === 'string' ? raw.canonical : undefined,
  };
}

export async function runMeasure(files: string[], raw: Record<string, unknown>): Promise<number> {
  const options = readOptions(raw);
  try {
    if (options.canonical !== undefined && files.length !== 1) {
      throw new UsageError(`--canonical writes one file's canonical bytes: give exactly one FILE (got ${files.length})`, '--canonical');
    }
    if (options.canonical === '-' && process.stdout.isTTY) {
      throw new UsageError('--canonical - would write binary data to a terminal: redirect stdout or name a file', '--canonical');
    }
  } catch (err) {
    return reportFailure(err);
  }
  // With --canonical -, stdout carries the bytes, so the measurement line goes to stderr.
  const out = options.canonical === '-' ? process.stderr : process.stdout;
  const scratch = alignedScratch();
  let status: number = EXIT.ok;
  for (const path of files) {
    try {
      const result = await measureOne(path, options, scratch);
      out.write(render(path, result, options));
    } catch (err) {
      if (!(err instanceof VirtOffloadError)) return reportFailure(err);
      status = EXIT.failed;
      const message = describeFailure(path, err);
      if (options.json) out.write(`${JSON.stringify({ path, error: { ...err.toJSON(), message } })}\n`);
      process.stderr.write(`virt-offload: ${message}\n`);
    }
  }
  return status;
}

async function measureOne(path: string, options: MeasureOptions, scratch: Uint8Array): Promise<MeasureResult> {
  const reader = openFileReader(path);
  const sink = options.canonical === undefined ? undefined : openCanonicalSink(options.canonical, reader.mode);
  const progress = new ProgressLine(path, reader.size);
  try {
    const result = await measure(reader, {
      algo: options.algo,
      profile: options.profile,
      scratch,
      onChunk: (chunk) => {
        sink?.write(chunk);
        progress.advance(chunk.length);
      },
    });
    progress.done();
    sink?.commit();
    return result;
  } catch (err) {
    progress.done();
    sink?.abort();
    throw err;
  } finally {
    reader.close();
  }
}

const FORMAT_NAME: Record<BinaryFormat, string> = { elf: 'ELF', pe: 'PE', wasm: 'WebAssembly', raw: 'raw' };

function describeFailure(path: string, err: VirtOffloadError): string {
  const format = 'format' in err && typeof err.format === 'string' ? FORMAT_NAME[err.format as BinaryFormat] : undefined;
  // FileAccessError messages already name the path.
  if (err.code === 'EIO') return err.message;
  return `${path}: ${format !== undefined ? `${format}: ` : ''}${err.message}`;
}

function render(path: string, r: MeasureResult, options: MeasureOptions): string {
  if (options.json) {
    const record: Record<string, unknown> = {
      path,
      measurement: r.measurement,
      algo: r.algo,
      format: r.format,
      profile: r.profile,
      size: r.size,
      hashedBytes: r.hashedBytes,
      details: r.details,
    };
    if (options.explain) record.ranges = r.ranges;
    return `${JSON.stringify(record)}\n`;
  }
  let text = `${sha256sumLine(r.measurement, path)}\n`;
  if (options.explain) {
    const details = Object.entries(r.details).map(([k, v]) => `${k}=${v}`).join(' ');
    text += `  ${FORMAT_NAME[r.format]}, profile ${r.profile}, ${r.size} bytes in, ${r.hashedBytes} bytes hashed${details ? `; ${details}` : ''}\n`;
    text += `${formatExplanation(r.ranges).join('\n')}\n`;
  }
  return text;
}

// Same escaping as coreutils: a name with a backslash or newline gets a leading backslash.
function sha256sumLine(measurement: string, path: string): string {
  if (!/[\\\n\r]/.test(path)) return `${measurement}  ${path}`;
  const escaped = path.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  return `\\${measurement}  ${escaped}`;
}

interface CanonicalSink {
  write(chunk: Uint8Array): void;
  commit(): void;
  abort(): void;
}

/**
 * Where --canonical bytes go. A file is written to a temporary name beside OUT, fsynced and
 * renamed into place, so OUT is never a half-written binary; its mode is the input's mode
 * without write-for-others or set-id bits.
 */
function openCanonicalSink(out: string, inputMode: number): CanonicalSink {
  if (out === '-') {
    return { write: (chunk) => writeAll(1, chunk, 'standard output'), commit: () => {}, abort: () => {} };
  }
  const tempPath = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  return createAtomicFile(out, { mode: inputMode & 0o755, tempPath, what: 'canonical bytes' });
}

function writeAll(fd: number, chunk: Uint8Array, what: string): void {
  for (let done = 0; done < chunk.length; ) {
    try {
      done += writeSync(fd, chunk, done, chunk.length - done);
    } catch (err) {
      // A non-blocking pipe that is full: wait for the reader rather than drop bytes.
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      // The reader has gone (`| head`): end as a program killed by SIGPIPE does, quietly, 141.
      if ((err as NodeJS.ErrnoException).code === 'EPIPE' && fd === 1) process.exit(EXIT_STDOUT_CLOSED);
      throw fileError(what, 'cannot write canonical bytes to', err);
    }
  }
}
