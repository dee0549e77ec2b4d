/** User administration routes (Administration table of API.md). Each route names the permission it needs. */
import { Elysia, t, type AnyElysia } from 'elysia'
import { PageQuery } from '../../lib/pagination'
import type { AuthMacros } from '../../plugins/auth-macros'
import { errors, JsonInteger } from '../../lib/schemas'
import { metaOf } from '../../plugins/request-context'
import type { RbacService } from '../rbac/service'
import type { UsersAdminService } from './admin-service'

const Status = t.Union([t.Literal('active'), t.Literal('disabled')])

export const UserSchema = t.Object({
  id: t.String(),
  email: t.String(),
  name: t.Nullable(t.String()),
  status: Status,
  emailVerified: t.Boolean(),
  roles: t.Array(t.String()),
  createdAt: t.String(),
})

const IdParam = t.Object({ id: t.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false })
const IdRoleParams = t.Object({ id: t.String({ minLength: 1, maxLength: 64 }), role: t.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: false })

const ListQuery = t.Object(
  {
    q: t.Optional(t.String({ maxLength: 254 })),
    role: t.Optional(t.String({ minLength: 1, maxLength: 32 })),
    status: t.Optional(Status),
    ...PageQuery,
  },
  { additionalProperties: false },
)

const PatchUser = t.Object(
  {
    name: t.Optional(t.Nullable(t.String({ minLength: 1, maxLength: 100 }))),
    status: t.Optional(Status),
  },
  { additionalProperties: false, minProperties: 1 },
)

const NoContent = { 204: t.Null() }

const FactorReset = t.Object({
  totp: t.Boolean({ description: 'an authenticator app (active or pending) was removed' }),
  passkeys: JsonInteger({ description: 'passkeys removed' }),
  recoveryCodes: JsonInteger({ description: 'unused recovery codes removed' }),
  sessionsEnded: JsonInteger(),
})

/** Routes under /v1/users; `auth` is the plugin providing the auth macros. */
export function usersController(auth: AnyElysia, services: { usersAdmin: UsersAdminService; rbac: RbacService }) {
  const { usersAdmin, rbac } = services
  return new Elysia({ name: 'users-admin', prefix: '/v1', detail: { tags: ['administration'] } })
    .use(auth as AuthMacros)
    .get('/users', ({ query }) => usersAdmin.list(query), {
      permission: 'users:read',
      query: ListQuery,
      response: { 200: t.Object({ items: t.Array(UserSchema), nextCursor: t.Nullable(t.String()) }) },
      detail: { summary: 'List users: q (email or name prefix), role, status; keyset pagination (users:read)' },
    })
    .get('/users/:id', ({ params }) => usersAdmin.get(params.id), {
      permission: 'users:read',
      params: IdParam,
      response: { 200: UserSchema },
      detail: { summary: 'One user (users:read)' },
    })
    .patch('/users/:id', async ({ params, body, principal, request }) => await usersAdmin.patch(principal, params.id, body, metaOf(request)), {
      permission: 'users:write',
      params: IdParam,
      body: PatchUser,
      response: { 200: UserSchema },
      detail: { summary: 'Rename, disable or enable a user below your level; disabling ends their sessions (users:write)' },
    })
    .post(
      '/users/:id/unlock',
      async ({ params, principal, request, set }) => {
        await usersAdmin.unlock(principal, params.id, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'users:write', params: IdParam, response: NoContent, detail: { summary: 'Lift the lockout of a user (users:write)' } },
    )
    .delete(
      '/users/:id',
      async ({ params, principal, request, set }) => {
        await usersAdmin.delete(principal, params.id, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'users:delete', params: IdParam, response: NoContent, detail: { summary: 'Delete a user and their personal data (users:delete)' } },
    )
    .put(
      '/users/:id/roles/:role',
      async ({ params, principal, request, set }) => {
        await rbac.grantRole(principal, params.id, params.role, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'roles:assign', params: IdRoleParams, response: NoContent, detail: { summary: 'Grant a role below your level (roles:assign)' } },
    )
    .delete(
      '/users/:id/roles/:role',
      async ({ params, principal, request, set }) => {
        await rbac.revokeRole(principal, params.id, params.role, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'roles:assign', params: IdRoleParams, response: NoContent, detail: { summary: 'Revoke a role below your level (roles:assign)' } },
    )
    .delete('/users/:id/mfa', async ({ params, principal, request }) => await usersAdmin.resetFactors(principal, params.id, metaOf(request)), {
      permission: 'users:write',
      params: IdParam,
      response: { 200: FactorReset, ...errors(401, 403, 404, 409, 422, 429) },
      detail: {
        summary: "Reset a user's second factors for account recovery: removes TOTP, recovery codes and passkeys, ends their sessions (owner only, needs a recent sign-in)",
      },
    })
    .delete(
      '/users/:id/sessions',
      async ({ params, principal, request, set }) => {
        await usersAdmin.endSessions(principal, params.id, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'sessions:revoke', params: IdParam, response: NoContent, detail: { summary: 'End every session of a user (sessions:revoke)' } },
    )
}
