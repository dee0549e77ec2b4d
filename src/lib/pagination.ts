/** Keyset pagination: `?limit=` (1–100, default 20) and an opaque, HMAC-signed `?cursor=`. */
import { t } from 'elysia'
import { sign, unsign } from './crypto'
import { badRequest, unprocessable } from './errors'

export const DEFAULT_LIMIT = 20
export const MAX_LIMIT = 100
export const MAX_CURSOR = 512

export const PageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT })),
  cursor: t.Optional(t.String({ minLength: 1, maxLength: MAX_CURSOR })),
}

/**
 * The page size of a list request: 20 when absent, else an integer from 1 to 100 (a number, or a string of
 * decimal digits), otherwise 422 `validation_failed`. The second line of defence behind the query schema:
 * when a build stops the schema from checking (identifier minification did), `?limit=0`, `-1`, `1.5` or
 * `100000` still never reach SQL.
 */
export function pageLimit(value: unknown): number {
  if (value === undefined) return DEFAULT_LIMIT
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^[0-9]{1,3}$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) {
    throw unprocessable('validation_failed', 'The request query string is not valid.', [{ path: '/limit', message: `Expected an integer from 1 to ${MAX_LIMIT}` }])
  }
  return n
}

/** Encodes a position (the last item's sort key) into an opaque cursor. */
export const encodeCursor = (key: Buffer, position: unknown): string => sign(key, JSON.stringify(position))

/** Decodes a cursor; a tampered or foreign cursor is 400 `invalid_cursor`. */
export function decodeCursor<T>(key: Buffer, cursor: string | undefined, check: (v: unknown) => v is T): T | undefined {
  if (cursor === undefined) return undefined
  if (typeof cursor !== 'string' || cursor.length < 1 || cursor.length > MAX_CURSOR) throw badRequest('invalid_cursor', 'The cursor is not valid.')
  const raw = unsign(key, cursor)
  let value: unknown
  try {
    value = raw === undefined ? undefined : JSON.parse(raw)
  } catch {
    value = undefined
  }
  if (value === undefined || !check(value)) throw badRequest('invalid_cursor', 'The cursor is not valid.')
  return value
}

/** A keyset page from `limit + 1` fetched rows: the first `limit`, and a cursor at the last one when more exist. */
export function pageOf<T>(key: Buffer, rows: T[], limit: number, position: (last: T) => unknown): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit)
  return { items, nextCursor: rows.length > limit ? encodeCursor(key, position(items.at(-1)!)) : null }
}
