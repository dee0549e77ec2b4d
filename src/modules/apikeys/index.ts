/** Routes of API keys: own keys under /v1/me/api-keys, everyone's under /v1/api-keys (apikeys:read / apikeys:write). */
import { Elysia, t, type AnyElysia } from 'elysia'
import { decodeCursor, pageLimit, PageQuery, pageOf } from '../../lib/pagination'
import { errors, IdParam } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import type { ApiKeyService } from './service'

const ApiKeySchema = t.Object({
  id: t.String(),
  name: t.String(),
  userId: t.String(),
  hint: t.String({ description: 'the first characters of the key, to recognise it' }),
  permissions: t.Union([t.Array(t.String()), t.Null()], { description: "null: all of the owner's permissions" }),
  createdAt: t.String(),
  expiresAt: t.Union([t.String(), t.Null()]),
  lastUsedAt: t.Union([t.String(), t.Null()]),
  revokedAt: t.Union([t.String(), t.Null()]),
})
const CreatedKeySchema = t.Composite([ApiKeySchema, t.Object({ key: t.String({ description: 'the key itself, shown only in this answer' }) })])
const Page = t.Object({ items: t.Array(ApiKeySchema), nextCursor: t.Union([t.String(), t.Null()]) })
const CreateKey = t.Object(
  {
    name: t.String({ minLength: 1, maxLength: 100 }),
    permissions: t.Optional(t.Array(t.String({ minLength: 3, maxLength: 100 }), { maxItems: 100 })),
    expiresIn: t.Optional(t.String({ minLength: 2, maxLength: 8, pattern: '^[1-9][0-9]{0,5}[mhd]$', description: 'a duration such as 30d, 12h, 90m; at most 365d; default 90d' })),
  },
  { additionalProperties: false },
)
const isCursor = (v: unknown): v is { id: string } => typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string'

export function apiKeysController(auth: AnyElysia, keys: ApiKeyService, cursorKey: Buffer) {
  const page = async (userId: string | undefined, query: { limit?: number; cursor?: string }) => {
    const limit = pageLimit(query.limit)
    const after = decodeCursor(cursorKey, query.cursor, isCursor)
    const rows = await keys.list(userId, limit + 1, after?.id)
    return pageOf(cursorKey, rows.map((r) => keys.view(r)), limit, (last) => ({ id: last.id }))
  }
  return new Elysia({ name: 'apikeys', prefix: '/v1', detail: { tags: ['api keys'] } })
    .use(auth as AuthMacros)
    .get('/me/api-keys', async ({ principal, query }) => await page(principal.userId, query), {
      auth: true,
      query: t.Object(PageQuery, { additionalProperties: false }),
      response: { 200: Page, ...errors(400) },
      detail: { summary: 'Your API keys (metadata only)' },
    })
    .post(
      '/me/api-keys',
      async ({ principal, body, request, set }) => {
        set.status = 201
        set.headers['cache-control'] = 'no-store'
        return await keys.create(principal, body, metaOf(request))
      },
      {
        auth: true,
        body: CreateKey,
        response: { 201: CreatedKeySchema, ...errors(409) },
        detail: { summary: 'Create an API key (`bwk_…`, shown once) holding at most your own permissions' },
      },
    )
    .delete(
      '/me/api-keys/:id',
      async ({ principal, params, request, set }) => {
        await keys.revoke(principal.userId, params.id, principal.userId, metaOf(request))
        set.status = 204
        return null
      },
      { auth: true, params: IdParam, response: { 204: t.Null(), ...errors(404) }, detail: { summary: 'Revoke one of your API keys' } },
    )
    .get('/api-keys', async ({ query }) => await page(undefined, query), {
      permission: 'apikeys:read',
      query: t.Object(PageQuery, { additionalProperties: false }),
      response: { 200: Page, ...errors(400) },
      detail: { summary: "Everyone's API keys, metadata only (apikeys:read)", tags: ['administration'] },
    })
    .delete(
      '/api-keys/:id',
      async ({ principal, params, request, set }) => {
        await keys.revoke(principal.userId, params.id, undefined, metaOf(request))
        set.status = 204
        return null
      },
      { permission: 'apikeys:write', params: IdParam, response: { 204: t.Null(), ...errors(404) }, detail: { summary: "Revoke anyone's API key (apikeys:write)", tags: ['administration'] } },
    )
}
