/** `bulwark migrate`: applies the embedded migrations and exits (3 when the database is newer than this binary). */
import { openDatabase } from '../db/client'
import { SchemaTooNewError } from '../db/migrate'
import { CliError, type Command } from './command'
import { configOrExit } from './config-or-exit'

export const EXIT_SCHEMA_TOO_NEW = 3

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply database migrations and exit',
  details: 'Creates the database (and its folder) when missing. Exits 3 when the database was migrated by a newer Bulwark.',
  run: () => {
    const c = configOrExit()
    try {
      const h = openDatabase(c.dbPath)
      process.stdout.write(h.migration.applied.length ? `applied ${h.migration.applied.join(', ')}\n` : `database is up to date (${h.migration.current} migrations)\n`)
      h.close()
      return 0
    } catch (e) {
      if (e instanceof SchemaTooNewError) throw new CliError([e.message], EXIT_SCHEMA_TOO_NEW)
      throw e
    }
  },
}
