/**
 * Rate-limit counters with escalating penalties: fixed windows per key, and a block that grows each time
 * the key overruns its limit (window ×1, ×4, ×16 … capped), the level resetting after a quiet period.
 *
 * Three stores share one algorithm: in-memory (lru-cache, bounded, time from the injected clock), Redis
 * (the same logic in one atomic Lua script, `now` passed in so every instance and every test agrees on
 * time), and a resilient store that uses Redis through a circuit breaker and falls back to memory.
 */
import { LRUCache } from 'lru-cache'
import { CircuitBreaker, type BreakerState } from './circuit-breaker'
import type { Clock } from './clock'
import { luaScript, type Redis } from './redis'

export interface PenaltyOptions {
  /** Longest block. */
  maxMs: number
  /** A key that stays quiet this long after its last block ends starts again at level 0. */
  decayMs: number
}

export interface HitResult {
  allowed: boolean
  /** Requests left in the current window (0 when refused). */
  remaining: number
  /** When the window ends, or (refused) when the block ends; epoch ms. */
  resetAt: number
  /** Penalty level: how many blocks in a row this key has earned (0 = none). */
  level: number
  /** True only for the request that started a new block (events are recorded once per block). */
  newBlock: boolean
}

export interface RateLimitStore {
  /** Counts one request for `key` and decides; `now` is the caller's clock. */
  hit(key: string, limit: number, windowMs: number, now: number): Promise<HitResult>
  /** Forgets a key (tests, admin tools). */
  reset(key: string): Promise<void>
}

interface Entry {
  count: number
  windowEnd: number
  blockedUntil: number
  level: number
}

/** Longest block for a level: window × 4^(level-1), capped. */
export function blockDuration(windowMs: number, level: number, maxMs: number): number {
  return Math.min(windowMs * 4 ** Math.min(Math.max(level - 1, 0), 30), maxMs)
}

/** The shared algorithm, applied to an entry in place. Mirrored line by line in HIT_SCRIPT. */
function apply(e: Entry, limit: number, windowMs: number, now: number, p: PenaltyOptions): HitResult {
  if (e.blockedUntil > now) return { allowed: false, remaining: 0, resetAt: e.blockedUntil, level: e.level, newBlock: false }
  if (e.level > 0 && now >= e.blockedUntil + p.decayMs) e.level = 0
  if (now >= e.windowEnd) {
    e.count = 0
    e.windowEnd = now + windowMs
  }
  e.count++
  if (e.count > limit) {
    e.level++
    e.blockedUntil = now + blockDuration(windowMs, e.level, p.maxMs)
    e.count = 0
    e.windowEnd = e.blockedUntil
    return { allowed: false, remaining: 0, resetAt: e.blockedUntil, level: e.level, newBlock: true }
  }
  return { allowed: true, remaining: limit - e.count, resetAt: e.windowEnd, level: e.level, newBlock: false }
}

/** In-process store, bounded by `maxEntries` (least recently used keys go first). */
export class MemoryStore implements RateLimitStore {
  private readonly entries: LRUCache<string, Entry>

  constructor(
    private readonly penalty: PenaltyOptions,
    maxEntries: number,
  ) {
    // Bounded by count through maxSize (each entry counts 1) rather than `max`: with `max`, lru-cache allocates
    // and fills its arrays for every entry up front, 100,000 by default, about 12 ms of start-up in the
    // binary (README, Performance, Round 8); with maxSize they grow with the entries actually kept.
    this.entries = new LRUCache({ maxSize: maxEntries, sizeCalculation: () => 1 })
  }

  async hit(key: string, limit: number, windowMs: number, now: number): Promise<HitResult> {
    return this.hitSync(key, limit, windowMs, now)
  }

  hitSync(key: string, limit: number, windowMs: number, now: number): HitResult {
    let e = this.entries.get(key)
    // An entry whose window, block and decay have all passed is as good as new; drop it.
    if (e && now >= e.windowEnd && now >= e.blockedUntil + this.penalty.decayMs) e = undefined
    if (!e) {
      e = { count: 0, windowEnd: 0, blockedUntil: 0, level: 0 }
      this.entries.set(key, e)
    }
    return apply(e, limit, windowMs, now, this.penalty)
  }

