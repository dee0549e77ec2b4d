import { detached, preparedQuery, withTransaction } from '../../db/tx'
import { PollingWorker } from '../../lib/polling-worker'
/**
 * Webhook endpoints and their durable outbox.
 *
 * Where events come from: the audit stream. `attach(audit)` subscribes to `audit.onEvent`, which
 * `AuditService.record` calls synchronously right after inserting the audit row, before `record` returns.
 * The outbox rows are inserted there, synchronously, so: inside a caller's transaction they commit or roll
 * back with the change; outside one they are written before the request that caused the event answers. A
 * change the client saw acknowledged therefore always has its deliveries on disk, and they survive restarts.
 *
 * Delivery: `WebhookWorker` claims due rows with a compare-and-set on `next_attempt_at` (the lease), POSTs
 * them through src/lib/outbound.ts (no redirects, deadline, bounded answer, SSRF checks at connection time),
 * and on failure schedules the next attempt from BULWARK_WEBHOOK_RETRY_SCHEDULE with up to 10 % jitter.
 */
import { and, asc, desc, eq, lt, lte } from 'drizzle-orm'
import type { CoreDeps } from '../../deps'
import { webhookDeliveries, webhookEndpoints } from '../../db/tables'
import { decrypt, encrypt } from '../../lib/crypto'
import { conflict, notFound, unprocessable } from '../../lib/errors'
import { newId } from '../../lib/ids'
import { OutboundError, postOnce, urlProblem } from '../../lib/outbound'
import type { AuditService, RequestMeta } from '../audit/service'
import { EVENT_TYPES, eventsFromAudit, newSecret, signedHeaders, type WebhookEvent } from './events'

type EndpointRow = typeof webhookEndpoints.$inferSelect
type DeliveryRow = typeof webhookDeliveries.$inferSelect

/** The enabled endpoints and their subscriptions (prepared once on SQLite; `enqueue` keeps what it read for ENDPOINTS_CACHE_MS). */
const enabledEndpoints = preparedQuery<Record<string, never>, { id: string; events: string }[]>((db) =>
  db.select({ id: webhookEndpoints.id, events: webhookEndpoints.events }).from(webhookEndpoints).where(eq(webhookEndpoints.enabled, true)),
)

export interface EndpointView {
  id: string
  url: string
  description: string
  events: string[]
  source: 'api' | 'config'
  enabled: boolean
  disabledReason: string | null
  consecutiveFailures: number
  failingSince: string | null
  secretRotation: { previousExpiresAt: string } | null
  createdAt: string
  updatedAt: string
}

export interface DeliveryView {
  id: string
  endpointId: string
  eventType: string
  status: 'pending' | 'succeeded' | 'failed'
  attempts: number
  nextAttemptAt: string | null
  lastAttemptAt: string | null
  lastStatus: number | null
  lastError: string | null
  history: { at: string; status: number | null; error: string | null; durationMs: number }[]
  createdAt: string
}

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString())
const secretAad = (id: string) => `whsec:${id}`
const previousAad = (id: string) => `whsec-prev:${id}`
/** A claimed attempt keeps the row for this long; a crash mid-attempt releases it when the lease ends. */
const LEASE_MS = 2 * 60_000
const HISTORY = 10
const MAX_OVERLAP_MS = 7 * 86_400_000

/** The AADs the secret columns are bound to (src/modules/keys/secret.ts re-encrypts them on a secret rotation). */
export const WEBHOOK_SECRET_AAD = { current: secretAad, previous: previousAad }

export type WebhookDeps = Pick<CoreDeps, 'config' | 'db' | 'clock' | 'logger' | 'keys'> & { audit: AuditService }

/** One page of an endpoint's delivery log, newest first, keyset on id (exported for the EXPLAIN tests, test/db/list-plans.test.ts). */
export function deliveriesListQuery(db: CoreDeps['db'], endpointId: string, opts: { beforeId?: string; limit: number }) {
  return db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.endpointId, endpointId), opts.beforeId === undefined ? undefined : lt(webhookDeliveries.id, opts.beforeId)))
    .orderBy(desc(webhookDeliveries.id))
    .limit(opts.limit)
}

