/**
 * Outgoing mail through an outbox table. `Mailer.send` only inserts a row, so a request never waits on
 * SMTP and a mail survives a restart; `MailWorker` delivers due rows in the background.
 *
 * With BULWARK_SMTP_URL rows go out through nodemailer, retried with exponential backoff on temporary
 * failures (connection errors, 4xx) and marked `failed` on a permanent refusal (5xx) or after
 * MAX_ATTEMPTS. Without it rows are marked `kept` and appended as JSON lines to `<data dir>/mail.ndjson`
 * (mode 0600: mails carry sign-in tokens), or, for in-memory databases and unwritable folders, noted in
 * the log without their text.
 */
import { and, asc, eq, lte } from 'drizzle-orm'
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import type { Config } from '../../config'
import type { Db } from '../../db/client'
import { mailOutbox } from '../../db/tables'
import { detached } from '../../db/tx'
import { PollingWorker } from '../../lib/polling-worker'
import type { Clock } from '../../lib/clock'
import { newId } from '../../lib/ids'
import type { Logger } from '../../lib/logger'

export interface MailMessage {
  to: string
  subject: string
  text: string
}

/** Queues mail; never blocks on the network. */
export interface Mailer {
  send(message: MailMessage): Promise<void>
}

export interface OutboxMessage extends MailMessage {
  id: string
  status: 'pending' | 'sent' | 'failed' | 'kept'
  attempts: number
  createdAt: number
}

/** Sends one message; throws on failure (`responseCode` 5xx = permanent). */
export type MailTransport = (message: MailMessage & { from: string }) => Promise<void>

export interface MailDeps {
  config: Pick<Config, 'smtpUrl' | 'mailFrom' | 'dataDir' | 'dbPath'>
  db: Db
  clock: Clock
  logger: Logger
}

/** Delivery attempts before a message is given up as `failed`. */
export const MAX_ATTEMPTS = 8
/** Wait before the first retry; doubles with each further failure (1, 2, 4 … 64 minutes). */
export const RETRY_BASE_MS = 60_000
// A row being delivered is leased for this long, so a second worker (another instance on the same
// database, or an overlapping tick) skips it; a crash mid-send releases it when the lease ends.
const LEASE_MS = 5 * 60_000
const BATCH = 50

/** The Mailer that writes to the outbox; `onQueued` lets a running worker deliver at once. */
export class OutboxMailer implements Mailer {
  constructor(
    private readonly deps: Pick<MailDeps, 'db' | 'clock'>,
    private readonly onQueued?: () => void,
  ) {}

  async send(message: MailMessage): Promise<void> {
    const now = this.deps.clock.now()
    await this.deps.db
      .insert(mailOutbox)
      .values({ id: newId(), to: message.to, subject: message.subject, text: message.text, status: 'pending', attempts: 0, nextAttemptAt: now, createdAt: now })
      
    this.onQueued?.()
  }
}

/** The outbox, oldest first, optionally only mail to `to`; tests use it to read tokens out of mails. */
export async function readOutbox(db: Db, to?: string): Promise<OutboxMessage[]> {
  return await db
    .select({
      id: mailOutbox.id,
      to: mailOutbox.to,
      subject: mailOutbox.subject,
      text: mailOutbox.text,
      status: mailOutbox.status,
      attempts: mailOutbox.attempts,
      createdAt: mailOutbox.createdAt,
    })
    .from(mailOutbox)
    .where(to === undefined ? undefined : eq(mailOutbox.to, to))
    .orderBy(asc(mailOutbox.createdAt), asc(mailOutbox.id))
    
}

/** An SMTP transport over nodemailer for `smtp://` / `smtps://` URLs, with bounded timeouts. */
export function smtpTransport(url: string): MailTransport & { close(): void } {
  const transporter = nodemailer.createTransport({
    url,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  })
  const send = async (m: MailMessage & { from: string }) => {
    await transporter.sendMail({ from: m.from, to: m.to, subject: m.subject, text: m.text })
  }
  return Object.assign(send, { close: () => transporter.close() })
}

export interface DeliveryReport {
  sent: number
  kept: number
  retried: number
  failed: number
}

/** Delivers due outbox rows, on a timer (`start`) or when driven (`deliverDue`). */
export class MailWorker extends PollingWorker<DeliveryReport> {
  private readonly transport: (MailTransport & { close?(): void }) | undefined
  private fileBroken = false

