/**
 * PostgreSQL connections: Bun's built-in SQL client (`import { SQL } from 'bun'`) wrapped by drizzle's
 * bun-sql driver, with the pool size, statement timeout and TLS mode of the configuration applied.
 * Every connection field is passed explicitly, so PG* and DATABASE_URL variables of the environment
 * (which Bun would otherwise read, PGDATABASE even over the URL) never change where Bulwark connects.
 */
import { SQL } from 'bun'
import { drizzle, type BunSQLDatabase } from 'drizzle-orm/bun-sql'
import { BunSQLSession, BunSQLTransaction } from 'drizzle-orm/bun-sql/session'

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
  pipelineTransactions(db, sql)
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

/** A template object for `text` as the tag of a literal would see it (Bun's client prepares tagged queries). */
function template(text: string): TemplateStringsArray {
  return Object.freeze(Object.defineProperty([text], 'raw', { value: Object.freeze([text]) })) as unknown as TemplateStringsArray
}
const BEGIN = template('BEGIN')
const COMMIT = template('COMMIT')

/** Thrown when PostgreSQL answered a COMMIT with ROLLBACK (the transaction had failed): nothing was written. */
export class RolledBack extends Error {
  constructor() {
    super('the transaction was rolled back at COMMIT (a statement in it had failed)')
  }
}

/**
 * drizzle's transactions on `db` open with a BEGIN that travels with the transaction's first statement. drizzle
 * runs a transaction through Bun's `sql.begin`, which sends `BEGIN` as a simple query and waits for it: one round
 * trip of its own on every transaction (a refresh had five). Here the transaction reserves a connection
 * (`sql.reserve()`) and starts `BEGIN` as a prepared statement without waiting; Bun's client pipelines it with
 * the first statement the callback issues, one write and one round trip for both (seen with strace). Then
 * `COMMIT`, also prepared, or `ROLLBACK` when the callback throws. The COMMIT's answer is checked: PostgreSQL
 * answers a COMMIT of a failed transaction with the tag `ROLLBACK` and no error, which is thrown here as
 * `RolledBack` rather than taken for a commit. The BEGIN's own failure is awaited before the COMMIT. Bun
 * closes a connection released inside an open transaction (a ROLLBACK that could not be sent) instead of
 * returning it to the pool. Transactions with options (isolation levels: none in Bulwark) keep drizzle's way.
 */
function pipelineTransactions(db: PgDb, pool: SQL): void {
  const session = (db as unknown as { session: object }).session
  const own = session as unknown as { dialect: never; schema: never; options: never; transaction: (fn: (tx: unknown) => Promise<unknown>, config?: unknown) => Promise<unknown> }
  const original = own.transaction.bind(session)
  own.transaction = async (fn, config) => {
    if (config) return await original(fn, config)
    const conn = await pool.reserve()
    try {
      const begun = conn(BEGIN).execute()
      // A reserved connection has no `savepoint`: drizzle's nested `tx.transaction` is not used (withTransaction joins).
      const tx = new BunSQLTransaction(own.dialect, new BunSQLSession(conn as never, own.dialect, own.schema, own.options) as never, own.schema)
      let result: unknown
      try {
        result = await fn(tx)
        await begun
      } catch (err) {
        await conn.unsafe('ROLLBACK').catch(() => {})
        throw err
      }
      const done = await conn(COMMIT)
      if (done.command !== 'COMMIT') throw new RolledBack()
      return result
    } finally {
      await conn.release()
    }
  }
}
