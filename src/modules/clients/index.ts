/** OAuth client administration (API.md "Applications and services"). Each route names the permission it needs. */
import { Elysia, t, type AnyElysia } from 'elysia'
import { PageQuery, pageLimit } from '../../lib/pagination'
import { errors, optionalBody } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import { MAX_JWKS_KEYS, type ClientsService } from './service'

const Name = t.String({ minLength: 1, maxLength: 100 })
const RoleNames = t.Array(t.String({ minLength: 2, maxLength: 32, pattern: '^[a-z][a-z0-9_-]{1,31}$' }), { maxItems: 20 })
const Patterns = t.Array(t.String({ minLength: 3, maxLength: 100 }), { maxItems: 100 })
const Method = t.Union([t.Literal('client_secret_basic'), t.Literal('client_secret_post'), t.Literal('private_key_jwt')])
const Jwks = t.Object({ keys: t.Array(t.Record(t.String({ maxLength: 16 }), t.String({ maxLength: 2048 })), { minItems: 1, maxItems: MAX_JWKS_KEYS }) }, { additionalProperties: false, description: 'Public keys (JWKS) for private_key_jwt' })
const ClientIdParam = t.Object({ id: t.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) }, { additionalProperties: false })

export const ClientSchema = t.Object({
  clientId: t.String(),
  name: t.String(),
  authMethod: Method,
  roles: t.Array(t.String()),
  permissions: t.Array(t.String()),
  status: t.Union([t.Literal('active'), t.Literal('disabled')]),
  jwks: t.Nullable(t.Object({ keys: t.Array(t.Record(t.String(), t.String())) })),
  previousSecretExpiresAt: t.Nullable(t.String()),
  createdAt: t.String(),
  updatedAt: t.String(),
})

const CreateClient = t.Object(
  { name: Name, roles: t.Optional(RoleNames), permissions: t.Optional(Patterns), authMethod: t.Optional(Method), jwks: t.Optional(Jwks) },
  { additionalProperties: false },
)
const PatchClient = t.Object(
  { name: t.Optional(Name), roles: t.Optional(RoleNames), permissions: t.Optional(Patterns), status: t.Optional(t.Union([t.Literal('active'), t.Literal('disabled')])), jwks: t.Optional(Jwks) },
  { additionalProperties: false, minProperties: 1 },
)
const Rotate = t.Object({ overlap: t.Optional(t.String({ minLength: 1, maxLength: 16, pattern: '^[0-9]+(ms|s|m|h|d)?$', description: 'how long the previous secret keeps working (at most 7d; default 0)' })) }, { additionalProperties: false })

/** Routes under /v1/clients; `auth` is the plugin providing the auth macros. */
export function clientsController(auth: AnyElysia, clients: ClientsService) {
  return new Elysia({ name: 'clients', prefix: '/v1', detail: { tags: ['administration'] } })
    .use(auth as AuthMacros)
    .get('/clients', async ({ query }) => await clients.list(pageLimit(query.limit), query.cursor), {
      permission: 'clients:read',
      query: t.Object({ ...PageQuery }, { additionalProperties: false }),
      response: { 200: t.Object({ items: t.Array(ClientSchema), nextCursor: t.Nullable(t.String()) }) },
      detail: { summary: 'List OAuth clients, newest first (clients:read)' },
    })
    .post(
      '/clients',
      async ({ body, principal, request, set }) => {
        const r = await clients.create(principal, body, metaOf(request))
        set.status = 201
        set.headers['cache-control'] = 'no-store'
        return { clientId: r.clientId, clientSecret: r.clientSecret, client: r.client }
      },
      {
        permission: 'clients:write',
        body: CreateClient,
        response: { 201: t.Object({ clientId: t.String(), clientSecret: t.Nullable(t.String({ description: 'shown once; null for private_key_jwt' })), client: ClientSchema }), ...errors(404) },
        detail: { summary: 'Create an OAuth client holding roles below your level and permissions you hold (clients:write)' },
      },
    )
    .get('/clients/:id', async ({ params }) => await clients.get(params.id), {
      permission: 'clients:read',
      params: ClientIdParam,
      response: { 200: ClientSchema, ...errors(404) },
      detail: { summary: 'One OAuth client (clients:read)' },
    })
    .patch('/clients/:id', async ({ params, body, principal, request }) => await clients.patch(principal, params.id, body, metaOf(request)), {
      permission: 'clients:write',
      params: ClientIdParam,
      body: PatchClient,
      response: { 200: ClientSchema, ...errors(404) },
      detail: { summary: 'Rename, disable, re-role or re-key an OAuth client below your level (clients:write)' },
    })
    .delete(
      '/clients/:id',
      async ({ params, principal, request, set }) => {
        await clients.delete(principal, params.id, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'clients:write', params: ClientIdParam, response: { 204: t.Null(), ...errors(404) }, detail: { summary: 'Delete an OAuth client; its tokens stop working at once (clients:write)' } },
    )
    .post(
      '/clients/:id/secret',
      async ({ params, body, principal, request, set }) => {
        set.headers['cache-control'] = 'no-store'
        return await clients.rotateSecret(principal, params.id, body?.overlap, metaOf(request))
      },
      {
        permission: 'clients:write',
        params: ClientIdParam,
        ...optionalBody(Rotate),
        response: { 200: t.Object({ clientId: t.String(), clientSecret: t.String(), previousSecretExpiresAt: t.Nullable(t.String()) }), ...errors(404) },
        detail: { summary: 'A new client secret; the previous one keeps working for `overlap` (clients:write)' },
      },
    )
}
