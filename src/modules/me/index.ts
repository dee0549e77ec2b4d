/** The signed-in user: profile, password change, sessions and own security events. */
import { Elysia, t } from 'elysia'
import type { Config } from '../../config'
import { AppError, notFound, unauthorized } from '../../lib/errors'
import { decodeCursor, pageLimit, PageQuery, pageOf } from '../../lib/pagination'
import { errors, IdParam, NoContent, Password, JsonInteger } from '../../lib/schemas'
import type { AuthPlugin } from '../../plugins/auth'
import { metaOf } from '../../plugins/request-context'
import type { AuditService } from '../audit/service'
import type { AuthService } from '../auth/service'
import type { SessionService } from '../sessions/service'
import type { LockoutService } from '../lockout/service'
import type { MeProfile } from './store'

export interface MeControllerDeps {
  config: Config
  cursorKey: Buffer
  auth: AuthService
  sessions: SessionService
  audit: AuditService
  /** The user's shown columns and which second factors they have (./store.ts). */
  profile(userId: string): Promise<MeProfile | undefined>
  /** Checks a TOTP code of the user (replay-protected). */
  verifyTotp(userId: string, code: string): Promise<boolean>
  lockout: Pick<LockoutService, 'isLocked' | 'recordFailure' | 'recordSuccess'>
}

const MeSchema = t.Object({
  id: t.String(),
  email: t.String(),
  name: t.Union([t.String(), t.Null()]),
  emailVerified: t.Boolean(),
  createdAt: t.String(),
  roles: t.Array(t.String()),
  permissions: t.Array(t.String()),
  mfa: t.Object({ totp: t.Boolean(), passkeys: JsonInteger() }),
})

const SessionSchema = t.Object({
  id: t.String(),
  createdAt: t.String(),
  lastSeenAt: t.String(),
  expiresAt: t.String(),
  ip: t.Union([t.String(), t.Null()]),
  userAgent: t.Union([t.String(), t.Null()]),
  current: t.Boolean(),
})

export const EventSchema = t.Object({
  id: JsonInteger(),
  type: t.String(),
  outcome: t.String(),
  actorId: t.Union([t.String(), t.Null()]),
  targetId: t.Union([t.String(), t.Null()]),
  ip: t.Union([t.String(), t.Null()]),
  userAgent: t.Union([t.String(), t.Null()]),
  requestId: t.Union([t.String(), t.Null()]),
  details: t.Union([t.Record(t.String(), t.Unknown()), t.Null()]),
  createdAt: t.String(),
})

const isEventCursor = (v: unknown): v is { id: number } => typeof v === 'object' && v !== null && Number.isInteger((v as { id: unknown }).id)

