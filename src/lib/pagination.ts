/** Keyset pagination: `?limit=` (1–100, default 20) and an opaque, HMAC-signed `?cursor=`. */
import { t } from 'elysia'
import { sign, unsign } from './crypto'
import { badRequest } from './errors'

export const PageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: t.Optional(t.String({ minLength: 1, maxLength: 512 })),
}

/** Encodes a position (the last item's sort key) into an opaque cursor. */
export const encodeCursor = (key: Buffer, position: unknown): string => sign(key, JSON.stringify(position))

/** Decodes a cursor; a tampered or foreign cursor is 400 `invalid_cursor`. */
export function decodeCursor<T>(key: Buffer, cursor: string | undefined, check: (v: unknown) => v is T): T | undefined {
  if (cursor === undefined) return undefined
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
