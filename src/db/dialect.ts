/**
 * What differs between database engines, in one place: services ask the dialect (through `dialect` in
 * src/db/tables.ts, bound to the engine chosen at start) instead of matching engine-specific messages, result
 * shapes or SQL functions.
 */
import { sql, type SQL, type SQLWrapper } from 'drizzle-orm'

export interface Dialect {
  readonly name: 'sqlite' | 'postgres'
  /** Rows changed by an awaited insert/update/delete without `returning` (bun:sqlite: `{ changes }`; Bun SQL: `count`). */
  changes(result: unknown): number
  /** Whether `err` (or its cause) is a unique-constraint violation on `table.column`. */
  isUniqueViolation(err: unknown, table: string, column: string): boolean
  /**
   * The column, hidden from index selection: SQLite's planner would otherwise pick a low-selectivity index
   * (`users_status_id`) over the ordered scan (https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_);
   * PostgreSQL's cost-based planner needs no hint.
   */
  unindexed(column: SQLWrapper): SQL
  /**
   * The condition, marked as matching few rows: SQLite's planner then uses the column's index even when its
   * statistics (gathered on a small table, or while every row had the same value) say the value covers the
   * whole table (`unlikely`, https://www.sqlite.org/lang_corefunc.html#unlikely); PostgreSQL needs no hint.
   */
  selective(condition: SQL): SQL
  /** The UTC calendar day (`YYYY-MM-DD`) of an integer-milliseconds column. */
  utcDay(column: SQLWrapper): SQL
  /** Physical row order, a tiebreak for rows written in the same millisecond (SQLite `rowid`; PostgreSQL `ctid`). */
  readonly rowOrder: SQL
  /** A 0/1 integer for a boolean condition (for sums). */
  asInt(condition: SQL): SQL
}

const chain = (err: unknown): unknown[] => {
  const out: unknown[] = []
  let e: unknown = err
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    out.push(e)
    e = (e as { cause?: unknown }).cause
  }
  return out
}

/** bun:sqlite. */
export const sqliteDialect: Dialect = {
  name: 'sqlite',
  changes: (result) => (result as { changes?: number } | undefined)?.changes ?? 0,
  isUniqueViolation: (err, table, column) =>
    chain(err).some((e) => e instanceof Error && e.message.includes(`UNIQUE constraint failed: ${table}.${column}`)),
  unindexed: (column) => sql`+${column}`,
  selective: (condition) => sql`unlikely(${condition})`,
  utcDay: (column) => sql`strftime('%Y-%m-%d', ${column} / 1000, 'unixepoch')`,
  asInt: (condition) => sql`(${condition})`,
  rowOrder: sql`rowid`,
}

/**
 * PostgreSQL through Bun's SQL client: the affected-row count is the result's `count`; a unique violation is
 * SQLSTATE 23505 (https://www.postgresql.org/docs/current/errcodes-appendix.html) whose detail names the key
 * (`Key (email)=(…) already exists.`) on `table`.
 */
export const pgDialect: Dialect = {
  name: 'postgres',
  changes: (result) => Number((result as { count?: number } | undefined)?.count ?? 0),
  isUniqueViolation: (err, table, column) =>
    chain(err).some((e) => {
      const x = e as { errno?: unknown; code?: unknown; table?: unknown; detail?: unknown; constraint?: unknown }
      if (String(x.errno ?? x.code) !== '23505') return false
      if (x.table !== undefined && x.table !== table) return false
      const detail = typeof x.detail === 'string' ? x.detail : ''
      const constraint = typeof x.constraint === 'string' ? x.constraint : ''
      return detail.startsWith(`Key (${column})=`) || constraint === `${table}_${column}_unique` || constraint === `${table}_${column}_key`
    }),
  unindexed: (column) => sql`${column}`,
  selective: (condition) => condition,
  utcDay: (column) => sql`to_char(to_timestamp(${column} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
  asInt: (condition) => sql`(${condition})::int`,
  rowOrder: sql`ctid`,
}
