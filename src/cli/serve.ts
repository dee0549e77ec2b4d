/** `bulwark serve` (the default command): the HTTP server until SIGTERM/SIGINT. */
import { writeSync } from 'node:fs'
import { bootstrap, buildDeps } from '../app'
import { SchemaTooNewError } from '../db/migrate'
import { startServer, type Running } from '../server'
import { bannerLines } from './banner'
import { CliError, type Command } from './command'
import { configOrExit, EXIT_CONFIG } from './config-or-exit'
import { AppError } from '../lib/errors'
import { EXIT_SCHEMA_TOO_NEW } from './migrate'

export const EXIT_CANNOT_LISTEN = 1

export const serveCommand: Command = {
  name: 'serve',
  summary: 'start the HTTP server',
  details:
    'Listens on BULWARK_HOST:BULWARK_PORT, migrates the database first, and on an empty database creates the owner from\n' +
    'BULWARK_ADMIN_EMAIL/BULWARK_ADMIN_PASSWORD. Log lines (JSON) go to stdout, the start banner to stderr.\n' +
    'SIGTERM or SIGINT drain in-flight requests (BULWARK_SHUTDOWN_GRACE) and exit 0.',
  run: async () => {
    // Warnings are logged as JSON lines by the server itself.
    const c = configOrExit({ warnings: false })
    let running: Running
    try {
      // The first owner exists before the "listening" line: a client that waits for it can sign in at once.
      const deps = await buildDeps(c, { defaultMetrics: true })
      await bootstrap(deps)
      running = await startServer(c, deps)
    } catch (e) {
      if (e instanceof SchemaTooNewError) throw new CliError([e.message], EXIT_SCHEMA_TOO_NEW)
      // The first owner from BULWARK_ADMIN_EMAIL/PASSWORD was refused (weak password, bad email): a configuration problem.
      if (e instanceof AppError) {
        const reasons = (e.extra as { fields?: { reasons?: { message: string }[] } } | undefined)?.fields?.reasons?.map((r) => `  - ${r.message}`) ?? []
        throw new CliError([`refusing to start: cannot create the first owner from BULWARK_ADMIN_EMAIL/BULWARK_ADMIN_PASSWORD: ${e.detail}`, ...reasons], EXIT_CONFIG)
      }
      if (e instanceof Error && /EADDRINUSE|address already in use|Failed to start server/i.test(e.message)) throw new CliError([`cannot listen on ${c.host}:${c.port}: ${e.message}`], EXIT_CANNOT_LISTEN)
      throw e
    }
    if (await running.deps.rbac.activeOwnerCount() === 0) running.deps.logger.info('no owner account yet: run `bulwark admin create --email E` (password on stdin)')
    // A failing stderr (full disk, closed pipe) must not take the server down: the banner is a courtesy.
    try {
      writeSync(2, `${(await bannerLines(running)).join('\n')}\n`)
    } catch {}
    const shutdown = () => void running.stop().then(() => process.exit(0))
    process.on('SIGTERM', shutdown)
    process.on('SIGINT', shutdown)
    return undefined
  },
}
