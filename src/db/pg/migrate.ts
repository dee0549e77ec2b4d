/**
 * Applies the embedded PostgreSQL migrations (drizzle/pg/) under a session advisory lock
 * (`pg_advisory_lock`, https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS), so
 * instances that start together migrate one after the other: the first applies, the others find nothing
 * pending. Recorded in drizzle's own `drizzle.__drizzle_migrations` table (drizzle-kit agrees); all pending
 * migrations run in one transaction. A database migrated by a newer binary is refused (SchemaTooNewError,
 * exit 3), as on SQLite.
 */
import type { SQL } from 'bun'
import { SchemaTooNewError, type MigrateResult } from '../migrate'
import type { EmbeddedMigration } from '../migrations-macro'
import { embeddedPgMigrations } from './migrations-macro' with { type: 'macro' }

export const PG_MIGRATIONS: EmbeddedMigration[] = embeddedPgMigrations()

/** The advisory lock key: a fixed 64-bit number, "bulwark\0" in ASCII. */
export const MIGRATION_LOCK_KEY = 0x62756c7761726b00n

export async function migratePg(sql: SQL, migrations: EmbeddedMigration[] = PG_MIGRATIONS): Promise<MigrateResult> {
  const conn = await sql.reserve()
  try {
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`
    try {
      await conn.unsafe('CREATE SCHEMA IF NOT EXISTS "drizzle"')
      await conn.unsafe('CREATE TABLE IF NOT EXISTS "drizzle"."__drizzle_migrations" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
      const rows = (await conn`SELECT hash, created_at FROM "drizzle"."__drizzle_migrations" ORDER BY created_at`) as { hash: string; created_at: string | number }[]
      const known = new Set(migrations.map((m) => m.hash))
      const latest = migrations.at(-1)?.when ?? 0
      if (rows.some((r) => Number(r.created_at) > latest || (!known.has(r.hash) && Number(r.created_at) >= latest))) {
        throw new SchemaTooNewError(rows.length, migrations.length)
      }
      const last = rows.length ? Math.max(...rows.map((r) => Number(r.created_at))) : -1
      const pending = migrations.filter((m) => m.when > last)
      if (pending.length === 0) return { applied: [], current: rows.length }
      await conn.begin(async (tx) => {
        for (const m of pending) {
          for (const stmt of m.sql) if (stmt.trim()) await tx.unsafe(stmt)
          await tx.unsafe('INSERT INTO "drizzle"."__drizzle_migrations" (hash, created_at) VALUES ($1, $2)', [m.hash, m.when])
        }
      })
      return { applied: pending.map((m) => m.tag), current: rows.length + pending.length }
    } finally {
      await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`.catch(() => {})
    }
  } finally {
    conn.release()
  }
}
