/** TypeBox schemas shared across controllers: problem documents, pagination, ids. */
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { t, type TSchema } from 'elysia'
import { AppError } from './errors'

export const Problem = t.Object(
  {
    type: t.String(),
    title: t.String(),
    status: Type.Integer(),
    detail: t.String(),
    code: t.String(),
    requestId: t.String(),
    errors: t.Optional(t.Array(t.Object({ path: t.String(), message: t.String() }))),
  },
  { additionalProperties: true, description: 'RFC 9457 problem document' },
)

/** Marks a response schema as the problem document; the OpenAPI document shows it as `#/components/schemas/Problem`. */
export const PROBLEM_MARK = 'x-problem'

/**
 * Response-map entries for a route's own error statuses (`...errors(404, 409)`), each a problem document.
 * The statuses every route of a kind shares (429, 401 with auth, 400/413/415 with a body, …) are added to
 * the document by src/plugins/openapi-document.ts, so a route lists only what its handler or service throws.
 */
export function errors(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const s of statuses) out[s] = t.Object(Problem.properties, { additionalProperties: true, [PROBLEM_MARK]: true })
  return out
}

/**
 * Route options for a JSON body that may be left out (`...optionalBody(Schema)`). Elysia validates an
 * optional body only when it is a non-empty object, so `7`, `[]` or `"x"` reached the handler as if no
 * body had been sent (found by test/binary/fuzz.test.ts). Absent, `null` and `{}` still mean "no body";
 * anything else must match the schema, else 422 like every other body.
 */
export function optionalBody<T extends TSchema>(schema: T) {
  return {
    body: t.Optional(schema),
    beforeHandle: ({ body }: { body: unknown }) => {
      if (body === undefined || body === null) return // an empty body; a literal `null` was refused by strict-input
      if (typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0) return
      if (!Value.Check(schema, body)) {
        const errors = [...Value.Errors(schema, body)].slice(0, 20).map((e) => ({ path: e.path || '/', message: e.message.slice(0, 200) }))
        throw new AppError(422, 'validation_failed', 'The request body is not valid.', { errors })
      }
    },
  }
}

/**
 * An integer in a JSON body: TypeBox's own, so `"5"` is refused. Elysia's `t.Integer` also takes a numeric
 * string (even `" 5"`), which suits query strings but let bodies disagree with their documented type
 * (found by test/binary/fuzz.test.ts). Query and path numbers keep `t.Numeric`/`t.Integer`.
 */
export const JsonInteger = (options: { minimum?: number; maximum?: number; description?: string } = {}) => Type.Integer(options)

export const NoContent = t.Void({ description: 'No content' })

export const IdParam = t.Object({ id: t.String({ format: 'uuid', maxLength: 36 }) }, { additionalProperties: false })

/** Email input: bounded here; trimmed, normalised and format-checked by the service (`normalizeEmail`). */
export const Email = t.String({ minLength: 3, maxLength: 254, description: 'email address (trimmed, NFKC-normalised, lower-cased)' })

/** Password input: bounded here, policy-checked by the service (length counted after NFKC). */
export const Password = t.String({ minLength: 1, maxLength: 1024 })

/** Opaque single-use tokens from mails and refresh tokens. */
export const OpaqueToken = t.String({ minLength: 20, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' })
