// A one-line progress report on stderr for long measurements, shown only on a terminal.
// Hand-written on purpose: a progress-bar library would add its load time to every
// `measure` run, and the start-up budget is tight (bench/measure).

const SHOW_AFTER_BYTES = 64 * 1024 * 1024;
const REDRAW_MS = 200;

export class ProgressLine {
  private bytes = 0;
  private lastDraw = 0;
  private drawn = false;
  private readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {
    this.enabled = process.stderr.isTTY === true && total >= SHOW_AFTER_BYTES;
  }

  advance(n: number): void {
    if (!this.enabled) return;
    this.bytes += n;
    const now = Date.now();
    if (now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    const mib = (b: number) => (b / 1048576).toFixed(0);
    process.stderr.write(`\r\x1b[Kmeasuring ${this.label}: ${mib(this.bytes)} MiB hashed of ${mib(this.total)} MiB in file`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}
