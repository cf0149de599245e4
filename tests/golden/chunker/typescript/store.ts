/** A typed key-value store with expiry and change listeners. */

export interface Entry<T> {
  value: T;
  expiresAt: number | null;
}

export type Listener<T> = (key: string, value: T | undefined) => void;

export enum EvictionPolicy {
  LeastRecentlyUsed = "lru",
  FirstInFirstOut = "fifo",
}

function sealed(constructor: Function) {
  Object.seal(constructor);
  Object.seal(constructor.prototype);
}

@sealed
export class Store<T> {
  private entries = new Map<string, Entry<T>>();
  private listeners: Listener<T>[] = [];

  constructor(private readonly capacity: number, private policy = EvictionPolicy.LeastRecentlyUsed) {}

  /** Read a value; an expired entry is removed and reads as undefined. */
  get(key: string, now: number = Date.now()): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== null && entry.expiresAt <= now) {
      this.entries.delete(key);
      this.notify(key, undefined);
      return undefined;
    }
    if (this.policy === EvictionPolicy.LeastRecentlyUsed) {
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return entry.value;
  }

  set(key: string, value: T, ttlMs?: number): void {
    if (this.entries.size >= this.capacity && !this.entries.has(key)) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expiresAt: ttlMs ? Date.now() + ttlMs : null });
    this.notify(key, value);
  }

  subscribe(listener: Listener<T>): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  private notify(key: string, value: T | undefined): void {
    for (const listener of this.listeners) listener(key, value);
  }
}

export namespace Stores {
  export function withCapacity<T>(capacity: number): Store<T> {
    const store = new Store<T>(capacity);
    console.debug(`created a store holding at most ${capacity} entries, LRU eviction by default`);
    return store;
  }
}
