/** Roles, the permission registry and the policy decision API. Each route names the permission it needs. */
import { Elysia, t, type AnyElysia } from 'elysia'
import { errors, JsonInteger } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import { MAX_LEVEL, type RbacService } from './service'
import type { AppPermissionService } from './app-permissions'
import { MAX_BATCH, type AuthzCheckService } from './authz-check'

const RoleName = t.String({ pattern: '^[a-z][a-z0-9_-]{1,31}$', minLength: 2, maxLength: 32 })
const Pattern = t.String({ minLength: 3, maxLength: 100 })
// A JSON integer only: `{"level":"5"}` is a 422 like any other wrong type (Elysia's `t.Integer` would convert it).
const Level = JsonInteger({ minimum: 0, maximum: MAX_LEVEL })

export const RoleSchema = t.Object({
  name: t.String(),
  level: JsonInteger(),
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

const PermissionSchema = t.Object({ name: t.String(), description: t.String(), builtin: t.Boolean() })
const CheckResultSchema = t.Object({ allowed: t.Boolean(), reason: t.String() })
const CheckFields = {
  userId: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
  token: t.Optional(t.String({ minLength: 1, maxLength: 4096 })),
  permission: t.Optional(t.String({ minLength: 3, maxLength: 100 })),
  resourceOwnerId: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
}

const NameParam = t.Object({ name: t.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: false })

/** Routes under /v1/roles, /v1/permissions and /v1/authz; `auth` is the plugin providing the auth macros. */
export function rbacController(auth: AnyElysia, rbac: RbacService, appPermissions: AppPermissionService, authz: AuthzCheckService) {
  return new Elysia({ name: 'rbac', prefix: '/v1', detail: { tags: ['administration'] } })
    .use(auth as AuthMacros)
    .get('/roles', async () => ({ items: await rbac.listRoles(), nextCursor: null }), {
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
    .get('/permissions', async () => ({ items: await appPermissions.list(), nextCursor: null }), {
      permission: 'roles:read',
      response: { 200: t.Object({ items: t.Array(PermissionSchema), nextCursor: t.Null() }) },
      detail: { summary: 'The permission registry: built-in and application permissions, with descriptions (roles:read)' },
    })
    .post(
      '/permissions',
      async ({ body, principal, request, set }) => {
        set.status = 201
        return await appPermissions.create(principal, body, metaOf(request))
      },
      {
        permission: 'roles:write',
        body: t.Object(
          {
            name: t.String({ minLength: 3, maxLength: 65, pattern: '^[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$' }),
            description: t.Optional(t.String({ maxLength: 500 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: PermissionSchema, ...errors(409) },
        detail: { summary: "Register an application permission `resource:action`; Bulwark's own names and resources are refused (roles:write)" },
      },
    )
    .delete(
      '/permissions/:name',
      async ({ params, query, principal, request, set }) => {
        await appPermissions.delete(principal, params.name, query.cascade === 'true', metaOf(request))
        set.status = 204
        return null
      },
      {
        permission: 'roles:write',
        params: t.Object({ name: t.String({ minLength: 1, maxLength: 65 }) }, { additionalProperties: false }),
        query: t.Object({ cascade: t.Optional(t.Union([t.Literal('true'), t.Literal('false')])) }, { additionalProperties: false }),
        response: { 204: t.Null(), ...errors(404, 409) },
        detail: { summary: 'Delete an application permission; 409 permission_in_use while a role holds it unless ?cascade=true (roles:write)' },
      },
    )
    .post('/authz/check', async ({ body }) => await authz.answer(body), {
      permission: 'authz:check',
      body: t.Object(
        {
          ...CheckFields,
          checks: t.Optional(t.Array(t.Object(CheckFields, { additionalProperties: false }), { minItems: 1, maxItems: MAX_BATCH })),
        },
        { additionalProperties: false },
      ),
      response: { 200: t.Union([CheckResultSchema, t.Object({ results: t.Array(CheckResultSchema) })]) },
      detail: {
        summary: 'Policy decision for a user id or a token, one question or a batch of up to 100 (authz:check)',
        description: 'Give `userId` or `token` (an access token or API key of the subject) with `permission`, or `checks: [...]` of such questions. An invalid token answers `{allowed: false, reason: "invalid token"}`.',
      },
    })
}
