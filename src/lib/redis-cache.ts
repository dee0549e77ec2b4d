/**
 * The shared cache for several instances: a small in-process LRU (per instance, on the injected clock) in front
 * of Redis (shared by every instance). Behind the async `AsyncCache` interface, which the in-process LRU also
 * satisfies through `AsyncLruCache`, so services are written once for both.
 *
 * - Keys are `<prefix>cache:<name>:<key>` with a PX TTL of `ttlMs`; values are text from a codec (JSON that
 *   keeps Map, Set, Date and BigInt by default; a per-cache codec for anything else, e.g. to leave out an
 *   instance-local memo).
 * - get: local tier, then Redis (the local copy then lives no longer than the Redis entry has left), else a
 *   miss, so the service reads the database. set: both tiers. delete: both tiers, then an invalidation so
 *   the other instances drop their local copy. clear: the local tier, then SCAN/UNLINK of that cache's keys.
 * - Invalidation travels on the cache's own channel `<prefix>cache-invalidation`, not on the `Invalidation`
 *   bus: bus events are domain events (`user`, `session`, …) that services map to their own cache entries,
 *   and the relay drops any kind it does not know (an allow-list we keep), while a cache invalidation names
 *   a cache and one of its keys. The subscription reuses the relay's recipe (RedisSubscriber: own
 *   connection, resubscribe with backoff on loss, drop every local tier after a resubscription since
 *   messages may have been missed). A set also publishes, so a write-through set (a new lock) is never
 *   shadowed by another instance's older local copy.
 * - Degraded mode: every Redis call goes through a circuit breaker (opens after 3 failures or at once on a
 *   timeout of `config.redis.timeoutMs`), and any failure reads as a miss: the service reads the database,
 *   nothing throws. A delete or set whose Redis side failed is remembered (bounded; beyond the bound the
 *   whole cache is marked) and replayed (DEL + publish) at the first Redis success, so a revocation made
 *   during a partition is not undone by the old Redis copy; until then this instance does not read those
 *   keys from Redis. `check.run` says `degraded` while Redis does not answer or the subscription is down.
 */
import { LRUCache } from 'lru-cache'
import { lruCaches, type Cache, type CacheStats } from './cache'
import { CircuitBreaker, type BreakerState } from './circuit-breaker'
import { systemClock, type Clock } from './clock'
import type { Logger } from './logger'
import { luaScript, type Redis } from './redis'
import { RedisSubscriber } from './redis-subscriber'

// ------------------------------------------------------------------------------------------- interface

/** Counters of a two-tier cache; `hits`/`misses` count answers to callers, the rest say where they came from. */
export interface RedisCacheStats extends CacheStats {
  /** Hits answered by the in-process tier. */
  localHits: number
  /** Hits answered by Redis (then copied into the local tier). */
  remoteHits: number
  /** Lookups that reached Redis and found nothing. */
  remoteMisses: number
  /** Redis calls that failed, timed out or were refused by the open breaker; values that did not decode. */
  errors: number
}

/** The cache interface every service holds (async: a tier may be remote). Never rejects for a remote failure. */
export interface AsyncCache<K, V> {
  get(key: K): Promise<V | undefined>
  set(key: K, value: V): Promise<void>
  delete(key: K): Promise<void>
  clear(): Promise<void>
  stats(): CacheStats
}

/** Builds a named cache (the names are fixed in code: `sessions`, `lockouts`, `rbac-users`, `rbac-roles`). */
export type AsyncCacheFactory = <K extends {}, V extends {}>(name: string) => AsyncCache<K, V>

/** The in-process LRU behind the async interface (one instance, or tests). */
export class AsyncLruCache<K extends {}, V extends {}> implements AsyncCache<K, V> {
  constructor(readonly inner: Cache<K, V>) {}
  async get(key: K): Promise<V | undefined> {
    return this.inner.get(key)
  }
  async set(key: K, value: V): Promise<void> {
    this.inner.set(key, value)
  }
  async delete(key: K): Promise<void> {
    this.inner.delete(key)
  }
  async clear(): Promise<void> {
    this.inner.clear()
  }
  stats(): CacheStats {
    return this.inner.stats()
  }
}

