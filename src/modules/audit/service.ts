/**
 * The security-event recorder. Every feature calls `record` for the events an operator or the user
 * would want to see later (sign-ins, failures, lockouts, role changes…). Events go to the audit table
 * and to the log; details must never contain secrets (the logger redacts them anyway).
 */
import { and, count, desc, eq, gte, inArray, lt, lte, or, sql, type SQL } from 'drizzle-orm'
import type { CoreDeps } from '../../deps'
import { dialect, roles, securityEvents, userRoles, users } from '../../db/tables'
import { isRetryable, lockResource, pgRaw, preparedQuery, undoCount, withTransaction } from '../../db/tx'
import type { Store } from '../../db/client'
import { isId, newId } from '../../lib/ids'
import { deferredInfo } from '../../lib/logger'
import { asStoredJson, chainHash, GENESIS, verifyChains, type AuditSource, type ChainedFields, type ExpectedHead, type VerifyReport } from './chain'
import { exportChunks, type ExportFilter } from './export'

export type Outcome = 'success' | 'failure' | 'info'

/** An event written by `AuditService.recordInTx`, to `announce` after commit. */
export interface Recorded {
  event: SecurityEvent
  meta: RequestMeta
  id: number
  createdAt: number
}

/** The last event of a chain (prepared once per connection on SQLite: every audited request runs it). */
const chainHead = preparedQuery<{ chainId: string }, { seq: number | null; hash: string | null; createdAt: number }[]>((db, p) =>
  db
    .select({ seq: securityEvents.seq, hash: securityEvents.hash, createdAt: securityEvents.createdAt })
    .from(securityEvents)
    .where(eq(securityEvents.chainId, p('chainId')))
    .orderBy(desc(securityEvents.seq))
    .limit(1),
)

type EventFields = ChainedFields & { prevHash: string; hash: string }
const insertEvent = preparedQuery<{ [K in keyof EventFields]: EventFields[K] }, { id: number }[]>((db, p) =>
  db
    .insert(securityEvents)
    .values({
      chainId: p('chainId'),
      seq: p('seq'),
      type: p('type'),
      outcome: p('outcome'),
      actorId: p('actorId'),
      targetId: p('targetId'),
      ip: p('ip'),
      userAgent: p('userAgent'),
      requestId: p('requestId'),
      details: p('details'),
      createdAt: p('createdAt'),
      prevHash: p('prevHash'),
      hash: p('hash'),
    })
    .returning({ id: securityEvents.id }),
)

/** Who and where a request came from; handed from the HTTP layer to services. */
export interface RequestMeta {
  ip?: string
  userAgent?: string
  requestId?: string
}

export interface SecurityEvent {
  type: string
  outcome: Outcome
  actorId?: string | null
  targetId?: string | null
  details?: Record<string, unknown>
}

export interface AuditEventView {
  id: number
  type: string
  outcome: Outcome
  actorId: string | null
  targetId: string | null
  ip: string | null
  userAgent: string | null
  requestId: string | null
  details: Record<string, unknown> | null
  createdAt: string
}

export type EventListener = (e: SecurityEvent & RequestMeta & { id: number; createdAt: number }) => void | Promise<void>

/** How long one `GET /v1/admin/stats` answer is served again (ms). */
export const STATS_TTL_MS = 10_000

export interface AdminStats {
  usersByStatus: Record<string, number>
  usersByRole: Record<string, number>
  loginsPerDay: { day: string; logins: number; failures: number }[]
}

export interface AuditListFilter {
  type?: string
  actorOrTarget?: string
  userId?: string
  since?: number
  until?: number
  beforeId?: number
  limit: number
}

/**
 * The query of one page of GET /v1/audit/events (exported for the EXPLAIN tests, test/db/list-plans.test.ts).
 * With `userId`, the events where the user is the target and those where the user is the actor are each read
 * newest first from their own index (security_events_target, security_events_actor) and cut at the page size,
 * and only those two short lists are merged: an `actor_id = ? OR target_id = ?` filter would make both engines
 * collect and sort every event of the user for each page.
 */
