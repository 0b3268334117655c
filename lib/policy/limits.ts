// Execution limits of a binary: how long it may run, how much memory and output it may use,
// how many processes and arguments it may have. Written `limits KEY=VALUE…`; absent keys take
// DEFAULT_LIMITS. Durations are stored in milliseconds, sizes in bytes.

export interface Limits {
  /** Wall-clock time before the run is killed, in ms. */
  readonly wallMs: number;
  /** Memory the run may use, in bytes. */
  readonly memoryBytes: number;
  /** stdout + stderr bytes sent back before the run is cut off. */
  readonly outputBytes: number;
  /** Processes/threads the run may have at once. */
  readonly pids: number;
  /** Number of arguments the guest may pass. */
  readonly args: number;
  /** Total bytes of those arguments. */
  readonly argBytes: number;
  /** CPU time the run may use, in percent of one CPU (100: one whole CPU; 50: half of one). */
  readonly cpuPercent: number;
}

export type LimitKey = 'wall' | 'memory' | 'output' | 'pids' | 'args' | 'argbytes' | 'cpu';

interface KeySpec {
  readonly field: keyof Limits;
  readonly kind: 'duration' | 'size' | 'count' | 'percent';
  readonly min: number;
  readonly max: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Keys in the order they are written by the formatter. Bounds keep every value a safe integer. */
export const LIMIT_KEYS: Readonly<Record<LimitKey, KeySpec>> = Object.freeze({
  wall: { field: 'wallMs', kind: 'duration', min: 1, max: 24 * 60 * 60 * 1000 },
  memory: { field: 'memoryBytes', kind: 'size', min: 1 * MiB, max: 1024 * GiB },
  output: { field: 'outputBytes', kind: 'size', min: 0, max: 64 * GiB },
  pids: { field: 'pids', kind: 'count', min: 1, max: 65536 },
  args: { field: 'args', kind: 'count', min: 0, max: 65536 },
  argbytes: { field: 'argBytes', kind: 'size', min: 0, max: 64 * MiB },
  // As systemd's CPUQuota=: 1% is the kernel's smallest quota (1 ms per 100 ms period).
  cpu: { field: 'cpuPercent', kind: 'percent', min: 1, max: 100_000 },
});
export const LIMIT_KEY_ORDER: readonly LimitKey[] = Object.freeze(['wall', 'memory', 'output', 'pids', 'args', 'argbytes', 'cpu']);

/** What a binary gets for every key its `limits` line leaves out. */
export const DEFAULT_LIMITS: Limits = Object.freeze({
  wallMs: 30_000,
  memoryBytes: 256 * MiB,
  outputBytes: 16 * MiB,
  pids: 64,
  args: 64,
  argBytes: 64 * KiB,
  cpuPercent: 100,
});

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000 };
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, K: KiB, M: MiB, G: GiB };
const PERCENT_UNIT: Readonly<Record<string, number>> = { '%': 1 };
const NUMBER_WITH_UNIT = /^(0|[1-9][0-9]{0,14})([A-Za-z%]*)$/;

/**
 * A size written as the policy writes one (a whole number of bytes, or of K, M or G: powers of
 * 1024), in bytes; undefined when `text` is not one. For the command line's size options too.
 */
export function parseSize(text: string): number | undefined {
  const m = NUMBER_WITH_UNIT.exec(text);
  if (m === null || !Object.prototype.hasOwnProperty.call(SIZE_UNITS, m[2]!)) return undefined;
  const value = Number(m[1]) * SIZE_UNITS[m[2]!]!;
  return Number.isSafeInteger(value) ? value : undefined;
}

export function isLimitKey(key: string): key is LimitKey {
  return Object.prototype.hasOwnProperty.call(LIMIT_KEYS, key);
}

/** Parse the VALUE of `KEY=VALUE`; returns the number (ms, bytes or count) or a problem in words. */
export function parseLimitValue(key: LimitKey, text: string): { value: number } | { problem: string } {
  const spec = LIMIT_KEYS[key];
  const m = NUMBER_WITH_UNIT.exec(text);
  const units = spec.kind === 'duration' ? DURATION_UNITS : spec.kind === 'size' ? SIZE_UNITS : spec.kind === 'percent' ? PERCENT_UNIT : { '': 1 };
  const expected = expectedForm(spec.kind);
  if (m === null) return { problem: `${key}=${text}: not a number with a unit (expected ${expected}; no leading zeros, no fractions)` };
  const unit = m[2]!;
  const scale = Object.prototype.hasOwnProperty.call(units, unit) ? units[unit] : undefined;
  if (scale === undefined) return { problem: `${key}=${text}: unknown unit '${unit}' (expected ${expected})` };
  const value = Number(m[1]) * scale;
  if (value < spec.min || value > spec.max) {
    return { problem: `${key}=${text} is out of range (${formatLimitValue(key, spec.min)} to ${formatLimitValue(key, spec.max)})` };
  }
  return { value };
}

function expectedForm(kind: KeySpec['kind']): string {
  if (kind === 'duration') return 'a whole number followed by ms, s or m, e.g. 30s';
  if (kind === 'size') return 'a whole number of bytes, optionally followed by K, M or G (powers of 1024), e.g. 256M';
  if (kind === 'percent') return 'a whole number of percent of one CPU followed by %, e.g. 50% or 200%';
  return 'a whole number';
}

/** Canonical text of a value: the largest unit that divides it exactly (90s stays 90s, 120s is 2m). */
export function formatLimitValue(key: LimitKey, value: number): string {
  const spec = LIMIT_KEYS[key];
  if (spec.kind === 'count') return String(value);
  if (spec.kind === 'percent') return `${value}%`;
  const units = spec.kind === 'duration' ? [['m', 60_000], ['s', 1000], ['ms', 1]] as const : [['G', GiB], ['M', MiB], ['K', KiB], ['', 1]] as const;
  for (const [unit, scale] of units) {
    if (value !== 0 && value % scale === 0) return `${value / scale}${unit}`;
  }
  return spec.kind === 'duration' ? `${value}ms` : String(value);
}

/** The value of `key` in a full Limits record. */
export function limitValue(limits: Limits, key: LimitKey): number {
  return limits[LIMIT_KEYS[key].field];
}

/** Fill the keys a `limits` line left out with DEFAULT_LIMITS. */
export function resolveLimits(given: Partial<Record<LimitKey, number>>): Limits {
  const out: Record<keyof Limits, number> = { ...DEFAULT_LIMITS };
  for (const key of LIMIT_KEY_ORDER) {
    const v = given[key];
    if (v !== undefined) out[LIMIT_KEYS[key].field] = v;
  }
  return Object.freeze(out);
}

/** `KEY=VALUE` pairs of the given keys, in canonical order. */
export function formatLimitPairs(given: Partial<Record<LimitKey, number>>): string[] {
  const pairs: string[] = [];
  for (const key of LIMIT_KEY_ORDER) {
    const v = given[key];
    if (v !== undefined) pairs.push(`${key}=${formatLimitValue(key, v)}`);
  }
  return pairs;
}