  async reset(key: string): Promise<void> {
    this.entries.delete(key)
  }

  get size(): number {
    return this.entries.size
  }
}

/**
 * KEYS[1] = counter hash; ARGV = now, limit, windowMs, maxMs, decayMs.
 * Returns {allowed, remaining, resetAt, level, newBlock}. Numbers are written with %.0f so epoch
 * milliseconds never turn into Lua's exponent notation.
 */
const HIT_SCRIPT = luaScript(`
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local win = tonumber(ARGV[3])
local maxb = tonumber(ARGV[4])
local decay = tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'c', 'we', 'bu', 'lv')
local c = tonumber(h[1]) or 0
local we = tonumber(h[2]) or 0
local bu = tonumber(h[3]) or 0
local lv = tonumber(h[4]) or 0
if bu > now then return {0, 0, bu, lv, 0} end
if lv > 0 and now >= bu + decay then lv = 0 end
if now >= we then c = 0; we = now + win end
c = c + 1
local allowed, remaining, reset, fresh = 1, limit - c, we, 0
if c > limit then
  lv = lv + 1
  local e = lv - 1
  if e > 30 then e = 30 end
  local d = win * (4 ^ e)
  if d > maxb then d = maxb end
  bu = now + d
  c = 0
  we = bu
  allowed, remaining, reset, fresh = 0, 0, bu, 1
end
local f = function(x) return string.format('%.0f', x) end
redis.call('HSET', KEYS[1], 'c', f(c), 'we', f(we), 'bu', f(bu), 'lv', f(lv))
local keep = math.max(we, bu + decay) - now
if keep < 1000 then keep = 1000 end
redis.call('PEXPIRE', KEYS[1], f(keep))
return {allowed, remaining, reset, lv, fresh}
`)

/** Redis store: every instance shares every counter and penalty. Throws when Redis fails (see ResilientStore). */
export class RedisStore implements RateLimitStore {
  constructor(
    private readonly redis: Redis,
    private readonly penalty: PenaltyOptions,
    private readonly prefix: string,
  ) {}

  async hit(key: string, limit: number, windowMs: number, now: number): Promise<HitResult> {
    const r = (await this.redis.eval(HIT_SCRIPT, [this.prefix + key], [String(now), String(limit), String(windowMs), String(this.penalty.maxMs), String(this.penalty.decayMs)])) as number[]
    if (!Array.isArray(r) || r.length !== 5) throw new Error('unexpected rate-limit script reply')
    return { allowed: r[0] === 1, remaining: Number(r[1]), resetAt: Number(r[2]), level: Number(r[3]), newBlock: r[4] === 1 }
  }

  async reset(key: string): Promise<void> {
    await this.redis.send('DEL', [this.prefix + key])
  }
}

/**
 * Redis behind a circuit breaker, memory as the fallback: a failing or hung Redis costs at most one
 * command timeout per request until the breaker opens, and never an error. While open, counters are
 * per instance (limits become per-instance limits), which is the accepted degradation.
 */
export class ResilientStore implements RateLimitStore {
  readonly breaker: CircuitBreaker

  constructor(
    private readonly primary: RateLimitStore,
    private readonly fallback: RateLimitStore,
    clock: Clock,
    onStateChange: (to: BreakerState, from: BreakerState, error?: unknown) => void,
    opts: { failureThreshold?: number; coolDownMs?: number } = {},
  ) {
    this.breaker = new CircuitBreaker({ name: 'rate-limit-redis', clock, onStateChange, ...opts })
  }

  hit(key: string, limit: number, windowMs: number, now: number): Promise<HitResult> {
    return this.breaker.run(
      () => this.primary.hit(key, limit, windowMs, now),
      () => this.fallback.hit(key, limit, windowMs, now),
    )
  }

  async reset(key: string): Promise<void> {
    await this.fallback.reset(key)
    await this.breaker.run(() => this.primary.reset(key), () => undefined)
  }
}
