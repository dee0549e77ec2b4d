/**
 * Alert webhooks: high-severity security events are POSTed as JSON to BULWARK_ALERT_WEBHOOK_URL.
 * Delivery is fire-and-forget off the request path, with a short timeout, one retry, and a bounded
 * queue, so a slow or dead receiver can never slow sign-ins down. Payloads carry ids, never secrets.
 */
import type { Logger } from '../../lib/logger'
import type { AuditService } from '../audit/service'

/** Event types that page someone. */
export const ALERT_EVENTS = new Set([
  'refresh_token_reuse',
  'account_locked',
  'mfa_locked',
  'passkey_cloned_suspected',
  'privilege_escalation_denied',
  'csrf_failed',
  'owner_created',
  'key_rotated',
  'rate_limit_store_degraded',
])

const TIMEOUT_MS = 2000
const MAX_IN_FLIGHT = 50

export class AlertWebhook {
  private inFlight = 0
  dropped = 0
  delivered = 0
  failed = 0

  constructor(private readonly url: string, private readonly logger: Logger) {}

  /** Subscribes to the audit service. */
  attach(audit: AuditService): void {
    audit.onEvent((e) => {
      if (!ALERT_EVENTS.has(e.type)) return
      this.send({
        type: e.type,
        outcome: e.outcome,
        actorId: e.actorId ?? null,
        targetId: e.targetId ?? null,
        ip: e.ip ?? null,
        requestId: e.requestId ?? null,
        details: e.details ?? null,
        createdAt: new Date(e.createdAt).toISOString(),
        eventId: e.id,
      })
    })
  }

  /** Sends one payload in the background; returns the delivery promise (tests await it). */
  send(payload: Record<string, unknown>): Promise<boolean> {
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.dropped++
      this.logger.warn({ alert: payload.type }, 'alert webhook backlog full: alert dropped')
      return Promise.resolve(false)
    }
    this.inFlight++
    const body = JSON.stringify({ source: 'bulwark', ...payload })
    const attempt = () =>
      fetch(this.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: 'error' }).then((r) => {
        if (!r.ok) throw new Error(`status ${r.status}`)
      })
    return attempt()
      .catch(() => attempt())
      .then(
        () => {
          this.delivered++
          return true
        },
        (err: unknown) => {
          this.failed++
          this.logger.warn({ alert: payload.type, err: err instanceof Error ? err.message : String(err) }, 'alert webhook delivery failed')
          return false
        },
      )
      .finally(() => {
        this.inFlight--
      })
  }
}
