/** Roles, the permission registry and the policy decision API. Each route names the permission it needs. */
import { Elysia, t, type AnyElysia } from 'elysia'
import { PERMISSIONS } from '../../lib/permissions'
import { errors, JsonInteger } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import { MAX_LEVEL, type RbacService } from './service'

const RoleName = t.String({ pattern: '^[a-z][a-z0-9_-]{1,31}$', minLength: 2, maxLength: 32 })
const Pattern = t.String({ minLength: 3, maxLength: 100 })
// A JSON integer only: `{"level":"5"}` is a 422 like any other wrong type (Elysia's `t.Integer` would convert it).
const Level = JsonInteger({ minimum: 0, maximum: MAX_LEVEL })

export const RoleSchema = t.Object({
  name: t.String(),
  level: t.Integer(),
  description: t.String(),
  builtin: t.Boolean(),
  mfaRequired: t.Boolean(),
  permissions: t.Array(t.String()),
  createdAt: t.String(),
  updatedAt: t.String(),
})

const CreateRole = t.Object(
  {
    name: RoleName,
    level: Level,
    permissions: t.Array(Pattern, { maxItems: 100 }),
    description: t.Optional(t.String({ maxLength: 500 })),
    mfaRequired: t.Optional(t.Boolean()),
  },
  { additionalProperties: false },
)

const PatchRole = t.Object(
  {
    name: t.Optional(RoleName),
    level: t.Optional(Level),
    permissions: t.Optional(t.Array(Pattern, { maxItems: 100 })),
    description: t.Optional(t.String({ maxLength: 500 })),
    mfaRequired: t.Optional(t.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)

const NameParam = t.Object({ name: t.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: false })

/** Routes under /v1/roles, /v1/permissions and /v1/authz; `auth` is the plugin providing the auth macros. */
export function rbacController(auth: AnyElysia, rbac: RbacService) {
  return new Elysia({ name: 'rbac', prefix: '/v1', detail: { tags: ['administration'] } })
    .use(auth as AuthMacros)
    .get('/roles', () => ({ items: rbac.listRoles(), nextCursor: null }), {
      permission: 'roles:read',
      response: { 200: t.Object({ items: t.Array(RoleSchema), nextCursor: t.Null() }) },
      detail: { summary: 'List roles with their permission patterns (roles:read)' },
    })
    .post(
      '/roles',
      async ({ body, principal, request, set }) => {
        set.status = 201
        return await rbac.createRole(principal, body, metaOf(request))
      },
      {
        permission: 'roles:write',
        body: CreateRole,
        response: { 201: RoleSchema, ...errors(409) },
        detail: { summary: 'Create a role below your own level, holding only permissions you hold (roles:write)' },
      },
    )
    .patch('/roles/:name', async ({ body, params, principal, request }) => await rbac.patchRole(principal, params.name, body, metaOf(request)), {
      permission: 'roles:write',
      params: NameParam,
      body: PatchRole,
      response: { 200: RoleSchema, ...errors(404, 409) },
      detail: { summary: 'Change a role below your own level; built-in names are fixed (roles:write)' },
    })
    .delete(
      '/roles/:name',
      async ({ params, query, principal, request, set }) => {
        await rbac.deleteRole(principal, params.name, query.reassign, metaOf(request))
        set.status = 204
        return null
      },
      {
        permission: 'roles:write',
        params: NameParam,
        query: t.Object({ reassign: t.Optional(t.String({ minLength: 1, maxLength: 32 })) }, { additionalProperties: false }),
        response: { 204: t.Null(), ...errors(404, 409) },
        detail: { summary: 'Delete a role; refused for built-ins and, without ?reassign=<role>, while assigned (roles:write)' },
      },
    )
    .get(
      '/permissions',
      () => ({ items: Object.entries(PERMISSIONS).map(([name, description]) => ({ name, description })), nextCursor: null }),
      {
        permission: 'roles:read',
        response: { 200: t.Object({ items: t.Array(t.Object({ name: t.String(), description: t.String() })), nextCursor: t.Null() }) },
        detail: { summary: 'The permission registry with descriptions (roles:read)' },
      },
    )
    .post('/authz/check', ({ body }) => rbac.check(body.userId, body.permission, body.resourceOwnerId), {
      permission: 'authz:check',
      body: t.Object(
        {
          userId: t.String({ minLength: 1, maxLength: 64 }),
          permission: t.String({ minLength: 3, maxLength: 100 }),
          resourceOwnerId: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
      response: { 200: t.Object({ allowed: t.Boolean(), reason: t.String() }) },
      detail: { summary: 'Policy decision: may this user do this (on a resource owned by someone)? (authz:check)' },
    })
}
