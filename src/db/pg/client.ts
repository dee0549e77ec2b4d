/**
 * PostgreSQL connections: Bun's built-in SQL client (`import { SQL } from 'bun'`) wrapped by drizzle's
 * bun-sql driver, with the pool size, statement timeout and TLS mode of the configuration applied.
 * Every connection field is passed explicitly, so PG* and DATABASE_URL variables of the environment
 * (which Bun would otherwise read, PGDATABASE even over the URL) never change where Bulwark connects.
 */
import { SQL } from 'bun'
import { drizzle, type BunSQLDatabase } from 'drizzle-orm/bun-sql'

export type PgDb = BunSQLDatabase

export type PgTls = 'disable' | 'require' | 'verify-full'

export interface PgOptions {
  url: string
  /** Connections in the pool (BULWARK_DB_POOL_SIZE). */
  poolSize?: number
  /** Server-side `statement_timeout` of every connection, ms; 0 = none (BULWARK_DB_STATEMENT_TIMEOUT). */
  statementTimeoutMs?: number
  /** `disable`, `require` (encrypted, certificate not checked) or `verify-full` (BULWARK_DB_TLS). */
  tls?: PgTls
  /** CA bundle that verifies the server certificate under `verify-full` (BULWARK_DB_TLS_CA_FILE). */
  caFile?: string
  /** Seconds to wait for a connection to open. */
  connectTimeoutS?: number
  applicationName?: string
}

export interface PgHandle {
  db: PgDb
  sql: SQL
  close(): Promise<void>
}

/** The URL's fields, decoded; throws on a URL that is not postgres:// or postgresql://. */
export function parsePgUrl(url: string): { hostname: string; port: number; username: string; password: string; database: string } {
  const u = new URL(url)
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('not a postgres:// URL')
  const username = decodeURIComponent(u.username) || 'postgres'
  return {
    hostname: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 5432,
    username,
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || username,
  }
}

function tlsOption(opts: PgOptions): SQL.PostgresOrMySQLOptions['tls'] {
  const mode = opts.tls ?? 'disable'
  if (mode === 'disable') return 'disable'
  if (mode === 'require') return { rejectUnauthorized: false }
  return opts.caFile ? { ca: Bun.file(opts.caFile), rejectUnauthorized: true } : { rejectUnauthorized: true }
}

/** Opens a pool (lazily: the first query connects) and wraps it in drizzle. */
export function openPg(opts: PgOptions): PgHandle {
  const u = parsePgUrl(opts.url)
  const sql = new SQL({
    adapter: 'postgres',
    hostname: u.hostname,
    port: u.port,
    username: u.username,
    password: u.password,
    database: u.database,
    max: opts.poolSize ?? 10,
    idleTimeout: 60,
    connectionTimeout: opts.connectTimeoutS ?? 10,
    tls: tlsOption(opts),
    connection: {
      application_name: opts.applicationName ?? 'bulwark',
      statement_timeout: Math.max(0, Math.floor(opts.statementTimeoutMs ?? 0)),
    },
  })
  // Without `schema`: nothing uses drizzle's relational queries (`db.query.<table>`), and with it every
  // transaction built one RelationalQueryBuilder per table (drizzle's PgDatabase constructor), 4.5 % of a
  // refresh's server CPU on PostgreSQL in the profile (`bun run bench --profile --only refresh --db postgres`).
  const db = drizzle({ client: sql })
  let closed = false
  return {
    db,
    sql,
    async close() {
      if (closed) return
      closed = true
      await sql.close({ timeout: 5 })
    },
  }
}