/** `lruCaches` behind the async interface. */
export function asyncLruCaches(opts: { maxEntries: number; ttlMs: number; clock?: Clock }): AsyncCacheFactory {
  const lru = lruCaches(opts)
  return <K extends {}, V extends {}>(name: string) => new AsyncLruCache<K, V>(lru<K, V>(name))
}

// ------------------------------------------------------------------------------------------- codecs

/** Turns a cached value into Redis text and back; `decode` may throw (the entry then reads as a miss). */
export interface Codec<V> {
  encode(value: V): string
  decode(text: string): V
}

const TAG = '$t'

/** Plain JSON: a Map or Set inside would silently become `{}`, so prefer `jsonCodec` unless values are plain. */
export const plainJsonCodec: Codec<any> = { encode: (v) => JSON.stringify(v), decode: (s) => JSON.parse(s) }

/** JSON in which Map, Set, Date and BigInt survive the round trip (tagged `{"$t": "Map", "v": [...]}`). */
export const jsonCodec: Codec<any> = {
  encode: (value) =>
    JSON.stringify(value, function (this: any, key: string, v: unknown) {
      const raw = this[key] // before toJSON (a Date arrives here as a string otherwise)
      if (raw instanceof Map) return { [TAG]: 'Map', v: [...raw] }
      if (raw instanceof Set) return { [TAG]: 'Set', v: [...raw] }
      if (raw instanceof Date) return { [TAG]: 'Date', v: raw.getTime() }
      if (typeof raw === 'bigint') return { [TAG]: 'BigInt', v: raw.toString() }
      // An ordinary object that happens to hold `$t` is wrapped so it is not mistaken for a tag.
      if (v && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, TAG)) return { [TAG]: 'Object', v: Object.entries(v) }
      return v
    }),
  decode: (text) =>
    JSON.parse(text, (_key, v) => {
      if (!v || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, TAG)) return v
      switch (v[TAG]) {
        case 'Map':
          return new Map(v.v)
        case 'Set':
          return new Set(v.v)
        case 'Date':
          return new Date(v.v)
        case 'BigInt':
          return BigInt(v.v)
        case 'Object':
          return Object.fromEntries(v.v)
        default:
          throw new Error(`unknown cache value tag ${String(v[TAG])}`)
      }
    }),
}

/** A codec that leaves out top-level fields (an instance-local memo, say); they come back absent. */
export function omitting<V>(fields: string[], codec: Codec<any> = jsonCodec): Codec<V> {
  return {
    encode: (value) => {
      const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) }
      for (const f of fields) delete copy[f]
      return codec.encode(copy)
    },
    decode: (text) => codec.decode(text) as V,
  }
}

// ------------------------------------------------------------------------------------------- two tiers

const FAILED = Symbol('redis failed')
type Result<T> = T | typeof FAILED

/** GET plus the time the entry has left, in one round trip. */
const GET_WITH_TTL = luaScript("local v = redis.call('GET', KEYS[1]) if not v then return false end return {v, redis.call('PTTL', KEYS[1])}")

const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/i
const MAX_KEY = 1024

export interface RedisCacheOptions {
  /** URL of the same Redis, for the subscriber's own connection (pub/sub needs one). */
  url: string
  /** `config.redis.prefix`; keys are `<prefix>cache:<name>:<key>`. */
  prefix: string
  /** Entries of each local tier (`config.cache.maxEntries`). */
  maxEntries: number
  /** Lifetime of an entry in Redis (PX) and at most in the local tier (`config.cache.ttlMs`). */
  ttlMs: number
  /** Shorter lifetime for the local tier (default `ttlMs`). */
  localTtlMs?: number
  clock?: Clock
  logger: Logger
  /** Subscriber connect timeout (`config.redis.timeoutMs`); commands time out on the `Redis` wrapper's own. */
  timeoutMs?: number
  /** Per cache name; `jsonCodec` otherwise. */
  codecs?: Record<string, Codec<any>>
  /** How long the open breaker skips Redis before one probe (default 1 s of `clock`). */
  coolDownMs?: number
  /** Failed deletes remembered for replay (default 10 000); beyond it, the whole cache is cleared on recovery. */
  maxPending?: number
  /** SCAN rounds (COUNT 1000 each) one clear may take before giving up (default 10 000). */
  maxScanRounds?: number
}

