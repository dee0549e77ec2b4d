/**
 * `users.updated_at` as the row's version: every write to a column the users list shows sets it to `now`, or to
 * one past its old value when that is not earlier (two writes in one millisecond, or a clock that stepped back),
 * so each such write changes it. The list's view cache (admin-service.ts) trusts an entry only while the row's
 * `updated_at` still equals the one it was rendered from.
 */
import { sql, type SQL } from 'drizzle-orm'
import { users } from '../../db/tables'

export function nextUpdatedAt(now: number): SQL<number> {
  // CAST: PostgreSQL infers a bound parameter's type from its context, which a CASE branch does not give.
  return sql<number>`CASE WHEN ${users.updatedAt} >= CAST(${now} AS BIGINT) THEN ${users.updatedAt} + 1 ELSE CAST(${now} AS BIGINT) END`
}
