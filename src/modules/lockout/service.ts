/**
 * Account lockout after repeated failed passwords (or second factors), per user and kind.
 *
 * - `threshold` failures within `windowMs` lock the account for `baseMs`, doubling with each further
 *   lock (lockCount), capped at `maxMs`; with `permanentAfter` = N > 0 the lock after N temporary ones
 *   is permanent until an unlock (admin, e-mailed link or password reset).
 * - A successful sign-in clears the failure count but keeps lockCount, so an attacker who guesses
 *   slowly between a user's own sign-ins still escalates; lockCount is forgotten once a whole quiet day
 *   (QUIET_MS) has passed since the last lock ended.
 * - State lives in the `lockouts` table (survives restarts, shared by instances on one database) and is
 *   cached in-process with write-through; the cache lives only `cache.ttlMs` so another instance's lock
 *   is seen soon. Mutations read the row from the database, never from the cache (a success with nothing
 *   to clear in its cached copy makes no query: see `recordSuccess`).
 * Callers must answer a locked account exactly like a wrong password (no lock oracle).
 */
import { lockResource, preparedQuery, withTransaction } from '../../db/tx'
import { and, eq, isNull } from 'drizzle-orm'
import { asyncLruCaches as lruCaches, type AsyncCache as Cache, type AsyncCacheFactory as CacheFactory } from '../../lib/redis-cache'
import type { CacheStats } from '../../lib/cache'
import { emailTokens, lockouts } from '../../db/tables'
import type { CoreDeps } from '../../deps'
import { hashToken, randomToken } from '../../lib/crypto'
import { newId } from '../../lib/ids'
import type { AuditService, RequestMeta, SecurityEvent } from '../audit/service'

export type LockoutKind = 'password' | 'mfa'

/** A quiet day after the last lock ends resets the escalation. */
export const QUIET_MS = 86_400_000
/** Lifetime of an unlock link. */
export const UNLOCK_TOKEN_TTL_MS = 86_400_000

type Row = typeof lockouts.$inferSelect

/** A user's lockout row of one kind (prepared once on SQLite: every sign-in reads it). */
const lockoutRow = preparedQuery<{ userId: string; kind: LockoutKind }, Row[]>((db, p) =>
  db
    .select()
    .from(lockouts)
    .where(and(eq(lockouts.userId, p('userId')), eq(lockouts.kind, p('kind'))))
    .limit(1),
)

export interface LockState {
  locked: boolean
  /** End of a temporary lock (epoch ms); absent for a permanent lock. */
  until?: number
  permanent?: boolean
}

export interface FailureResult {
  locked: boolean
  until?: number
  permanent: boolean
  lockCount: number
  /** How many failures the current window holds (0 right after a lock starts). */
  failures: number
}

type Deps = Pick<CoreDeps, 'config' | 'db' | 'clock' | 'logger' | 'keys'> & { audit: AuditService; caches?: CacheFactory }

export class LockoutService {
  /** Cached rows; `null` caches "no row" so a clean account costs no query either. */
  private readonly cache: Cache<string, { row: Row | null }>

  /** Told about every change of a user's lock state (other instances drop their cached copy). */
  onChanged: (userId: string) => void = () => {}

  /** Hits, misses and entries of the lockout cache (for /metrics). */
  cacheStats(): CacheStats {
    return this.cache.stats()
  }

  constructor(private readonly deps: Deps) {
    this.cache = (deps.caches ?? lruCaches({ ...deps.config.cache, clock: deps.clock }))<string, { row: Row | null }>('lockouts')
  }

  private async load(userId: string, kind: LockoutKind): Promise<Row | undefined> {
    return (await lockoutRow.all(this.deps.db, { userId, kind }))[0]
  }

  private async cached(userId: string, kind: LockoutKind): Promise<Row | undefined> {
    const k = `${userId}:${kind}`
    const hit = await this.cache.get(k)
    if (hit) return hit.row ?? undefined
    const row = await this.load(userId, kind)
    this.cache.set(k, { row: row ?? null })
    return row
  }

