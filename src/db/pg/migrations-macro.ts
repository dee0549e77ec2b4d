/**
 * A Bun macro (like src/db/migrations-macro.ts): inlines the PostgreSQL migrations of drizzle/pg/ into the
 * code at bundle time, so the compiled binary migrates a PostgreSQL database with no files beside it.
 */
import { readMigrationFiles } from 'drizzle-orm/migrator'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { EmbeddedMigration } from '../migrations-macro'

export function embeddedPgMigrations(): EmbeddedMigration[] {
  const folder = join(import.meta.dir, '..', '..', '..', 'drizzle', 'pg')
  const journal = JSON.parse(readFileSync(join(folder, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] }
  const files = readMigrationFiles({ migrationsFolder: folder })
  return files.map((m, i) => ({ tag: journal.entries[i]!.tag, when: m.folderMillis, hash: m.hash, sql: m.sql }))
}
