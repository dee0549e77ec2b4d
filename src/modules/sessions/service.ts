/**
 * Sessions and rotating refresh tokens. A session is one sign-in; its refresh tokens form a rotation
 * family. Each refresh spends the presented token and issues the next; presenting a spent token
 * (outside a short grace for concurrent retries) is treated as theft: the whole session is revoked and
 * a `refresh_token_reuse` event recorded (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
 * Refresh tokens are opaque 256-bit values stored only as keyed hashes.
 */
import { pgRaw, preparedQuery, withTransaction } from '../../db/tx'
import { and, desc, eq, isNull, ne } from 'drizzle-orm'
import { asyncLruCaches as lruCaches, type AsyncCache as Cache, type AsyncCacheFactory as CacheFactory } from '../../lib/redis-cache'
import type { CacheStats } from '../../lib/cache'
import type { CoreDeps } from '../../deps'
import { dialect } from '../../db/tables'
import { refreshTokens, sessions, users } from '../../db/tables'
import { decrypt, encrypt, hashToken, randomToken } from '../../lib/crypto'
import { unauthorized } from '../../lib/errors'
import { newId } from '../../lib/ids'
import type { AuditService, Recorded, RequestMeta, SecurityEvent } from '../audit/service'

export type SessionRow = typeof sessions.$inferSelect
type UserRow = typeof users.$inferSelect

export interface NewSession {
  userId: string
  transport: 'bearer' | 'cookie'
  amr: string[]
  mfaPending?: boolean
  meta: RequestMeta
  /** The security event of the sign-in, written in the session's own transaction (one commit). */
  event?: (session: SessionRow) => SecurityEvent
}

export interface SessionView {
  id: string
  createdAt: string
  lastSeenAt: string
  expiresAt: string
  ip: string | null
  userAgent: string | null
  current: boolean
}

/** How often (at most) an authenticated request writes `last_seen_at`. */
const TOUCH_INTERVAL_MS = 60_000

const invalidRefresh = () => unauthorized('invalid_refresh_token', 'The refresh token is not valid.')

/** A user's unrevoked sessions, newest first, at most 200 (exported for the EXPLAIN tests, test/db/list-plans.test.ts). */
export function sessionsListQuery(db: CoreDeps['db'], userId: string) {
  return db
    .select()
    .from(sessions)
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))
    .orderBy(desc(sessions.createdAt))
    .limit(200)
}

type TokenRow = typeof refreshTokens.$inferSelect
/** What the rotation's transaction found (src/modules/sessions/service.ts `rotate`). */
type Rotation =
  | { kind: 'invalid' }
  | { kind: 'expired'; session: SessionRow }
  | { kind: 'spent' | 'raced'; row: TokenRow; session: SessionRow; user: UserRow }
  | { kind: 'rotated'; session: SessionRow; user: UserRow; written: Recorded | undefined }

/** A new session row (prepared once on SQLite: every sign-in writes one). */
const insertSession = preparedQuery<SessionRow, unknown>((db, p) =>
  db.insert(sessions).values({
    id: p('id'),
    userId: p('userId'),
    createdAt: p('createdAt'),
    lastSeenAt: p('lastSeenAt'),
    expiresAt: p('expiresAt'),
    ip: p('ip'),
    userAgent: p('userAgent'),
    transport: p('transport'),
    amr: p('amr'),
    authTime: p('authTime'),
    mfaPending: p('mfaPending'),
    revokedAt: p('revokedAt'),
    revokedReason: p('revokedReason'),
  }),
)

/** The statements of a refresh (src/db/tx.ts preparedQuery: prepared once on SQLite, built per call on PostgreSQL). */
/**
 * PostgreSQL: the presented token, its session and the session's user in one statement (one round trip
 * instead of three; every step a lookup by a unique or primary key, in generic and custom plans alike). SQLite
 * keeps three point lookups: with statistics gathered on a small database its planner scans all three tables
 * of such a join (test/modules/refresh-plans.test.ts), while each point lookup keeps to its index.
 */
