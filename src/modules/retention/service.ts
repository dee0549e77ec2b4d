/**
 * Retention: a background pruner for rows that only ever accumulate (security events, spent refresh
 * tokens, ended sessions, delivered outbox mail, expired mailed tokens and challenges), and for the
 * encrypted successor copies of spent refresh tokens once their reuse grace is over. Each rule deletes
 * in small batches (`DELETE … WHERE rowid IN (SELECT rowid … LIMIT n)`, driven by an index: see the
 * EXPLAIN QUERY PLAN test) and yields to the event loop between batches, so a large backlog never holds
 * the database or the event loop for more than one batch. Cut-offs come from the injected clock.
 */
import type { Database, Statement } from 'bun:sqlite'
import type { CoreDeps } from '../../deps'
import type { Store } from '../../db/client'
import { classifyStorageError, sqliteCode } from '../../lib/storage-errors'

export interface RetentionRule {
  name: string
  /** The batch statement: ?1 is the cut-off (ms since the epoch), ?2 the batch size. */
  prepare(sqlite: Database): Statement
  /** Rows older than this go; undefined skips the rule (retention 0 = keep forever). */
  cutoff(now: number, c: CoreDeps['config']): number | undefined
}

const before = (ms: number, now: number) => (ms > 0 ? now - ms : undefined)

/**
 * The rules, in order: spent refresh tokens before the sessions they belong to (a session's delete
 * cascades to its remaining tokens through `refresh_tokens_session`, which stays small that way).
 */
export const RETENTION_RULES: RetentionRule[] = [
  {
    // Not retention but hygiene: a spent token keeps its successor AES-GCM encrypted for a retry within
    // BULWARK_REFRESH_REUSE_GRACE (src/modules/sessions/service.ts); after it the copy serves nothing, and
    // goes. An UPDATE, driven by the partial index of the tokens whose copy is still kept, so each round
    // reads only the copies due (INDEXED BY: with statistics of a small table SQLite would rather walk
    // refresh_tokens_used, every spent token of the retention; PostgreSQL's text drops the clause). Runs
    // whatever the retention settings.
    name: 'refresh_tokens_successor_copies',
    prepare: (sqlite) => sqlite.prepare('UPDATE refresh_tokens SET successor_enc = NULL WHERE rowid IN (SELECT rowid FROM refresh_tokens INDEXED BY refresh_tokens_successor_kept WHERE successor_enc IS NOT NULL AND used_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => now - c.session.refreshReuseGraceMs,
  },
  {
    name: 'refresh_tokens_spent',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens WHERE used_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.sessionsMs, now),
  },
  {
    name: 'sessions_revoked',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE revoked_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.sessionsMs, now),
  },
  {
    name: 'sessions_expired',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE expires_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.sessionsMs, now),
  },
  {
    // Idle-ended: last seen longer ago than the idle limit plus the retention.
    name: 'sessions_idle',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE last_seen_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => (c.retention.sessionsMs > 0 ? now - c.session.idleTtlMs - c.retention.sessionsMs : undefined),
  },
  {
    name: 'security_events',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM security_events WHERE rowid IN (SELECT rowid FROM security_events WHERE created_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.securityEventsMs, now),
  },
  {
    // Pending and failed mail stay: one is still to be sent, the other is for an operator to look at.
    name: 'mail_outbox_done',
    prepare: (sqlite) => sqlite.prepare("DELETE FROM mail_outbox WHERE rowid IN (SELECT rowid FROM mail_outbox WHERE status IN ('sent', 'kept') AND created_at < ?1 LIMIT ?2)"),
    cutoff: (now, c) => before(c.retention.mailMs, now),
  },
  {
    name: 'email_tokens_expired',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM email_tokens WHERE rowid IN (SELECT rowid FROM email_tokens WHERE expires_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.tokensMs, now),
  },
  {
    name: 'challenges_expired',
    prepare: (sqlite) => sqlite.prepare('DELETE FROM challenges WHERE rowid IN (SELECT rowid FROM challenges WHERE expires_at < ?1 LIMIT ?2)'),
    cutoff: (now, c) => before(c.retention.tokensMs, now),
  },
]

export const PRUNE_BATCH = 500