/**
 * How long the enabled endpoints read by `enqueue` are trusted without a change being heard of. Changes made
 * by this instance (and, with Redis, by any instance: the `webhooks` invalidation) drop them at once; the bound
 * covers instances sharing a database without Redis.
 */
export const ENDPOINTS_CACHE_MS = 5_000

export class WebhookService {
  /** Called after rows are queued, so a running worker delivers at once. */
  onQueued: (() => void) | undefined
  /** Called after this instance changed an endpoint's subscriptions or state (app.ts: the `webhooks` invalidation). */
  onEndpointsChanged: (() => void) | undefined

  /**
   * The enabled endpoints and their subscriptions as last read, so an event no endpoint subscribes to costs no
   * query (a sign-in is `session.created`). Only a filter: when a cached endpoint wants the event, `enqueue`
   * reads the table again and queues for what is enabled now, so a cached endpoint since deleted or disabled
   * gets nothing. `gen` counts drops, so a read that overlapped a change is not kept.
   */
  private endpoints: { at: number; list: { id: string; events: string[] }[] } | undefined
  private gen = 0

  constructor(private readonly deps: WebhookDeps) {}

  /** Drops the cached enabled endpoints (a change here or, through the invalidation relay, on another instance). */
  forgetEndpoints(): void {
    this.endpoints = undefined
    this.gen++
  }

  private endpointsChanged(): void {
    this.forgetEndpoints()
    this.onEndpointsChanged?.()
  }

