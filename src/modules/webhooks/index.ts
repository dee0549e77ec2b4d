/** Routes under /v1/webhooks: endpoints, their secret, the delivery log and manual redelivery (webhooks:read / webhooks:write). */
import { Elysia, t, type AnyElysia } from 'elysia'
import { parseDuration } from '../../config'
import { unprocessable } from '../../lib/errors'
import { decodeCursor, pageLimit, PageQuery, pageOf } from '../../lib/pagination'
import { errors, IdParam, optionalBody, JsonInteger } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import { EVENT_TYPES } from './events'
import type { WebhookService } from './service'

const Url = t.String({ minLength: 8, maxLength: 2048, description: 'https:// URL that receives the POSTs (no credentials)' })
const EventName = t.String({ minLength: 1, maxLength: 64, description: `* or one of ${EVENT_TYPES.join(', ')}` })
const Events = t.Array(EventName, { minItems: 1, maxItems: 50 })
const Description = t.String({ maxLength: 500 })

const Endpoint = t.Object({
  id: t.String(),
  url: t.String(),
  description: t.String(),
  events: t.Array(t.String()),
  source: t.Union([t.Literal('api'), t.Literal('config')]),
  enabled: t.Boolean(),
  disabledReason: t.Union([t.String(), t.Null()]),
  consecutiveFailures: JsonInteger(),
  failingSince: t.Union([t.String(), t.Null()]),
  secretRotation: t.Union([t.Object({ previousExpiresAt: t.String() }), t.Null()]),
  createdAt: t.String(),
  updatedAt: t.String(),
})

const Delivery = t.Object({
  id: t.String(),
  endpointId: t.String(),
  eventType: t.String(),
  status: t.Union([t.Literal('pending'), t.Literal('succeeded'), t.Literal('failed')]),
  attempts: JsonInteger(),
  nextAttemptAt: t.Union([t.String(), t.Null()]),
  lastAttemptAt: t.Union([t.String(), t.Null()]),
  lastStatus: t.Union([JsonInteger(), t.Null()]),
  lastError: t.Union([t.String(), t.Null()]),
  history: t.Array(t.Object({ at: t.String(), status: t.Union([JsonInteger(), t.Null()]), error: t.Union([t.String(), t.Null()]), durationMs: JsonInteger() })),
  createdAt: t.String(),
})

const DeliveryParams = t.Object(
  { id: t.String({ format: 'uuid', maxLength: 36 }), deliveryId: t.String({ pattern: '^msg_[0-9a-f]{32}$', maxLength: 36 }) },
  { additionalProperties: false },
)

const Rotate = t.Object({ overlap: t.Optional(t.String({ minLength: 1, maxLength: 16, pattern: '^[0-9]{1,9}(ms|s|m|h|d)?$', description: 'how long the previous secret keeps signing, e.g. 24h (default), 0s for none, at most 7d' })) }, { additionalProperties: false })

const isCursor = (v: unknown): v is { id: string } => typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string'

/** The webhook routes; `auth` provides the auth macros. */
export function webhooksController(auth: AnyElysia, webhooks: WebhookService, d: { cursorKey: Buffer }) {
  return new Elysia({ name: 'webhooks', prefix: '/v1', detail: { tags: ['webhooks'] } })
    .use(auth as AuthMacros)
    .get('/webhooks', async () => ({ items: await webhooks.list(), nextCursor: null }), {
      permission: 'webhooks:read',
      response: { 200: t.Object({ items: t.Array(Endpoint), nextCursor: t.Null() }) },
      detail: { summary: 'List webhook endpoints (webhooks:read); secrets are never shown' },
    })
    .post(
      '/webhooks',
      async ({ body, principal, request, set }) => {
        const created = await webhooks.create(principal.userId, body, metaOf(request))
        set.status = 201
        return created
      },
      {
        permission: 'webhooks:write',
        body: t.Object({ url: Url, events: Events, description: t.Optional(Description) }, { additionalProperties: false }),
        response: { 201: t.Object({ ...Endpoint.properties, secret: t.String({ description: 'whsec_… signing secret, shown once' }) }), ...errors(422) },
        detail: { summary: 'Create a webhook endpoint; the signing secret is in this answer only (webhooks:write)' },
      },
    )
    .get('/webhooks/:id', ({ params }) => webhooks.get(params.id), {
      permission: 'webhooks:read',
      params: IdParam,
      response: { 200: Endpoint, ...errors(404) },
      detail: { summary: 'One webhook endpoint (webhooks:read)' },
    })
    .patch('/webhooks/:id', ({ params, body, principal, request }) => webhooks.update(principal.userId, params.id, body, metaOf(request)), {
      permission: 'webhooks:write',
      params: IdParam,
      body: t.Object({ url: t.Optional(Url), events: t.Optional(Events), description: t.Optional(Description), enabled: t.Optional(t.Boolean()) }, { additionalProperties: false, minProperties: 1 }),
      response: { 200: Endpoint, ...errors(404, 422) },
      detail: { summary: 'Change a webhook endpoint; enabled: true re-enables one disabled after failures (webhooks:write)' },
    })
    .delete(
      '/webhooks/:id',
      async ({ params, principal, request, set }) => {
        await webhooks.remove(principal.userId, params.id, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'webhooks:write', params: IdParam, response: { 204: t.Null(), ...errors(404) }, detail: { summary: 'Delete a webhook endpoint and its delivery log (webhooks:write)' } },
    )
    .post(
      '/webhooks/:id/secret',
      ({ params, body, principal, request }) => {
        const raw = body?.overlap ?? '24h'
        const overlapMs = parseDuration(raw)
        if (overlapMs === undefined) throw unprocessable('validation_failed', 'The overlap is not a duration.', [{ path: '/overlap', message: 'e.g. 24h' }])
        return webhooks.rotateSecret(principal.userId, params.id, overlapMs, metaOf(request))
      },
      {
        permission: 'webhooks:write',
        params: IdParam,
        ...optionalBody(Rotate),
        response: { 200: t.Object({ secret: t.String(), previousExpiresAt: t.Union([t.String(), t.Null()]) }), ...errors(404, 422) },
        detail: { summary: 'A new signing secret (shown once); the previous one also signs until the overlap ends (webhooks:write)' },
      },
    )
    .get(
      '/webhooks/:id/deliveries',
      async ({ params, query }) => {
        const limit = pageLimit(query.limit)
        const after = decodeCursor(d.cursorKey, query.cursor, isCursor)
        const rows = await webhooks.deliveries(params.id, { beforeId: after?.id, limit: limit + 1 })
        return pageOf(d.cursorKey, rows, limit, (last) => ({ id: last.id }))
      },
      {
        permission: 'webhooks:read',
        params: IdParam,
        query: t.Object(PageQuery, { additionalProperties: false }),
        response: { 200: t.Object({ items: t.Array(Delivery), nextCursor: t.Union([t.String(), t.Null()]) }), ...errors(404) },
        detail: { summary: 'The delivery log, newest first: attempts, status codes, next attempt, last error (webhooks:read)' },
      },
    )
    .post(
      '/webhooks/:id/deliveries/:deliveryId/retry',
      async ({ params, principal, request, set }) => {
        const out = await webhooks.retry(principal.userId, params.id, params.deliveryId, metaOf(request))
        set.status = 202
        return out
      },
      {
        permission: 'webhooks:write',
        params: DeliveryParams,
        response: { 202: Delivery, ...errors(404, 409) },
        detail: { summary: 'Queue one more attempt of a delivery now, with the same webhook-id (webhooks:write)' },
      },
    )
}