const pgStatements = new Map<string, string>()
/** A rule's batch statement for PostgreSQL, derived from its SQLite text (rowid → ctid, ?n → $n, no INDEXED BY). */
export function pgStatement(rule: RetentionRule): string {
  let text = pgStatements.get(rule.name)
  if (!text) {
    const capture = { prepare: (sqlText: string) => ({ sqlText }) }
    const sqliteText = (rule.prepare(capture as unknown as Database) as unknown as { sqlText: string }).sqlText
    text = sqliteText.replace(/ INDEXED BY \w+/g, '').replace(/\browid\b/g, 'ctid').replace(/\?(\d)/g, '$$$1')
    pgStatements.set(rule.name, text)
  }
  return text
}

export interface PruneReport {
  deleted: Record<string, number>
  batches: number
  /** Longest single batch statement, in milliseconds (the longest the event loop was held). */
  longestBatchMs: number
  totalMs: number
  /** Set when a round stopped early on a storage failure (busy, full…); the next round carries on. */
  error?: string
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

export class Pruner {
  private timer: ReturnType<typeof setTimeout> | undefined
  private running: Promise<PruneReport> | undefined
  private stopping = false
  private statements: Statement[] | undefined
  private readonly batch: number
  private readonly onBatch?: (ms: number) => void

  constructor(
    private readonly deps: Pick<CoreDeps, 'clock' | 'config' | 'logger'> & { storage: Pick<Store, 'sqlite' | 'pg'> },
    opts: { batch?: number; onBatch?: (ms: number) => void } = {},
  ) {
    this.batch = opts.batch ?? PRUNE_BATCH
    this.onBatch = opts.onBatch
  }

  /** Runs a round now and then every BULWARK_PRUNE_INTERVAL; the timer does not keep the process alive. */
  start(): void {
    if (this.timer || this.stopping) return
    const tick = () => {
      this.timer = undefined
      void this.runOnce()
        .catch((err) => this.deps.logger.error({ err }, 'pruning round failed'))
        .finally(() => {
          if (this.stopping) return
          this.timer = setTimeout(tick, this.deps.config.retention.intervalMs)
          this.timer.unref?.()
        })
    }
    this.timer = setTimeout(tick, 0)
    this.timer.unref?.()
  }

  /** Stops the timer and waits for the current batch (not the whole round) to finish. */
  async stop(): Promise<void> {
    this.stopping = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.running) await this.running
  }

  /** One pruning round over every rule; a call during a round waits for that round. */
  runOnce(): Promise<PruneReport> {
    this.running ??= this.round().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  private async round(): Promise<PruneReport> {
    const { storage, clock, config, logger } = this.deps
    const sqlite = storage.sqlite
    const pg = storage.pg
    if (sqlite) this.statements ??= RETENTION_RULES.map((r) => r.prepare(sqlite))
    const report: PruneReport = { deleted: {}, batches: 0, longestBatchMs: 0, totalMs: 0 }
    const started = performance.now()
    const now = clock.now()
    try {
      for (const [i, rule] of RETENTION_RULES.entries()) {
        const cutoff = rule.cutoff(now, config)
        if (cutoff === undefined) continue
        let deleted = 0
        for (;;) {
          if (this.stopping) break
          const t0 = performance.now()
          // PostgreSQL: the same statement with ctid for rowid (https://www.postgresql.org/docs/current/ddl-system-columns.html).
          const n = pg ? Number((await pg.unsafe(pgStatement(rule), [cutoff, this.batch])).count ?? 0) : this.statements![i]!.run(cutoff, this.batch).changes
          const ms = performance.now() - t0
          report.longestBatchMs = Math.max(report.longestBatchMs, ms)
          this.onBatch?.(ms)
          report.batches++
          deleted += n
          if (n < this.batch) break
          await yieldToLoop()
        }
        if (deleted > 0) report.deleted[rule.name] = deleted
        await yieldToLoop()
      }
    } catch (err) {
      if (!classifyStorageError(err)) throw err
      report.error = sqliteCode(err)?.code
      logger.warn({ msg: 'pruning stopped early; the next round carries on', error: report.error })
    }
    report.totalMs = performance.now() - started
    if (Object.keys(report.deleted).length > 0) {
      logger.info({ msg: 'pruned rows past their retention', deleted: report.deleted, batches: report.batches, longestBatchMs: Math.round(report.longestBatchMs * 100) / 100 })
    }
    return report
  }
}
