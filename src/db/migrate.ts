/**
 * Applies the embedded migrations in one transaction, recording them in drizzle's own
 * `__drizzle_migrations` table (so drizzle-kit tooling agrees). Applying twice is a no-op; a database
 * that has migrations this binary does not know is refused rather than half-understood.
 */
import type { Database } from 'bun:sqlite'
import { embeddedMigrations } from './migrations-macro' with { type: 'macro' }
import type { EmbeddedMigration } from './migrations-macro'

export const MIGRATIONS: EmbeddedMigration[] = embeddedMigrations()

export class SchemaTooNewError extends Error {
  constructor(readonly dbVersion: number, readonly binaryVersion: number) {
    super(
      `the database was migrated by a newer Bulwark (schema ${dbVersion}, this binary knows up to ${binaryVersion}); ` +
        'run the newer binary or restore a backup',
    )
  }
}

export interface MigrateResult {
  applied: string[]
  current: number
}

export function migrate(sqlite: Database, migrations: EmbeddedMigration[] = MIGRATIONS): MigrateResult {
  sqlite.run('CREATE TABLE IF NOT EXISTS "__drizzle_migrations" (id INTEGER PRIMARY KEY, hash text NOT NULL, created_at numeric)')
  const rows = sqlite.query<{ hash: string; created_at: number }, []>('SELECT hash, created_at FROM "__drizzle_migrations" ORDER BY created_at').all()
  const known = new Map(migrations.map((m) => [m.hash, m]))
  const latest = migrations.at(-1)?.when ?? 0
  const unknown = rows.filter((r) => !known.has(r.hash) && Number(r.created_at) >= latest)
  if (unknown.length > 0 || rows.some((r) => Number(r.created_at) > latest)) {
    throw new SchemaTooNewError(rows.length, migrations.length)
  }
  const last = rows.length ? Math.max(...rows.map((r) => Number(r.created_at))) : -1
  const pending = migrations.filter((m) => m.when > last)
  if (pending.length === 0) return { applied: [], current: rows.length }
  const insert = sqlite.prepare('INSERT INTO "__drizzle_migrations" (hash, created_at) VALUES (?, ?)')
  sqlite.transaction(() => {
    for (const m of pending) {
      for (const stmt of m.sql) if (stmt.trim()) sqlite.run(stmt)
      insert.run(m.hash, m.when)
    }
  }).immediate()
  return { applied: pending.map((m) => m.tag), current: rows.length + pending.length }
}
