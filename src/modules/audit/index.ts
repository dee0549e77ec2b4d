/** The audit log and admin statistics (both need `audit:read`). */
import { Elysia, t } from 'elysia'
import { unprocessable } from '../../lib/errors'
import { decodeCursor, pageLimit, PageQuery, pageOf } from '../../lib/pagination'
import { errors } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { EventSchema } from '../me'
import type { AuditService } from './service'

const isEventCursor = (v: unknown): v is { id: number } => typeof v === 'object' && v !== null && Number.isInteger((v as { id: unknown }).id)

const DAY = 86_400_000

/** An ISO 8601 date or date-time to epoch ms; 422 naming the parameter otherwise. */
function instant(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const ms = Date.parse(value)
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(ms)) throw unprocessable('validation_failed', 'The request query string is not valid.', [{ path: `/${name}`, message: 'Expected an ISO 8601 date or date-time' }])
  return ms
}

export function auditController(auth: AuthMacros, audit: AuditService, d: { cursorKey: Buffer; now: () => number }) {
  return new Elysia({ name: 'audit-routes', detail: { tags: ['audit'] } })
    .use(auth)
    .get(
      '/v1/audit',
      ({ query }) => {
        const limit = pageLimit(query.limit)
        const after = decodeCursor(d.cursorKey, query.cursor, isEventCursor)
        const items = audit.list({
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
            type: t.Optional(t.String({ minLength: 1, maxLength: 64, pattern: '^[a-z_]+$' })),
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
    .get('/v1/admin/stats', () => audit.stats(d.now() - 30 * DAY), {
      permission: 'audit:read',
      response: {
        200: t.Object({
          usersByStatus: t.Record(t.String(), t.Integer()),
          usersByRole: t.Record(t.String(), t.Integer()),
          loginsPerDay: t.Array(t.Object({ day: t.String(), logins: t.Integer(), failures: t.Integer() })),
        }),
        ...errors(401, 403, 429),
      },
      detail: { summary: 'Users by role and status; sign-ins and failures per day over the last 30 days' },
    })
}
