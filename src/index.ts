#!/usr/bin/env bun
/**
 * The single binary's command line: `bulwark serve` (default), `migrate`, `config check`, `--version`, `--help`.
 * Configuration problems print one line each and exit with code 2.
 */
import { ConfigError, configWarnings, describeConfig, loadConfig, type Config } from './config'
import { openDatabase } from './db/client'
import { SchemaTooNewError } from './db/migrate'
import { startServer } from './server'
import { VERSION } from './version'

const HELP = `bulwark ${VERSION}: authentication and access-control server

Usage: bulwark [command]

Commands:
  serve            start the HTTP server (default)
  migrate          apply database migrations and exit
  config check     print the effective configuration (secrets masked) and whether it is valid
  --version        print the version
  --help           this text

Configuration comes from BULWARK_* environment variables (each also as BULWARK_*_FILE);
see the README or \`bulwark config check\`.
`

function fail(lines: string[], code = 2): never {
  for (const l of lines) process.stderr.write(`bulwark: ${l}\n`)
  process.exit(code)
}

function configOrExit(): Config {
  try {
    return loadConfig(process.env)
  } catch (e) {
    if (e instanceof ConfigError) fail(['refusing to start:', ...e.problems.map((p) => `  - ${p}`)])
    throw e
  }
}

async function main(argv: string[]): Promise<void> {
  const [cmd = 'serve', sub] = argv
  switch (cmd) {
    case '--version':
    case '-v':
    case 'version':
      process.stdout.write(`${VERSION}\n`)
      return
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP)
      return
    case 'config': {
      if (sub !== 'check') fail([`unknown command "config ${sub ?? ''}"; try \`bulwark config check\``], 64)
      for (const line of describeConfig(process.env)) process.stdout.write(`${line}\n`)
      try {
        const c = loadConfig(process.env)
        for (const w of configWarnings(c)) process.stdout.write(`warning: ${w}\n`)
        process.stdout.write(`configuration is valid for ${c.env}\n`)
      } catch (e) {
        if (e instanceof ConfigError) fail(['configuration is NOT valid:', ...e.problems.map((p) => `  - ${p}`)])
        throw e
      }
      return
    }
    case 'migrate': {
      const c = configOrExit()
      try {
        const h = openDatabase(c.dbPath)
        process.stdout.write(h.migration.applied.length ? `applied ${h.migration.applied.join(', ')}\n` : `database is up to date (${h.migration.current} migrations)\n`)
        h.close()
      } catch (e) {
        if (e instanceof SchemaTooNewError) fail([e.message], 3)
        throw e
      }
      return
    }
    case 'serve': {
      const c = configOrExit()
      let running
      try {
        running = startServer(c)
      } catch (e) {
        if (e instanceof SchemaTooNewError) fail([e.message], 3)
        if (e instanceof Error && /EADDRINUSE|address already in use|Failed to start server/i.test(e.message)) fail([`cannot listen on ${c.host}:${c.port}: ${e.message}`], 1)
        throw e
      }
      const shutdown = () => void running.stop().then(() => process.exit(0))
      process.on('SIGTERM', shutdown)
      process.on('SIGINT', shutdown)
      return
    }
    default:
      process.stderr.write(HELP)
      fail([`unknown command "${cmd}"`], 64)
  }
}

await main(process.argv.slice(2))
