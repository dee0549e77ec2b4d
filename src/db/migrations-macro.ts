/**
 * A Bun macro: runs at bundle time (and at transpile time under `bun run`/`bun test`) and inlines the
 * SQL migrations of drizzle/ into the code, so the compiled binary migrates with no files beside it.
 */
import { readMigrationFiles } from 'drizzle-orm/migrator'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export interface EmbeddedMigration {
  tag: string
  when: number
  hash: string
  sql: string[]
}

export function embeddedMigrations(): EmbeddedMigration[] {
  const folder = join(import.meta.dir, '..', '..', 'drizzle')
  const journal = JSON.parse(readFileSync(join(folder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string; when: number }[]
  }
  const files = readMigrationFiles({ migrationsFolder: folder })
  return files.map((m, i) => ({ tag: journal.entries[i]!.tag, when: m.folderMillis, hash: m.hash, sql: m.sql }))
}
