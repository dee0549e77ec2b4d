/**
 * `bulwark backup FILE`: a consistent copy of the live database while the server runs, made with SQLite's
 * `VACUUM INTO` (https://www.sqlite.org/lang_vacuum.html#vacuuminto), which reads one transaction's
 * snapshot, so concurrent writes are either wholly in the copy or not at all. The copy is written to a
 * temporary file created owner-only (0600) next to FILE, checked (`PRAGMA quick_check`), then renamed
 * into place; an existing FILE is refused unless `--force`.
 */
import { Database } from 'bun:sqlite'
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { ConfigError, loadConfig } from '../config'
import type { Command } from './command'

export const BACKUP_HELP = `Usage: bulwark backup [--force] FILE

Writes a consistent copy of the database (BULWARK_DB_PATH, default <data dir>/bulwark.sqlite) to FILE
while the server keeps running. FILE is created owner-only (0600); an existing FILE is refused unless
--force is given. The copy does not contain BULWARK_SECRET: keep it (or <data dir>/secret.key) too.

Restore: stop the server, remove bulwark.sqlite-wal and bulwark.sqlite-shm next to the database, copy
FILE over bulwark.sqlite (mode 0600), start the server.

Options:
  --force      replace FILE if it exists
  -h, --help   this text
`

/** Runs the command; returns the exit code (0 ok, 1 failed, 2 configuration, 64 usage). */
export function backupCommand(args: string[], env: Record<string, string | undefined> = process.env): number {
  const out = (s: string) => process.stdout.write(`${s}\n`)
  const err = (s: string) => process.stderr.write(`bulwark: ${s}\n`)
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(BACKUP_HELP)
    return 0
  }
  const force = args.includes('--force')
  const files = args.filter((a) => a !== '--force')
  if (files.length !== 1 || files[0]!.startsWith('-')) {
    err('usage: bulwark backup [--force] FILE  (bulwark backup --help)')
    return 64
  }
  let dbPath: string
  try {
    const config = loadConfig(env)
    if (config.pg) {
      err('BULWARK_DATABASE_URL is set: the database is PostgreSQL, which this command does not back up. Use pg_dump,')
      err('or `bulwark db copy --from "$BULWARK_DATABASE_URL" --to sqlite:FILE` for a consistent one-file copy.')
      return 1
    }
    dbPath = config.dbPath
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    for (const p of ['configuration is NOT valid:', ...e.problems.map((p) => `  - ${p}`)]) err(p)
    return 2
  }
  if (dbPath === ':memory:') {
    err('BULWARK_DB_PATH is :memory:; there is nothing on disk to back up')
    return 1
  }
  if (!existsSync(dbPath)) {
    err(`no database at ${dbPath}`)
    return 1
  }
  const target = resolve(files[0]!)
  if (existsSync(target) && !force) {
    err(`${target} exists; refusing to overwrite it (use --force to replace it)`)
    return 1
  }
  if (existsSync(target) && statSync(target).isDirectory()) {
    err(`${target} is a directory; name the backup file`)
    return 1
  }
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`)
  let src: Database | undefined
  try {
    // Created empty and owner-only first: VACUUM INTO accepts an empty file and keeps its mode.
    closeSync(openSync(tmp, 'wx', 0o600))
    src = new Database(dbPath, { readwrite: true, create: false })
    src.run('PRAGMA busy_timeout = 10000')
    src.prepare('VACUUM INTO ?').run(tmp)
    src.close()
    src = undefined
    chmodSync(tmp, 0o600)
    const check = new Database(tmp, { readonly: true })
    const ok = check.query<{ quick_check: string }, []>('PRAGMA quick_check').get()?.quick_check
    const users = check.query<{ n: number }, []>('SELECT count(*) AS n FROM users').get()?.n ?? 0
    const migrations = check.query<{ n: number }, []>('SELECT count(*) AS n FROM "__drizzle_migrations"').get()?.n ?? 0
    check.close()
    if (ok !== 'ok') throw new Error(`the copy failed its integrity check: ${ok}`)
    const fd = openSync(tmp, 'r')
    fsyncSync(fd)
    closeSync(fd)
    renameSync(tmp, target)
    out(`backup written to ${target} (${statSync(target).size} bytes, ${users} users, ${migrations} migrations)`)
    return 0
  } catch (e) {
    src?.close()
    rmSync(tmp, { force: true })
    err(`backup failed: ${(e as Error).message}`)
    return 1
  }
}

export const backupCmd: Command = {
  name: 'backup',
  summary: 'consistent copy of the live database to FILE (0600), while the server keeps running',
  details:
    'FILE is created owner-only (0600); an existing FILE is refused unless --force is given. The copy does not\n' +
    'contain BULWARK_SECRET: keep it (or <data dir>/secret.key) too.\n\n' +
    'Restore: stop the server, remove bulwark.sqlite-wal and bulwark.sqlite-shm next to the database, copy\n' +
    'FILE over bulwark.sqlite (mode 0600), start the server with the same BULWARK_SECRET.\n\n' +
    'Exit codes: 0 done, 1 failed (no database, FILE exists), 2 configuration, 64 usage.',
  flags: [{ name: 'force', doc: 'replace FILE if it exists' }],
  args: [{ name: 'FILE', doc: 'where to write the copy' }],
  run: ({ flags, args }) => backupCommand(flags.force ? ['--force', args[0]!] : [args[0]!]),
}