export function auditListQuery(db: CoreDeps['db'], filter: AuditListFilter) {
  const conds: SQL[] = []
  if (filter.type) conds.push(eq(securityEvents.type, filter.type))
  if (filter.since !== undefined) conds.push(gte(securityEvents.createdAt, filter.since))
  if (filter.until !== undefined) conds.push(lte(securityEvents.createdAt, filter.until))
  if (filter.beforeId !== undefined) conds.push(lt(securityEvents.id, filter.beforeId))
  let where = conds
  if (filter.userId) {
    const side = (match: SQL) =>
      db
        .select({ id: securityEvents.id })
        .from(securityEvents)
        .where(and(match, ...conds))
        .orderBy(desc(securityEvents.id))
        .limit(filter.limit)
    // The actor side finds the user's own events too (actor = target); the target side only those of other
    // actors, with the partial target index's own condition spelled out so both engines may use that index.
    const byActor = side(eq(securityEvents.actorId, filter.userId))
    const byTarget = side(and(eq(securityEvents.targetId, filter.userId), sql`(${securityEvents.actorId} IS NULL OR ${securityEvents.targetId} <> ${securityEvents.actorId})`)!)
    // The other filters are already applied on each side; repeating them here would only invite a plan that reads by them.
    where = [sql`${securityEvents.id} IN (SELECT id FROM (${byTarget}) AS by_target UNION ALL SELECT id FROM (${byActor}) AS by_actor)`]
  }
  return db
    .select()
    .from(securityEvents)
    .where(where.length ? and(...where) : undefined)
    .orderBy(desc(securityEvents.id))
    .limit(filter.limit)
}

export class AuditService {
  private listeners: EventListener[] = []
  private chain: string | undefined

  /** The `security event` log line, formatted after the response (src/lib/logger.ts deferredInfo). */
  private readonly eventLine: (fields: Record<string, unknown>) => void

  constructor(private readonly deps: Pick<CoreDeps, 'db' | 'clock' | 'logger'> & { storage?: Pick<Store, 'sqlite' | 'pg'> }) {
    this.eventLine = deferredInfo(deps.logger, 'security event')
  }

  private statsMemo: { at: number; value: Promise<AdminStats> } | undefined

  /**
   * Counts for the admin dashboard: users by role and by status, sign-ins and failures per day (UTC). They
   * count every user, so one answer is kept for STATS_TTL_MS (on the injected clock) and shared by the calls
   * that arrive meanwhile, concurrent ones included: a dashboard polling it, or many admins, cost one walk.
   */
  stats(sinceMs: number): Promise<AdminStats> {
    const now = this.deps.clock.now()
    const memo = this.statsMemo
    if (memo && now >= memo.at && now - memo.at < STATS_TTL_MS) return memo.value
    const value = this.countStats(sinceMs)
    this.statsMemo = { at: now, value }
    // A failed count is not kept: the next call tries again.
    value.catch(() => {
      if (this.statsMemo?.value === value) this.statsMemo = undefined
    })
    return value
  }

