/** `bulwark db copy`: moves a deployment between SQLite and PostgreSQL (src/db/pg/copy.ts does the work). */
import { SchemaTooNewError } from '../db/migrate'
import { copyDatabase, CopyError, maskEndpoint, parseEndpoint } from '../db/pg/copy'
import { CliError, usageError, type Command } from './command'
import { EXIT_SCHEMA_TOO_NEW } from './migrate'

export const dbCopyCommand: Command = {
  name: 'db copy',
  summary: 'copy every row between SQLite and PostgreSQL (either direction)',
  details: [
    'FROM and TO are sqlite:PATH or a postgres:// (postgresql://) URL. The target is migrated first and must be',
    'empty (a freshly migrated database) unless --force, which replaces its contents. Everything is copied in one',
    'transaction on the target, in foreign-key order, then row counts and checksums are compared with the source',
    'before COMMIT: on any difference nothing is written. Stop the servers writing to the source first.',
    'Exit codes: 0 copied, 1 refused or failed (nothing written), 3 a database is newer than this binary, 64 usage.',
  ].join('\n'),
  flags: [
    { name: 'from', value: 'FROM', required: true, doc: 'source: sqlite:PATH or postgres://…' },
    { name: 'to', value: 'TO', required: true, doc: 'target: sqlite:PATH or postgres://…' },
    { name: 'force', doc: 'replace the contents of a non-empty target' },
  ],
  run: async (input) => {
    let from, to
    try {
      from = parseEndpoint(String(input.flags.from))
      to = parseEndpoint(String(input.flags.to))
    } catch (e) {
      throw usageError(e instanceof CopyError ? e.message : 'FROM and TO must be sqlite:PATH or a postgres:// URL')
    }
    const started = performance.now()
    try {
      const r = await copyDatabase(from, to, { force: input.flags.force === true, log: (l) => process.stdout.write(`${l}\n`) })
      const total = r.tables.reduce((a, t) => a + t.rows, 0)
      process.stdout.write(`copied ${total} rows in ${r.tables.length} tables from ${maskEndpoint(String(input.flags.from))} to ${maskEndpoint(String(input.flags.to))}, counts and checksums verified (${Math.round(performance.now() - started)} ms)\n`)
      return 0
    } catch (e) {
      if (e instanceof SchemaTooNewError) throw new CliError([e.message], EXIT_SCHEMA_TOO_NEW)
      if (e instanceof CopyError) throw new CliError([`db copy: ${e.message}`], 1)
      const msg = e instanceof Error ? e.message : String(e)
      throw new CliError([`db copy failed, nothing was written: ${msg.replace(/\/\/([^:@/]*):[^@/]*@/g, '//$1:********@').slice(0, 300)}`], 1)
    }
  },
}
