/** Uploads (`/v1/files`) and the avatar (`PUT /v1/me/avatar`). */
import { Elysia, t } from 'elysia'
import { decodeCursor, pageLimit, encodeCursor, PageQuery } from '../../lib/pagination'
import { errors, IdParam, NoContent, JsonInteger } from '../../lib/schemas'
import type { AuthMacros } from '../../plugins/auth-macros'
import { metaOf } from '../../plugins/request-context'
import type { FilesService } from './service'

const FileSchema = t.Object({ id: t.String(), name: t.String(), type: t.String(), size: JsonInteger(), sha256: t.String(), createdAt: t.String() })
const Upload = t.Object({ file: t.File() }, { additionalProperties: false })
const isCursor = (v: unknown): v is { id: string } => typeof v === 'object' && v !== null && typeof (v as { id: unknown }).id === 'string'

/** RFC 6266 attachment with an ASCII fallback and the UTF-8 name. */
const disposition = (name: string) => `attachment; filename="${name.replace(/[^\x20-\x7e]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`

export function filesController(auth: AuthMacros, files: FilesService, d: { cursorKey: Buffer }) {
  return new Elysia({ name: 'files-routes', detail: { tags: ['files'] } })
    .use(auth)
    .post(
      '/v1/files',
      async ({ principal, body, request, set }) => {
        const view = await files.store(principal.userId, body.file, 'file', metaOf(request))
        set.status = 201
        return view
      },
      {
        permission: 'files:write:own',
        body: Upload,
        response: { 201: FileSchema, ...errors(400, 401, 403, 413, 415, 422, 429) },
        detail: { summary: 'Upload a file (multipart field `file`): png, jpeg, webp, gif or pdf, checked by contents and scanned' },
      },
    )
    .get(
      '/v1/files',
      async ({ principal, query }) => {
        const limit = pageLimit(query.limit)
        const after = decodeCursor(d.cursorKey, query.cursor, isCursor)
        const page = await files.list(principal, after?.id, limit)
        return { items: page.items, nextCursor: page.more && page.last ? encodeCursor(d.cursorKey, { id: page.last }) : null }
      },
      {
        permission: 'files:read:own',
        query: t.Object(PageQuery, { additionalProperties: false }),
        response: { 200: t.Object({ items: t.Array(FileSchema), nextCursor: t.Union([t.String(), t.Null()]) }), ...errors(400, 401, 403, 422, 429) },
        detail: { summary: 'Own files (everyone’s with files:read:any), keyset-paginated' },
      },
    )
    .get('/v1/files/:id', async ({ principal, params }) => files.view(await files.get(principal, params.id)), {
      permission: 'files:read:own',
      params: IdParam,
      response: { 200: FileSchema, ...errors(401, 403, 404, 422, 429) },
      detail: { summary: 'File metadata; 404 for a file you may not see (never 403)' },
    })
    .get(
      '/v1/files/:id/content',
      async ({ principal, params }) => {
        const row = await files.get(principal, params.id)
        return new Response(files.content(row), {
          headers: {
            'content-type': row.type,
            'content-length': String(row.size),
            'content-disposition': disposition(row.name),
            'x-content-type-options': 'nosniff',
            'content-security-policy': "sandbox; default-src 'none'",
            'cache-control': 'private, no-store',
          },
        })
      },
      {
        permission: 'files:read:own',
        params: IdParam,
        response: { 200: t.Any({ description: 'The bytes, as an attachment' }), ...errors(401, 403, 404, 422, 429) },
        detail: { summary: 'The file’s bytes, as an attachment in a sandbox' },
      },
    )
    .delete(
      '/v1/files/:id',
      async ({ principal, params, request, set }) => {
        await files.delete(principal, params.id, metaOf(request))
        set.status = 204
      },
      {
        permission: 'files:delete:own',
        params: IdParam,
        response: { 204: NoContent, ...errors(401, 403, 404, 422, 429) },
        detail: { summary: 'Delete a file (own, or any with files:delete:any)' },
      },
    )
    .put(
      '/v1/me/avatar',
      async ({ principal, body, request }) => files.store(principal.userId, body.file, 'avatar', metaOf(request)),
      {
        auth: true,
        body: Upload,
        response: { 200: FileSchema, ...errors(400, 401, 413, 415, 422, 429) },
        detail: { summary: 'Set the avatar (multipart field `file`): png, jpeg, webp or gif only; replaces the previous one' },
      },
    )
}
