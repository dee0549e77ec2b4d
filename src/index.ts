#!/usr/bin/env bun
/**
 * The single binary's command line: `bulwark serve` (default), `migrate`, `config check`, `--version`, `--help`.
 * Configuration problems print one line each and exit with code 2.
 */
import { ConfigError, configWarnings, describeConfig, loadConfig, type Config } from './config'
import { openDatabase } from './db/client'
import { SchemaTooNewError } from './db/migrate'
import { bootstrap, buildDeps } from './app'
import { startServer } from './server'
import { VERSION } from './version'
import { backupCommand } from './cli/backup'

const HELP = `bulwark ${VERSION}: authentication and access-control server

Usage: bulwark [command]

Commands:
  serve            start the HTTP server (default)
  migrate          apply database migrations and exit
  config check     print the effective configuration (secrets masked) and whether it is valid
  admin create --email E
                   create an owner account; the password is read from stdin (or prompted for)
  keys rotate      make a new signing key current; the previous one stays published until its tokens expire
  backup [--force] FILE
                   consistent copy of the live database to FILE (0600); see \`bulwark backup --help\`
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
    case 'admin': {
      const i = argv.indexOf('--email')
      const email = i > 0 ? argv[i + 1] : undefined
      if (sub !== 'create' || !email) fail(['usage: bulwark admin create --email E  (password from stdin)'], 64)
      const c = configOrExit()
      const password = await readPassword()
      const deps = buildDeps(c)
      try {
        const user = await deps.auth.createOwner(email, password, { userAgent: 'bulwark-cli' })
        process.stdout.write(`created owner ${user.email} (${user.id})\n`)
      } catch (e) {
        const err = e as { code?: string; detail?: string; extra?: { fields?: { reasons?: { message: string }[] } } }
        const reasons = err.extra?.fields?.reasons?.map((r) => r.message) ?? []
        fail([err.detail ?? String(e), ...reasons], 1)
      } finally {
        deps.close()
      }
      return
    }
    case 'keys': {
      if (sub !== 'rotate') fail(['usage: bulwark keys rotate'], 64)
      const deps = buildDeps(configOrExit())
      const r = deps.signer.rotate()
      deps.audit.record({ type: 'key_rotated', outcome: 'success', details: { kid: r.kid, previous: r.previous } }, { userAgent: 'bulwark-cli' })
      process.stdout.write(`new signing key ${r.kid} is current; ${r.previous ?? 'no previous key'} stays published until its tokens expire\n`)
      deps.close()
      return
    }
    case 'backup':
      process.exitCode = backupCommand(argv.slice(1))
      return
    case 'serve': {
      const c = configOrExit()
      let running
      try {
        running = startServer(c)
        await bootstrap(running.deps)
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

/** Reads a password from stdin (piped) or prompts for it on a terminal. */
async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const answer = prompt('Password for the new owner:')
    if (!answer) fail(['no password given'], 64)
    return answer
  }
  const text = await Bun.stdin.text()
  const pw = text.replace(/\r?\n$/, '')
  if (!pw) fail(['no password on stdin'], 64)
  return pw
}

await main(process.argv.slice(2))