  constructor(
    private readonly deps: MailDeps,
    opts: { transport?: MailTransport; intervalMs?: number } = {},
  ) {
    super({ intervalMs: () => opts.intervalMs ?? 5_000, logger: deps.logger, failed: 'mail delivery round failed', detach: detached })
    this.transport = opts.transport ?? (deps.config.smtpUrl ? smtpTransport(deps.config.smtpUrl) : undefined)
  }

  /** Stops polling, lets the message being sent finish (the rest stay pending), and closes the SMTP connection. */
  override async stop(): Promise<void> {
    await super.stop()
    this.transport?.close?.()
  }

  protected merge(a: DeliveryReport, b: DeliveryReport): DeliveryReport {
    return { sent: a.sent + b.sent, kept: a.kept + b.kept, retried: a.retried + b.retried, failed: a.failed + b.failed }
  }

  protected async round(): Promise<DeliveryReport> {
    const report: DeliveryReport = { sent: 0, kept: 0, retried: 0, failed: 0 }
    const { db, clock } = this.deps
    for (;;) {
      const now = clock.now()
      const due = await db
        .select()
        .from(mailOutbox)
        .where(and(eq(mailOutbox.status, 'pending'), lte(mailOutbox.nextAttemptAt, now)))
        .orderBy(asc(mailOutbox.nextAttemptAt), asc(mailOutbox.id))
        .limit(BATCH)
        
      if (due.length === 0) return report
      for (const row of due) {
        if (this.stopping) return report
        if (!await this.claim(row.id, row.nextAttemptAt)) continue
        if (!this.transport) {
          await this.keep(row)
          report.kept++
          continue
        }
        try {
          await this.transport({ from: this.deps.config.mailFrom, to: row.to, subject: row.subject, text: row.text })
          await db.update(mailOutbox).set({ status: 'sent', attempts: row.attempts + 1, sentAt: clock.now(), lastError: null, text: '' }).where(eq(mailOutbox.id, row.id))
          report.sent++
          this.deps.logger.info({ msg: 'mail sent', mailId: row.id, attempts: row.attempts + 1 })
        } catch (e) {
          const attempts = row.attempts + 1
          const code = (e as { responseCode?: number }).responseCode
          const permanent = typeof code === 'number' && code >= 500
          const error = String((e as Error).message ?? e).slice(0, 500)
          if (permanent || attempts >= MAX_ATTEMPTS) {
            await db.update(mailOutbox).set({ status: 'failed', attempts, lastError: error, text: '' }).where(eq(mailOutbox.id, row.id))
            report.failed++
            this.deps.logger.error({ msg: 'mail failed', mailId: row.id, attempts, permanent, error })
          } else {
            const next = clock.now() + RETRY_BASE_MS * 2 ** (attempts - 1)
            await db.update(mailOutbox).set({ attempts, nextAttemptAt: next, lastError: error }).where(eq(mailOutbox.id, row.id))
            report.retried++
            this.deps.logger.warn({ msg: 'mail delivery deferred', mailId: row.id, attempts, retryAt: new Date(next).toISOString(), error })
          }
        }
      }
    }
  }

  // Moves the row's next attempt past the lease only if nobody else moved it first.
  private async claim(id: string, seen: number): Promise<boolean> {
    const claimed = await this.deps.db
      .update(mailOutbox)
      .set({ nextAttemptAt: this.deps.clock.now() + LEASE_MS })
      .where(and(eq(mailOutbox.id, id), eq(mailOutbox.status, 'pending'), eq(mailOutbox.nextAttemptAt, seen)))
      .returning({ id: mailOutbox.id })
      
    return claimed.length === 1
  }

  private async keep(row: typeof mailOutbox.$inferSelect): Promise<void> {
    const { config, db, logger } = this.deps
    await db.update(mailOutbox).set({ status: 'kept', text: '' }).where(eq(mailOutbox.id, row.id))
    const file = config.dbPath === ':memory:' || this.fileBroken ? undefined : join(config.dataDir, 'mail.ndjson')
    if (file) {
      try {
        mkdirSync(config.dataDir, { recursive: true })
        const line = JSON.stringify({ to: row.to, subject: row.subject, text: row.text, createdAt: new Date(row.createdAt).toISOString() })
        appendFileSync(file, `${line}\n`, { mode: 0o600 })
        return
      } catch (e) {
        // Once is enough: an unwritable folder does not become writable between two mails.
        this.fileBroken = true
        logger.warn({ msg: 'mail.ndjson not writable; kept mail goes to the log only', file, error: (e as Error).message })
      }
    }
    // The text carries sign-in tokens: never in the log.
    logger.info({ msg: 'mail kept (no SMTP configured)', mailId: row.id, to: row.to, subject: row.subject })
  }
}