const rotationLookupPg = preparedQuery<{ hash: string }, { token: TokenRow; session: SessionRow; user: UserRow }[]>((db, p) =>
  db
    .select({ token: refreshTokens, session: sessions, user: users })
    .from(refreshTokens)
    .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(eq(refreshTokens.tokenHash, p('hash')))
    .limit(1),
)

const rotation = {
  // Point lookups by primary or unique key, each its own statement: SQLite's planner keeps to these
  // indexes whatever its statistics say, while a join of the three can be planned as a table scan when the
  // statistics were gathered on a small database (PRAGMA optimize on a fresh install).
  token: preparedQuery<{ hash: string }, (typeof refreshTokens.$inferSelect)[]>((db, p) => db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, p('hash'))).limit(1)),
  session: preparedQuery<{ id: string }, SessionRow[]>((db, p) => db.select().from(sessions).where(eq(sessions.id, p('id'))).limit(1)),
  user: preparedQuery<{ id: string }, UserRow[]>((db, p) => db.select().from(users).where(eq(users.id, p('id'))).limit(1)),
  spend: preparedQuery<{ id: string; now: number; next: string; enc: string }, unknown>((db, p) =>
    db
      .update(refreshTokens)
      .set({ usedAt: p('now'), replacedBy: p('next'), successorEnc: p('enc') })
      .where(and(eq(refreshTokens.id, p('id')), isNull(refreshTokens.usedAt))),
  ),
  insert: preparedQuery<{ id: string; sessionId: string; hash: string; now: number; expiresAt: number }, unknown>((db, p) =>
    db.insert(refreshTokens).values({ id: p('id'), sessionId: p('sessionId'), tokenHash: p('hash'), createdAt: p('now'), expiresAt: p('expiresAt') }),
  ),
  touch: preparedQuery<{ id: string; now: number }, unknown>((db, p) =>
    db
      .update(sessions)
      .set({ lastSeenAt: p('now') })
      .where(and(eq(sessions.id, p('id')), isNull(sessions.revokedAt))),
  ),
}

interface RotationWrite {
  id: string
  now: number
  next: string
  enc: string
  sessionId: string
  hash: string
  expiresAt: number
}

/**
 * PostgreSQL: the rotation's three writes as ONE statement (one round trip instead of three), with the same
 * conditions as SQLite's three: the data-modifying CTEs run on one snapshot, the session is touched only if
 * the token was spent here, and the successor inserted only if the session was touched
 * (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING). A concurrent spend of
 * the same token makes `spent` 0 after the row lock wait (READ COMMITTED re-checks `used_at IS NULL`).
 */
async function rotationWritePg(tx: object, w: RotationWrite): Promise<'done' | 'raced' | 'ended'> {
  const r = (
    await pgRaw(
      tx,
      `WITH spent AS (
         UPDATE refresh_tokens SET used_at = $2::bigint, replaced_by = $3::text, successor_enc = $4::text WHERE id = $1::text AND used_at IS NULL RETURNING 1
       ), touched AS (
         UPDATE sessions SET last_seen_at = $2::bigint WHERE id = $5::text AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM spent) RETURNING 1
       ), inserted AS (
         INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
         SELECT $3::text, $5::text, $6::text, $2::bigint, $7::bigint WHERE EXISTS (SELECT 1 FROM touched) RETURNING 1
       )
       SELECT (SELECT count(*) FROM spent)::int AS spent, (SELECT count(*) FROM inserted)::int AS inserted`,
      [w.id, w.now, w.next, w.enc, w.sessionId, w.hash, w.expiresAt],
    )
  )[0] as { spent: number; inserted: number }
  if (Number(r.spent) === 0) return 'raced'
  return Number(r.inserted) === 0 ? 'ended' : 'done'
}

export class SessionService {
  private cache: Cache<string, SessionRow>
  /** Told about every change to a session row that other instances' caches must see (revocation, step-up). */
  onChanged: (sessionId: string) => void = () => {}

  /** Hits, misses and entries of the session cache (for /metrics). */
  cacheStats(): CacheStats {
    return this.cache.stats()
  }

  constructor(private readonly deps: Pick<CoreDeps, 'db' | 'clock' | 'config' | 'keys' | 'logger'> & { audit: AuditService; caches?: CacheFactory }) {
    this.cache = (deps.caches ?? lruCaches({ ...deps.config.cache, clock: deps.clock }))<string, SessionRow>('sessions')
  }

