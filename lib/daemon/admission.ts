// What a guest may start, beyond the protocol limits each connection enforces on its own:
//  - RequestRate: requests per second per VM. A denied request costs the host an audit record
//    flushed to disk (~1 ms of the daemon's one thread); without a rate, one VM sending
//    thousands a second would take the daemon from every other VM and fill the disk.
//  - UploadBudget: upload bytes the daemon holds for all VMs together. One VM may hold at most
//    maxConcurrent × maxUpload (256 MiB by default) while it uploads; without a budget, N VMs
//    could hold N times that. Bytes are charged as they arrive (an upload announced and not
//    sent holds nothing, so idle requests cannot lock others out) and given back when the
//    request ends.
// Both answer ERROR busy (the guest may try again): the rate before the request is in flight
// (no audit record), the budget by ending the upload it would overrun (audited).

/** A token bucket: `perSecond` requests a second on average, up to `burst` at once. */
export class RequestRate {
  #tokens: number;
  #last: number;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError(`request rate ${perSecond}/s, burst ${burst}: both must be positive`);
    this.#tokens = burst;
    this.#last = now();
  }

  /** Take one request's token; false when the VM is over its rate. */
  take(): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.perSecond);
    this.#last = t;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** Bytes of uploads in flight across every VM, bounded. */
export class UploadBudget {
  #reserved = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes >= 0)) throw new RangeError(`upload budget ${maxBytes}: must be 0 or more`);
  }

  get reserved(): number {
    return this.#reserved;
  }

  tryReserve(bytes: number): boolean {
    if (this.#reserved + bytes > this.maxBytes) return false;
    this.#reserved += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#reserved = Math.max(0, this.#reserved - bytes);
  }
}