  private async write(row: Row): Promise<void> {
    const { userId: _u, kind: _k, ...rest } = row
    await this.deps.db.insert(lockouts).values(row).onConflictDoUpdate({ target: [lockouts.userId, lockouts.kind], set: rest })
  }

  private stateOf(row: Row | undefined, now: number): LockState {
    if (!row) return { locked: false }
    if (row.permanent) return { locked: true, permanent: true }
    if (row.lockedUntil !== null && row.lockedUntil > now) return { locked: true, until: row.lockedUntil }
    return { locked: false }
  }

  /** Whether the account is locked now (from the cache when fresh). */
  async isLocked(userId: string, kind: LockoutKind = 'password'): Promise<LockState> {
    return this.stateOf(await this.cached(userId, kind), this.deps.clock.now())
  }

  /**
   * Counts one failed attempt; locks the account when the threshold is reached. `event` (the caller's own audit
   * event for the attempt, such as `login_failed`) is recorded in the same transaction, and so is `account_locked`:
   * on SQLite the attempt then makes one write, which waits for another process's write lock as a whole (and
   * is retried before anything changed) instead of answering 503 between two writes of its own.
   */
  async recordFailure(userId: string, kind: LockoutKind = 'password', meta: RequestMeta = {}, event?: SecurityEvent): Promise<FailureResult> {
    const cfg = this.deps.config.lockout
    const now = this.deps.clock.now()
    // Read, count and write in one transaction, serialised per account across instances (SQLite: the one
    // writer; PostgreSQL: an advisory lock), so parallel failures on several instances are all counted.
    const outcome = await withTransaction(this.deps.db, async (tx) => {
      await lockResource(tx, `lockout:${userId}:${kind}`)
      if (event) await this.deps.audit.record(event, meta)
      const row: Row = (await this.load(userId, kind)) ?? { userId, kind, failures: 0, windowStartedAt: now, lockedUntil: null, lockCount: 0, permanent: false, updatedAt: now }
      const current = this.stateOf(row, now)
      if (current.locked) return { row, result: { locked: true, until: current.until, permanent: row.permanent, lockCount: row.lockCount, failures: row.failures } as FailureResult, changed: false, durationMs: 0 }
      if (row.lockCount > 0 && row.lockedUntil !== null && now - row.lockedUntil >= QUIET_MS) row.lockCount = 0
      if (now - row.windowStartedAt >= cfg.windowMs) {
        row.failures = 0
        row.windowStartedAt = now
      }
      row.failures++
      row.updatedAt = now
      let durationMs = 0
      if (row.failures >= cfg.threshold) {
        row.lockCount++
        row.failures = 0
        row.windowStartedAt = now
        row.permanent = cfg.permanentAfter > 0 && row.lockCount > cfg.permanentAfter
        durationMs = Math.min(cfg.baseMs * 2 ** Math.min(row.lockCount - 1, 40), cfg.maxMs)
        row.lockedUntil = now + durationMs
      }
      await this.write(row)
      const locked = durationMs > 0
      const result: FailureResult = locked
        ? { locked: true, until: row.permanent ? undefined : (row.lockedUntil ?? undefined), permanent: row.permanent, lockCount: row.lockCount, failures: 0 }
        : { locked: false, permanent: false, lockCount: row.lockCount, failures: row.failures }
      if (locked) {
        await this.deps.audit.record(
          { type: 'account_locked', outcome: 'failure', targetId: userId, details: { kind, level: row.lockCount, durationMs: row.permanent ? null : durationMs, permanent: row.permanent } },
          meta,
        )
      }
      return { row, result, changed: true, durationMs }
    })
    const { row, result } = outcome
    await this.cache.set(`${userId}:${kind}`, { row })
    if (!outcome.changed) return result
    this.onChanged(userId)
    return result
  }