export function meController(authPlugin: AuthPlugin, d: MeControllerDeps) {
  const view = async (userId: string, roles: string[], permissions: string[]) => {
    const u = await d.profile(userId)
    if (!u) throw notFound()
    return {
      id: u.id,
      email: u.email,
      name: u.name,
      emailVerified: u.emailVerifiedAt !== null,
      createdAt: new Date(u.createdAt).toISOString(),
      roles,
      permissions,
      mfa: u.mfa,
    }
  }
  return new Elysia({ name: 'me-routes', prefix: '/v1/me', detail: { tags: ['me'] } })
    .use(authPlugin)
    .get('', ({ principal }) => view(principal.userId, principal.roles, principal.permissions), {
      auth: 'mfa-enrolment',
      response: { 200: MeSchema, ...errors(401, 429) },
      detail: { summary: 'The signed-in user, with roles, effective permissions and active factors' },
    })
    .patch(
      '',
      async ({ principal, body }) => {
        await d.auth.updateName(principal.userId, body.name)
        return view(principal.userId, principal.roles, principal.permissions)
      },
      {
        auth: true,
        body: t.Object({ name: t.Union([t.String({ minLength: 1, maxLength: 100 }), t.Null()]) }, { additionalProperties: false }),
        response: { 200: MeSchema, ...errors(400, 401, 415, 422, 429) },
        detail: { summary: 'Change the display name' },
      },
    )
    .post(
      '/password',
      async ({ principal, body, request, set }) => {
        await d.auth.changePassword(principal.userId, principal.sessionId, body.currentPassword, body.password, metaOf(request))
        set.status = 204
      },
      {
        auth: true,
        body: t.Object({ currentPassword: Password, password: Password }, { additionalProperties: false }),
        response: { 204: NoContent, ...errors(400, 401, 415, 422, 429) },
        detail: { summary: 'Change the password; ends every other session' },
      },
    )
    .post(
      '/reauthenticate',
      async ({ principal, body, request, set }) => {
        const meta = metaOf(request)
        const proofs = [body.password, body.totp].filter((p) => p !== undefined)
        if (proofs.length !== 1) throw new AppError(422, 'validation_failed', 'Send exactly one of password or totp.', { errors: [{ path: '/', message: 'Expected exactly one proof' }] })
        const kind = body.password !== undefined ? 'password' : 'mfa'
        const locked = (await d.lockout.isLocked(principal.userId, kind)).locked
        const ok = body.password !== undefined ? await d.auth.verifyPassword(principal.userId, body.password) : await d.verifyTotp(principal.userId, body.totp!)
        if (locked || !ok) {
          if (!locked) await d.lockout.recordFailure(principal.userId, kind, meta)
          await d.audit.record({ type: 'reauthentication', outcome: 'failure', actorId: principal.userId, targetId: principal.userId, details: { method: kind } }, meta)
          throw unauthorized('invalid_credentials', 'The proof is not correct.')
        }
        await d.lockout.recordSuccess(principal.userId, kind)
        await d.sessions.markAuthenticated(principal.sessionId, body.password !== undefined ? 'pwd' : 'otp')
        await d.audit.record({ type: 'reauthentication', outcome: 'success', actorId: principal.userId, targetId: principal.userId, details: { method: kind } }, meta)
        set.status = 204
      },
      {
        auth: 'mfa-enrolment',
        body: t.Object({ password: t.Optional(Password), totp: t.Optional(t.String({ minLength: 6, maxLength: 8, pattern: '^[0-9]+$' })) }, { additionalProperties: false }),
        response: { 204: NoContent, ...errors(401, 415, 422, 429) },
        detail: { summary: 'Prove the password or a TOTP code again (step-up for removing factors and regenerating recovery codes)' },
      },
    )
    .get('/sessions', async ({ principal }) => ({ items: await d.sessions.list(principal.userId, principal.sessionId) }), {
      auth: 'mfa-enrolment',
      response: { 200: t.Object({ items: t.Array(SessionSchema) }), ...errors(401, 429) },
      detail: { summary: 'Own live sessions: device, IP, created and last seen, which one is current' },
    })
    .delete(
      '/sessions/:id',
      async ({ principal, params, request, set }) => {
        const s = await d.sessions.getLive(params.id)
        if (!s || s.userId !== principal.userId) throw notFound('No such session.')
        await d.sessions.revoke(s.id, 'revoked_by_user')
        await d.audit.record({ type: 'session_revoked', outcome: 'success', actorId: principal.userId, targetId: principal.userId, details: { sessionId: s.id } }, metaOf(request))
        set.status = 204
      },
      {
        auth: 'mfa-enrolment',
        params: IdParam,
        response: { 204: NoContent, ...errors(401, 404, 422, 429) },
        detail: { summary: 'End one of your sessions' },
      },
    )
    .get(
      '/events',
      async ({ principal, query }) => {
        const limit = pageLimit(query.limit)
        const after = decodeCursor(d.cursorKey, query.cursor, isEventCursor)
        const items = await d.audit.list({ userId: principal.userId, beforeId: after?.id, limit: limit + 1 })
        return pageOf(d.cursorKey, items, limit, (last) => ({ id: last.id }))
      },
      {
        auth: 'mfa-enrolment',
        query: t.Object(PageQuery, { additionalProperties: false }),
        response: { 200: t.Object({ items: t.Array(EventSchema), nextCursor: t.Union([t.String(), t.Null()]) }), ...errors(400, 401, 422, 429) },
        detail: { summary: 'Own security events, newest first' },
      },
    )
}
