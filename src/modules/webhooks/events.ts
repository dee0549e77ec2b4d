/**
 * Webhook event types, how audit events become them, and the Standard Webhooks signature
 * (https://www.standardwebhooks.com: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
 * base64-decoded part of the `whsec_` secret).
 */
import { createHmac, randomBytes } from 'node:crypto'

/** Security events that page someone; delivered as `security.alert` (BULWARK_ALERT_WEBHOOK_URL subscribes to it). */
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

/** Audit event type → webhook event type. */
const FROM_AUDIT: Record<string, string> = {
  register: 'user.created',
  user_updated: 'user.updated',
  user_deleted: 'user.deleted',
  email_verified: 'user.email_verified',
  account_locked: 'user.locked',
  account_unlocked: 'user.unlocked',
  login: 'session.created',
  totp_enabled: 'mfa.enrolled',
  passkey_added: 'mfa.enrolled',
  totp_disabled: 'mfa.removed',
  passkey_removed: 'mfa.removed',
  mfa_reset: 'mfa.removed',
  role_granted: 'role.granted',
  role_revoked: 'role.revoked',
  client_created: 'client.created',
  client_deleted: 'client.deleted',
}

/** Every event type an endpoint may subscribe to (`*` subscribes to all). */
export const EVENT_TYPES = [...new Set([...Object.values(FROM_AUDIT), 'security.alert'])].sort()

export interface AuditLike {
  id: number
  type: string
  outcome: string
  actorId?: string | null
  targetId?: string | null
  ip?: string
  requestId?: string
  details?: Record<string, unknown>
  createdAt: number
}

export interface WebhookEvent {
  type: string
  timestamp: string
  data: Record<string, unknown>
}

/** The webhook events one audit event produces (none, one, or a user event plus `security.alert`). */
export function eventsFromAudit(e: AuditLike): WebhookEvent[] {
  const out: WebhookEvent[] = []
  const timestamp = new Date(e.createdAt).toISOString()
  const mapped = FROM_AUDIT[e.type]
  if (mapped && e.outcome !== 'failure') {
    out.push({
      type: mapped,
      timestamp,
      data: { userId: e.targetId ?? e.actorId ?? null, actorId: e.actorId ?? null, auditEventId: e.id, requestId: e.requestId ?? null, auditType: e.type, details: e.details ?? {} },
    })
  }
  if (ALERT_EVENTS.has(e.type)) {
    out.push({
      type: 'security.alert',
      timestamp,
      data: { event: e.type, outcome: e.outcome, actorId: e.actorId ?? null, targetId: e.targetId ?? null, ip: e.ip ?? null, requestId: e.requestId ?? null, details: e.details ?? {}, auditEventId: e.id },
    })
  }
  return out
}

/** A new endpoint secret: `whsec_` + 32 random bytes in base64 (the form Standard Webhooks libraries read). */
export const newSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`

/** The `v1,<signature>` of one message under one `whsec_` secret. */
export function signature(secret: string, id: string, timestampSec: number, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSec}.${body}`).digest('base64')}`
}

/** The Standard Webhooks headers of one attempt: every given secret signs (space-separated signatures). */
export function signedHeaders(secrets: string[], id: string, timestampSec: number, body: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'Bulwark-Webhooks/1',
    'webhook-id': id,
    'webhook-timestamp': String(timestampSec),
    'webhook-signature': secrets.map((s) => signature(s, id, timestampSec, body)).join(' '),
  }
}