  /**
   * A successful attempt: clears the failure count (lockCount stays for escalation, see above). The caller
   * has just read the row through the cache (`isLocked`); when that copy has nothing to clear (no failures,
   * no quiet-day reset due), no query is made. A copy can only lag behind failures counted by another
   * instance not yet heard of (the `lockout` invalidation, or the cache TTL without Redis); those then stay
   * counted, which errs towards locking, never towards forgetting. When there is something to clear, the row
   * is read again from the table.
   */
  async recordSuccess(userId: string, kind: LockoutKind = 'password'): Promise<void> {
    const now = this.deps.clock.now()
    const quietOf = (r: Row) => r.lockedUntil === null || now - r.lockedUntil >= QUIET_MS
    const clean = (r: Row | null) => r === null || (r.failures === 0 && !(quietOf(r) && r.lockCount > 0))
    const hit = await this.cache.get(`${userId}:${kind}`)
    if (hit && clean(hit.row)) return
    // Read and write under the same per-account lock as recordFailure: a failure or a lock another instance
    // writes meanwhile is neither overwritten nor cleared by this success.
    const saved = await withTransaction(this.deps.db, async (tx) => {
      await lockResource(tx, `lockout:${userId}:${kind}`)
      const row = (await this.load(userId, kind)) ?? null
      if (row === null || clean(row)) return null
      row.failures = 0
      row.windowStartedAt = now
      if (quietOf(row)) row.lockCount = 0
      row.updatedAt = now
      await this.write(row)
      return row
    })
    if (!saved) return
    await this.cache.set(`${userId}:${kind}`, { row: saved })
    this.onChanged(userId)
  }

  /** Drops what is cached about a user (after changes made elsewhere, e.g. the admin service). */
  async forget(userId: string): Promise<void> {
    await this.cache.delete(`${userId}:password`)
    await this.cache.delete(`${userId}:mfa`)
  }

  /** Clears every lock and counter of the user; `by` is the admin's id, 'link' or 'reset'. */
  async unlock(userId: string, by: string, meta: RequestMeta = {}): Promise<void> {
    await this.deps.db.delete(lockouts).where(eq(lockouts.userId, userId))
    await this.cache.delete(`${userId}:password`)
    await this.cache.delete(`${userId}:mfa`)
    this.onChanged(userId)
    const isUser = by !== 'link' && by !== 'reset'
    await this.deps.audit.record({ type: 'account_unlocked', outcome: 'info', actorId: isUser ? by : userId, targetId: userId, details: { by: isUser ? 'admin' : by } }, meta)
  }

  /** A single-use unlock link token (24 h); only its keyed hash is stored. Earlier unused ones are voided. */
  async issueUnlockToken(userId: string): Promise<string> {
    const now = this.deps.clock.now()
    const token = randomToken(32)
    await withTransaction(this.deps.db, async (tx) => {
      await tx.delete(emailTokens).where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, 'unlock'), isNull(emailTokens.usedAt)))
      await tx.insert(emailTokens)
        .values({ id: newId(), userId, purpose: 'unlock', tokenHash: hashToken(this.deps.keys.tokenHash, token), createdAt: now, expiresAt: now + UNLOCK_TOKEN_TTL_MS })
        
    })
    return token
  }

  /** Spends an unlock token: the user id when it is valid, unused and unexpired, else undefined. */
  async consumeUnlockToken(token: string): Promise<string | undefined> {
    if (token.length < 16 || token.length > 256) return undefined
    const now = this.deps.clock.now()
    const hash = hashToken(this.deps.keys.tokenHash, token)
    const row = (await this.deps.db
      .select()
      .from(emailTokens)
      .where(and(eq(emailTokens.tokenHash, hash), eq(emailTokens.purpose, 'unlock')))
      .limit(1))[0]
    if (!row || row.usedAt !== null || row.expiresAt <= now) return undefined
    // The `used_at IS NULL` guard makes a concurrent second use lose the race.
    const spent = await this.deps.db
      .update(emailTokens)
      .set({ usedAt: now })
      .where(and(eq(emailTokens.id, row.id), isNull(emailTokens.usedAt)))
      .returning({ id: emailTokens.id })
      
    return spent.length === 1 ? row.userId : undefined
  }

  /** consumeUnlockToken + unlock: what POST /v1/auth/unlock does. True when the account was unlocked. */
  async unlockWithToken(token: string, meta: RequestMeta = {}): Promise<boolean> {
    const userId = await this.consumeUnlockToken(token)
    if (!userId) return false
    await this.unlock(userId, 'link', meta)
    return true
  }
}