export interface CacheCheck {
  name: 'cache'
  required: false
  run(): Promise<{ status: 'ok' | 'degraded'; detail?: string }>
}

export interface RedisCacheFactory extends AsyncCacheFactory {
  /** Settles after the first subscription attempt (failed or not). */
  readonly ready: Promise<void>
  /** Readiness check for `HealthService.add`: `degraded` while Redis or the subscription is away. */
  readonly check: CacheCheck
  readonly breaker: CircuitBreaker
  readonly subscriber: RedisSubscriber
  /** Invalidation messages received from other instances. */
  received(): number
  /** Drops every local tier (not Redis). */
  clearLocal(): void
  /** Stops the subscriber; the `Redis` wrapper belongs to the caller. */
  close(): void
}

/** The two-tier factory: one Redis wrapper, breaker and subscription shared by every cache it builds. */
export function redisCaches(redis: Redis, opts: RedisCacheOptions): RedisCacheFactory {
  const tier = new RedisTier(redis, opts)
  const factory = <K extends {}, V extends {}>(name: string): AsyncCache<K, V> => tier.cache<K, V>(name)
  return Object.assign(factory, {
    ready: tier.subscriber.start(),
    check: { name: 'cache' as const, required: false as const, run: () => tier.health() },
    breaker: tier.breaker,
    subscriber: tier.subscriber,
    received: () => tier.received,
    clearLocal: () => tier.clearLocal(),
    close: () => tier.subscriber.close(),
  })
}

class RedisTier {
  readonly instance = crypto.randomUUID()
  readonly keyPrefix: string
  readonly channel: string
  readonly breaker: CircuitBreaker
  readonly subscriber: RedisSubscriber
  readonly clock: Clock
  received = 0
  private lastError: string | undefined
  private readonly caches = new Map<string, Set<TwoTierCache<any, any>>>()
  /** name → keys whose Redis side may be stale (a failed DEL, SET or PUBLISH). */
  private readonly pending = new Map<string, Set<string>>()
  private pendingCount = 0
  /** Caches whose clear did not reach Redis. */
  private readonly pendingClear = new Set<string>()
  private flushing = false

  constructor(
    private readonly redis: Redis,
    readonly opts: RedisCacheOptions,
  ) {
    this.clock = opts.clock ?? systemClock
    this.keyPrefix = `${opts.prefix}cache:`
    this.channel = `${opts.prefix}cache-invalidation`
    this.breaker = new CircuitBreaker({
      name: 'redis-cache',
      clock: this.clock,
      coolDownMs: opts.coolDownMs ?? 1000,
      tripOn: (err) => err instanceof Error && /timeout/i.test(err.message),
      onStateChange: (to, from, err) => this.logState(to, from, err),
    })
    this.subscriber = new RedisSubscriber({
      url: opts.url,
      channel: this.channel,
      logger: opts.logger,
      timeoutMs: opts.timeoutMs,
      what: 'shared cache invalidation',
      onMessage: (m) => this.receive(m),
      onResync: () => {
        this.clearLocal()
        // Redis is back: replay what failed meanwhile without waiting for the next cache call.
        if (!this.flushing) void this.flush()
      },
    })
  }

  cache<K extends {}, V extends {}>(name: string): TwoTierCache<K, V> {
    if (!NAME.test(name)) throw new Error(`cache name ${name} must match ${NAME}`)
    const c = new TwoTierCache<K, V>(this, name, this.opts.codecs?.[name] ?? jsonCodec)
    let set = this.caches.get(name)
    if (!set) this.caches.set(name, (set = new Set()))
    set.add(c)
    return c
  }

