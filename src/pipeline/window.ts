/**
 * Bounded read-ahead over an async source: keeps up to `capacity` items started (their work already
 * handed to the worker pool) ahead of the consumer, so the workers stay busy while the encoder runs,
 * and memory stays bounded however long the source is.
 */
export class ReadAheadWindow<In, Out> {
  private readonly queue: Out[] = [];
  private exhausted = false;

  constructor(
    private readonly source: AsyncIterator<In>,
    private readonly start: (item: In) => Out,
    private readonly capacity: number,
  ) {}

  /** Starts items until the window is full or the source is exhausted. */
  async fill(): Promise<void> {
    while (!this.exhausted && this.queue.length < this.capacity) {
      const next = await this.source.next();
      if (next.done) this.exhausted = true;
      else this.queue.push(this.start(next.value));
    }
  }

  /** The oldest started item, or undefined when the source is exhausted; refills behind it. */
  async next(): Promise<Out | undefined> {
    await this.fill();
    const item = this.queue.shift();
    await this.fill();
    return item;
  }

  /** Stops reading the source (for example on abort); started items are dropped. */
  async stop(): Promise<void> {
    this.queue.length = 0;
    if (!this.exhausted) {
      this.exhausted = true;
      await this.source.return?.();
    }
  }
}

/** Groups consecutive items that share a key, in order: rank emits every prompt of one image together. */
export async function* groupConsecutive<T, K>(
  items: AsyncIterable<T> | Iterable<T>,
  keyOf: (item: T) => K,
): AsyncGenerator<{ key: K; items: T[] }> {
  let current: { key: K; items: T[] } | undefined;
  for await (const item of items) {
    const key = keyOf(item);
    if (current && current.key === key) {
      current.items.push(item);
      continue;
    }
    if (current) yield current;
    current = { key, items: [item] };
  }
  if (current) yield current;
}