  /**
   * Runs a write to the endpoints, then drops what is kept whether it committed or not: on SQLite a read in
   * the same group commit may have seen the write before a failed commit took it back.
   */
  private async changingEndpoints<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write()
    } finally {
      this.endpointsChanged()
    }
  }

  private async enabledNow(): Promise<{ id: string; events: string[] }[]> {
    const gen = this.gen
    const list = (await enabledEndpoints.all(this.deps.db, {})).map((e) => ({ id: e.id, events: JSON.parse(e.events) as string[] }))
    if (gen === this.gen) this.endpoints = { at: this.deps.clock.now(), list }
    return list
  }

  private get requireHttps(): boolean {
    return this.deps.config.env === 'production' && !this.deps.config.allowHttp
  }

  private checkUrl(url: string): void {
    const problem = urlProblem(url, { allowPrivate: this.deps.config.webhooks.allowPrivate, requireHttps: this.requireHttps })
    if (problem) throw unprocessable('webhook_url_refused', `The webhook URL ${problem}.`, [{ path: '/url', message: problem }])
  }

  private checkEvents(events: string[]): string[] {
    const bad = events.map((e, i) => ({ e, i })).filter(({ e }) => e !== '*' && !EVENT_TYPES.includes(e))
    if (bad.length > 0) {
      throw unprocessable(
        'validation_failed',
        'Unknown event type.',
        bad.map(({ i }) => ({ path: `/events/${i}`, message: `must be * or one of ${EVENT_TYPES.join(', ')}` })),
      )
    }
    return [...new Set(events)]
  }

  private view(r: EndpointRow): EndpointView {
    const now = this.deps.clock.now()
    return {
      id: r.id,
      url: r.url,
      description: r.description,
      events: JSON.parse(r.events) as string[],
      source: r.source,
      enabled: r.enabled,
      disabledReason: r.disabledReason,
      consecutiveFailures: r.consecutiveFailures,
      failingSince: iso(r.failingSince),
      secretRotation: r.previousSecretEnc && r.previousSecretExpiresAt && r.previousSecretExpiresAt > now ? { previousExpiresAt: iso(r.previousSecretExpiresAt)! } : null,
      createdAt: iso(r.createdAt)!,
      updatedAt: iso(r.updatedAt)!,
    }
  }

  private async row(id: string): Promise<EndpointRow> {
    const r = (await this.deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).limit(1))[0]
    if (!r) throw notFound('The webhook does not exist.')
    return r
  }

  /** Every endpoint, oldest first. */
  async list(): Promise<EndpointView[]> {
    return (await this.deps.db.select().from(webhookEndpoints).orderBy(asc(webhookEndpoints.createdAt), asc(webhookEndpoints.id))).map((r) => this.view(r))
  }

  async get(id: string): Promise<EndpointView> {
    return this.view(await this.row(id))
  }

  /** Creates an endpoint; the secret is returned here only. */
  async create(actorId: string | null, input: { url: string; events: string[]; description?: string }, meta: RequestMeta = {}, source: 'api' | 'config' = 'api', secret = newSecret()) {
    this.checkUrl(input.url)
    const events = this.checkEvents(input.events)
    const id = newId()
    const now = this.deps.clock.now()
    await this.changingEndpoints(() =>
      this.deps.db
        .insert(webhookEndpoints)
        .values({ id, url: input.url, description: input.description ?? '', events: JSON.stringify(events), source, secretEnc: encrypt(this.deps.keys.encryption, secret, secretAad(id)), createdAt: now, updatedAt: now }),
    )
    await this.deps.audit.record({ type: 'webhook_created', outcome: 'success', actorId, targetId: id, details: { events, source } }, meta)
    return { ...this.view(await this.row(id)), secret }
  }

  /** Changes url, events, description; `enabled: true` re-enables a disabled endpoint (its failure streak is reset). */
  async update(actorId: string, id: string, input: { url?: string; events?: string[]; description?: string; enabled?: boolean }, meta: RequestMeta = {}): Promise<EndpointView> {
    const r = await this.row(id)
    if (input.url !== undefined) this.checkUrl(input.url)
    const events = input.events === undefined ? undefined : this.checkEvents(input.events)
    const set: Partial<EndpointRow> = { updatedAt: this.deps.clock.now() }
    if (input.url !== undefined) set.url = input.url
    if (events !== undefined) set.events = JSON.stringify(events)
    if (input.description !== undefined) set.description = input.description
    if (input.enabled === true && !r.enabled) Object.assign(set, { enabled: true, disabledReason: null, consecutiveFailures: 0, failingSince: null })
    if (input.enabled === false && r.enabled) Object.assign(set, { enabled: false, disabledReason: 'disabled by an administrator' })
    await this.changingEndpoints(() => this.deps.db.update(webhookEndpoints).set(set).where(eq(webhookEndpoints.id, id)))
    await this.deps.audit.record({ type: 'webhook_updated', outcome: 'success', actorId, targetId: id, details: { fields: Object.keys(input) } }, meta)
    if (input.enabled === true) this.onQueued?.()
    return this.view(await this.row(id))
  }

  /** Deletes an endpoint and its delivery log. */
  async remove(actorId: string, id: string, meta: RequestMeta = {}): Promise<void> {
    await this.row(id)
    await this.changingEndpoints(() => this.deps.db.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id)))
    await this.deps.audit.record({ type: 'webhook_deleted', outcome: 'success', actorId, targetId: id }, meta)
  }

  /** A new secret; the current one keeps signing (next to the new one) for `overlapMs`. */
  async rotateSecret(actorId: string, id: string, overlapMs: number, meta: RequestMeta = {}) {
    if (!(overlapMs >= 0 && overlapMs <= MAX_OVERLAP_MS)) throw unprocessable('validation_failed', 'The overlap is out of range.', [{ path: '/overlap', message: 'from 0s to 7d' }])
    const r = await this.row(id)
    const enc = this.deps.keys.encryption
    const current = decrypt(enc, r.secretEnc, secretAad(id))
    const secret = newSecret()
    const now = this.deps.clock.now()
    await this.deps.db
      .update(webhookEndpoints)
      .set({
        secretEnc: encrypt(enc, secret, secretAad(id)),
        previousSecretEnc: overlapMs > 0 ? encrypt(enc, current, previousAad(id)) : null,
        previousSecretExpiresAt: overlapMs > 0 ? now + overlapMs : null,
        updatedAt: now,
      })
      .where(eq(webhookEndpoints.id, id))
      
    await this.deps.audit.record({ type: 'webhook_secret_rotated', outcome: 'success', actorId, targetId: id, details: { overlapMs } }, meta)
    return { secret, previousExpiresAt: overlapMs > 0 ? iso(now + overlapMs) : null }
  }

  /** The secrets that sign now: the current one, and the previous one during its overlap. */
  secretsOf(r: EndpointRow): string[] {
    const enc = this.deps.keys.encryption
    const out = [decrypt(enc, r.secretEnc, secretAad(r.id))]
    if (r.previousSecretEnc && r.previousSecretExpiresAt && r.previousSecretExpiresAt > this.deps.clock.now()) out.push(decrypt(enc, r.previousSecretEnc, previousAad(r.id)))
    return out
  }

  /** The delivery log of an endpoint, newest first, keyset-paginated by id (ids are time-ordered). */
  async deliveries(endpointId: string, opts: { beforeId?: string; limit: number }): Promise<DeliveryView[]> {
    await this.row(endpointId)
    const rows = await deliveriesListQuery(this.deps.db, endpointId, opts)
    return rows.map(deliveryView)
  }

  /** Queues one more attempt of a delivery now (a manual redelivery, same `webhook-id`). */
  async retry(actorId: string, endpointId: string, deliveryId: string, meta: RequestMeta = {}): Promise<DeliveryView> {
    const r = await this.row(endpointId)
    if (!r.enabled) throw conflict('The webhook is disabled; enable it first (PATCH enabled: true).')
    const now = this.deps.clock.now()
    const d = (await this.deps.db
      .update(webhookDeliveries)
      .set({ status: 'pending', nextAttemptAt: now })
      .where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.endpointId, endpointId)))
      .returning()
      )[0]
    if (!d) throw notFound('The delivery does not exist.')
    await this.deps.audit.record({ type: 'webhook_redelivery', outcome: 'info', actorId, targetId: endpointId, details: { deliveryId } }, meta)
    this.onQueued?.()
    return deliveryView(d)
  }

  /** Queues an event for every enabled endpoint subscribed to it (synchronous: see the file header). */
  async enqueue(event: WebhookEvent): Promise<number> {
    const now = this.deps.clock.now()
    const wants = (e: { events: string[] }) => e.events.includes('*') || e.events.includes(event.type)
    const cached = this.endpoints && now - this.endpoints.at < ENDPOINTS_CACHE_MS ? this.endpoints.list : undefined
    if (cached && !cached.some(wants)) return 0
    const targets = (await this.enabledNow()).filter(wants)
    if (targets.length === 0) return 0
    const payload = JSON.stringify(event)
    await this.deps.db
      .insert(webhookDeliveries)
      .values(targets.map((t) => ({ id: `msg_${newId().replaceAll('-', '')}`, endpointId: t.id, eventType: event.type, payload, nextAttemptAt: now, createdAt: now })))
      
    this.onQueued?.()
    return targets.length
  }

  /** Turns audit events into webhook events (see the file header for why this is durable). */
  attach(audit: AuditService): void {
    audit.onEvent(async (e) => {
      if (e.type.startsWith('webhook_')) return
      for (const ev of eventsFromAudit(e)) await this.enqueue(ev)
    })
  }

  /**
   * Keeps BULWARK_ALERT_WEBHOOK_URL as the `config` endpoint subscribed to `security.alert`: created on the
   * first start, its URL (and secret, when BULWARK_ALERT_WEBHOOK_SECRET is set) updated on later ones.
   */
  async ensureAlertEndpoint(url: string, secret: string | undefined): Promise<string> {
    const existing = (await this.deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.source, 'config')).limit(1))[0]
    if (!existing) return (await this.create(null, { url, events: ['security.alert'], description: 'BULWARK_ALERT_WEBHOOK_URL' }, {}, 'config', secret ?? newSecret())).id
    const set: Partial<EndpointRow> = {}
    if (existing.url !== url) {
      this.checkUrl(url)
      set.url = url
    }
    if (secret !== undefined && decrypt(this.deps.keys.encryption, existing.secretEnc, secretAad(existing.id)) !== secret) set.secretEnc = encrypt(this.deps.keys.encryption, secret, secretAad(existing.id))
    if (Object.keys(set).length > 0) await this.deps.db.update(webhookEndpoints).set({ ...set, updatedAt: this.deps.clock.now() }).where(eq(webhookEndpoints.id, existing.id))
    return existing.id
  }

  // ---- the worker's side ----

  /** Due deliveries of enabled endpoints, oldest first. */
  async due(limit: number): Promise<DeliveryRow[]> {
    return (await this.deps.db
      .select({ d: webhookDeliveries })
      .from(webhookDeliveries)
      .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
      .where(and(eq(webhookDeliveries.status, 'pending'), lte(webhookDeliveries.nextAttemptAt, this.deps.clock.now()), eq(webhookEndpoints.enabled, true)))
      .orderBy(asc(webhookDeliveries.nextAttemptAt), asc(webhookDeliveries.id))
      .limit(limit)
      )
      .map((r) => r.d)
  }

  /** Takes the row for one attempt if nobody else did (compare-and-set on the due time). */
  async claim(d: DeliveryRow): Promise<boolean> {
    const got = await this.deps.db
      .update(webhookDeliveries)
      .set({ nextAttemptAt: this.deps.clock.now() + LEASE_MS })
      .where(and(eq(webhookDeliveries.id, d.id), eq(webhookDeliveries.status, 'pending'), eq(webhookDeliveries.nextAttemptAt, d.nextAttemptAt!)))
      .returning({ id: webhookDeliveries.id })
      
    return got.length === 1
  }

  async endpointRow(id: string): Promise<EndpointRow | undefined> {
    return (await this.deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).limit(1))[0]
  }

  /** Records one attempt's outcome, schedules the next, and disables an endpoint that keeps failing. */
  async finish(d: DeliveryRow, outcome: { ok: boolean; status: number | null; error: string | null; durationMs: number; startedAt: number }): Promise<void> {
    const { config, clock } = this.deps
    const now = clock.now()
    const attempts = d.attempts + 1
    const history = [...(JSON.parse(d.history) as unknown[]), { at: outcome.startedAt, status: outcome.status, error: outcome.error, durationMs: outcome.durationMs }].slice(-HISTORY)
    const schedule = config.webhooks.scheduleMs
    let disabled: { reason: string } | undefined
    const done = withTransaction(this.deps.db, async (tx) => {
      if (outcome.ok) {
        await tx.update(webhookDeliveries)
          .set({ status: 'succeeded', attempts, nextAttemptAt: null, lastAttemptAt: outcome.startedAt, lastStatus: outcome.status, lastError: null, history: JSON.stringify(history) })
          .where(eq(webhookDeliveries.id, d.id))
          
        await tx.update(webhookEndpoints).set({ consecutiveFailures: 0, failingSince: null }).where(eq(webhookEndpoints.id, d.endpointId))
        return
      }
      // The wait after the n-th failed attempt is schedule[n-1], plus up to 10 % jitter; none left: failed.
      const wait = schedule[attempts - 1]
      const next = wait === undefined ? null : now + wait + Math.floor(Math.random() * wait * 0.1)
      await tx.update(webhookDeliveries)
        .set({ status: next === null ? 'failed' : 'pending', attempts, nextAttemptAt: next, lastAttemptAt: outcome.startedAt, lastStatus: outcome.status, lastError: outcome.error, history: JSON.stringify(history) })
        .where(eq(webhookDeliveries.id, d.id))
        
      const ep = (await tx.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, d.endpointId)).limit(1))[0]
      if (!ep) return
      const failures = ep.consecutiveFailures + 1
      const since = ep.failingSince ?? outcome.startedAt
      const reason =
        failures >= config.webhooks.disableFailures
          ? `${failures} failed attempts in a row`
          : now - since >= config.webhooks.disableAfterMs
            ? `every attempt failed since ${iso(since)}`
            : undefined
      if (reason && ep.enabled) disabled = { reason }
      await tx.update(webhookEndpoints)
        .set({ consecutiveFailures: failures, failingSince: since, ...(reason && ep.enabled ? { enabled: false, disabledReason: reason } : {}) })
        .where(eq(webhookEndpoints.id, d.endpointId))
    })
    try {
      await done
    } finally {
      // Dropped after a disable whether it committed or not (see changingEndpoints).
      if (disabled) this.endpointsChanged()
    }
    if (disabled) {
      await this.deps.audit.record({ type: 'webhook_disabled', outcome: 'info', targetId: d.endpointId, details: { reason: disabled.reason } })
      this.deps.logger.warn({ webhookId: d.endpointId, reason: disabled.reason }, 'webhook endpoint disabled after persistent failure')
    }
  }
}