  private logState(to: BreakerState, from: BreakerState, err?: unknown): void {
    const reason = err instanceof Error ? err.message : err === undefined ? undefined : String(err)
    if (to === 'open' && from === 'closed') this.opts.logger.warn({ err: reason }, 'shared cache: Redis is unreachable or slow; caches answer from their local tier and misses read the database')
    else if (to === 'closed') this.opts.logger.info('shared cache: Redis answers again')
  }

  /** One Redis command through the breaker; any failure is FAILED, never a throw. */
  async call<T = unknown>(run: () => Promise<unknown>): Promise<Result<T>> {
    const r = await this.breaker.run<Result<T>>(
      async () => (await run()) as T,
      (err) => {
        if (err !== undefined) this.lastError = err instanceof Error ? err.message : String(err)
        return FAILED
      },
    )
    if (r !== FAILED && (this.pendingCount > 0 || this.pendingClear.size > 0) && !this.flushing) void this.flush()
    return r
  }

  send<T = unknown>(command: string, args: string[]): Promise<Result<T>> {
    return this.call<T>(() => this.redis.send(command, args))
  }

  eval<T = unknown>(script: ReturnType<typeof luaScript>, keys: string[], args: string[]): Promise<Result<T>> {
    return this.call<T>(() => this.redis.eval(script, keys, args))
  }

  /** Tells the other instances to drop their copy of `key` (all copies without one); `h` is the new value's digest after a set. */
  async publish(name: string, key?: string, h?: string): Promise<boolean> {
    const r = await this.send('PUBLISH', [this.channel, JSON.stringify({ f: this.instance, n: name, ...(key === undefined ? {} : { k: key }), ...(h === undefined ? {} : { h }) })])
    return r !== FAILED
  }

  /** Whether this instance may believe Redis for the key (false while a failed write to it is unreplayed). */
  trusts(name: string, key: string): boolean {
    return !this.pendingClear.has(name) && !this.pending.get(name)?.has(key)
  }

  markPending(name: string, key: string): void {
    if (this.pendingClear.has(name)) return
    let keys = this.pending.get(name)
    if (!keys) this.pending.set(name, (keys = new Set()))
    if (keys.has(key)) return
    if (this.pendingCount >= (this.opts.maxPending ?? 10_000)) {
      this.markClear(name)
      return
    }
    keys.add(key)
    this.pendingCount++
  }

  unpend(name: string, key: string): void {
    const keys = this.pending.get(name)
    if (keys?.delete(key)) this.pendingCount--
  }

  markClear(name: string): void {
    const keys = this.pending.get(name)
    if (keys) {
      this.pendingCount -= keys.size
      this.pending.delete(name)
    }
    this.pendingClear.add(name)
  }

  /** Replays what failed while Redis was away: whole-cache clears first, then single deletes. */
  private async flush(): Promise<void> {
    if (this.pendingCount === 0 && this.pendingClear.size === 0) return
    this.flushing = true
    try {
      for (const name of [...this.pendingClear]) {
        if (!(await this.clearRemote(name))) return
        this.pendingClear.delete(name)
        if (!(await this.publish(name))) return
      }
      for (const [name, keys] of this.pending) {
        for (const key of [...keys]) {
          if ((await this.send('DEL', [this.redisKey(name, key)])) === FAILED) return
          if (!(await this.publish(name, key))) return
          this.unpend(name, key)
        }
        if (keys.size === 0) this.pending.delete(name)
      }
      this.opts.logger.info('shared cache: deletes made while Redis was away were replayed')
    } finally {
      this.flushing = false
    }
  }

  redisKey(name: string, key: string): string {
    return `${this.keyPrefix}${name}:${key}`
  }

  /** SCAN + UNLINK of one cache's keys, in bounded rounds; false when Redis failed or the bound was hit. */
  async clearRemote(name: string): Promise<boolean> {
    const pattern = `${globEscape(this.redisKey(name, ''))}*`
    let cursor = '0'
    const rounds = this.opts.maxScanRounds ?? 10_000
    for (let i = 0; i < rounds; i++) {
      const r = await this.send<[string, string[]]>('SCAN', [cursor, 'MATCH', pattern, 'COUNT', '1000'])
      if (r === FAILED) return false
      const [next, keys] = r
      if (keys.length > 0 && (await this.send('UNLINK', keys)) === FAILED) return false
      cursor = String(next)
      if (cursor === '0') return true
    }
    this.opts.logger.warn({ cache: name, rounds }, 'shared cache: clear did not finish its SCAN; the rest expires with the TTL')
    return false
  }