  private hash(token: string) {
    return hashToken(this.deps.keys.tokenHash, token)
  }

  /** Starts a session and issues its first refresh token. */
  async create(s: NewSession): Promise<{ session: SessionRow; refreshToken: string }> {
    const now = this.deps.clock.now()
    const refreshToken = randomToken(32)
    const session: SessionRow = {
      id: newId(),
      userId: s.userId,
      createdAt: now,
      lastSeenAt: now,
      expiresAt: now + this.deps.config.session.absoluteTtlMs,
      ip: s.meta.ip ?? null,
      userAgent: s.meta.userAgent ?? null,
      transport: s.transport,
      amr: s.amr.join(','),
      authTime: now,
      mfaPending: s.mfaPending ?? false,
      revokedAt: null,
      revokedReason: null,
    }
    const written = await withTransaction(this.deps.db, async (tx) => {
      await insertSession.run(tx, session)
      await rotation.insert.run(tx, { id: newId(), sessionId: session.id, hash: this.hash(refreshToken), now, expiresAt: session.expiresAt })
      return s.event ? await this.deps.audit.recordInTx(tx, s.event(session), s.meta) : undefined
    })
    await this.deps.audit.announce(written)
    return { session, refreshToken }
  }

  /** True when the session is neither revoked nor past its idle or absolute limit. */
  isLive(s: SessionRow, now = this.deps.clock.now()): boolean {
    return s.revokedAt === null && s.expiresAt > now && s.lastSeenAt + this.deps.config.session.idleTtlMs > now
  }

  /** The session if it is live (cached; revocations in this process take effect at once). */
  async getLive(sessionId: string): Promise<SessionRow | undefined> {
    let s = await this.cache.get(sessionId)
    if (!s) {
      s = (await this.deps.db.select().from(sessions).where(eq(sessions.id, sessionId)).limit(1))[0]
      if (!s) return undefined
      this.cache.set(sessionId, s)
    }
    return this.isLive(s) ? s : undefined
  }

  /** Records activity, at most once a minute per session (keeps the hot path free of writes). */
  async touch(s: SessionRow): Promise<void> {
    const now = this.deps.clock.now()
    if (now - s.lastSeenAt < TOUCH_INTERVAL_MS) return
    s.lastSeenAt = now
    await this.deps.db.update(sessions).set({ lastSeenAt: now }).where(eq(sessions.id, s.id))
  }

  /**
   * Spends a refresh token and issues the next one. Reuse of a spent token revokes the whole session.
   * Returns the session, its (active) user and the new refresh token. Records the `refresh` security event:
   * in the rotation's own transaction, so a refresh is one commit.
   */
  async rotate(presented: string, meta: RequestMeta): Promise<{ session: SessionRow; user: UserRow; refreshToken: string }> {
    if (presented.length < 20 || presented.length > 200) throw invalidRefresh()
    const now = this.deps.clock.now()
    const refreshToken = randomToken(32)
    const nextId = newId()
    // Lookups and writes in one transaction: on SQLite the statements of an open transaction take the
    // connection's locks once (an autocommit read takes and drops them on its own), and what is read is what
    // the writes act on. The outcomes that need other work (revoking, the retry) leave the transaction first.
    const r = await withTransaction(this.deps.db, async (tx): Promise<Rotation> => {
      const found = await this.lookup(tx, this.hash(presented), now)
      if (!found) return { kind: 'invalid' }
      const { row, session, user } = found
      if (!session || session.revokedAt !== null) return { kind: 'invalid' }
      if (!this.isLive(session, now) || row.expiresAt <= now) return { kind: 'expired', session }
      if (!user || user.status !== 'active') return { kind: 'invalid' }
      if (row.usedAt !== null) return { kind: 'spent', row, session, user }
      const enc = encrypt(this.deps.keys.encryption, refreshToken, `rt:${row.id}`)
      const written = { id: row.id, now, next: nextId, enc, sessionId: session.id, hash: this.hash(refreshToken), expiresAt: session.expiresAt }
      // Conditional: if another instance spent the token a moment ago, this request is its retry. Conditional
      // too: a session ended meanwhile on another connection (logout, revocation; disabling or deleting the user
      // ends its sessions in the same transaction) refuses the refresh, and nothing of it is kept.
      const outcome = dialect.name === 'postgres' ? await rotationWritePg(tx, written) : await this.rotationWrite(tx, written)
      if (outcome === 'raced') return { kind: 'raced', row, session, user }
      if (outcome === 'ended') throw invalidRefresh()
      // The successor copy written by `spend` serves a retry within the grace only; the pruner clears it once
      // the grace is over (src/modules/retention/service.ts, refresh_tokens_successor_copies), off this path.
      const event = { type: 'refresh', outcome: 'success', actorId: user.id, targetId: user.id, details: { sessionId: session.id } } as const
      return { kind: 'rotated', session, user, written: await this.deps.audit.recordInTx(tx, event, meta) }
    })
    switch (r.kind) {
      case 'invalid':
        throw invalidRefresh()
      case 'expired':
        await this.revoke(r.session.id, 'expired')
        throw invalidRefresh()
      case 'spent':
        return await this.retry(r.row, r.session, r.user, now, meta)
      case 'raced': {
        const fresh = (await this.deps.db.select().from(refreshTokens).where(eq(refreshTokens.id, r.row.id)).limit(1))[0]!
        return await this.retry(fresh, r.session, r.user, now, meta)
      }
    }
    await this.deps.audit.announce(r.written)
    r.session.lastSeenAt = now
    await this.cache.delete(r.session.id)
    return { session: r.session, user: r.user, refreshToken }
  }

