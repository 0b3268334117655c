// A promise chain that runs one task at a time: store writers (installs, reconciliation)
// must not interleave, or a reload could remove what an install of the old policy just wrote.
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