  /** Another instance changed a key (or cleared a cache): drop the local copies. */
  private receive(message: string): void {
    let m: { f?: unknown; n?: unknown; k?: unknown; h?: unknown }
    try {
      m = JSON.parse(message)
    } catch {
      return
    }
    if (m.f === this.instance || typeof m.n !== 'string') return
    if (m.k !== undefined && (typeof m.k !== 'string' || m.k.length > MAX_KEY)) return
    const set = this.caches.get(m.n)
    if (!set) return
    this.received++
    const h = typeof m.h === 'string' ? m.h : undefined
    for (const c of set) c.dropLocal(m.k as string | undefined, h)
  }

  /** Drops the local copies of one cache on this instance, except in `but` (which did it itself). */
  dropSiblings(name: string, key: string | undefined, but: TwoTierCache<any, any>, h?: string): void {
    for (const c of this.caches.get(name) ?? []) if (c !== but) c.dropLocal(key, h)
  }

  clearLocal(): void {
    for (const set of this.caches.values()) for (const c of set) c.dropLocal(undefined)
  }

  async health(): Promise<{ status: 'ok' | 'degraded'; detail?: string }> {
    const pong = await this.send('PING', [])
    if (pong === FAILED) {
      const why = this.breaker.state === 'closed' ? (this.lastError ?? 'no answer') : `breaker ${this.breaker.state}${this.lastError ? `: ${this.lastError}` : ''}`
      return { status: 'degraded', detail: `redis unreachable (${why.slice(0, 80)}); caches answer from their local tier, misses read the database` }
    }
    if (!this.subscriber.subscribed) return { status: 'degraded', detail: 'not subscribed to cache invalidations; local tiers rely on their TTL' }
    let size = 0
    for (const set of this.caches.values()) for (const c of set) size += c.stats().size
    return { status: 'ok', detail: `${size} entries in local tiers` }
  }
}

interface Flight {
  stale: boolean
  /** Digests of the values set on the key meanwhile. */
  sets: string[]
}

/** A short digest of a value's text (for telling "the value that set wrote" from an older one). */
function digest(text: string): string {
  return Bun.hash(text).toString(36)
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
}

/** One named cache: its local LRU, its counters; Redis work goes through the shared tier. */
class TwoTierCache<K extends {}, V extends {}> implements AsyncCache<K, V> {
  private readonly local: LRUCache<string, V>
  private readonly localTtlMs: number
  /**
   * Lookups of a key in flight to Redis. A change of the key meanwhile (a local set or delete, an invalidation
   * from another instance) marks them: a delete or clear always, a set with the digest of the value it wrote,
   * so the lookup that reads exactly that value still counts (the set's own message often arrives while it runs).
   */
  private readonly flights = new Map<string, Set<Flight>>()
  private warnedCodec = false
  private counters = { hits: 0, misses: 0, localHits: 0, remoteHits: 0, remoteMisses: 0, errors: 0 }

  constructor(
    private readonly tier: RedisTier,
    readonly name: string,
    private readonly codec: Codec<V>,
  ) {
    const clock = tier.clock
    this.localTtlMs = Math.min(tier.opts.localTtlMs ?? tier.opts.ttlMs, tier.opts.ttlMs)
    this.local = new LRUCache<string, V>({ max: tier.opts.maxEntries, ttl: this.localTtlMs, perf: { now: () => clock.now() }, ttlResolution: 0 })
  }