  /** The rotation's three writes on SQLite: spend the token, insert its successor, touch the session. */
  private async rotationWrite(tx: object, w: RotationWrite): Promise<'done' | 'raced' | 'ended'> {
    if (dialect.changes(await rotation.spend.run(tx, { id: w.id, now: w.now, next: w.next, enc: w.enc })) === 0) return 'raced'
    await rotation.insert.run(tx, { id: w.next, sessionId: w.sessionId, hash: w.hash, now: w.now, expiresAt: w.expiresAt })
    return dialect.changes(await rotation.touch.run(tx, { id: w.sessionId, now: w.now })) === 0 ? 'ended' : 'done'
  }

  /** The rotation's reads (inside its transaction): the token, then its session and user when they exist. */
  private async lookup(tx: object, hash: string, now: number): Promise<{ row: TokenRow; session?: SessionRow; user?: UserRow } | undefined> {
    if (dialect.name === 'postgres') {
      const r = (await rotationLookupPg.all(tx, { hash }))[0]
      if (r) return { row: r.token, session: r.session, user: r.user }
      // No joined row: no such token, or (a token whose session or user is gone) equally invalid.
      return undefined
    }
    const row = (await rotation.token.all(tx, { hash }))[0]
    if (!row) return undefined
    const session = (await rotation.session.all(tx, { id: row.sessionId }))[0]
    // The user is read only for a live session, as the checks in `rotate` need it only then.
    if (!session || session.revokedAt !== null || !this.isLive(session, now) || row.expiresAt <= now) return { row, session }
    return { row, session, user: (await rotation.user.all(tx, { id: session.userId }))[0] }
  }

  /**
   * A spent token presented again. Within the grace (a concurrent retry) it gets the *same* successor the
   * first request got, so the session never forks into two chains; after the grace, or once the successor
   * itself has been spent, it is reuse: the whole session is revoked.
   */
  private async retry(row: typeof refreshTokens.$inferSelect, session: SessionRow, user: UserRow, now: number, meta: RequestMeta): Promise<{ session: SessionRow; user: UserRow; refreshToken: string }> {
    const successor = row.replacedBy ? (await this.deps.db.select().from(refreshTokens).where(eq(refreshTokens.id, row.replacedBy)).limit(1))[0] : undefined
    const withinGrace = row.usedAt !== null && now - row.usedAt <= this.deps.config.session.refreshReuseGraceMs
    if (withinGrace && successor && successor.usedAt === null && row.successorEnc) {
      let refreshToken: string | undefined
      try {
        refreshToken = decrypt(this.deps.keys.encryption, row.successorEnc, `rt:${row.id}`)
      } catch {
        // fall through to reuse handling: an unreadable successor is not a reason to hand out anything
      }
      if (refreshToken !== undefined) {
        await this.deps.audit.record({ type: 'refresh', outcome: 'success', actorId: user.id, targetId: user.id, details: { sessionId: session.id } }, meta)
        return { session, user, refreshToken }
      }
    }
    await this.revoke(session.id, 'refresh_token_reuse')
    await this.deps.audit.record({ type: 'refresh_token_reuse', outcome: 'failure', actorId: session.userId, targetId: session.userId, details: { sessionId: session.id } }, meta)
    throw invalidRefresh()
  }