  private async countStats(sinceMs: number): Promise<AdminStats> {
    const { db } = this.deps
    const byStatus = await db.select({ status: users.status, n: count() }).from(users).groupBy(users.status)
    const byRole = await db
      .select({ name: roles.name, n: count(userRoles.userId) })
      .from(roles)
      .leftJoin(userRoles, eq(userRoles.roleId, roles.id))
      .groupBy(roles.id, roles.name, roles.level)
      .orderBy(desc(roles.level))
    const day = dialect.utcDay(securityEvents.createdAt)
    const days = await db
      .select({
        day: sql<string>`${day}`,
        logins: sql<number>`sum(${dialect.asInt(sql`${securityEvents.type} = 'login'`)})`,
        failures: sql<number>`sum(${dialect.asInt(sql`${securityEvents.type} = 'login_failed'`)})`,
      })
      .from(securityEvents)
      .where(and(gte(securityEvents.createdAt, sinceMs), inArray(securityEvents.type, ['login', 'login_failed'])))
      .groupBy(day)
      .orderBy(day)
    return {
      usersByStatus: Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)])),
      usersByRole: Object.fromEntries(byRole.map((r) => [r.name, Number(r.n)])),
      loginsPerDay: days.map((d) => ({ day: String(d.day), logins: Number(d.logins), failures: Number(d.failures) })),
    }
  }

  /** Subscribes to every recorded event (alerts and metrics hook in here). */
  onEvent(l: EventListener): void {
    this.listeners.push(l)
  }

  /**
   * SQLite: the head of this process's chain as this process last wrote it, with the connection's undo count
   * then (`TxGate.undone`). Every write to the chain goes through that connection's gate one transaction at a
   * time, so while the count is unchanged (no member rolled back, no group lost its commit) the row is still the
   * head, committed or in the open group; any undo makes the next event read the head from the table again.
   * Saves the head lookup on every audited request. Never used on PostgreSQL (other connections, one lock).
   */
  private lastHead: { seq: number; hash: string; createdAt: number; undo: number } | undefined
  /** Numbers the PostgreSQL savepoints of events written inside callers' transactions. */
  private savepoints = 0

  /** This process's hash chain (src/modules/audit/chain.ts), taken at the first event it records. */
  get chainId(): string {
    this.chain ??= newId()
    return this.chain
  }

  /**
   * Writes one security event to the audit table and the log, chained to the previous event of this
   * process's chain. Never throws into the caller's flow.
   */
  async record(event: SecurityEvent, meta: RequestMeta = {}): Promise<void> {
    let written: Recorded
    try {
      // Head and insert form one transaction, serialised per chain (requests of this process append concurrently).
      written = await withTransaction(this.deps.db, async (tx) => await this.write(tx, event, meta))
    } catch (err) {
      this.deps.logger.error({ err, event: event.type }, 'could not record security event')
      return
    }
    await this.announce(written)
  }

  /**
   * Writes one security event inside the caller's transaction `tx` (it commits or rolls back with the
   * caller's writes: one transaction, one commit, instead of a second one for the event). Call `announce` with
   * the result once that transaction has committed. Like `record`, a failure to write the event is logged and
   * does not fail the caller's transaction (PostgreSQL: the event is written under a savepoint); only an
   * interruption that reruns the whole transaction propagates.
   */
  async recordInTx(tx: object, event: SecurityEvent, meta: RequestMeta = {}): Promise<Recorded | undefined> {
    try {
      if (dialect.name !== 'postgres') return await this.write(tx, event, meta)
      // A name of its own for each event's savepoint: a rollback to it can never reach an earlier event's.
      const savepoint = `bulwark_audit_${++this.savepoints}`
      try {
        // The savepoint is left open on success: the transaction's end releases it, and this saves a round trip.
        return await this.write(tx, event, meta, savepoint)
      } catch (err) {
        // Undo the event only (an error aborts a PostgreSQL transaction): the caller's transaction goes on.
        await pgRaw(tx, `ROLLBACK TO SAVEPOINT ${savepoint}`).catch(() => {})
        throw err
      }
    } catch (err) {
      if (isRetryable(err)) throw err
      this.deps.logger.error({ err, event: event.type }, 'could not record security event')
      return undefined
    }
  }

  /** Logs an event written by `recordInTx` and tells the listeners, after its transaction has committed. */
  async announce(written: Recorded | undefined): Promise<void> {
    if (!written) return
    const { event, meta, id, createdAt } = written
    try {
      this.eventLine({ event: event.type, outcome: event.outcome, actorId: event.actorId, targetId: event.targetId, ip: meta.ip, requestId: meta.requestId, details: event.details })
      for (const l of this.listeners) {
        try {
          await l({ ...event, ...meta, id, createdAt })
        } catch (err) {
          this.deps.logger.warn({ err }, 'security event listener failed')
        }
      }
    } catch (err) {
      this.deps.logger.error({ err, event: event.type }, 'could not record security event')
    }
  }

  /**
   * The head lookup and the chained insert, on `tx` (a transaction the caller holds); on PostgreSQL with
   * `savepoint`, under a savepoint of that name taken first.
   */
  private async write(tx: object, event: SecurityEvent, meta: RequestMeta, savepoint?: string): Promise<Recorded> {
    let createdAt = this.deps.clock.now()
    const chainId = this.chainId
    // The head is read from the table (one indexed lookup, security_events_chain, after the chain's lock), so an
    // event recorded inside a transaction that rolls back leaves no dangling link. SQLite: the head this
    // process wrote last is used instead while nothing on the connection was undone since (see `lastHead`).
    const undo = undoCount(tx)
    const known = undo !== undefined && this.lastHead?.undo === undo ? this.lastHead : undefined
    const head = known ?? (dialect.name === 'postgres' ? await this.lockedHeadPg(tx, chainId, savepoint) : (await chainHead.all(tx, { chainId }))[0])
    // Time never runs backwards within a chain, so pruning by age always removes a prefix of each chain.
    if (head && head.createdAt > createdAt) createdAt = head.createdAt
    const fields: ChainedFields = {
      chainId,
      seq: (head?.seq ?? 0) + 1,
      type: event.type,
      outcome: event.outcome,
      actorId: event.actorId ?? null,
      targetId: event.targetId ?? null,
      ip: meta.ip ?? null,
      userAgent: meta.userAgent?.slice(0, 512) ?? null,
      requestId: meta.requestId ?? null,
      // Hashed as it will be read back (undefined members dropped, dates as strings…).
      details: event.details == null ? null : asStoredJson(event.details),
      createdAt,
    }
    const prevHash = head?.hash ?? GENESIS
    const hash = chainHash(prevHash, fields)
    this.lastHead = undefined
    const row = (await insertEvent.all(tx, { ...fields, prevHash, hash }))[0]!
    if (undo !== undefined) this.lastHead = { seq: fields.seq, hash, createdAt, undo }
    return { event, meta, id: row.id, createdAt }
  }

  /**
   * PostgreSQL: [the savepoint,] the chain's lock (held to the end of the transaction, across instances) and
   * the head, as one simple query of three statements: one round trip instead of three. The head's statement
   * takes its snapshot after the lock is granted (READ COMMITTED: one snapshot per statement), so it sees the
   * event of the transaction that held the lock before. The chain id is this process's own UUID (checked
   * before it is written into the text); anything else takes the parameterised statements.
   */
  private async lockedHeadPg(tx: object, chainId: string, savepoint: string | undefined): Promise<{ seq: number | null; hash: string | null; createdAt: number } | undefined> {
    if (!isId(chainId)) {
      if (savepoint) await pgRaw(tx, `SAVEPOINT ${savepoint}`)
      await lockResource(tx, `audit-chain:${chainId}`)
      return (await chainHead.all(tx, { chainId }))[0]
    }
    // chainId: checked by isId just above (a canonical UUID: hex digits and dashes only)
    const lockAndHead = `SELECT pg_advisory_xact_lock(hashtext('audit-chain:${chainId}')); SELECT seq, hash, created_at FROM security_events WHERE chain_id = '${chainId}' ORDER BY seq DESC LIMIT 1`
    const results = await pgRaw(tx, savepoint ? `SAVEPOINT ${savepoint}; ${lockAndHead}` : lockAndHead)
    const row = (results[results.length - 1] as { seq: unknown; hash: string | null; created_at: unknown }[])[0]
    return row ? { seq: row.seq === null ? null : Number(row.seq), hash: row.hash, createdAt: Number(row.created_at) } : undefined
  }

  /** The raw connection the walk and the export read (both engines). */
  private source(): AuditSource {
    const s = this.deps.storage
    if (s?.sqlite) return s.sqlite
    if (s?.pg) return { pg: s.pg }
    throw new Error('audit: no storage to read the trail from')
  }

  /** Keyset-paginated events, newest first. */
  async list(filter: AuditListFilter): Promise<AuditEventView[]> {
    const rows = await auditListQuery(this.deps.db, filter)
    return rows.map((r) => ({
      id: r.id,
      type: r.type,
      outcome: r.outcome,
      actorId: r.actorId,
      targetId: r.targetId,
      ip: r.ip,
      userAgent: r.userAgent,
      requestId: r.requestId,
      details: r.details ?? null,
      createdAt: new Date(r.createdAt).toISOString(),
    }))
  }

  /** Checks every hash chain and reports the first broken link (src/modules/audit/chain.ts). */
  verify(heads: ExpectedHead[] = []): Promise<VerifyReport> {
    return verifyChains(this.source(), { heads })
  }

  /** NDJSON chunks of the events matching the filter, oldest first, one indexed batch at a time. */
  export(filter: ExportFilter): AsyncGenerator<string, void, undefined> {
    return exportChunks(this.source(), filter)
  }
}
