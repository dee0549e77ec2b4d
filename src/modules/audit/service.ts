/**
 * The security-event recorder. Every feature calls `record` for the events an operator or the user
 * would want to see later (sign-ins, failures, lockouts, role changes…). Events go to the audit table
 * and to the log; details must never contain secrets (the logger redacts them anyway).
 */
import { and, count, desc, eq, gte, inArray, lt, lte, or, sql, type SQL } from 'drizzle-orm'
import type { CoreDeps } from '../../deps'
import { dialect, roles, securityEvents, userRoles, users } from '../../db/tables'
import { isRetryable, lockResource, pgRaw, pgStartPrepared, preparedQuery, transactionScope, undoCount, whenTransactionEnds, withTransaction } from '../../db/tx'
import type { Store } from '../../db/client'
import { isId, newId } from '../../lib/ids'
import { deferredInfo } from '../../lib/logger'
import { asStoredJson, chainHash, GENESIS, verifyChains, type AuditSource, type ChainedFields, type ExpectedHead, type VerifyReport } from './chain'
import { exportChunks, type ExportFilter } from './export'

export type Outcome = 'success' | 'failure' | 'info'

/** The last event of a chain: what the next event links to. */
type ChainHead = { seq: number | null; hash: string | null; createdAt: number }

/** PostgreSQL: one of this process's hash chains, and its head as far as this process knows it. */
interface PgChain {
  id: string
  /** The chain's last event (undefined: none yet), valid while `known`. */
  head: ChainHead | undefined
  /** False after a transaction on the chain rolled back or an event failed: the head is read from the table again. */
  known: boolean
}

/** PostgreSQL: the chain an open transaction appends to, and how many events it has written. */
interface PgTxState {
  chain: PgChain
  events: number
}

/**
 * PostgreSQL: the chained insert after a head known in memory, conditional on that head: the row goes in only
 * as a chain's first event or when its predecessor (position − 1, with `prev_hash` as its hash) is in the table.
 * A head known wrongly then inserts nothing, where a plain insert would link to a position that does not exist
 * and break the chain for good. One probe of security_events_chain. Parameters: chain_id, seq, type, outcome,
 * actor_id, target_id, ip, user_agent, request_id, details (JSON: Bun sends an object parameter as JSON),
 * created_at, prev_hash, hash.
 */
const INSERT_AFTER_KNOWN_HEAD = `INSERT INTO security_events (chain_id, seq, type, outcome, actor_id, target_id, ip, user_agent, request_id, details, created_at, prev_hash, hash)
SELECT $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text, $10::jsonb, $11::bigint, $12::text, $13::text
WHERE $2::bigint = 1 OR EXISTS (SELECT 1 FROM security_events WHERE chain_id = $1::text AND seq = $2::bigint - 1 AND hash = $12::text)
RETURNING id`

