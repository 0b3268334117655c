// The daemon's log: one line per event on stderr, with a syslog level journald understands
// (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug: sd-daemon(3) prefixes), or one JSON
// object per line (`--json`) for machines. Guest-controlled text is escaped before it is
// written, so a guest cannot forge a log line.

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined>>;

export interface DaemonLog {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
}

const PRIORITY: Readonly<Record<LogLevel, number>> = { error: 3, warn: 4, info: 6, debug: 7 };

export interface LoggerOptions {
  /** JSON lines instead of text. */
  readonly json?: boolean;
  /** Lowest level written (default info). */
  readonly level?: LogLevel;
  /** Where lines go (default: process.stderr). */
  readonly write?: (line: string) => void;
  /** Clock for JSON lines (text lines carry none: journald stamps them). */
  readonly now?: () => Date;
}

export function createLogger(options: LoggerOptions = {}): DaemonLog {
  const min = PRIORITY[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const now = options.now ?? (() => new Date());
  const emit = (level: LogLevel, message: string, fields: LogFields = {}): void => {
    if (PRIORITY[level] > min) return;
    if (options.json === true) {
      write(`${JSON.stringify({ time: now().toISOString(), level, message, ...fields })}\n`);
      return;
    }
    const extra = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${quote(String(v))}`)
      .join(' ');
    write(`<${PRIORITY[level]}>${escape(message)}${extra === '' ? '' : ` ${extra}`}\n`);
  };
  return {
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
  };
}

/** A logger that drops everything (tests, embedding). */
export const silentLog: DaemonLog = Object.freeze({ error() {}, warn() {}, info() {}, debug() {} });

/** Control characters (newlines above all) become escapes: one event, one line. */
function escape(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function quote(value: string): string {
  return /^[A-Za-z0-9._:/+-]*$/.test(value) && value !== '' ? value : JSON.stringify(value);
}
