/**
 * A small cache interface with hit/miss counters. The in-process implementation is an LRU with a bound on
 * entries and a TTL; a Redis-backed implementation can take over behind the same interface for multi-instance
 * deployments (invalidation then travels on the Invalidation bus, see invalidation.ts).
 */
import { LRUCache } from 'lru-cache'
import type { Clock } from './clock'

export interface CacheStats {
  hits: number
  misses: number
  size: number
  /** The most entries the (local) cache holds. */
  max: number
}

export interface Cache<K, V> {
  get(key: K): V | undefined
  set(key: K, value: V): void
  delete(key: K): void
  clear(): void
  stats(): CacheStats
}

/**
 * Builds a named cache. The composition root (`buildDeps`) makes the one factory, with the injected clock and
 * the configured bounds, and hands it to every service that caches; a two-tier implementation (this LRU in
 * front, Redis behind it, filled asynchronously) can replace it there without touching the services.
 */
export type CacheFactory = <K extends {}, V extends {}>(name: string) => Cache<K, V>

/** The in-process factory: one bounded LRU per name, on the injected clock. */
export function lruCaches(opts: { maxEntries: number; ttlMs: number; clock?: Clock }): CacheFactory {
  return <K extends {}, V extends {}>(_name: string) => new LruCache<K, V>(opts)
}

/** In-process LRU cache bounded by `maxEntries`, entries expiring after `ttlMs` of the injected clock. */
export class LruCache<K extends {}, V extends {}> implements Cache<K, V> {
  private readonly lru: LRUCache<K, V>
  private hits = 0
  private misses = 0

  private readonly ttlMs: number

  constructor(opts: { maxEntries: number; ttlMs: number; clock?: Clock }) {
    this.ttlMs = opts.ttlMs
    const clock = opts.clock
    this.lru = new LRUCache<K, V>({
      max: opts.maxEntries,
      ttl: opts.ttlMs,
      // lru-cache reads time from `perf`; the injected clock lets tests move past the TTL without sleeping.
      ...(clock ? { perf: { now: () => clock.now() }, ttlResolution: 0 } : {}),
    })
  }

  get(key: K): V | undefined {
    const v = this.lru.get(key)
    if (v === undefined) this.misses++
    else this.hits++
    return v
  }

  /** The value for `key` when `usable(value)`: a value it rejects counts as a miss, like an absent one. */
  getIf(key: K, usable: (v: V) => boolean): V | undefined {
    const v = this.lru.get(key)
    if (v !== undefined && usable(v)) {
      this.hits++
      return v
    }
    this.misses++
    return undefined
  }

  /** Keeps `value`; with `ttlMs`, for that long instead of the cache's TTL (0 or less: not kept, and any entry for `key` dropped). */
  set(key: K, value: V, ttlMs?: number): void {
    if (ttlMs === undefined) this.lru.set(key, value)
    else if (ttlMs > 0) this.lru.set(key, value, { ttl: ttlMs })
    else this.lru.delete(key)
  }

  /** How long the entry for `key` has left (ms), at most the cache's TTL; 0 when there is none. Counts as neither a hit nor a miss. */
  remainingMs(key: K): number {
    return Math.max(0, Math.min(this.ttlMs, this.lru.getRemainingTTL(key)))
  }

  delete(key: K): void {
    this.lru.delete(key)
  }

  clear(): void {
    this.lru.clear()
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, size: this.lru.size, max: this.lru.max }
  }
}