function deliveryView(d: DeliveryRow): DeliveryView {
  return {
    id: d.id,
    endpointId: d.endpointId,
    eventType: d.eventType,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.status === 'pending' ? iso(d.nextAttemptAt) : null,
    lastAttemptAt: iso(d.lastAttemptAt),
    lastStatus: d.lastStatus,
    lastError: d.lastError,
    history: (JSON.parse(d.history) as { at: number; status: number | null; error: string | null; durationMs: number }[]).map((h) => ({ ...h, at: iso(h.at)! })),
    createdAt: iso(d.createdAt)!,
  }
}

export interface RoundReport {
  delivered: number
  failed: number
}

/** Delivers due webhook rows, on a timer (`start`) or when driven (`deliverDue`, tests). */
export class WebhookWorker extends PollingWorker<RoundReport> {
  constructor(
    private readonly service: WebhookService,
    private readonly deps: Pick<CoreDeps, 'config' | 'clock' | 'logger'>,
  ) {
    super({ intervalMs: () => deps.config.webhooks.pollMs, logger: deps.logger, failed: 'webhook delivery round failed', detach: detached })
    service.onQueued = () => this.nudge()
  }

  protected merge(a: RoundReport, b: RoundReport): RoundReport {
    return { delivered: a.delivered + b.delivered, failed: a.failed + b.failed }
  }

