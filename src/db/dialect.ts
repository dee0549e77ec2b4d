/**
 * What differs between database engines, in one place: services ask the dialect instead of matching
 * engine-specific messages or result shapes. Only the SQLite implementation exists; a PostgreSQL one
 * (affected-row counts from `rowCount`, unique violations as SQLSTATE 23505 with the constraint name) goes
 * beside it.
 */
export interface Dialect {
  readonly name: 'sqlite' | 'postgres'
  /** Rows changed by a drizzle `.run()` (typed `void` by drizzle on bun:sqlite, a Changes object at run time). */
  changes(result: unknown): number
  /** Whether `err` (or its cause) is a unique-constraint violation on `table.column`. */
  isUniqueViolation(err: unknown, table: string, column: string): boolean
}

const messages = (err: unknown): string[] => {
  const out: string[] = []
  let e: unknown = err
  for (let depth = 0; e instanceof Error && depth < 5; depth++) {
    out.push(e.message)
    e = e.cause
  }
  return out
}

/** bun:sqlite. */
export const sqliteDialect: Dialect = {
  name: 'sqlite',
  changes: (result) => (result as { changes?: number } | undefined)?.changes ?? 0,
  isUniqueViolation: (err, table, column) => messages(err).some((m) => m.includes(`UNIQUE constraint failed: ${table}.${column}`)),
}

/** The engine in use (SQLite today; chosen from the database URL once PostgreSQL lands). */
export const dialect: Dialect = sqliteDialect