/** PostgreSQL: the savepoints of the first this many events of a transaction are prepared statements (one per name and connection). */
const PREPARED_SAVEPOINTS = 4

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

  /** This process's (first) hash chain (src/modules/audit/chain.ts), taken at the first event it records. */
  get chainId(): string {
    this.chain ??= newId()
    return this.chain
  }

  /** PostgreSQL: this process's chains that no open transaction of it is appending to (the most recently freed last). */
  private readonly freeChains: PgChain[] = []
  private pgChains = 0
  /** PostgreSQL: the chain and the event count of each open transaction that wrote an event. */
  private readonly txChains = new WeakMap<object, PgTxState>()

  /**
   * PostgreSQL: the chain of the transaction running now. A chain's lock was held from its head's lookup to
   * COMMIT, so one chain for every concurrent writer of the process queued them all behind one lock (measured
   * under a refresh load: most of the pool's backends waiting on it). Now each open transaction appends to a
   * chain of its own: the one freed last, or a new one. So this process has about as many chains as
   * transactions it holds open at once, at most about twice BULWARK_DB_POOL_SIZE (a chain is given back just
   * after its connection, which a waiting transaction may take first), sequential writers keep to the first,
   * and no two transactions ever append to one chain at once. The chain is the transaction's for all its events and
   * is given back when it ends; one that rolled back leaves the chain's head to be read from the table again.
   */
  private pgTx(): PgTxState {
    const scope = transactionScope()
    if (!scope) throw new Error('audit: on PostgreSQL an event is written inside a transaction')
    let state = this.txChains.get(scope)
    if (state) return state
    const chain = this.freeChains.pop() ?? { id: this.pgChains++ === 0 ? this.chainId : newId(), head: undefined, known: true }
    state = { chain, events: 0 }
    this.txChains.set(scope, state)
    whenTransactionEnds((committed) => {
      if (!committed) chain.known = false
      this.freeChains.push(chain)
    })
    return state
  }

  /**
   * Writes one security event to the audit table and the log, chained to the previous event of this
   * process's chain. Never throws into the caller's flow.
   */
  async record(event: SecurityEvent, meta: RequestMeta = {}): Promise<void> {
    let written: Recorded
    try {
      // Head and insert form one transaction, serialised per chain (requests of this process append concurrently).
      written = await withTransaction(this.deps.db, async (tx) => (dialect.name === 'postgres' ? await this.writePg(tx, event, meta, this.pgTx()) : await this.write(tx, event, meta)))
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
      const state = this.pgTx()
      // A name of its own for each event's savepoint in the transaction: a rollback to it can never reach an
      // earlier event's. The names repeat from one transaction to the next (a few prepared statements per connection).
      const savepoint = `bulwark_audit_${++state.events}`
      try {
        // The savepoint is left open on success: the transaction's end releases it, and this saves a round trip.
        return await this.writePg(tx, event, meta, state, savepoint)
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

  /** SQLite: the head lookup (unless known, see `lastHead`) and the chained insert, on `tx` (a transaction the caller holds). */
  private async write(tx: object, event: SecurityEvent, meta: RequestMeta): Promise<Recorded> {
    const chainId = this.chainId
    // The head is read from the table (one indexed lookup, security_events_chain), so an event recorded inside a
    // transaction that rolls back leaves no dangling link; the head this process wrote last is used instead while
    // nothing on the connection was undone since (see `lastHead`).
    const undo = undoCount(tx)
    const known = undo !== undefined && this.lastHead?.undo === undo ? this.lastHead : undefined
    const head = known ?? (await chainHead.all(tx, { chainId }))[0]
    const { fields, prevHash, hash } = this.chained(chainId, head, event, meta)
    this.lastHead = undefined
    const row = (await insertEvent.all(tx, { ...fields, prevHash, hash }))[0]!
    if (undo !== undefined) this.lastHead = { seq: fields.seq, hash, createdAt: fields.createdAt, undo }
    return { event, meta, id: row.id, createdAt: fields.createdAt }
  }

  /**
   * PostgreSQL: the chained insert on the transaction's own chain (`pgTx`), with `savepoint` taken first when
   * given. While the chain's head is known (this process wrote it and nothing was undone since), the savepoint
   * and the insert are sent together, one round trip, and the insert is conditional on that head being in the
   * table (INSERT_AFTER_KNOWN_HEAD); otherwise, or when it inserted nothing, the head is read under the chain's
   * lock first. Calls within one transaction must not overlap (each awaits the previous event).
   */
  private async writePg(tx: object, event: SecurityEvent, meta: RequestMeta, state: PgTxState, savepoint?: string): Promise<Recorded> {
    const { chain } = state
    let untaken = savepoint
    if (chain.known) {
      // At most a few distinct texts: a transaction with more events takes the rest as simple queries.
      const taken = savepoint ? (state.events <= PREPARED_SAVEPOINTS ? pgStartPrepared(tx, `SAVEPOINT ${savepoint}`) : pgRaw(tx, `SAVEPOINT ${savepoint}`)) : undefined
      untaken = undefined
      const next = this.chained(chain.id, chain.head, event, meta)
      // Unknown until the insert is confirmed: a failed one is rolled back to its savepoint, or fails the transaction.
      chain.known = false
      const f = next.fields
      const [, rows] = await Promise.all([
        taken,
        pgRaw(tx, INSERT_AFTER_KNOWN_HEAD, [f.chainId, f.seq, f.type, f.outcome, f.actorId, f.targetId, f.ip, f.userAgent, f.requestId, f.details, f.createdAt, next.prevHash, next.hash]),
      ])
      if (rows.length > 0) return this.appended(chain, next, event, meta, Number((rows[0] as { id: unknown }).id))
      // The head known here is not the table's (newer events gone behind this process: a restore, a failover to
      // a replica that had not received them): nothing was inserted; link to the head the table has instead.
      this.deps.logger.warn({ chainId: chain.id, position: next.fields.seq - 1 }, 'audit chain head in memory not found in the table; read again')
    }
    const head = await this.lockedHeadPg(tx, chain.id, untaken)
    const next = this.chained(chain.id, head, event, meta)
    chain.known = false
    const rows = await insertEvent.all(tx, { ...next.fields, prevHash: next.prevHash, hash: next.hash })
    return this.appended(chain, next, event, meta, rows[0]!.id)
  }

  /** PostgreSQL: the chain's head is the event just inserted (known until its transaction ends otherwise). */
  private appended(chain: PgChain, next: { fields: ChainedFields; hash: string }, event: SecurityEvent, meta: RequestMeta, id: number): Recorded {
    chain.head = { seq: next.fields.seq, hash: next.hash, createdAt: next.fields.createdAt }
    chain.known = true
    return { event, meta, id, createdAt: next.fields.createdAt }
  }

  /** The stored fields of the next event after `head` on chain `chainId`, and its links. */
  private chained(chainId: string, head: ChainHead | undefined, event: SecurityEvent, meta: RequestMeta): { fields: ChainedFields; prevHash: string; hash: string } {
    let createdAt = this.deps.clock.now()
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
    return { fields, prevHash, hash: chainHash(prevHash, fields) }
  }

  /**
   * PostgreSQL: [the savepoint,] the chain's lock (held to the end of the transaction, across instances) and
   * the head, as one simple query of three statements: one round trip instead of three. The head's statement
   * takes its snapshot after the lock is granted (READ COMMITTED: one snapshot per statement), so it sees the
   * event of the transaction that held the lock before. The chain id is this process's own UUID (checked
   * before it is written into the text); anything else takes the parameterised statements.
   */
  private async lockedHeadPg(tx: object, chainId: string, savepoint: string | undefined): Promise<ChainHead | undefined> {
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