  /** The session a refresh token belongs to, without spending it (logout via cookie). */
  async sessionOfRefreshToken(presented: string): Promise<SessionRow | undefined> {
    if (presented.length < 20 || presented.length > 200) return undefined
    const row = (await this.deps.db.select({ sessionId: refreshTokens.sessionId, usedAt: refreshTokens.usedAt }).from(refreshTokens).where(eq(refreshTokens.tokenHash, this.hash(presented))).limit(1))[0]
    if (!row || row.usedAt !== null) return undefined
    return await this.getLive(row.sessionId)
  }

  /** Ends one session (idempotent). */
  async revoke(sessionId: string, reason: string): Promise<boolean> {
    const now = this.deps.clock.now()
    const r = await this.deps.db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))
    await this.cache.delete(sessionId)
    this.onChanged(sessionId)
    return dialect.changes(r) > 0
  }

  /** Ends every session of a user, optionally keeping one (the current one on a password change). */
  async revokeAll(userId: string, reason: string, exceptSessionId?: string): Promise<number> {
    const now = this.deps.clock.now()
    const cond = exceptSessionId
      ? and(eq(sessions.userId, userId), isNull(sessions.revokedAt), ne(sessions.id, exceptSessionId))
      : and(eq(sessions.userId, userId), isNull(sessions.revokedAt))
    const ids = await this.deps.db.select({ id: sessions.id }).from(sessions).where(cond)
    const r = await this.deps.db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(cond)
    for (const { id } of ids) {
      await this.cache.delete(id)
      this.onChanged(id)
    }
    return dialect.changes(r)
  }

  /** Records a fresh proof (password or second factor) in this session: step-up for sensitive changes. */
  async markAuthenticated(sessionId: string, method: string): Promise<void> {
    const now = this.deps.clock.now()
    const s = (await this.deps.db.select({ amr: sessions.amr }).from(sessions).where(eq(sessions.id, sessionId)).limit(1))[0]
    const amr = [...new Set([...(s?.amr.split(',') ?? []), method])].join(',')
    await this.deps.db.update(sessions).set({ authTime: now, amr }).where(eq(sessions.id, sessionId))
    await this.cache.delete(sessionId)
    this.onChanged(sessionId)
  }

  /** Lifts the enrolment-only limit of a session once its user has a second factor. */
  async clearMfaPending(sessionId: string): Promise<void> {
    await this.deps.db.update(sessions).set({ mfaPending: false }).where(eq(sessions.id, sessionId))
    await this.cache.delete(sessionId)
    this.onChanged(sessionId)
  }

  /** The user's live sessions, newest first. */
  async list(userId: string, currentSessionId: string): Promise<SessionView[]> {
    const now = this.deps.clock.now()
    return (await sessionsListQuery(this.deps.db, userId))
      .filter((s) => this.isLive(s, now))
      .map((s) => ({
        id: s.id,
        createdAt: new Date(s.createdAt).toISOString(),
        lastSeenAt: new Date(s.lastSeenAt).toISOString(),
        expiresAt: new Date(Math.min(s.expiresAt, s.lastSeenAt + this.deps.config.session.idleTtlMs)).toISOString(),
        ip: s.ip,
        userAgent: s.userAgent,
        current: s.id === currentSessionId,
      }))
  }

  /** Forgets cached sessions (after changes made elsewhere, e.g. another instance). */
  async invalidate(sessionId?: string): Promise<void> {
    if (sessionId) await this.cache.delete(sessionId)
    else await this.cache.clear()
  }
}