  protected async round(): Promise<RoundReport> {
    const report: RoundReport = { delivered: 0, failed: 0 }
    for (;;) {
      const due: DeliveryRow[] = []
      for (const d of await this.service.due(20)) if (await this.service.claim(d)) due.push(d)
      if (due.length === 0 || this.stopping) return report
      // Endpoints in parallel, each endpoint's deliveries in order.
      const byEndpoint = new Map<string, DeliveryRow[]>()
      for (const d of due) byEndpoint.set(d.endpointId, [...(byEndpoint.get(d.endpointId) ?? []), d])
      await Promise.all(
        [...byEndpoint.values()].map(async (list) => {
          for (const d of list) {
            if (await this.attempt(d)) report.delivered++
            else report.failed++
          }
        }),
      )
    }
  }

  private async attempt(d: DeliveryRow): Promise<boolean> {
    const ep = await this.service.endpointRow(d.endpointId)
    if (!ep || !ep.enabled) return false
    const { config, clock } = this.deps
    const startedAt = clock.now()
    const t0 = performance.now()
    let status: number | null = null
    let error: string | null = null
    try {
      const headers = signedHeaders(this.service.secretsOf(ep), d.id, Math.floor(startedAt / 1000), d.payload)
      const res = await postOnce(ep.url, { headers, body: d.payload, timeoutMs: config.webhooks.timeoutMs, allowPrivate: config.webhooks.allowPrivate })
      status = res.status
      if (status < 200 || status > 299) error = status >= 300 && status < 400 ? `redirect (${status}) not followed` : `answered ${status}`
    } catch (e) {
      error = (e instanceof OutboundError ? e.message : `network: ${(e as Error).message}`).slice(0, 300)
    }
    const ok = error === null
    await this.service.finish(d, { ok, status, error, durationMs: Math.round(performance.now() - t0), startedAt })
    if (!ok) this.deps.logger.warn({ webhookId: d.endpointId, deliveryId: d.id, attempt: d.attempts + 1, status, error }, 'webhook attempt failed')
    return ok
  }
}