  async get(key: K): Promise<V | undefined> {
    const k = String(key)
    const hit = this.local.get(k)
    if (hit !== undefined) {
      this.counters.hits++
      this.counters.localHits++
      return hit
    }
    if (k.length > MAX_KEY || !this.tier.trusts(this.name, k)) return this.miss()
    const flight: Flight = { stale: false, sets: [] }
    let flights = this.flights.get(k)
    if (!flights) this.flights.set(k, (flights = new Set()))
    flights.add(flight)
    let r: Result<[string, number] | null>
    try {
      r = await this.tier.eval<[string, number] | null>(GET_WITH_TTL, [this.tier.redisKey(this.name, k)], [])
    } finally {
      flights.delete(flight)
      if (flights.size === 0) this.flights.delete(k)
    }
    if (r === FAILED) return this.miss(true)
    if (r === null || r === undefined) {
      this.counters.remoteMisses++
      return this.miss()
    }
    const text = String(r[0])
    // Changed while we asked: what Redis said may predate the change, so let the caller read the database.
    if (flight.stale || (flight.sets.length > 0 && flight.sets.some((h) => h !== digest(text)))) return this.miss()
    let value: V
    try {
      value = this.codec.decode(text)
    } catch (err) {
      this.warnCodec('decode', err)
      return this.miss(true)
    }
    const left = Number(r[1])
    this.local.set(k, value, left > 0 ? { ttl: Math.min(left, this.localTtlMs) } : undefined)
    this.counters.hits++
    this.counters.remoteHits++
    return value
  }

  private miss(error = false): undefined {
    this.counters.misses++
    if (error) this.counters.errors++
    return undefined
  }

  async set(key: K, value: V): Promise<void> {
    const k = String(key)
    this.local.set(k, value)
    this.markStale(k)
    if (k.length > MAX_KEY) return
    let text: string
    try {
      text = this.codec.encode(value)
    } catch (err) {
      // Not shareable: keep the local copy, and make sure no older Redis copy outlives it.
      this.warnCodec('encode', err)
      return this.delete(key, false)
    }
    const h = digest(text)
    this.tier.dropSiblings(this.name, k, this, h)
    const ok = (await this.tier.send('SET', [this.tier.redisKey(this.name, k), text, 'PX', String(this.tier.opts.ttlMs)])) !== FAILED && (await this.tier.publish(this.name, k, h))
    this.settle(k, ok)
  }

  async delete(key: K, dropLocal = true): Promise<void> {
    const k = String(key)
    if (dropLocal) this.local.delete(k)
    this.markStale(k)
    this.tier.dropSiblings(this.name, k, this)
    if (k.length > MAX_KEY) return
    const ok = (await this.tier.send('DEL', [this.tier.redisKey(this.name, k)])) !== FAILED && (await this.tier.publish(this.name, k))
    this.settle(k, ok)
  }

  private settle(k: string, ok: boolean): void {
    if (ok) {
      this.tier.unpend(this.name, k)
      return
    }
    this.counters.errors++
    this.tier.markPending(this.name, k)
  }

  async clear(): Promise<void> {
    this.dropLocal(undefined)
    this.tier.dropSiblings(this.name, undefined, this)
    const ok = (await this.tier.clearRemote(this.name)) && (await this.tier.publish(this.name))
    if (!ok) {
      this.counters.errors++
      this.tier.markClear(this.name)
    }
  }

  /** Drops a local copy (or all of them); used by invalidations from other instances and resyncs. */
  dropLocal(key: string | undefined, h?: string): void {
    if (key === undefined) {
      this.local.clear()
      for (const set of this.flights.values()) for (const f of set) f.stale = true
      return
    }
    this.local.delete(key)
    for (const f of this.flights.get(key) ?? []) {
      if (h === undefined) f.stale = true
      else f.sets.push(h)
    }
  }

  private markStale(k: string): void {
    for (const f of this.flights.get(k) ?? []) f.stale = true
  }

  private warnCodec(what: string, err: unknown): void {
    if (this.warnedCodec) return
    this.warnedCodec = true
    this.tier.opts.logger.warn({ cache: this.name, err: err instanceof Error ? err.message : String(err) }, `shared cache: a value did not ${what}; that entry stays local`)
  }

  stats(): RedisCacheStats {
    return { ...this.counters, size: this.local.size, max: this.local.max }
  }
}
