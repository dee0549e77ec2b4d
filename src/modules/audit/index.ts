/** The audit log and admin statistics (both need `audit:read`). */
import { Elysia, t, type TSchema } from 'elysia'
import { unprocessable } from '../../lib/errors'
import { decodeCursor, pageLimit, PageQuery, pageOf } from '../../lib/pagination'
import { errors, JsonInteger } from '../../lib/schemas'
import { NO_COMPRESS_HEADER } from '../../plugins/compression'
import type { AuthMacros } from '../../plugins/auth-macros'
import { EventSchema } from '../me'
import { parseHead, type ExpectedHead } from './chain'
import { exportStream, parseInstant } from './export'
import type { AuditService } from './service'

const Nullable = <T extends TSchema>(s: T) => t.Union([s, t.Null()])

/** The verification report (src/modules/audit/chain.ts). */
const VerifyReportSchema = t.Object({
  intact: t.Boolean(),
  events: JsonInteger({ description: 'chained events checked' }),
  unchainedEvents: JsonInteger({ description: 'events written before hash chaining began (not covered)' }),
  chains: t.Array(
    t.Object({
      chainId: t.String(),
      firstPosition: JsonInteger(),
      pruned: t.Boolean({ description: 'older positions were removed by retention' }),
      headPosition: JsonInteger(),
      headEventId: JsonInteger(),
      headHash: t.String({ description: 'store this outside Bulwark to detect a rewritten or truncated chain' }),
      headCreatedAt: t.String(),
      events: JsonInteger(),
    }),
  ),
  firstBroken: Nullable(
    t.Object({
      chainId: Nullable(t.String()),
      eventId: Nullable(JsonInteger()),
      position: Nullable(JsonInteger()),
      reason: t.Union([
        t.Literal('hash_mismatch'),
        t.Literal('prev_hash_mismatch'),
        t.Literal('missing_events'),
        t.Literal('out_of_order'),
        t.Literal('unchained_event'),
        t.Literal('head_mismatch'),
        t.Literal('head_missing'),
      ]),
      detail: t.String(),
    }),
  ),
})

const TypeFilter = t.String({ minLength: 1, maxLength: 64, pattern: '^[a-z_]+$' })

const isEventCursor = (v: unknown): v is { id: number } => typeof v === 'object' && v !== null && Number.isInteger((v as { id: unknown }).id)

const DAY = 86_400_000

/** An ISO 8601 date or date-time to epoch ms; 422 naming the parameter otherwise. */
function instant(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const ms = parseInstant(value)
  if (Number.isNaN(ms)) throw unprocessable('validation_failed', 'The request query string is not valid.', [{ path: `/${name}`, message: 'Expected an ISO 8601 date or date-time' }])
  return ms
}

export function auditController(auth: AuthMacros, audit: AuditService, d: { cursorKey: Buffer; now: () => number }) {
  return new Elysia({ name: 'audit-routes', detail: { tags: ['audit'] } })
    .use(auth)
    .get(
      '/v1/audit',
      async ({ query }) => {
        const limit = pageLimit(query.limit)
        const after = decodeCursor(d.cursorKey, query.cursor, isEventCursor)
        const items = await audit.list({
          type: query.type,
          userId: query.userId,
          since: instant(query.since, 'since'),
          until: instant(query.until, 'until'),
          beforeId: after?.id,
          limit: limit + 1,
        })
        return pageOf(d.cursorKey, items, limit, (last) => ({ id: last.id }))
      },
      {
        permission: 'audit:read',
        query: t.Object(
          {
            ...PageQuery,
            type: t.Optional(TypeFilter),
            userId: t.Optional(t.String({ format: 'uuid', maxLength: 36 })),
            since: t.Optional(t.String({ maxLength: 40 })),
            until: t.Optional(t.String({ maxLength: 40 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: t.Object({ items: t.Array(EventSchema), nextCursor: t.Union([t.String(), t.Null()]) }), ...errors(400, 401, 403, 422, 429) },
        detail: { summary: 'Security events, newest first; filter by type, user (actor or target) and time' },
      },
    )
    .get(
      '/v1/audit/verify',
      ({ query }) => {
        const given = query.head ? query.head.split(',') : []
        const heads = given.map(parseHead)
        const bad = heads.findIndex((h) => h === undefined)
        if (bad >= 0) throw unprocessable('validation_failed', 'The request query string is not valid.', [{ path: '/head', message: `Entry ${bad + 1} is not chainId:position:hash` }])
        return audit.verify(heads as ExpectedHead[])
      },
      {
        permission: 'audit:read',
        query: t.Object({ head: t.Optional(t.String({ maxLength: 2400, description: 'comma-separated chain heads stored earlier, each chainId:position:hash (at most 20)' })) }, { additionalProperties: false }),
        response: { 200: VerifyReportSchema, ...errors(401, 403, 422, 429) },
        detail: { summary: 'Checks the hash chains of the audit trail (and heads stored earlier); reports the first broken link and each chain head' },
      },
    )
    .get(
      '/v1/audit/export',
      ({ query }) => {
        const since = instant(query.since, 'since')
        const until = instant(query.until, 'until')
        const chunks = audit.export({ since, until, type: query.type })
        return new Response(exportStream(chunks), {
          headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', [NO_COMPRESS_HEADER]: '1' },
        })
      },
      {
        permission: 'audit:read',
        query: t.Object({ type: t.Optional(TypeFilter), since: t.Optional(t.String({ maxLength: 40 })), until: t.Optional(t.String({ maxLength: 40 })) }, { additionalProperties: false }),
        response: {
          200: t.String({ description: 'NDJSON: one event per line, oldest first, with id, chainId, seq, prevHash and hash', contentMediaType: 'application/x-ndjson' }),
          ...errors(401, 403, 422, 429),
        },
        detail: { summary: 'Streams security events as NDJSON for a SIEM, oldest first; filter by type and time (since/until inclusive, ISO 8601)' },
      },
    )
    .get('/v1/admin/stats', () => audit.stats(d.now() - 30 * DAY), {
      permission: 'audit:read',
      response: {
        200: t.Object({
          usersByStatus: t.Record(t.String(), JsonInteger()),
          usersByRole: t.Record(t.String(), JsonInteger()),
          loginsPerDay: t.Array(t.Object({ day: t.String(), logins: JsonInteger(), failures: JsonInteger() })),
        }),
        ...errors(401, 403, 429),
      },
      detail: { summary: 'Users by role and status; sign-ins and failures per day over the last 30 days' },
    })
}
