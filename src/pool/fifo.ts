/**
 * A first-in first-out queue for the pool's waiting parts: `shift` and
 * `push` in constant time at any length (an array's `shift` copies the whole
 * array once it is large, and `push(...items)` overflows the stack past about
 * 100,000 items: a map of 10,000 one-item parts made both show).
 */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** Appends every item of `items`, in order. */
  pushAll(items: readonly T[]): void {
    for (const item of items) this.#items.push(item);
  }

  /** Puts `items` before the others, in order (parts handed back by a worker that died). */
  unshiftAll(items: readonly T[]): void {
    if (items.length === 0) return;
    if (items.length <= this.#head) {
      this.#head -= items.length;
      for (let k = 0; k < items.length; k++) this.#items[this.#head + k] = items[k];
      return;
    }
    this.#items = [...items, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  /** The first item, removed; undefined when empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    // Drop the consumed slots once they are most of the array.
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes the items `drop` selects, keeping the order of the rest; returns them. */
  removeWhere(drop: (item: T) => boolean): T[] {
    const kept: T[] = [];
    const removed: T[] = [];
    for (let k = this.#head; k < this.#items.length; k++) {
      const item = this.#items[k] as T;
      (drop(item) ? removed : kept).push(item);
    }
    if (removed.length > 0) {
      this.#items = kept;
      this.#head = 0;
    }
    return removed;
  }

  /** Every item, removed. */
  drain(): T[] {
    const all = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return all;
  }
}
