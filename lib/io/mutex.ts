// A promise chain that runs one task at a time. The daemon's store writers (installs,
// reconciliation) must not interleave, or a reload could remove what an install of the old
// policy just wrote; a hot-plug route's attach/detach calls must not interleave either, since
// each plans from the state it reads. A task's failure does not stop the ones after it.
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
