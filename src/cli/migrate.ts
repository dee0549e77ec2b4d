/** `bulwark migrate`: applies the embedded migrations and exits (3 when the database is newer than this binary). */
import { openStore } from '../db/client'
import { SchemaTooNewError } from '../db/migrate'
import { CliError, type Command } from './command'
import { configOrExit } from './config-or-exit'

export const EXIT_SCHEMA_TOO_NEW = 3

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply database migrations and exit',
  details:
    'Creates the SQLite database (and its folder) when missing; with BULWARK_DATABASE_URL, migrates that PostgreSQL database\n' +
    '(under its advisory lock). Exits 3 when the database was migrated by a newer Bulwark.',
  run: async () => {
    const c = configOrExit()
    try {
      const h = await openStore(c)
      process.stdout.write(h.migration.applied.length ? `applied ${h.migration.applied.join(', ')}\n` : `database is up to date (${h.migration.current} migrations)\n`)
      await h.close()
      return 0
    } catch (e) {
      if (e instanceof SchemaTooNewError) throw new CliError([e.message], EXIT_SCHEMA_TOO_NEW)
      throw e
    }
  },
}
