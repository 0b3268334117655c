// Event listeners (qemu.qmp's EventListener): each one queues the events it wants until the
// application reads them, as an async iterator. A listener lives for one session: when the
// connection ends it delivers what it has queued and then ends (done), so a `for await`
// loop over it finishes. The queue is bounded; overflowing it fails the listener (the reader
// learns it missed events instead of silently losing them) rather than growing memory.
import { QmpEventOverflowError } from './errors.js';
import type { QmpEvent } from './models.js';

export interface EventFilter {
  /** Only these event names (default: all). */
  names?: readonly string[];
  /** Only events this returns true for; if it throws, the listener fails with that error. */
  predicate?: (event: QmpEvent) => boolean;
  /** Most events queued and unread before the listener fails; default 1000. */
  maxQueued?: number;
}

/** Keys of the methods the client drives; not exported from the barrel. */
export const deliver = Symbol('deliver');
export const finish = Symbol('finish');

interface Waiter {
  resolve(result: IteratorResult<QmpEvent>): void;
  reject(error: unknown): void;
}

export class QmpEventListener implements AsyncIterableIterator<QmpEvent> {
  readonly #names: ReadonlySet<string> | undefined;
  readonly #predicate: ((event: QmpEvent) => boolean) | undefined;
  readonly #maxQueued: number;
  readonly #onClose: (listener: QmpEventListener) => void;
  readonly #queue: QmpEvent[] = [];
  readonly #waiters: Waiter[] = [];
  #done = false;
  #error: unknown;

  constructor(filter: EventFilter, onClose: (listener: QmpEventListener) => void) {
    this.#names = filter.names === undefined ? undefined : new Set(filter.names);
    this.#predicate = filter.predicate;
    this.#maxQueued = filter.maxQueued ?? 1000;
    if (!Number.isSafeInteger(this.#maxQueued) || this.#maxQueued < 1) throw new RangeError(`maxQueued must be a positive integer, got ${filter.maxQueued}`);
    this.#onClose = onClose;
  }

  /** Events queued and not yet read. */
  get queued(): number {
    return this.#queue.length;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<QmpEvent>> {
    const event = this.#queue.shift();
    if (event !== undefined) return Promise.resolve({ value: event, done: false });
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Called by `break` in a for-await loop: stop listening. */
  return(): Promise<IteratorResult<QmpEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Stop listening; queued events are dropped and pending next() calls end (done). */
  close(): void {
    this.#queue.length = 0;
    this[finish]();
  }

  /** Offer an event; queued or handed to a waiting next() if it passes the filter. */
  [deliver](event: QmpEvent): void {
    if (this.#done) return;
    if (this.#names !== undefined && !this.#names.has(event.event)) return;
    try {
      if (this.#predicate !== undefined && !this.#predicate(event)) return;
    } catch (err) {
      this[finish](err);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) return waiter.resolve({ value: event, done: false });
    if (this.#queue.length >= this.#maxQueued) return this[finish](new QmpEventOverflowError(this.#maxQueued));
    this.#queue.push(event);
  }

  /** End the listener: without `error`, queued events are still read, then done. */
  [finish](error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#onClose(this);
    for (const waiter of this.#waiters.splice(0)) {
      if (error === undefined) waiter.resolve({ value: undefined, done: true });
      else waiter.reject(error);
    }
  }
}
